"""The inbox processor: turns acknowledged, stored messages into routed conversations.

Webhooks only store (fast, durable); this worker does the slower part — identity
resolution, media download, timeline, ACD — in arrival order. After a crash, the rows
still marked `processed=False` are picked up on start, so nothing acknowledged is lost.
A message that keeps failing is set aside after `max_failures` with its error, so one
poison message cannot block the channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlmodel import col, select

from core.db import Database
from digital.tables import DigitalMessage

log = logging.getLogger(__name__)


class InboxProcessor:
    def __init__(self, db: Database, handle: Callable[[DigitalMessage], Awaitable[None]], *,
                 batch: int = 100, poll_seconds: float = 5.0, max_failures: int = 3,
                 ingest_busy: Callable[[], bool] | None = None,
                 max_yield_seconds: float = 0.05, lanes: int = 4) -> None:
        self.db = db
        self.lanes = lanes
        self.handle = handle
        # Webhook acknowledgements come first: while the writer has requests waiting,
        # routing steps aside (for at most max_yield_seconds per message, so it never
        # starves). A burst is absorbed by the inbox and routed right after.
        self.ingest_busy = ingest_busy or (lambda: False)
        self.max_yield_seconds = max_yield_seconds
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.max_failures = max_failures
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures: dict[str, int] = {}
        self._stopping = False

    def wake(self) -> None:
        self._idle.clear()
        self._wakeup.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="digital-inbox")
            self.wake()

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Finish the message in hand, then stop (cancelling a database call halfway
        can leave a pooled connection stuck). Whatever is left stays in the inbox."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
        except TimeoutError:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._task = None
        self._stopping = False

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything stored so far is processed (tests, shutdown)."""
        self.wake()
        async with asyncio.timeout(timeout):
            while True:
                await self._idle.wait()
                if not self._wakeup.is_set():
                    return
                await asyncio.sleep(0)

    async def run_once(self) -> int:
        """Process what is pending now; returns how many rows were handled."""
        async with self.db.session() as s:
            rows = list(await s.exec(
                select(DigitalMessage).where(DigitalMessage.processed == False)  # noqa: E712
                .order_by(col(DigitalMessage.received_seq), col(DigitalMessage.id))
                .limit(self.batch)))
        # A system message (a changed number) is a barrier: what came after it may be
        # from the contact's new identity, so it runs alone, after everything before it.
        barrier = next((i for i, r in enumerate(rows) if r.kind == "system"), None)
        if barrier is not None:
            rows = rows[:barrier] or rows[:1]
        # One lane per contact keeps each contact's messages in order; different
        # contacts are routed side by side (their database waits overlap).
        lanes: dict[tuple[str, str], list[DigitalMessage]] = {}
        for row in rows:
            lanes.setdefault((row.provider, row.sender or row.id), []).append(row)
        gate = asyncio.Semaphore(self.lanes)
        results = await asyncio.gather(*(self._lane(lane, gate) for lane in lanes.values()))
        if self._stopping:
            return 0
        if False in results:
            return -1
        return self.batch if barrier is not None else len(rows)  # more may be waiting

    async def _lane(self, rows: list[DigitalMessage], gate: asyncio.Semaphore) -> bool:
        async with gate:
            for row in rows:
                if self._stopping:
                    return True
                await self._yield_to_ingest()
                try:
                    await self.handle(row)
                    self._failures.pop(row.id, None)
                except Exception as exc:
                    count = self._failures.get(row.id, 0) + 1
                    self._failures[row.id] = count
                    log.exception("processing %s %s failed (%d)", row.provider,
                                  row.provider_message_id, count)
                    if count >= self.max_failures:
                        await self._set_aside(row, exc)
                    else:
                        return False  # the contact's later messages wait for this one
        return True

    async def _yield_to_ingest(self) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + self.max_yield_seconds
        while self.ingest_busy() and loop.time() < until:  # noqa: ASYNC110 (a poll by design)
            await asyncio.sleep(0.002)

    async def _set_aside(self, row: DigitalMessage, exc: Exception) -> None:
        async with self.db.session() as s:
            stored = await s.get(DigitalMessage, row.id)
            if stored is not None:
                stored.processed = True
                stored.error = f"processing failed: {exc}"[:300]
                s.add(stored)
                await s.commit()
        self._failures.pop(row.id, None)

    async def _run(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that races with the wake-up (CPython gh-86296).
            try:
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                while not self._stopping:
                    n = await self.run_once()
                    if n < 0:
                        await asyncio.sleep(0.5)
                        continue
                    if n < self.batch:
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inbox processing pass failed")
                await asyncio.sleep(1.0)
            if not self._wakeup.is_set():
                self._idle.set()
