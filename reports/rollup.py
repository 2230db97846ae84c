"""Pre-aggregation: rebuild `report_bucket_total` for the buckets whose contacts changed.

The recorder marks a contact's bucket dirty in the contact's own transaction; a rebuild
recomputes each dirty bucket's sums per dimension from the contacts (DELETE + INSERT ...
SELECT ... GROUP BY, one transaction) and clears the marks it read, unless a newer change
bumped their version meanwhile. Reports read the totals of clean buckets and the contacts
of dirty ones in one statement, so a report is never stale and never counts a bucket
twice, whether or not the rebuild has run.

Every node may run it: two rebuilds of one bucket at once conflict on the primary key
and one of them rolls back (the other did the work).

The loop (`Rollup`) leaves the bucket still open dirty and rebuilds an ended one at most
once a minute per node (issue 21: see the class).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import Connection, delete, func, insert, literal, select, tuple_
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.db import Database
from reports.queries import DIMENSIONS, SUM_FIELDS, contact_sums
from reports.tables import BUCKET_SECONDS, ReportBucketTotal, ReportContact, ReportDirtyBucket

log = logging.getLogger(__name__)
C = ReportContact
T = ReportBucketTotal
D = ReportDirtyBucket


REBUILD_LIMIT = 500  # dirty buckets per rebuild transaction
# The loop rebuilds a bucket that has ended at most once per this many seconds (per
# node): see `Rollup`.
REBUILD_GAP_SECONDS = 60.0


_TOTAL_COLUMNS = ("dim", "bucket", "key", *SUM_FIELDS)


def _sums(dim: str, buckets: list[int]) -> Any:
    """The buckets' sums per key of one dimension, in `_TOTAL_COLUMNS` order."""
    column = DIMENSIONS[dim]
    return (select(literal(dim), C.bucket, func.coalesce(column, ""), *contact_sums(None))
            .where(C.bucket.in_(buckets))  # type: ignore[attr-defined]
            .group_by(C.bucket, column))


def _rebuild_in(conn: Connection, buckets: list[int], marks: list[tuple[int, int]]) -> None:
    """The rebuild in one transaction, synchronous (through `run_sync`: PostgreSQL):
    the buckets' totals deleted, recomputed per dimension from their contacts in the
    database, and the marks read cleared unless a newer change bumped their version."""
    conn.execute(delete(T).where(T.bucket.in_(buckets)))  # type: ignore[attr-defined]
    for dim in DIMENSIONS:
        conn.execute(insert(T).from_select(list(_TOTAL_COLUMNS), _sums(dim, buckets)))
    conn.execute(delete(D).where(tuple_(D.bucket, D.version).in_(marks)))


def _store_in(conn: Connection, buckets: list[int], rows: list[dict[str, Any]],
              marks: list[tuple[int, int]]) -> None:
    """SQLite's write half of a rebuild (on the writer thread): the buckets' totals
    replaced by `rows`, summed beforehand, and the marks read cleared unless a newer
    change bumped their version."""
    conn.execute(delete(T).where(T.bucket.in_(buckets)))  # type: ignore[attr-defined]
    if rows:
        conn.execute(insert(T), rows)
    conn.execute(delete(D).where(tuple_(D.bucket, D.version).in_(marks)))


async def rebuild(db: Database, *, limit: int = REBUILD_LIMIT, before: int | None = None,
                  hold: Collection[int] = (), rebuilt: list[int] | None = None) -> int:
    """Rebuild up to `limit` dirty buckets; returns how many were rebuilt.

    `before`: only buckets below it (the loop leaves the bucket still open alone);
    `hold`: buckets not to rebuild this time; `rebuilt`, if given, gets the buckets
    rebuilt appended."""
    query = select(D.bucket, D.version).order_by(D.bucket).limit(limit)
    if before is not None:
        query = query.where(D.bucket < before)
    if hold:
        query = query.where(D.bucket.not_in(list(hold)))  # type: ignore[attr-defined]
    async with db.engine.connect() as conn:
        marks = [(m[0], m[1]) for m in (await conn.execute(query)).all()]
    if not marks:
        return 0
    buckets = [m[0] for m in marks]
    try:
        if db.writes_in_thread:
            # SQLite has one writer: summing a bucket inside the write transaction held
            # the writer lock — and so every call's identification and timeline batch
            # — for the whole read of its contacts (~5.7 us each: ~1.5 s for a bucket
            # of 270,000). The sums are read first, on a reading connection (WAL: no
            # lock), and only the totals written in the write transaction. Still
            # exact: the marks were read before the sums, so a contact changed since
            # has bumped its bucket's version and the mark stays (reports read that
            # bucket's contacts, a later rebuild writes its totals again).
            rows: list[dict[str, Any]] = []
            async with db.engine.connect() as conn:
                for dim in DIMENSIONS:
                    rows.extend(dict(zip(_TOTAL_COLUMNS, r, strict=True))
                                for r in (await conn.execute(_sums(dim, buckets))).all())
            await db.write_in_thread(lambda conn: _store_in(conn, buckets, rows, marks))
        else:
            async with db.engine.begin() as conn:
                await conn.run_sync(_rebuild_in, buckets, marks)
    except (IntegrityError, DBAPIError) as exc:
        log.info("reports rollup: %d buckets left to another node (%s)", len(buckets),
                 type(exc).__name__)
        return 0
    if rebuilt is not None:
        rebuilt.extend(buckets)
    return len(buckets)


class Rollup:
    """Runs `rebuild` every `interval` seconds until stopped.

    Which buckets (issue 21): a rebuild recomputes a bucket from ALL its contacts, and
    every task event marks its bucket dirty. Rebuilding the bucket still open every 5 s
    made the rollup's work grow with the square of the bucket's contacts — at 300
    calls/s up to 270,000 contacts read per rebuild by the end of a 15-minute bucket,
    ~180 times per bucket. The loop therefore leaves the open bucket alone (reports
    read a dirty bucket's contacts directly, so they stay exact; under load the open
    bucket was dirty nearly all the time anyway) and rebuilds a bucket that has ended
    at most once per `gap` seconds per node (its calls in progress keep marking it for
    a while after it ends): each bucket is rebuilt ~1 + (minutes its late updates
    last) times instead of every 5 s. Not incremental: a rebuild still reads all of a
    bucket's contacts (docs/performance.md, "Session 7 (21a)")."""

    def __init__(self, db: Database, *, interval: float = 5.0,
                 gap: float = REBUILD_GAP_SECONDS,
                 now: Callable[[], float] = time.time) -> None:
        self.db, self.interval, self.gap, self._now = db, interval, gap, now
        self._task: asyncio.Task[None] | None = None
        self._rebuilt_at: dict[int, float] = {}  # bucket -> when this node rebuilt it

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reports-rollup")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _held(self) -> list[int]:
        """Buckets this node rebuilt less than `gap` seconds ago (forgets older ones)."""
        now = time.monotonic()
        for bucket in [b for b, at in self._rebuilt_at.items() if now - at >= self.gap]:
            del self._rebuilt_at[bucket]
        return sorted(self._rebuilt_at)

    async def _run(self) -> None:
        while True:
            try:
                # Again at once only for a backlog (after a restart: more than one
                # batch of dirty buckets). Looping while *any* bucket was dirty rebuilt
                # the current bucket back to back for as long as contacts kept coming —
                # every task event marks it — each rebuild reading all of that
                # bucket's contacts: 2/3 of the node's CPU per call at 30 calls at once
                # (issue 21, docs/performance.md). Reports stay exact meanwhile: they
                # read a dirty bucket's contacts instead of its totals.
                rebuilt = REBUILD_LIMIT
                while rebuilt >= REBUILD_LIMIT:
                    done: list[int] = []
                    rebuilt = await rebuild(
                        self.db, limit=REBUILD_LIMIT,
                        before=int(self._now()) // BUCKET_SECONDS, hold=self._held(),
                        rebuilt=done)
                    at = time.monotonic()
                    self._rebuilt_at.update((b, at) for b in done)
            except Exception:
                log.exception("reports rollup failed")
            await asyncio.sleep(self.interval)
