"""The inbox processor: turns acknowledged, stored messages into routed conversations.

Webhooks only store (fast, durable); this worker does the slower part — identity
resolution, media download, timeline, ACD — in arrival order. After a crash, the rows
still marked `processed=False` are picked up on start, so nothing acknowledged is lost.
A message that keeps failing is set aside after `max_failures` with its error, so one
poison message cannot block the channel.

Several nodes on one PostgreSQL: each node *claims* the rows it processes (`claimed_by`
its node id, `claimed_until` a lease on the database's clock, renewed while it works), so
exactly one node handles a message. Claims are taken by one short transaction at a time
(a transaction-level advisory lock) and by contact: a node takes no row of a contact
while another node holds a live claim on one of that contact's rows, which keeps each
contact's messages in order across nodes. A node that dies stops renewing; when its
lease runs out its rows are claimed again by a live node, so nothing it held is lost.
SQLite is one node: no claims, the pending rows are read as they are.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from sqlalchemy import Integer, column, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import col, select

from core import metrics
from core.db import Database
from core.health import Unavailable
from core.ids import new_id
from digital.tables import DigitalMessage

log = logging.getLogger(__name__)

# One claimer at a time across nodes (pg_advisory_xact_lock key).
CLAIM_LOCK_KEY = "centrale.digital.inbox.claim"
# How long the claim transaction may sit idle before PostgreSQL ends it (ms).
IDLE_IN_CLAIM_MS = 10_000

# Pending rows this node may take, oldest first. A row is free when nobody holds a live
# claim on it; its contact (lane) must not have a row under another node's live claim
# (order per contact); nothing after the oldest pending system message (a changed
# number) is taken, and that message only when nothing is pending before it.
_CLAIM_SQL = text("""
WITH pending AS (
    SELECT id, provider, coalesce(nullif(sender, ''), id) AS lane, kind, received_seq,
           claimed_by, claimed_until
    FROM digital_message WHERE processed = false
), busy AS (
    SELECT DISTINCT provider, lane FROM pending
    WHERE claimed_by <> :node AND claimed_until >= now()
), bounds AS (
    SELECT min(received_seq) AS first_seq,
           min(received_seq) FILTER (WHERE kind = 'system') AS barrier_seq,
           count(*) AS pending_total
    FROM pending
)
UPDATE digital_message AS m
SET claimed_by = :node, claimed_until = now() + make_interval(secs => :lease)
WHERE m.id IN (
    SELECT c.id FROM digital_message c, bounds b
    WHERE c.processed = false
      AND c.id IN (SELECT id FROM pending p
                   WHERE (p.claimed_by IS NULL OR p.claimed_by = :node
                          OR p.claimed_until < now())
                     AND (p.provider, p.lane) NOT IN (SELECT provider, lane FROM busy))
      AND (b.barrier_seq IS NULL OR c.received_seq <= b.barrier_seq)
      AND (c.kind <> 'system' OR c.received_seq = b.first_seq)
    ORDER BY c.received_seq, c.id
    LIMIT :batch
    FOR UPDATE OF c)
RETURNING m.*, (SELECT pending_total FROM bounds) AS pending_total
""").columns(*DigitalMessage.__table__.columns,  # type: ignore[attr-defined]
             column("pending_total", Integer))


def _transient(exc: BaseException) -> bool:
    """An outage, not a poison message: the inbox retries it without counting."""
    return isinstance(exc, Unavailable | ConnectionError | TimeoutError
                      | OperationalError | InterfaceError)


class InboxProcessor:
    def __init__(self, db: Database, handle: Callable[[DigitalMessage], Awaitable[None]], *,
                 batch: int = 100, poll_seconds: float = 5.0, max_failures: int = 3,
                 ingest_busy: Callable[[], bool] | None = None,
                 max_yield_seconds: float = 0.05, lanes: int = 4,
                 node_id: str | None = None, lease_seconds: float = 6.0,
                 pass_hooks: tuple[Callable[[], None], Callable[[], Awaitable[None]]]
                 | None = None) -> None:
        self.db = db
        # (begin, end) around each pass: the conversation service commits the pass's
        # `processed` marks together at its end (ConversationService.end_pass).
        self.pass_hooks = pass_hooks
        self.lanes = lanes
        # PostgreSQL: this node's name on the rows it claims, and how long a claim
        # lasts without renewal (renewed every lease/3 while rows are in hand). Short,
        # so a dead node's messages wait seconds, about as long as its ACD tasks do
        # (node lease 3 s); a live node would have to stall its event loop for
        # lease*2/3 to lose a claim, and routing twice is harmless anyway.
        self.node_id = (node_id or f"{socket.gethostname()[:30]}-{os.getpid()}-{new_id()[:8]}")
        self.lease_seconds = lease_seconds
        self._claims = not db.is_sqlite
        # Pending rows the last claim left (held by other nodes, or behind a barrier).
        # While there are some, poll every `busy_poll_seconds`: the node holding them
        # may hand the contact back without this node's writer waking it.
        self._left = 0
        self.busy_poll_seconds = 0.1
        self.handle = handle
        # Webhook acknowledgements come first: while the writer has requests waiting,
        # routing steps aside (for at most max_yield_seconds per message, so it never
        # starves). A burst is absorbed by the inbox and routed right after.
        self.ingest_busy = ingest_busy or (lambda: False)
        self.max_yield_seconds = max_yield_seconds
        self.batch = batch
        # PostgreSQL: the poll is how a node finds rows a dead node acknowledged (no
        # local commit wakes it for them): every lease/3 there, a cheap claim.
        self.poll_seconds = poll_seconds if db.is_sqlite else min(poll_seconds,
                                                                  lease_seconds / 3)
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
        try:
            await self.release_claims()
        except Exception:
            log.exception("releasing the inbox claims of %s failed", self.node_id)

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
        rows = await (self._claim() if self._claims else self._pending())
        if not self._claims:
            return await self._process(rows)
        if not rows:
            return 0
        done = asyncio.Event()
        renew = asyncio.create_task(self._renew_claims(done), name="digital-inbox-lease")
        metrics.inbox_in_hand.set(len(rows))
        try:
            handled = await self._process(rows)
        finally:
            metrics.inbox_in_hand.set(0)
            done.set()  # let a renewal in flight finish: never cancel a database call
            await renew
        # Rows left behind (a barrier, contacts another node held and may have finished
        # with since): claim again at once.
        return self.batch if handled > 0 and self._left > 0 else handled

    async def _pending(self) -> list[DigitalMessage]:
        async with self.db.session() as s:
            return list(await s.exec(
                select(DigitalMessage).where(DigitalMessage.processed == False)  # noqa: E712
                .order_by(col(DigitalMessage.received_seq), col(DigitalMessage.id))
                .limit(self.batch)))

    async def _claim(self) -> list[DigitalMessage]:
        """Claim up to `batch` rows for this node (PostgreSQL); see the module doc. The
        UPDATE returns the claimed rows whole (no second read) and how many rows were
        pending: `_left` says whether some stayed behind (a barrier, a full batch,
        contacts another node holds), so the loop claims again only then."""
        async with self.db.session() as s:
            # A claim is soft state: commit without waiting for the WAL flush (other
            # nodes see it at once all the same). Lost in a database crash, the rows are
            # simply claimable again, and routing them twice is harmless. The claim lock
            # is every node's: a node paused while it holds it (GC, SIGSTOP) would stop
            # all claims for as long as it is paused, so PostgreSQL ends this
            # transaction when it sits idle for IDLE_IN_CLAIM_MS (issue 22).
            await s.exec(text(  # type: ignore[call-overload]
                "SELECT set_config('synchronous_commit', 'off', true), "
                "set_config('idle_in_transaction_session_timeout', :idle, true), "
                "pg_advisory_xact_lock(hashtext(:k))").bindparams(
                    k=CLAIM_LOCK_KEY, idle=str(IDLE_IN_CLAIM_MS)))
            result = await s.exec(_CLAIM_SQL.bindparams(  # type: ignore[call-overload]
                node=self.node_id, lease=self.lease_seconds, batch=self.batch))
            found = [dict(r._mapping) for r in result]
            if found:
                pending = found[0]["pending_total"]
            else:  # all pending rows (if any) are held by other nodes
                pending = (await s.exec(text(  # type: ignore[call-overload]
                    "SELECT count(*) FROM digital_message WHERE processed = false"))).scalar()
            await s.commit()
        self._left = int(pending or 0) - len(found)
        rows = [DigitalMessage(**{k: v for k, v in f.items() if k != "pending_total"})
                for f in found]
        rows.sort(key=lambda r: (r.received_seq or 0, r.id))
        return rows

    async def _renew_claims(self, done: asyncio.Event) -> None:
        """Keep this node's claims alive while it works on them."""
        while not done.is_set():
            try:
                async with asyncio.timeout(self.lease_seconds / 3):
                    await done.wait()
                return
            except TimeoutError:
                pass
            try:
                async with self.db.session() as s:
                    await s.exec(text(  # type: ignore[call-overload]
                        "UPDATE digital_message SET claimed_until = now() + "
                        "make_interval(secs => :lease) "
                        "WHERE claimed_by = :node AND processed = false")
                        .bindparams(node=self.node_id, lease=self.lease_seconds))
                    await s.commit()
            except Exception:
                log.exception("renewing the inbox claims of %s failed", self.node_id)

    async def release_claims(self) -> None:
        """Give back the rows this node claimed and did not process (on stop), so
        another node takes them at once instead of after the lease."""
        if not self._claims:
            return
        async with self.db.session() as s:
            await s.exec(text(  # type: ignore[call-overload]
                "UPDATE digital_message SET claimed_by = NULL, claimed_until = NULL "
                "WHERE claimed_by = :node AND processed = false").bindparams(node=self.node_id))
            await s.commit()

    async def _process(self, rows: list[DigitalMessage]) -> int:
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
        if self.pass_hooks is not None:
            self.pass_hooks[0]()
        try:
            results = await asyncio.gather(*(self._lane(lane, gate)
                                             for lane in lanes.values()))
        finally:
            if self.pass_hooks is not None:  # also after a failure: those rows are routed
                await self.pass_hooks[1]()
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
                    if _transient(exc):
                        # Redis, a peer node or the database did not answer: not this
                        # message's fault. Keep it (and its contact's later messages)
                        # for the next pass, however long the outage lasts.
                        log.warning("processing %s %s waits: %s unavailable (%s)",
                                    row.provider, row.provider_message_id,
                                    type(exc).__name__, exc)
                        return False
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
                async with asyncio.timeout(
                        self.busy_poll_seconds if self._left > 0 else self.poll_seconds):
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
