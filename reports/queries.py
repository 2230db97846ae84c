"""The SQL the reports run: one GROUP BY over `report_contact`'s 15-minute buckets for
every interval report, and the narrow per-contact reads the case and agent KPIs need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, func, literal, select, union_all

from core.db import Database
from reports.figures import Totals
from reports.tables import (
    BUCKET_SECONDS,
    ReportAgentState,
    ReportBucketTotal,
    ReportCaseClosed,
    ReportContact,
    ReportDirtyBucket,
    ReportSurveyAnswer,
)

C = ReportContact
T = ReportBucketTotal
D = ReportDirtyBucket
SUM_FIELDS = ("contacts", "answered", "answered_in_sl", "abandoned", "short_abandoned",
              "exited", "handled", "transferred", "wait_answered_total", "talk_total",
              "hold_total", "wrap_total")
DIMENSIONS: dict[str, Any] = {"queue": C.queue_id, "channel": C.channel, "agent": C.agent_id,
                              "wrap_up_code": C.wrap_up_code}


def bucket_range(start: datetime, end: datetime) -> tuple[int, int]:
    """[first, last) buckets covering [start, end)."""
    first = int(start.timestamp()) // BUCKET_SECONDS
    last = -(-int(end.timestamp()) // BUCKET_SECONDS)
    return first, last


def contact_sums(short_abandon_seconds: float | None) -> list[Any]:
    """The aggregate expressions over contacts, in `Totals`' field order."""
    handled = C.handled == 1
    if short_abandon_seconds is None:
        short = func.sum(C.short_abandoned)
    else:
        short = func.sum(case((and_(C.abandoned == 1,
                                    C.wait_seconds < short_abandon_seconds), 1), else_=0))
    return [
        func.count(), func.sum(C.answered), func.sum(C.answered_in_sl),
        func.sum(C.abandoned), short, func.sum(C.exited), func.sum(C.handled),
        func.sum(C.transferred),
        func.sum(case((C.answered == 1, func.coalesce(C.wait_seconds, 0.0)), else_=0.0)),
        func.sum(case((handled, func.coalesce(C.talk_seconds, 0.0)), else_=0.0)),
        func.sum(case((handled, C.hold_seconds), else_=0.0)),
        func.sum(case((handled, func.coalesce(C.wrap_seconds, 0.0)), else_=0.0)),
    ]


async def grouped_sums(db: Database, start: datetime, end: datetime, by: str, *,
                       unit: int = 1, keys: Sequence[str] | None = None,
                       short_abandon_seconds: float | None = None,
                       ) -> list[tuple[int, str | None, tuple[float, ...]]]:
    """Sums per (time unit, key of `by`) for contacts that entered in [start, end): the
    unit is `unit` buckets (1: 15 minutes, 4: one UTC hour; 0: the whole range, one
    row per key, returned as bucket 0) and is returned as the first bucket of the unit.
    The sums are in `Totals`' field order. `keys` may hold "" for contacts without a
    key (an abandoned contact has no agent).

    Clean buckets come from the pre-aggregated totals, dirty ones from the contacts, in
    one statement (one snapshot). A report-only short-abandon threshold needs each
    contact's wait, so it reads the contacts only."""
    dim = DIMENSIONS[by]
    first, last = bucket_range(start.astimezone(UTC), end.astimezone(UTC))
    if short_abandon_seconds is not None:
        return await _contact_grouped(db, first, last, dim, unit, keys,
                                      short_abandon_seconds)
    dirty = select(D.bucket).where(D.bucket >= first, D.bucket < last)
    clean = (select(T.bucket.label("bucket"), T.key.label("key"),  # type: ignore[attr-defined]
                    *(getattr(T, c) for c in SUM_FIELDS))
             .where(T.dim == by, T.bucket >= first, T.bucket < last,
                    T.bucket.not_in(dirty)))  # type: ignore[attr-defined]
    # The live sums cast to the totals' column types: otherwise the UNION is numeric
    # (PostgreSQL sums bigints into numeric), slow to add and to read back as Decimal.
    live = (select(C.bucket.label("bucket"), func.coalesce(dim, "").label("key"),
                   *(cast(e, Integer if i < 8 else Float).label(n) for i, (e, n) in
                     enumerate(zip(contact_sums(None), SUM_FIELDS, strict=True))))
            .where(C.bucket >= first, C.bucket < last, C.bucket.in_(dirty))  # type: ignore[attr-defined]
            .group_by(C.bucket, dim))
    if keys:
        clean = clean.where(T.key.in_(list(keys)))  # type: ignore[attr-defined]
        live = live.where(func.coalesce(dim, "").in_(list(keys)))
    both = union_all(clean, live).subquery()
    sums = [func.sum(both.c[n]) for n in SUM_FIELDS]
    if unit == 0:
        stmt = select(both.c.key, *sums).group_by(both.c.key)
        async with db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [(0, r[0] or None, _sums(r[1:])) for r in rows]
    slot = both.c.bucket if unit == 1 else both.c.bucket // unit
    stmt = select(slot, both.c.key, *sums).group_by(slot, both.c.key)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [(int(r[0]) * unit, r[1] or None, _sums(r[2:])) for r in rows]


async def _contact_grouped(db: Database, first: int, last: int, dim: Any, unit: int,
                           keys: Sequence[str] | None, short_abandon_seconds: float | None,
                           ) -> list[tuple[int, str | None, tuple[float, ...]]]:
    slot = C.bucket if unit == 1 else (C.bucket // unit) if unit else literal(0)
    stmt = (select(slot, dim, *contact_sums(short_abandon_seconds))
            .where(C.bucket >= first, C.bucket < last).group_by(slot, dim))
    if keys:
        stmt = stmt.where(func.coalesce(dim, "").in_(list(keys)))
    async with db.engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [(int(r[0]) * unit, r[1], _sums(r[2:])) for r in rows]


def _sums(values: Sequence[Any]) -> tuple[float, ...]:
    """Counts as int, totals as float (PostgreSQL sums bigints into numeric)."""
    return (*(int(v or 0) for v in values[:8]), *(float(v or 0) for v in values[8:]))


async def grouped_totals(db: Database, start: datetime, end: datetime, by: str, *,
                         keys: Sequence[str] | None = None,
                         short_abandon_seconds: float | None = None,
                         ) -> list[tuple[int, str | None, Totals]]:
    """Per (15-minute bucket, key): `Totals`."""
    return [(b, k, Totals(*sums)) for b, k, sums in await grouped_sums(
        db, start, end, by, keys=keys, short_abandon_seconds=short_abandon_seconds)]


@dataclass(frozen=True, slots=True)
class ContactLine:
    """One contact, as the case and agent KPIs read it."""

    task_id: str
    case_id: str | None
    customer_id: str | None
    channel: str | None
    agent_id: str | None
    entered_at: datetime
    answered_at: datetime | None
    talk_seconds: float | None
    wrap_seconds: float | None
    handled: bool


async def contacts_between(db: Database, start: datetime, end: datetime) -> list[ContactLine]:
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    first, last = bucket_range(start, end)
    stmt = (select(C.task_id, C.case_id, C.customer_id, C.channel, C.agent_id, C.entered_at,
                   C.answered_at, C.talk_seconds, C.wrap_seconds, C.handled)
            .where(C.bucket >= first, C.bucket < last, C.entered_at >= start,
                   C.entered_at < end))
    async with db.engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [ContactLine(r[0], r[1], r[2], r[3], r[4], _aware(r[5]), _aware(r[6]), r[7], r[8],
                        bool(r[9])) for r in rows]


async def cases_closed_between(db: Database, start: datetime,
                               end: datetime) -> dict[str, datetime]:
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    stmt = select(ReportCaseClosed.case_id, ReportCaseClosed.closed_at).where(
        ReportCaseClosed.closed_at >= start, ReportCaseClosed.closed_at < end)  # type: ignore[arg-type]
    async with db.engine.connect() as conn:
        return {r[0]: _aware(r[1]) for r in (await conn.execute(stmt)).all()}  # type: ignore[misc]


async def contacts_of_cases(db: Database, case_ids: Sequence[str]) -> list[ContactLine]:
    out: list[ContactLine] = []
    ids = list(case_ids)
    for i in range(0, len(ids), 500):
        stmt = (select(C.task_id, C.case_id, C.customer_id, C.channel, C.agent_id,
                       C.entered_at, C.answered_at, C.talk_seconds, C.wrap_seconds, C.handled)
                .where(C.case_id.in_(ids[i:i + 500])))  # type: ignore[union-attr]
        async with db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        out.extend(ContactLine(r[0], r[1], r[2], r[3], r[4], _aware(r[5]), _aware(r[6]),
                               r[7], r[8], bool(r[9])) for r in rows)
    return out


async def agent_states_between(db: Database, start: datetime,
                               end: datetime) -> list[tuple[str, str, datetime]]:
    """State changes in [start, end) plus each agent's last change before `start` (the
    state the agent was in when the period began)."""
    S = ReportAgentState
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    last_before = (select(S.agent_id, func.max(S.at).label("at"))
                   .where(S.at < start).group_by(S.agent_id).subquery())
    before = select(S.agent_id, S.state, S.at).join(
        last_before, and_(S.agent_id == last_before.c.agent_id, S.at == last_before.c.at))
    within = select(S.agent_id, S.state, S.at).where(S.at >= start, S.at < end)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(before)).all() + (await conn.execute(within)).all()
    return sorted(((r[0], r[1], _aware(r[2])) for r in rows), key=lambda x: (x[0], x[2]))


async def survey_scores(db: Database, start: datetime, end: datetime,
                        ) -> list[tuple[str, int | None, str | None, str | None]]:
    """(kind, score, channel, queue_id) of the survey answers in [start, end)."""
    S = ReportSurveyAnswer
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    stmt = select(S.kind, S.score, S.channel, S.queue_id).where(S.at >= start, S.at < end)
    async with db.engine.connect() as conn:
        return [(r[0], r[1], r[2], r[3]) for r in (await conn.execute(stmt)).all()]


def _aware(d: Any) -> Any:
    return d.replace(tzinfo=UTC) if isinstance(d, datetime) and d.tzinfo is None else d

