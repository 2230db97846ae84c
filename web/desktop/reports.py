"""Report pages per queue, agent or channel and interval, with CSV export.

Facts come from the ACD's task events on the bus (consumer group `web.reports`,
idempotent by event id), so reports never read another package's tables.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from core.db import Database
from core.events import Event
from core.ids import new_id
from web.tables import ReportFact

KIND_OF_TOPIC = {
    "task.enqueued": "entered", "task.created": "entered", "task.entered": "entered",
    "task.accepted": "answered", "task.abandoned": "abandoned",
    "task.wrap_up_ended": "completed",  # handled: accept -> end of wrap-up, as the ACD's AHT
}
INTERVALS = {"15min": timedelta(minutes=15), "30min": timedelta(minutes=30),
             "hour": timedelta(hours=1), "day": timedelta(days=1)}
GROUPINGS = {"queue": "queue_id", "agent": "agent_id", "channel": "channel"}
COLUMNS = ("interval_start", "key", "entered", "answered", "abandoned", "handled",
           "avg_wait_seconds", "aht_seconds")


def _seconds(p: dict[str, Any], *names: str) -> float | None:
    for n in names:
        v = p.get(n)
        if isinstance(v, (int, float)):
            return float(v)
    return None


async def record_fact(db: Database, event: Event) -> None:
    kind = KIND_OF_TOPIC.get(event.topic)
    p = event.payload
    if kind is None or not p.get("task_id"):
        return
    if kind in ("answered", "abandoned"):
        seconds = _seconds(p, "wait_seconds", "waited_seconds", "wait")
    elif kind == "completed":
        seconds = _seconds(p, "handle_seconds", "handle_time")
    else:
        seconds = None
    fact = ReportFact(id=new_id(), event_id=event.event_id, kind=kind, task_id=p["task_id"],
                      queue_id=p.get("queue_id"), agent_id=p.get("agent_id"),
                      channel=p.get("channel"), at=event.occurred_at, seconds=seconds,
                      wrap_up_code=p.get("wrap_up_code"))
    try:
        async with db.session() as s:
            s.add(fact)
            await s.commit()
    except IntegrityError:
        pass  # the same event delivered twice


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def local_bucket(at: datetime, interval: str, tz: tzinfo) -> datetime:
    """The start of `at`'s interval on the site's wall clock: a day is the local day
    (23 or 25 hours on a DST change), an interval starts at a local quarter, half or
    whole hour. The twice-lived hour of the autumn change stays two buckets (their
    offsets differ: `fold`)."""
    local = at.astimezone(tz)
    if interval == "day":
        return datetime(local.year, local.month, local.day, tzinfo=tz)
    minutes = int(INTERVALS[interval].total_seconds() // 60)
    return local.replace(minute=local.minute - local.minute % minutes if minutes < 60 else 0,
                         second=0, microsecond=0)


async def report(db: Database, *, by: str, start: datetime, end: datetime,
                 interval: str, tz: tzinfo = UTC) -> list[dict[str, Any]]:
    field = GROUPINGS[by]
    async with db.session() as s:
        facts = list(await s.exec(select(ReportFact).where(
            col(ReportFact.at) >= start, col(ReportFact.at) < end)))
    acc: dict[tuple[datetime, str], dict[str, Any]] = defaultdict(
        lambda: {"entered": 0, "answered": 0, "abandoned": 0, "handled": 0,
                 "wait_total": 0.0, "wait_n": 0, "handle_total": 0.0, "handle_n": 0})
    for f in facts:
        at = _aware(f.at)
        # Keyed by the UTC instant: two local 02:00s of the autumn change are equal as
        # same-zone datetimes (Python ignores `fold` there) but are different hours.
        bucket = local_bucket(at, interval, tz).astimezone(UTC)
        key = getattr(f, field) or "-"
        row = acc[(bucket, key)]
        if f.kind == "entered":
            row["entered"] += 1
        elif f.kind == "answered":
            row["answered"] += 1
            if f.seconds is not None:
                row["wait_total"] += f.seconds
                row["wait_n"] += 1
        elif f.kind == "abandoned":
            row["abandoned"] += 1
        elif f.kind == "completed":
            row["handled"] += 1
            if f.seconds is not None:
                row["handle_total"] += f.seconds
                row["handle_n"] += 1
    out = []
    for (bucket, key), r in sorted(acc.items()):
        out.append({
            "interval_start": bucket.astimezone(tz).isoformat(), "key": key,
            "entered": r["entered"],
            "answered": r["answered"], "abandoned": r["abandoned"], "handled": r["handled"],
            "avg_wait_seconds": round(r["wait_total"] / r["wait_n"], 1) if r["wait_n"] else None,
            "aht_seconds": round(r["handle_total"] / r["handle_n"], 1) if r["handle_n"] else None,
        })
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        # A cell starting with = + - @ is a formula to a spreadsheet: quote it away.
        writer.writerow({k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v)
                         for k, v in row.items()})
    return buf.getvalue()
