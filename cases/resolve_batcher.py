"""Group commit for resolutions: several contacts identified in one transaction.

Every call is identified before it is answered (the IVR needs the caller's customer and
language): the customer, identity, case and "Incoming call" entry, one transaction per
call. At hundreds of new calls a second that is hundreds of commits a second, each an
fsync on SQLite inside its single writer lock (~2 ms on this disk: ~500 calls/s at
best, fewer with the other writers) and a round trip plus a pool checkout on
PostgreSQL (issue 21, docs/performance.md).

Here the resolutions waiting at the same moment run one after the other in ONE session
and are committed together; while that commit is in flight the next batch collects. A
batch reads and writes exactly what the resolutions would have one at a time, in the
order they arrived (each sees the rows the ones before it staged), so the records are
the same as one by one. Two resolutions of one person are never in one batch: the case
service holds a per-person lock around each (and on PostgreSQL the batch takes each
person's advisory lock, in sorted order so that two nodes cannot deadlock).

All or nothing, then one by one: if anything in a batch fails (a concurrent node
created the same identity, a `within` callback raised), the batch is rolled back and
each resolution runs again on its own (`CaseService._resolve_once`), so one failure is
that contact's alone and reaches its caller as before (an IntegrityError is retried by
the case service). Events are published by each caller after the commit, as before.

Durability does not change: a caller's future resolves only after the commit.

Set-wise batches (issue 21, session 6): when every resolution of a batch is plain (no
`within` callback, no unverified identities: every inbound call), the batch runs as a
fixed number of set-wise statements (`cases.setwise`), not ~5 per contact. On
PostgreSQL only such batches are formed (the case service decides): a batch of ORM
resolutions would serialise round trips that separate connections run side by side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlmodel.ext.asyncio.session import AsyncSession

from core.db import Database

log = logging.getLogger(__name__)

# One transaction holds at most this many resolutions (bounded latency for the first).
MAX_BATCH = 64

Staged = Any  # (Recorded, list[Event]) from CaseService; kept opaque here

# PostgreSQL: the advisory locks of a batch's persons, taken in the keys' order. The
# transaction is ended by PostgreSQL if left idle 10 s (a paused node): these locks
# would otherwise stop every node's routing of these people for as long as it is paused.
_LOCK_ALL = text("SELECT set_config('idle_in_transaction_session_timeout', '10000', true), "
                 "(SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM "
                 "(SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS keys)")


# A batch of plain resolutions in set-wise statements (cases.setwise): (a synchronous
# connection, their descriptions) -> their results in order; reads and writes, no commit.
Setwise = Callable[[Connection, list[Any]], list[Staged]]


@dataclass
class _Request:
    lock_key: str | None
    stage: Callable[[AsyncSession], Awaitable[Staged]]  # the reads and writes, no commit
    alone: Callable[[], Awaitable[Staged]]  # the same in a transaction of its own
    done: asyncio.Future[Staged]
    plain: Any = None  # set-wise description (cases.setwise.PlainResolution), or None


class ResolveBatcher:
    def __init__(self, db: Database, setwise: Setwise | None = None) -> None:
        self.db = db
        self._setwise = setwise
        self._pending: list[_Request] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # group transactions committed (set-wise ones even of one)
        self.batched = 0  # resolutions in them
        self.fallbacks = 0  # batches that failed and ran one by one

    async def resolve(self, lock_key: str | None,
                      stage: Callable[[AsyncSession], Awaitable[Staged]],
                      alone: Callable[[], Awaitable[Staged]], plain: Any = None) -> Staged:
        """`stage` in the next group commit; returns its result once committed, or
        raises what `alone` (the same resolution on its own) raised. With `plain`, a
        batch whose every resolution has one runs set-wise (`setwise`)."""
        done: asyncio.Future[Staged] = asyncio.get_running_loop().create_future()
        # a caller gone before its result: its exception counts as retrieved
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending.append(_Request(lock_key, stage, alone, done, plain))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._run(), name="resolve-batcher")
        # shield: a caller that goes away (a caller hung up) does not cancel the batch
        return await asyncio.shield(done)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                if len(batch) == 1 and not self._is_setwise(batch):
                    await self._alone(batch[0])
                else:
                    await self._write(batch)
            except BaseException as exc:  # cancelled (the loop closing): nobody waits forever
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc if isinstance(exc, Exception)
                                                else RuntimeError("resolution cancelled"))
                raise

    async def _alone(self, item: _Request) -> None:
        try:
            result = await item.alone()
        except Exception as exc:
            if not item.done.done():
                item.done.set_exception(exc)
            return
        if not item.done.done():
            item.done.set_result(result)

    async def _in_session(self, batch: list[_Request]) -> list[Staged]:
        results: list[Staged] = []
        async with self.db.session() as s:
            keys = sorted({i.lock_key for i in batch if i.lock_key is not None})
            if keys and not self.db.is_sqlite:
                # every person's lock in one round trip, in sorted order (two nodes
                # cannot deadlock)
                await s.exec(_LOCK_ALL.bindparams(keys=keys))
            if self._is_setwise(batch):
                assert self._setwise is not None
                conn = await s.connection()
                results = await conn.run_sync(self._setwise, [i.plain for i in batch])
            else:
                for item in batch:
                    results.append(await item.stage(s))
            await s.commit()
        return results

    def _is_setwise(self, batch: list[_Request]) -> bool:
        return self._setwise is not None and all(i.plain is not None for i in batch)

    async def _write(self, batch: list[_Request]) -> None:
        results: list[Staged] = []
        try:
            if self._is_setwise(batch) and self.db.writes_in_thread:
                # SQLite: the whole batch and its commit in one hand-over to the writer
                # thread, not a round trip to aiosqlite's per statement
                assert self._setwise is not None
                setwise, plain = self._setwise, [i.plain for i in batch]
                results = await self.db.write_in_thread(lambda conn: setwise(conn, plain))
            else:
                results = await self._in_session(batch)
        except Exception:
            self.fallbacks += 1
            log.debug("a batch of %d resolutions failed; resolving them one by one",
                      len(batch), exc_info=True)
            for item in batch:
                await self._alone(item)
            return
        self.batches += 1
        self.batched += len(batch)
        for item, result in zip(batch, results, strict=True):
            if not item.done.done():
                item.done.set_result(result)
