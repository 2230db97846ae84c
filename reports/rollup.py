"""Pre-aggregation: rebuild `report_bucket_total` for the buckets whose contacts changed.

The recorder marks a contact's bucket dirty in the contact's own transaction; a rebuild
recomputes each dirty bucket's sums per dimension from the contacts (DELETE + INSERT ...
SELECT ... GROUP BY, one transaction) and clears the marks it read, unless a newer change
bumped their version meanwhile. Reports read the totals of clean buckets and the contacts
of dirty ones in one statement, so a report is never stale and never counts a bucket
twice, whether or not the rebuild has run.

Every node may run it: two rebuilds of one bucket at once conflict on the primary key
and one of them rolls back (the other did the work).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import delete, func, insert, literal, select, tuple_
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.db import Database
from reports.queries import DIMENSIONS, SUM_FIELDS, contact_sums
from reports.tables import ReportBucketTotal, ReportContact, ReportDirtyBucket

log = logging.getLogger(__name__)
C = ReportContact
T = ReportBucketTotal
D = ReportDirtyBucket


REBUILD_LIMIT = 500  # dirty buckets per rebuild transaction


async def rebuild(db: Database, *, limit: int = REBUILD_LIMIT) -> int:
    """Rebuild up to `limit` dirty buckets; returns how many were rebuilt."""
    async with db.engine.connect() as conn:
        marks = (await conn.execute(select(D.bucket, D.version).order_by(D.bucket)
                                    .limit(limit))).all()
    if not marks:
        return 0
    buckets = [m[0] for m in marks]
    try:
        async with db.engine.begin() as conn:
            await conn.execute(delete(T).where(T.bucket.in_(buckets)))  # type: ignore[attr-defined]
            for dim, column in DIMENSIONS.items():
                sums = contact_sums(None)
                stmt = (select(literal(dim), C.bucket, func.coalesce(column, ""), *sums)
                        .where(C.bucket.in_(buckets))  # type: ignore[attr-defined]
                        .group_by(C.bucket, column))
                await conn.execute(insert(T).from_select(
                    ["dim", "bucket", "key", *SUM_FIELDS], stmt))
            await conn.execute(delete(D).where(
                tuple_(D.bucket, D.version).in_([(m[0], m[1]) for m in marks])))
    except (IntegrityError, DBAPIError) as exc:
        log.info("reports rollup: %d buckets left to another node (%s)", len(buckets),
                 type(exc).__name__)
        return 0
    return len(buckets)


class Rollup:
    """Runs `rebuild` every `interval` seconds until stopped."""

    def __init__(self, db: Database, *, interval: float = 5.0) -> None:
        self.db, self.interval = db, interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reports-rollup")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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
                    rebuilt = await rebuild(self.db, limit=REBUILD_LIMIT)
            except Exception:
                log.exception("reports rollup failed")
            await asyncio.sleep(self.interval)

