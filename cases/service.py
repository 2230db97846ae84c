"""CaseService: resolve a contact to one customer and one case, keep the timeline.

This is the single door to the customer record: channel adapters, the IVR and the web
app call it; nobody else touches these tables.

Continuity rule: a new contact joins the customer's open case, or reopens the case
closed most recently if that was less than `reopen_window` ago; otherwise it opens a
new case. Withheld callers get a fresh anonymous customer every time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cases.identities import (
    IdentityRef,
    InvalidIdentity,
    candidates,
    equivalents,
    normalise,
)
from cases.resolve_batcher import ResolveBatcher
from cases.setwise import PlainResolution, SetwiseResolver, resolution_events
from cases.snapshot import CaseSnapshot, read_case_snapshot
from cases.tables import Case, Customer, Identity, IdentitySuggestion, TimelineEntry
from cases.timeline_writer import AppendedEntry, TimelineWriter
from core.bus import EventBus, InMemoryBus
from core.clock import Clock
from core.db import Database
from core.events import Event
from core.ids import new_id

log = logging.getLogger(__name__)


# Cases opened by this node remembered as having no last agent (`CaseService.last_agent`).
_AGENTLESS_MAX = 50_000


class CaseError(Exception):
    """A request about the customer record that cannot be honoured."""


class NotFound(CaseError):
    pass


@dataclass
class Resolution:
    customer: Customer
    case: Case
    customer_created: bool
    case_created: bool
    case_reopened: bool = False
    identity_id: str | None = None
    suggestions: list[IdentitySuggestion] = field(default_factory=list)


@dataclass(frozen=True)
class TimelineDraft:
    """A timeline entry to write in the same transaction as a resolution."""

    kind: str
    channel: str
    direction: str
    body: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    dedup_key: str | None = None


@dataclass
class Recorded:
    """What `resolve_and_record` did: the resolution and the (possibly existing) entry."""

    resolution: Resolution
    entry: TimelineEntry | None
    entry_created: bool


@dataclass(frozen=True)
class NumberChange:
    """What `change_number` did. `outcome`: "added" (the new number joined the
    customer), "already" (it was theirs), "suggested" (it belongs to another customer:
    `suggestion_id` asks an agent to merge), "unknown" (the old number is not known)."""

    outcome: str
    customer_id: str | None
    suggestion_id: str | None
    old_value: str
    new_value: str


# The caller's own writes, in the resolution's transaction (its own tables only).
# Returns meta fields to add to the timeline entry, or None.
WithinResolution = Callable[[AsyncSession, Resolution], Awaitable[dict[str, Any] | None]]


class CaseService:
    def __init__(self, db: Database, bus: EventBus, clock: Clock, *, default_region: str,
                 reopen_window: timedelta = timedelta(days=7)) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.default_region = default_region
        self.reopen_window = reopen_window
        # person key -> (lock, how many resolutions hold or wait for it)
        self._person_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        # Timeline entries nobody waits for one by one (IVR steps): group commits.
        self.writer = TimelineWriter(db, clock, bus.publish, self._timeline_event,
                                     self._insert_entry)
        # Contacts identified at the same moment: one transaction (group commit), plain
        # ones (every inbound call) in a few set-wise statements per batch.
        self.setwise = SetwiseResolver(clock, reopen_window, self._timeline_event,
                                       _recorded)
        self.resolver = ResolveBatcher(db, self.setwise.resolve)
        # Cases this node opened whose last agent was never set (see `last_agent`); only
        # with the in-process bus: with a shared one, another node's consumer may set it.
        self._agentless: dict[str, None] | None = {} if isinstance(bus, InMemoryBus) else None

    def _person_key(self, ref: IdentityRef | None) -> str | None:
        """One key for identities that are the same person (a phone and its wa_id), so
        their first contacts, arriving at once on two channels, resolve one at a time."""
        if ref is None:
            return None
        try:
            value = normalise(ref, self.default_region)
        except InvalidIdentity:
            return None
        if ref.kind in ("phone", "whatsapp"):
            return "number:" + value.lstrip("+")
        return f"{ref.kind}:{value}"

    # ---- resolution -------------------------------------------------------------

    async def resolve(self, ref: IdentityRef | None, *, display_name: str | None = None,
                      unverified: list[IdentityRef] | None = None,
                      subject: str | None = None) -> Resolution:
        """Find or create the customer behind `ref` and pick their case.

        `ref=None` is a withheld caller. `unverified` identities (a webchat visitor's
        pre-chat e-mail) never link the contact to an existing customer: when they match
        someone, a suggestion is stored for the agent instead.
        """
        recorded = await self._resolve_unit(ref, display_name, unverified or [], subject,
                                            None, None)
        return recorded.resolution

    async def resolve_and_record(self, ref: IdentityRef | None, entry: TimelineDraft, *,
                                 display_name: str | None = None,
                                 unverified: list[IdentityRef] | None = None,
                                 subject: str | None = None,
                                 within: WithinResolution | None = None) -> Recorded:
        """`resolve` and `add_timeline` in ONE transaction (one commit instead of two):
        the contact's customer and case, the entry on that case's timeline, and whatever
        `within(session, resolution)` writes to the caller's own tables, all committed
        together or not at all. Events are published after the commit.

        The entry is deduplicated by `entry.dedup_key` (written twice -> stored once,
        `created=False`). `within` runs before the entry is staged and may return meta
        fields for it (the id of a row it created). It may run more than once (the unit
        is retried when a concurrent contact created the same identity first), so it
        must only write through the session it is given.
        """
        return await self._resolve_unit(ref, display_name, unverified or [], subject,
                                        entry, within)

    async def _resolve_unit(self, ref: IdentityRef | None, display_name: str | None,
                            unverified: list[IdentityRef], subject: str | None,
                            entry: TimelineDraft | None,
                            within: WithinResolution | None) -> Recorded:
        if display_name is not None:  # a peer's profile name: the column holds 200
            display_name = display_name.strip()[:200] or None
        key = self._person_key(ref)
        lock: asyncio.Lock | None = None
        if key:
            lock, users = self._person_locks.get(key) or (asyncio.Lock(), 0)
            self._person_locks[key] = (lock, users + 1)
        try:
            for attempt in range(3):
                try:
                    if lock is None:
                        result = await self._resolve_batched(
                            ref, display_name, unverified, subject, None, entry, within,
                            attempt > 0)
                    else:
                        async with lock:
                            result = await self._resolve_batched(
                                ref, display_name, unverified, subject, key, entry, within,
                                attempt > 0)
                    break
                except IntegrityError:
                    # A concurrent contact created the same identity first: read it again.
                    if attempt == 2:
                        raise
                    log.debug("identity race on %s; retrying", ref)
        finally:
            if key:
                # Forget the lock when nobody holds or waits for it (counted, not
                # `locked()`: a released lock whose waiter has not woken looks free, and
                # a newcomer would get a second lock for the same person).
                lock, users = self._person_locks[key]
                if users == 1:
                    del self._person_locks[key]
                else:
                    self._person_locks[key] = (lock, users - 1)
        resolution = result[0].resolution
        if resolution.case_created:
            self._opened_here([resolution.case.id])
        for event in result[1]:
            await self.bus.publish(event)
        return result[0]

    async def _resolve_batched(self, ref: IdentityRef | None, display_name: str | None,
                               unverified: list[IdentityRef], subject: str | None,
                               lock_key: str | None, entry: TimelineDraft | None,
                               within: WithinResolution | None, retry: bool,
                               ) -> tuple[Recorded, list[Event]]:
        """A first attempt goes into the next group commit with the other contacts being
        identified at the same moment (`ResolveBatcher`): a batch pays one commit (one
        fsync and one turn of SQLite's writer lock) and, for plain resolutions (no
        `within`, no unverified identities: every inbound call), a fixed number of
        set-wise statements (`cases.setwise`) instead of ~5 per contact.

        On PostgreSQL only plain resolutions are batched: there a batch of ORM
        resolutions ran their round trips one after the other where separate
        connections ran them side by side (measured in session 5: setup p99 4.2 -> 5.5
        s at 100 calls/s), while a set-wise batch makes ~6 round trips for the whole
        batch. A retry after a race runs on its own."""
        def alone() -> Awaitable[tuple[Recorded, list[Event]]]:
            return self._resolve_once(ref, display_name, unverified, subject, lock_key,
                                      entry=entry, within=within, retry=retry)

        plain: PlainResolution | None = None
        if within is None and not unverified:
            value = normalise(ref, self.default_region) if ref is not None else None
            plain = PlainResolution(ref, value, display_name, subject, entry)
        if retry or (plain is None and not self.db.is_sqlite):
            return await alone()

        def stage(s: AsyncSession) -> Awaitable[tuple[Recorded, list[Event]]]:
            return self._resolve_in(s, ref, display_name, unverified, subject,
                                    entry=entry, within=within)

        result: tuple[Recorded, list[Event]] = await self.resolver.resolve(
            lock_key, stage, alone, plain)
        return result

    async def _resolve_once(self, ref: IdentityRef | None, display_name: str | None,
                            unverified: list[IdentityRef], subject: str | None,
                            lock_key: str | None = None, *, entry: TimelineDraft | None = None,
                            within: WithinResolution | None = None, retry: bool = False,
                            ) -> tuple[Recorded, list[Event]]:
        """One resolution, in its own transaction."""
        async with self.db.session() as s:
            if lock_key is not None and not self.db.is_sqlite:
                # Several nodes: PostgreSQL serialises the same person across processes
                # (SQLite has one writer anyway).
                # Ended by PostgreSQL if left idle 10 s (a paused node), so that the
                # person's lock does not stop every other node's routing of them.
                await s.exec(text(
                    "SELECT set_config('idle_in_transaction_session_timeout', '10000', "
                    "true), pg_advisory_xact_lock(hashtext(:k))").bindparams(k=lock_key))
            result = await self._resolve_in(s, ref, display_name, unverified, subject,
                                            entry=entry, within=within, retry=retry)
            await s.commit()
        return result

    async def _resolve_in(self, s: AsyncSession, ref: IdentityRef | None,
                          display_name: str | None, unverified: list[IdentityRef],
                          subject: str | None, *, entry: TimelineDraft | None = None,
                          within: WithinResolution | None = None, retry: bool = False,
                          ) -> tuple[Recorded, list[Event]]:
        """A resolution's reads and writes in the session `s`, not committed; the events
        to publish once it is (`ResolveBatcher` runs several in one transaction)."""
        now = self.clock.now()
        events: list[Event] = []
        customer: Customer | None = None
        identity: Identity | None = None
        value = normalise(ref, self.default_region) if ref is not None else None
        if ref is not None and value is not None:
            # The identity and its exact equivalents in one query; the identity
            # itself wins, then the equivalents in their order.
            twins = equivalents(ref.kind, value)
            found = await self._identities(s, [(ref.kind, value), *twins])
            identity = found.get((ref.kind, value))
            if identity is None:
                for pair in twins:
                    twin = found.get(pair)
                    if twin is not None:
                        customer = await self._live_customer(s, twin.customer_id)
                        break
            else:
                customer = await self._live_customer(s, identity.customer_id)

        customer_created = False
        if customer is None:
            # tags given: its default_factory made pydantic inspect `list`'s signature
            # on every construction (issue 21)
            customer = Customer(id=new_id(), display_name=display_name, created_at=now,
                                anonymous=ref is None, tags=[])
            s.add(customer)
            customer_created = True
            events.append(Event("customer.created", {"customer_id": customer.id}))
        elif display_name and not customer.display_name:
            customer.display_name = display_name
            s.add(customer)
        if ref is not None and value is not None and identity is None:
            identity = Identity(id=new_id(), customer_id=customer.id, kind=ref.kind,
                                value=value, raw=ref.raw, created_at=now)
            s.add(identity)
        await s.flush()

        suggestions = []
        if ref is not None and value is not None and customer_created:
            suggestions += await self._suggest_candidates(s, customer.id, ref.kind, value, now)
        for extra in unverified:
            suggestions += await self._suggest_unverified(s, customer.id, extra, now)

        if customer_created:  # a customer created just now has no case to continue
            case, created, reopened = self._new_case(s, customer.id, now, subject), True, False
        else:
            case, created, reopened = await self._pick_case(s, customer.id, now, subject)
        resolution = Resolution(customer, case, customer_created, created, reopened,
                                identity.id if identity else None, suggestions)
        extra_meta = await within(s, resolution) if within is not None else None
        timeline_entry, entry_created = None, False
        if entry is not None:
            timeline_entry, entry_created = await self._stage_entry(
                s, case.id, entry, now, extra_meta or {}, look_first=retry)
        await s.flush()  # a failure is this resolution's, not the next one's in a batch
        events += resolution_events(case.id, customer.id, created, reopened, suggestions)
        if timeline_entry is not None and entry_created:
            events.append(self._timeline_event(timeline_entry))
        return Recorded(resolution, timeline_entry, entry_created), events

    async def _stage_entry(self, s: AsyncSession, case_id: str, draft: TimelineDraft,
                           now: datetime, extra_meta: dict[str, Any], *, look_first: bool,
                           ) -> tuple[TimelineEntry, bool]:
        """Add a timeline entry to the open transaction unless its dedup key is stored.

        The first attempt does not look: the UNIQUE dedup key makes the commit fail
        when the entry exists (a message processed again after a crash), and the retry
        (`look_first`) then finds it. Saves a query on every new entry."""
        if draft.dedup_key is not None and look_first:
            existing = (await s.exec(select(TimelineEntry).where(
                TimelineEntry.dedup_key == draft.dedup_key))).first()
            if existing is not None:
                return existing, False
        entry = TimelineEntry(id=new_id(), case_id=case_id, kind=draft.kind,
                              channel=draft.channel, direction=draft.direction,
                              body=draft.body, meta={**draft.meta, **extra_meta},
                              dedup_key=draft.dedup_key,
                              occurred_at=draft.occurred_at or now, recorded_at=now)
        s.add(entry)
        return entry, True

    @staticmethod
    def _timeline_event(entry: TimelineEntry | AppendedEntry) -> Event:
        return Event("timeline.added", {
            "case_id": entry.case_id, "entry_id": entry.id, "kind": entry.kind,
            "channel": entry.channel, "direction": entry.direction})

    async def _identities(self, s: AsyncSession, pairs: list[tuple[str, str]],
                          ) -> dict[tuple[str, str], Identity]:
        """The stored identities among (kind, value) pairs, in one round trip."""
        if not pairs:
            return {}
        rows = await s.exec(select(Identity).where(or_(*(
            and_(col(Identity.kind) == kind, col(Identity.value) == value)
            for kind, value in pairs))))
        return {(row.kind, row.value): row for row in rows}

    async def _identity(self, s: AsyncSession, kind: str, value: str) -> Identity | None:
        return (await s.exec(select(Identity).where(Identity.kind == kind,
                                                    Identity.value == value))).first()

    async def _live_customer(self, s: AsyncSession, customer_id: str) -> Customer:
        """Follow merges: a merged-away customer's identities point to the survivor."""
        customer = await s.get(Customer, customer_id)
        seen = set()
        while customer is not None and customer.merged_into and customer.id not in seen:
            seen.add(customer.id)
            customer = await s.get(Customer, customer.merged_into)
        if customer is None:
            raise NotFound(f"customer {customer_id} not found")
        return customer

    async def _suggest_candidates(self, s: AsyncSession, customer_id: str, kind: str,
                                  value: str, now: datetime) -> list[IdentitySuggestion]:
        out = []
        pairs = candidates(kind, value)
        found = await self._identities(s, pairs)
        for ckind, cvalue in pairs:
            other = found.get((ckind, cvalue))
            if other is not None and other.customer_id != customer_id:
                out.append(self._suggestion(s, customer_id, other.customer_id, kind, value,
                                            f"{kind} {value} may be the same number as "
                                            f"{ckind} {cvalue}", now))
        return out

    async def _suggest_unverified(self, s: AsyncSession, customer_id: str, ref: IdentityRef,
                                  now: datetime) -> list[IdentitySuggestion]:
        try:
            value = normalise(ref, self.default_region)
        except InvalidIdentity:
            return []
        out = []
        for kind, v in [(ref.kind, value), *equivalents(ref.kind, value)]:
            other = await self._identity(s, kind, v)
            if other is not None and other.customer_id != customer_id:
                out.append(self._suggestion(s, customer_id, other.customer_id, ref.kind, value,
                                            f"unverified {ref.kind} {value} given by the "
                                            "contact matches this customer", now))
                break
        return out

    def _suggestion(self, s: AsyncSession, customer_id: str, candidate: str, kind: str,
                    value: str, reason: str, now: datetime) -> IdentitySuggestion:
        sug = IdentitySuggestion(id=new_id(), customer_id=customer_id,
                                 candidate_customer_id=candidate, kind=kind, value=value,
                                 reason=reason, created_at=now)
        s.add(sug)
        return sug

    async def _pick_case(self, s: AsyncSession, customer_id: str, now: datetime,
                         subject: str | None) -> tuple[Case, bool, bool]:
        open_case = (await s.exec(
            select(Case).where(Case.customer_id == customer_id, Case.status == "open")
            .order_by(col(Case.last_activity_at).desc()))).first()
        if open_case is not None:
            open_case.last_activity_at = now
            s.add(open_case)
            return open_case, False, False
        recent = (await s.exec(
            select(Case).where(Case.customer_id == customer_id, Case.status == "closed")
            .order_by(col(Case.closed_at).desc()))).first()
        if recent is not None and recent.closed_at is not None and \
                _aware(recent.closed_at) >= now - self.reopen_window:
            recent.status = "open"
            recent.closed_at = None
            recent.last_activity_at = now
            s.add(recent)
            return recent, False, True
        return self._new_case(s, customer_id, now, subject), True, False

    @staticmethod
    def _new_case(s: AsyncSession, customer_id: str, now: datetime,
                  subject: str | None) -> Case:
        case = Case(id=new_id(), customer_id=customer_id, status="open", subject=subject,
                    opened_at=now, last_activity_at=now)
        s.add(case)
        return case

    # ---- timeline ---------------------------------------------------------------

    async def add_timeline(self, case_id: str, *, kind: str, channel: str, direction: str,
                           body: str | None = None, meta: dict[str, Any] | None = None,
                           occurred_at: datetime | None = None,
                           dedup_key: str | None = None) -> tuple[TimelineEntry, bool]:
        """Append to a case's timeline. Returns (entry, created): with a `dedup_key` the
        same entry written twice (a redelivered webhook) is stored once."""
        now = self.clock.now()
        entry = TimelineEntry(id=new_id(), case_id=case_id, kind=kind, channel=channel,
                              direction=direction, body=body, meta=meta or {},
                              dedup_key=dedup_key, occurred_at=occurred_at or now,
                              recorded_at=now)
        async with self.db.session() as s:
            # One UPDATE instead of a read and a write: no row means no such case.
            touched = await s.exec(update(Case).where(  # type: ignore[call-overload]
                col(Case.id) == case_id).values(last_activity_at=now))
            if touched.rowcount == 0:
                raise NotFound(f"case {case_id} not found")
            s.add(entry)
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()
                existing = (await s.exec(select(TimelineEntry).where(
                    TimelineEntry.dedup_key == dedup_key))).first()
                if existing is None:
                    raise
                return existing, False
        await self.bus.publish(self._timeline_event(entry))
        return entry, True

    def append_timeline(self, case_id: str, *, kind: str, channel: str, direction: str,
                        body: str | None = None, meta: dict[str, Any] | None = None,
                        ) -> asyncio.Future[AppendedEntry | None]:
        """Like `add_timeline` without waiting for the commit: the entry joins the next
        group commit (cases.timeline_writer), stamped with the time of this call. Await
        `timeline_settled(case_id)` where it must be on disk. No dedup key."""
        return self.writer.append(case_id, kind=kind, channel=channel,
                                  direction=direction, body=body, meta=meta)

    async def timeline_settled(self, case_id: str) -> None:
        """Every entry appended for the case so far is committed (or logged as failed)."""
        await self.writer.settled(case_id)

    async def _insert_entry(self, entry: TimelineEntry) -> None:
        """One prepared entry in a transaction of its own (the writer's fallback)."""
        async with self.db.session() as s:
            touched = await s.exec(update(Case).where(  # type: ignore[call-overload]
                col(Case.id) == entry.case_id).values(last_activity_at=entry.recorded_at))
            if touched.rowcount == 0:
                raise NotFound(f"case {entry.case_id} not found")
            s.add(entry)
            await s.commit()

    async def timeline(self, case_id: str) -> list[TimelineEntry]:
        async with self.db.session() as s:
            rows = await s.exec(select(TimelineEntry).where(TimelineEntry.case_id == case_id)
                                .order_by(col(TimelineEntry.occurred_at),
                                          col(TimelineEntry.recorded_at),
                                          col(TimelineEntry.id)))
            return list(rows)

    async def timeline_entry(self, entry_id: str) -> TimelineEntry | None:
        """One entry by id (the desktop's live timeline frame: one row, not the case's
        whole timeline per entry added)."""
        async with self.db.session() as s:
            return await s.get(TimelineEntry, entry_id)

    # ---- reads and simple updates ----------------------------------------------

    async def get_case(self, case_id: str) -> Case:
        async with self.db.session() as s:
            case = await s.get(Case, case_id)
        if case is None:
            raise NotFound(f"case {case_id} not found")
        return case

    async def get_customer(self, customer_id: str) -> Customer:
        async with self.db.session() as s:
            customer = await s.get(Customer, customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} not found")
        return customer

    async def identities(self, customer_id: str) -> list[Identity]:
        async with self.db.session() as s:
            return list(await s.exec(select(Identity).where(
                Identity.customer_id == customer_id).order_by(col(Identity.created_at))))

    async def has_entry_since(self, customer_id: str, kind: str, since: datetime) -> bool:
        """True when one of the customer's cases has a `kind` timeline entry at or after
        `since` (the surveys' once-per-period rule reads the `survey` entries, which
        every channel's survey writes)."""
        async with self.db.session() as s:
            row = (await s.exec(
                select(TimelineEntry.id)
                .join(Case, col(Case.id) == col(TimelineEntry.case_id))
                .where(Case.customer_id == customer_id, TimelineEntry.kind == kind,
                       col(TimelineEntry.occurred_at) >= since)
                .limit(1))).first()
        return row is not None

    async def cases_of(self, customer_id: str) -> list[Case]:
        async with self.db.session() as s:
            return list(await s.exec(select(Case).where(Case.customer_id == customer_id)
                                     .order_by(col(Case.opened_at).desc())))

    async def snapshot(self, case_id: str, *, timeline_limit: int = 300) -> CaseSnapshot:
        """The case, its live customer with identities, the timeline's last
        `timeline_limit` entries with the total, and open suggestions — in one session
        (a screen-pop's read; see cases.snapshot)."""
        found = await read_case_snapshot(self.db, case_id, limit=timeline_limit)
        if found is None:
            raise NotFound(f"case {case_id} not found")
        return found

    async def suggestions(self, customer_id: str) -> list[IdentitySuggestion]:
        async with self.db.session() as s:
            return list(await s.exec(select(IdentitySuggestion).where(
                IdentitySuggestion.customer_id == customer_id,
                IdentitySuggestion.status == "open")))

    async def last_agent(self, case_id: str) -> str | None:
        """The case's last agent (sticky routing at queue entry).

        A case this node opened moments ago has none: every inbound call used to read
        its just-created case back for this (one SELECT per call, issue 21). Such cases
        are remembered (the last `_AGENTLESS_MAX`) until `set_last_agent` writes one —
        on a single node (in-process bus) that is the only writer of the column; with a
        shared bus the consumer that sets it may run on another node, so this always
        reads the row there."""
        if self._agentless is not None and case_id in self._agentless:
            return None
        return (await self.get_case(case_id)).last_agent_id

    def _opened_here(self, case_ids: list[str]) -> None:
        memo = self._agentless
        if memo is None:
            return
        for case_id in case_ids:
            memo[case_id] = None
        while len(memo) > _AGENTLESS_MAX:
            del memo[next(iter(memo))]

    async def set_last_agent(self, case_id: str, agent_id: str) -> None:
        if self._agentless is not None:
            self._agentless.pop(case_id, None)
        async with self.db.session() as s:
            touched = await s.exec(update(Case).where(  # type: ignore[call-overload]
                col(Case.id) == case_id).values(last_agent_id=agent_id,
                                                last_agent_at=self.clock.now()))
            if touched.rowcount == 0:
                raise NotFound(f"case {case_id} not found")
            await s.commit()

    async def update_customer(self, customer_id: str, *, display_name: str | None = None,
                              language: str | None = None, tags: list[str] | None = None,
                              ) -> Customer:
        async with self.db.session() as s:
            customer = await s.get(Customer, customer_id)
            if customer is None:
                raise NotFound(f"customer {customer_id} not found")
            if display_name is not None:
                customer.display_name = display_name
            if language is not None:
                customer.language = language
            if tags is not None:
                customer.tags = list(tags)
            s.add(customer)
            await s.commit()
            return customer

    async def change_number(self, kind: str, old_raw: str, new_raw: str) -> NumberChange:
        """A contact changed their number (WhatsApp `user_changed_number`).

        Nothing is overwritten: the old identity stays on its customer, marked
        `previous` (a later call from the old number still finds them), and the new
        number is added to the same customer. When the new number already belongs to
        another customer (it wrote before the notice arrived: events out of order), the
        two are not merged blindly: a suggestion links them for an agent to confirm.
        Applying the same notice twice changes nothing the second time."""
        old_value = normalise(IdentityRef(kind, old_raw), self.default_region)
        new_value = normalise(IdentityRef(kind, new_raw), self.default_region)
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.session() as s:
            found = await self._identities(s, [(kind, old_value), (kind, new_value)])
            old, new = found.get((kind, old_value)), found.get((kind, new_value))
            if old is None:
                return NumberChange("unknown", None, None, old_value, new_value)
            customer = await self._live_customer(s, old.customer_id)
            old.previous, old.replaced_by = True, new_value
            s.add(old)
            outcome = "added"
            suggestion: IdentitySuggestion | None = None
            if new is None:
                s.add(Identity(id=new_id(), customer_id=customer.id, kind=kind,
                               value=new_value, raw=new_raw, created_at=now))
            else:
                other = await self._live_customer(s, new.customer_id)
                if other.id == customer.id:
                    outcome = "already"
                else:
                    outcome = "suggested"
                    existing = (await s.exec(select(IdentitySuggestion).where(
                        IdentitySuggestion.customer_id == other.id,
                        IdentitySuggestion.candidate_customer_id == customer.id,
                        IdentitySuggestion.kind == kind,
                        IdentitySuggestion.value == new_value))).first()
                    if existing is None:
                        suggestion = self._suggestion(
                            s, other.id, customer.id, kind, new_value,
                            f"{kind} {old_value} changed its number to {new_value}, which "
                            "had already written as a new contact", now)
                        await s.flush()
                        events.append(Event("identity.suggested", {
                            "suggestion_id": suggestion.id, "customer_id": other.id,
                            "candidate_customer_id": customer.id}))
            await s.commit()
        for event in events:
            await self.bus.publish(event)
        return NumberChange(outcome, customer.id, suggestion.id if suggestion else None,
                            old_value, new_value)

    async def close_case(self, case_id: str) -> Case:
        async with self.db.session() as s:
            case = await s.get(Case, case_id)
            if case is None:
                raise NotFound(f"case {case_id} not found")
            if case.status != "closed":
                case.status = "closed"
                case.closed_at = self.clock.now()
                s.add(case)
                await s.commit()
        await self.bus.publish(Event("case.closed", {"case_id": case_id,
                                                     "customer_id": case.customer_id}))
        return case


    async def reopen_case(self, case_id: str) -> Case:
        """A closed case open again (the customer came back about it)."""
        async with self.db.session() as s:
            case = await s.get(Case, case_id)
            if case is None:
                raise NotFound(f"case {case_id} not found")
            if case.status == "closed":
                case.status = "open"
                case.closed_at = None
                case.last_activity_at = self.clock.now()
                s.add(case)
                await s.commit()
        await self.bus.publish(Event("case.reopened", {"case_id": case_id,
                                                       "customer_id": case.customer_id}))
        return case

    async def search(self, query: str, *, limit: int = 20) -> list[tuple[Customer, list[Case]]]:
        """Customers (live, not merged away) an agent looks for, with their cases,
        newest first: by case id, by an identity as people type it (a phone number in
        national or international format, a WhatsApp id, an e-mail address, a SIP or
        web-chat id) and by a part of the name."""
        q = query.strip()[:200]
        if not q:
            return []
        keys = {(kind, value) for kind, value in self._search_keys(q)}
        async with self.db.session() as s:
            ids: list[str] = []
            case = await s.get(Case, q)
            if case is not None:
                ids.append(case.customer_id)
            if keys:
                rows = await s.exec(select(Identity.customer_id).where(or_(*[
                    and_(Identity.kind == k, Identity.value == v) for k, v in keys])))
                ids += list(rows)
            name = q.replace("\\", "").replace("%", "").replace("_", "")  # text, not LIKE
            if len(name) >= 2:
                pattern = "%" + name + "%"
                rows = await s.exec(select(Customer.id).where(
                    col(Customer.display_name).ilike(pattern),
                    col(Customer.merged_into).is_(None)).limit(limit))
                ids += list(rows)
            out: list[tuple[Customer, list[Case]]] = []
            seen: set[str] = set()
            for customer_id in ids:
                customer = await self._live_customer(s, customer_id)
                if customer.id in seen:
                    continue
                seen.add(customer.id)
                cases = list(await s.exec(select(Case).where(Case.customer_id == customer.id)
                                          .order_by(col(Case.opened_at).desc())))
                out.append((customer, cases))
                if len(out) >= limit:
                    break
        return out

    def _search_keys(self, q: str) -> list[tuple[str, str]]:
        keys: list[tuple[str, str]] = []
        for kind in ("phone", "whatsapp", "email", "sip", "webchat"):
            if kind in ("phone", "whatsapp") and not any(c.isdigit() for c in q):
                continue
            try:
                value = normalise(IdentityRef(kind, q), self.default_region)
            except (InvalidIdentity, ValueError):
                continue
            keys.append((kind, value))
            keys += equivalents(kind, value)
        return keys


def _recorded(customer: Customer, case: Case, customer_created: bool, case_created: bool,
              case_reopened: bool, identity_id: str | None,
              suggestions: list[IdentitySuggestion], entry: TimelineEntry | None,
              entry_created: bool) -> Recorded:
    """A set-wise resolution's result, as `_resolve_in` returns it."""
    return Recorded(Resolution(customer, case, customer_created, case_created, case_reopened,
                               identity_id, suggestions), entry, entry_created)


def _aware(when: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    from datetime import UTC

    return when if when.tzinfo else when.replace(tzinfo=UTC)
