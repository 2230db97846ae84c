"""A batch of identifications in a few set-wise statements, not N statement sets.

`CaseService._resolve_in` resolves one contact with the ORM: a SELECT of its identity,
the customer, the case, then a flush of the new rows — ~5 statements per contact, each a
round trip (a hop to aiosqlite's thread, or the network to PostgreSQL) while the caller
waits for the 200 OK, plus the ORM's unit of work per contact (issue 21). A group
commit (`ResolveBatcher`) shared the commit but still ran those statements one contact
after the other.

Here a batch of *plain* resolutions (no `within` callback, no unverified identities, no
retry: every inbound call) is resolved with SQLAlchemy Core in a fixed number of
statements, whatever its size:

1. one SELECT of every identity the batch looks up (each ref, its equivalents and its
   look-alike candidates);
2. one SELECT per level of customers (the identities' customers; again only for a
   merged-away customer's survivor, which is rare);
3. one SELECT of those customers' open cases and of their cases closed within the
   reopen window;
4. one executemany per table written (customer, identity, case_, timeline_entry,
   identity_suggestion) and one for the cases continued or reopened.

The decisions are those of `_resolve_in`, taken in Python, contact after contact in
arrival order, over the rows read in 1-3 plus what the contacts before it in the batch
staged (a later contact of the same customer joins the case an earlier one opened), so
the records and events are the same as one by one. Two contacts of one person are
never in one batch (the case service's per-person lock). A batch that fails is rolled
back by the caller and run one by one on the ORM path, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, tuple_, update
from sqlalchemy.engine import Connection

from cases.identities import IdentityRef, candidates, equivalents
from cases.tables import Case, Customer, Identity, IdentitySuggestion, TimelineEntry
from core.clock import Clock
from core.events import Event
from core.ids import new_id

_CUSTOMER = Customer.__table__  # type: ignore[attr-defined]
_IDENTITY = Identity.__table__  # type: ignore[attr-defined]
_CASE = Case.__table__  # type: ignore[attr-defined]
_ENTRY = TimelineEntry.__table__  # type: ignore[attr-defined]
_SUGGESTION = IdentitySuggestion.__table__  # type: ignore[attr-defined]

# The statements with expanding IN lists are cached by SQLAlchemy per shape; the
# writes are built once.
_UPDATE_CASE = (update(_CASE).where(_CASE.c.id == bindparam("b_id"))
                .values(status=bindparam("b_status"), closed_at=bindparam("b_closed"),
                        last_activity_at=bindparam("b_at")))
_TOUCH_CASE = (update(_CASE).where(_CASE.c.id == bindparam("b_id"))
               .values(last_activity_at=bindparam("b_at")))
_UPDATE_NAME = (update(_CUSTOMER).where(_CUSTOMER.c.id == bindparam("b_id"))
                .values(display_name=bindparam("b_name")))


@dataclass(frozen=True)
class PlainResolution:
    """What one plain resolution asks: the ref already normalised (`value`)."""

    ref: IdentityRef | None
    value: str | None
    display_name: str | None
    subject: str | None
    entry: Any | None  # cases.service.TimelineDraft


@dataclass
class _Batch:
    """The rows read for a batch, and what its contacts staged so far (in memory)."""

    # (kind, value) -> (identity id, customer id)
    identities: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    cases: dict[str, list[Case]] = field(default_factory=dict)  # customer -> open + recent
    new_customers: list[dict[str, Any]] = field(default_factory=list)
    new_identities: list[dict[str, Any]] = field(default_factory=list)
    new_cases: list[Case] = field(default_factory=list)  # rows built at write time
    new_entries: list[dict[str, Any]] = field(default_factory=list)
    new_suggestions: list[dict[str, Any]] = field(default_factory=list)
    touched_cases: dict[str, Case] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    new_case_ids: set[str] = field(default_factory=set)
    reopened: set[str] = field(default_factory=set)  # touched cases that were closed


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _row(table: Any, obj: Any) -> dict[str, Any]:
    return {c.name: getattr(obj, c.name) for c in table.columns}


class SetwiseResolver:
    """Resolves a batch of `PlainResolution`s in one open transaction (see module doc).

    `resolve` returns, per resolution and in order, what `CaseService._resolve_in`
    returns: (Recorded, events to publish after the commit)."""

    def __init__(self, clock: Clock, reopen_window: timedelta,
                 timeline_event: Callable[[TimelineEntry], Event],
                 results: Callable[..., Any]) -> None:
        self.clock = clock
        self.reopen_window = reopen_window
        self._timeline_event = timeline_event
        self._results = results  # (resolution fields..., entry, created) -> Recorded

    def resolve(self, conn: Connection, items: list[PlainResolution],
                ) -> list[tuple[Any, list[Event]]]:
        """Synchronous, on a sync connection: run whole on SQLite's writer thread (one
        hand-over per batch, `Database.write_in_thread`) or through `run_sync` on an
        async connection (PostgreSQL: each statement a round trip)."""
        nows = [self.clock.now() for _ in items]
        state = _Batch()
        self._read(conn, items, nows, state)
        out = [self._decide(state, item, now) for item, now in zip(items, nows, strict=True)]
        self._write(conn, state)
        return out

    # ---- reads: a fixed number of statements per batch --------------------------

    def _read(self, conn: Connection, items: list[PlainResolution],
                    nows: list[datetime], state: _Batch) -> None:
        pairs: set[tuple[str, str]] = set()
        for item in items:
            if item.ref is not None and item.value is not None:
                pairs.add((item.ref.kind, item.value))
                pairs.update(equivalents(item.ref.kind, item.value))
                pairs.update(candidates(item.ref.kind, item.value))
        if pairs:
            rows = conn.execute(
                select(_IDENTITY.c.kind, _IDENTITY.c.value, _IDENTITY.c.id,
                       _IDENTITY.c.customer_id)
                .where(tuple_(_IDENTITY.c.kind, _IDENTITY.c.value).in_(sorted(pairs))))
            for kind, value, ident, customer in rows:
                state.identities[(kind, value)] = (ident, customer)
        wanted = {customer for _, customer in state.identities.values()}
        while wanted:  # the customers, then any merged-away one's survivor
            rows = conn.execute(select(_CUSTOMER).where(
                _CUSTOMER.c.id.in_(sorted(wanted))))
            for row in rows.mappings():
                state.customers[row["id"]] = Customer(**row)
            wanted = {c.merged_into for c in state.customers.values()
                      if c.merged_into and c.merged_into not in state.customers}
            wanted -= {None}
        live = [c for c in state.customers if not state.customers[c].merged_into]
        if live:
            cutoff = min(nows) - self.reopen_window
            rows = conn.execute(select(_CASE).where(
                _CASE.c.customer_id.in_(sorted(live)),
                or_(_CASE.c.status == "open",
                    and_(_CASE.c.status == "closed", _CASE.c.closed_at >= cutoff))))
            for row in rows.mappings():
                state.cases.setdefault(row["customer_id"], []).append(Case(**row))

    # ---- decisions: `CaseService._resolve_in`, in memory ------------------------

    def _live(self, state: _Batch, customer_id: str) -> Customer:
        customer = state.customers.get(customer_id)
        seen = set()
        while customer is not None and customer.merged_into and customer.id not in seen:
            seen.add(customer.id)
            customer = state.customers.get(customer.merged_into)
        if customer is None:  # the batch fails and runs one by one: NotFound there
            raise LookupError(f"customer {customer_id} not found")
        return customer

    def _decide(self, state: _Batch, item: PlainResolution, now: datetime,
                ) -> tuple[Any, list[Event]]:
        events: list[Event] = []
        ref, value = item.ref, item.value
        customer: Customer | None = None
        identity_id: str | None = None
        if ref is not None and value is not None:
            found = state.identities.get((ref.kind, value))
            if found is not None:
                identity_id = found[0]
                customer = self._live(state, found[1])
            else:
                for pair in equivalents(ref.kind, value):
                    twin = state.identities.get(pair)
                    if twin is not None:
                        customer = self._live(state, twin[1])
                        break
        customer_created = False
        if customer is None:
            # every field given: a default_factory (tags) made pydantic inspect `list`'s
            # signature on each construction
            customer = Customer(id=new_id(), display_name=item.display_name, language=None,
                                tags=[], anonymous=ref is None, merged_into=None,
                                created_at=now)
            state.customers[customer.id] = customer
            state.new_customers.append(_row(_CUSTOMER, customer))
            customer_created = True
            events.append(Event("customer.created", {"customer_id": customer.id}))
        elif item.display_name and not customer.display_name:
            customer.display_name = item.display_name
            state.renamed[customer.id] = item.display_name
        if ref is not None and value is not None and identity_id is None:
            # a row, not an `Identity` object (~70 us to build one; only its id is used)
            identity_id = new_id()
            state.identities[(ref.kind, value)] = (identity_id, customer.id)
            state.new_identities.append({
                "id": identity_id, "customer_id": customer.id, "kind": ref.kind,
                "value": value, "raw": ref.raw, "verified": True, "created_at": now,
                "previous": False, "replaced_by": None})

        suggestions: list[IdentitySuggestion] = []
        if ref is not None and value is not None and customer_created:
            for ckind, cvalue in candidates(ref.kind, value):
                other = state.identities.get((ckind, cvalue))
                if other is not None and other[1] != customer.id:
                    sug = IdentitySuggestion(
                        id=new_id(), customer_id=customer.id, candidate_customer_id=other[1],
                        kind=ref.kind, value=value,
                        reason=f"{ref.kind} {value} may be the same number as "
                               f"{ckind} {cvalue}", created_at=now)
                    suggestions.append(sug)
                    state.new_suggestions.append(_row(_SUGGESTION, sug))

        case, created, reopened = self._pick_case(state, customer.id, now, item.subject,
                                                  fresh=customer_created)
        resolution_args = (customer, case, customer_created, created, reopened,
                           identity_id, suggestions)
        entry = None
        if item.entry is not None:
            draft = item.entry
            entry = TimelineEntry(id=new_id(), case_id=case.id, kind=draft.kind,
                                  channel=draft.channel, direction=draft.direction,
                                  body=draft.body, meta={**draft.meta},
                                  dedup_key=draft.dedup_key,
                                  occurred_at=draft.occurred_at or now, recorded_at=now)
            state.new_entries.append(_row(_ENTRY, entry))
        events += resolution_events(case.id, customer.id, created, reopened, suggestions)
        if entry is not None:
            events.append(self._timeline_event(entry))
        return self._results(*resolution_args, entry, entry is not None), events

    def _pick_case(self, state: _Batch, customer_id: str, now: datetime,
                   subject: str | None, *, fresh: bool) -> tuple[Case, bool, bool]:
        """The customer's open case with the latest activity; else the one closed most
        recently, reopened when within the window; else a new case."""
        known = state.cases.setdefault(customer_id, [])
        if not fresh:
            open_cases = [c for c in known if c.status == "open"]
            if open_cases:
                case = max(open_cases, key=lambda c: _aware(c.last_activity_at))
                case.last_activity_at = now
                self._touch(state, case)
                return case, False, False
            closed = [c for c in known if c.status == "closed" and c.closed_at is not None]
            if closed:
                recent = max(closed, key=lambda c: _aware(c.closed_at))  # type: ignore[arg-type]
                if _aware(recent.closed_at) >= now - self.reopen_window:  # type: ignore[arg-type]
                    recent.status, recent.closed_at, recent.last_activity_at = "open", None, now
                    self._touch(state, recent)
                    state.reopened.add(recent.id)
                    return recent, False, True
        case = Case(id=new_id(), customer_id=customer_id, status="open", subject=subject,
                    opened_at=now, last_activity_at=now)
        known.append(case)
        state.new_case_ids.add(case.id)
        state.new_cases.append(case)
        return case, True, False

    @staticmethod
    def _touch(state: _Batch, case: Case) -> None:
        if case.id not in state.new_case_ids:  # a new one is inserted as it ends up
            state.touched_cases[case.id] = case

    # ---- writes: one executemany per table --------------------------------------

    def _write(self, conn: Connection, state: _Batch) -> None:
        if state.new_customers:
            conn.execute(insert(_CUSTOMER), state.new_customers)
        if state.renamed:
            conn.execute(_UPDATE_NAME, [{"b_id": k, "b_name": v}
                                              for k, v in state.renamed.items()])
        if state.new_identities:
            conn.execute(insert(_IDENTITY), state.new_identities)
        if state.new_cases:
            conn.execute(insert(_CASE), [_row(_CASE, c) for c in state.new_cases])
        # a continued case gets its last activity only (as the ORM's UPDATE did: a
        # close by someone else meanwhile stands); a reopened one its status too
        continued = [{"b_id": c.id, "b_at": c.last_activity_at}
                     for c in state.touched_cases.values() if c.id not in state.reopened]
        if continued:
            conn.execute(_TOUCH_CASE, continued)
        reopened = [{"b_id": c.id, "b_status": c.status, "b_closed": c.closed_at,
                     "b_at": c.last_activity_at}
                    for c in state.touched_cases.values() if c.id in state.reopened]
        if reopened:
            conn.execute(_UPDATE_CASE, reopened)
        if state.new_suggestions:
            conn.execute(insert(_SUGGESTION), state.new_suggestions)
        if state.new_entries:
            conn.execute(insert(_ENTRY), state.new_entries)


def resolution_events(case_id: str, customer_id: str, created: bool, reopened: bool,
                      suggestions: list[IdentitySuggestion]) -> list[Event]:
    """What a resolution tells the bus about the case and look-alikes, the same from the
    set-wise path and the ORM path (consumers must not tell which one ran)."""
    events: list[Event] = []
    if created:
        events.append(Event("case.opened", {"case_id": case_id, "customer_id": customer_id}))
    elif reopened:
        events.append(Event("case.reopened", {"case_id": case_id, "customer_id": customer_id}))
    for sug in suggestions:
        events.append(Event("identity.suggested", {
            "suggestion_id": sug.id, "customer_id": sug.customer_id,
            "candidate_customer_id": sug.candidate_customer_id}))
    return events
