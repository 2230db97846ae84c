"""Group commit for timeline entries that nobody has to wait for one by one.

A call's IVR writes a step to the case timeline at every node (schedule, condition,
menu choice, language, queue). One transaction per step was 8-10 commits per call: at
100 new calls a second, a thousand commits a second, each an fsync on SQLite and a
round trip on PostgreSQL, and on SQLite every one of them waits for the single writer
lock (issue 21, docs/performance.md). Here the entries of every call go into one queue
and are written by one task, everything pending in ONE transaction (a bulk INSERT and
one UPDATE of the touched cases' last activity): while a commit is in flight the next
batch collects, so the number of commits per second stays small whatever the call rate.

Order: entries are written in the order they were appended (one writer, FIFO), and each
keeps the time it was appended as its `occurred_at` and `recorded_at`, so a timeline
reads exactly as if each step had been committed when it happened.

Durability: an appended entry is on disk once `settled()` returns (the voice path waits
for it at queue entry, so the agent's screen-pop shows the IVR path, and at hang-up).
A crash (kill -9) loses at most the entries appended and not yet settled: the IVR steps
of calls in progress, never those of a completed call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, update

from cases.tables import Case, TimelineEntry
from core.clock import Clock
from core.db import Database
from core.events import Event
from core.ids import new_id

log = logging.getLogger(__name__)

_ENTRY_COLUMNS = ("id", "case_id", "kind", "channel", "direction", "body", "meta",
                  "dedup_key", "occurred_at", "recorded_at")
_ENTRIES = TimelineEntry.__table__  # type: ignore[attr-defined]  # Core, not ORM:
_CASES = Case.__table__  # type: ignore[attr-defined]  # plain executemany
# One transaction holds at most this many entries (bounded statement size and latency).
MAX_BATCH = 2000


_TOUCH = (update(_CASES).where(_CASES.c.id == bindparam("b_case"))
          .values(last_activity_at=bindparam("b_at")))


def _write_batch(conn: Connection, rows: list[dict[str, Any]],
                 stamps: list[dict[str, Any]]) -> None:
    """A batch's entries (one executemany) and its cases' last activity (one more)."""
    conn.execute(insert(_ENTRIES), rows)
    conn.execute(_TOUCH, stamps)


@dataclass(slots=True)
class AppendedEntry:
    """An appended entry's columns (what `TimelineEntry` stores). A plain dataclass, not
    the SQLModel table class: building one of those took ~70 us (SQLModel validates and
    instruments every attribute), nine per call on the IVR path, and the writer only
    needs the values for its Core INSERT (issue 21)."""

    id: str
    case_id: str
    kind: str
    channel: str
    direction: str
    body: str | None
    meta: dict[str, Any]
    dedup_key: str | None
    occurred_at: datetime
    recorded_at: datetime

    def to_model(self) -> TimelineEntry:
        return TimelineEntry(**{c: getattr(self, c) for c in _ENTRY_COLUMNS})


@dataclass
class _Pending:
    entry: AppendedEntry
    done: asyncio.Future[AppendedEntry | None]


class TimelineWriter:
    """Appends timeline entries in group commits (see the module docstring).

    `publish` gets each written entry's `timeline.added` event, after its commit.
    `write_one` writes one entry on its own: used when a batch fails (an entry for a
    case that does not exist must not take the others down with it).
    """

    def __init__(self, db: Database, clock: Clock, publish: Callable[[Event], Awaitable[Any]],
                 event_of: Callable[[AppendedEntry], Event],
                 write_one: Callable[[TimelineEntry], Awaitable[None]]) -> None:
        self.db = db
        self.clock = clock
        self._publish = publish
        self._event_of = event_of
        self._write_one = write_one
        self._pending: list[_Pending] = []
        self._last: dict[str, asyncio.Future[AppendedEntry | None]] = {}  # case -> latest
        self._flusher: asyncio.Task[None] | None = None
        self._last_stamp: datetime | None = None
        self.batches = 0  # commits made (for benchmarks and tests)
        self.entries = 0

    def append(self, case_id: str, *, kind: str, channel: str, direction: str,
               body: str | None = None, meta: dict[str, Any] | None = None,
               ) -> asyncio.Future[AppendedEntry | None]:
        """Queue an entry; the future resolves (to the entry, or None when it could not
        be written: logged) once it is committed. Never raises."""
        now = self._stamp()
        entry = AppendedEntry(new_id(), case_id, kind, channel, direction, body, meta or {},
                              None, now, now)
        done: asyncio.Future[AppendedEntry | None] = \
            asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(entry, done))
        self._last[case_id] = done
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._run(), name="timeline-writer")
        return done

    async def settled(self, case_id: str) -> None:
        """Returns once every entry appended so far for `case_id` is committed (or
        failed and logged)."""
        last = self._last.get(case_id)
        if last is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(last)

    async def drain(self) -> None:
        """Write everything pending (a node stopping)."""
        while self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flusher)

    def _stamp(self) -> datetime:
        """The clock's time, never equal to the previous entry's: ids are random within a
        millisecond, so equal times would leave two steps' order to chance."""
        now = self.clock.now()
        last = self._last_stamp
        if last is not None and now <= last:
            from datetime import timedelta

            now = last + timedelta(microseconds=1)
        self._last_stamp = now
        return now

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                written = await self._write(batch)
            except BaseException:  # cancelled (the loop is closing): nobody waits forever
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)
                raise
            for item, ok in zip(batch, written, strict=True):
                if not item.done.done():
                    item.done.set_result(item.entry if ok else None)
                case_id = item.entry.case_id
                if self._last.get(case_id) is item.done:
                    del self._last[case_id]
            for item, ok in zip(batch, written, strict=True):
                if ok:
                    try:
                        await self._publish(self._event_of(item.entry))
                    except Exception:
                        log.exception("publishing timeline.added failed")

    async def _write(self, batch: list[_Pending]) -> list[bool]:
        entries = [p.entry for p in batch]
        touched: dict[str, datetime] = {}
        for e in entries:
            touched[e.case_id] = max(e.recorded_at, touched.get(e.case_id, e.recorded_at))
        rows = [{c: getattr(e, c) for c in _ENTRY_COLUMNS} for e in entries]
        stamps = [{"b_case": k, "b_at": v} for k, v in touched.items()]
        try:
            if self.db.writes_in_thread:  # SQLite: both statements and the commit in one
                # hand-over to the writer thread (core.db.Database.write_in_thread)
                await self.db.write_in_thread(lambda conn: _write_batch(conn, rows, stamps))
            else:
                async with self.db.session() as s:
                    conn = await s.connection()
                    await conn.run_sync(_write_batch, rows, stamps)
                    await s.commit()
            self.batches += 1
            self.entries += len(entries)
            return [True] * len(entries)
        except Exception:
            if len(entries) == 1:
                log.exception("timeline entry for case %s could not be written",
                              entries[0].case_id)
                return [False]
            log.warning("a batch of %d timeline entries failed; writing them one by one",
                        len(entries), exc_info=True)
        out = []
        for e in entries:
            try:
                await self._write_one(e.to_model())
                out.append(True)
            except Exception:
                log.exception("timeline entry for case %s could not be written", e.case_id)
                out.append(False)
        return out
