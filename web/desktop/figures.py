"""Wallboard figures: the ACD's statistics put in one shape the browser draws, and the
day's history for the charts (contacts waiting and service level per queue).

The shape (`normalise_stats`):
    {"queues": [{"id", "waiting", "oldest_wait", "service_level", "asa", "aht",
                 "abandoned", "offered", "answered", "agents_by_state": {state: n}}],
     "agents": [{"id", "state", "reason", "load", "handled", "aht", "state_seconds"}],
     "channels": [{"id", "waiting", "oldest_wait", "load", "capacity", ...}], "at": iso}
It accepts the figures as a mapping or a list, and the usual key spellings, so the
wallboard does not break when the ACD adds or renames a counter.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from core.clock import Clock
from core.db import Database
from core.ids import new_id
from web.desktop.screenpop import plain
from web.tables import WallboardSample

log = logging.getLogger(__name__)

_ALIASES: dict[str, tuple[str, ...]] = {
    "waiting": ("waiting", "waiting_count", "in_queue", "queued"),
    "oldest_wait": ("oldest_wait", "oldest_wait_seconds", "oldest", "longest_wait",
                    "oldest_waiting_seconds"),
    "service_level": ("service_level", "sl"),
    "asa": ("asa", "asa_seconds"),
    "aht": ("aht", "aht_seconds"),
    "abandoned": ("abandoned", "abandoned_count"),
    "offered": ("offered",),
    "answered": ("answered",),
    "agents_by_state": ("agents_by_state", "agent_states", "agents"),
}


def _pick(d: dict[str, Any], name: str) -> Any:
    for key in _ALIASES.get(name, (name,)):
        if key in d and d[key] is not None:
            return d[key]
    for nested in ("figures", "counters", "live"):
        inner = d.get(nested)
        if isinstance(inner, dict):
            value = _pick(inner, name)
            if value is not None:
                return value
    return None


def _rows(section: Any) -> list[dict[str, Any]]:
    section = plain(section)
    if isinstance(section, dict):
        return [{"id": k, **v} if isinstance(v, dict) else {"id": k, "value": v}
                for k, v in section.items()]
    if isinstance(section, list):
        return [r for r in section if isinstance(r, dict)]
    return []


def normalise_stats(raw: Any) -> dict[str, Any]:
    data = plain(raw) if raw is not None else {}
    if not isinstance(data, dict):
        data = {}
    queues = []
    for row in _rows(data.get("queues")):
        q = {"id": row.get("id") or row.get("queue_id")}
        for name in ("waiting", "oldest_wait", "service_level", "asa", "aht", "abandoned",
                     "offered", "answered"):
            q[name] = _pick(row, name)
        states = _pick(row, "agents_by_state")
        q["agents_by_state"] = states if isinstance(states, dict) else {}
        queues.append(q)
    agents = []
    for row in _rows(data.get("agents")):
        agents.append({"id": row.get("id") or row.get("agent_id"), "state": row.get("state"),
                       "reason": row.get("reason"), "load": row.get("load") or {},
                       "handled": _pick(row, "handled"), "aht": _pick(row, "aht"),
                       "state_seconds": row.get("state_seconds")})
    channels = []
    for row in _rows(data.get("channels")):
        c = {"id": row.get("id") or row.get("channel")}
        for name in ("waiting", "oldest_wait", "service_level", "asa", "aht", "abandoned",
                     "offered", "load", "capacity"):
            c[name] = _pick(row, name)
        channels.append(c)
    at = data.get("at") or data.get("generated_at") or datetime.now(UTC).isoformat()
    return {"queues": queues, "agents": agents, "channels": channels, "at": at}


class History:
    """Points for the day charts: kept in memory (one per queue per 10 s at most) and
    one per minute in SQL, so a restarted node still draws the morning."""

    def __init__(self, db: Database, clock: Clock, *, keep: int = 8640) -> None:
        self.db, self.clock = db, clock
        self.points: dict[str, deque[tuple[str, int, float | None]]] = defaultdict(
            lambda: deque(maxlen=keep))
        self._last_mem: dict[str, datetime] = {}
        self._last_db: dict[str, datetime] = {}

    async def add(self, figures: dict[str, Any]) -> None:
        now = self.clock.now()
        for q in figures.get("queues", []):
            qid = q.get("id")
            if not qid:
                continue
            waiting = int(q.get("waiting") or 0)
            sl = q.get("service_level")
            sl = float(sl) if isinstance(sl, (int, float)) else None
            last = self._last_mem.get(qid)
            if last is None or now - last >= timedelta(seconds=10):
                self.points[qid].append((now.isoformat(), waiting, sl))
                self._last_mem[qid] = now
            minute = now.replace(second=0, microsecond=0)
            if self._last_db.get(qid) != minute:
                self._last_db[qid] = minute
                await self._store(qid, minute, waiting, sl)

    async def _store(self, qid: str, minute: datetime, waiting: int, sl: float | None) -> None:
        try:
            async with self.db.session() as s:
                s.add(WallboardSample(id=new_id(), queue_id=qid, at=minute, waiting=waiting,
                                      service_level=sl))
                await s.commit()
        except IntegrityError:
            pass  # another node stored this minute already

    async def today(self, tz: tzinfo = UTC) -> dict[str, list[tuple[str, int, float | None]]]:
        """Today's points, from midnight on the site's clock (`tz`)."""
        now = self.clock.now().astimezone(tz)
        start = datetime(now.year, now.month, now.day, tzinfo=tz)
        out: dict[str, list[tuple[str, int, float | None]]] = defaultdict(list)
        async with self.db.session() as s:
            rows = await s.exec(select(WallboardSample).where(col(WallboardSample.at) >= start)
                                .order_by(col(WallboardSample.at)))
            for r in rows:
                at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
                out[r.queue_id].append((at.isoformat(), r.waiting, r.service_level))
        for qid, pts in self.points.items():
            stored_until = out[qid][-1][0] if out[qid] else ""
            out[qid].extend(p for p in pts if p[0] > stored_until)
        return dict(out)
