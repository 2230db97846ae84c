"""Durable ingest: the write that a webhook's 2xx waits for.

`InboxWriter.write()` returns only after the rows are committed. Concurrent webhook
requests are *group-committed*: whatever arrived while the previous transaction was
being written goes into the next one, so SQLite pays one fsync for many requests and
the latency of each stays one or two commits. Duplicates are dropped by the UNIQUE
constraint (INSERT … ON CONFLICT DO NOTHING), never by a read-then-write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func
from sqlalchemy.sql import Insert

from core.db import Database
from core.ids import new_id
from core.upsert import full_row, insert_on_conflict
from digital.tables import DeliveryStatus, DigitalMessage

log = logging.getLogger(__name__)


def dialect_insert(db: Database, table: Any) -> Insert:
    """INSERT with ON CONFLICT support for the database in use."""
    if db.is_sqlite:
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert(table)


@dataclass
class InboundRecord:
    """A parsed inbound message, as stored in the inbox before processing."""

    provider: str
    provider_message_id: str
    channel: str
    kind: str
    sender: str | None
    body: str | None
    occurred_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "id": new_id(), "provider": self.provider,
            "provider_message_id": self.provider_message_id, "channel": self.channel,
            "direction": "inbound", "kind": self.kind, "sender": self.sender,
            "body": self.body, "payload": self.payload, "processed": False,
            "received_seq": time.time_ns(), "occurred_at": self.occurred_at,
            "created_at": now,
        }


@dataclass
class StatusRecord:
    """One delivery status report (sent/delivered/read or failed)."""

    provider: str
    provider_message_id: str
    rank: int
    failed: bool = False
    error_code: str | None = None
    error_title: str | None = None
    our_id: str | None = None
    recipient: str | None = None

    def key(self) -> tuple[str, str]:
        return self.provider, self.provider_message_id

    def merged(self, other: StatusRecord) -> StatusRecord:
        return StatusRecord(
            self.provider, self.provider_message_id, max(self.rank, other.rank),
            self.failed or other.failed, other.error_code or self.error_code,
            other.error_title or self.error_title, self.our_id or other.our_id,
            self.recipient or other.recipient)


def merge_statuses(records: list[StatusRecord]) -> list[StatusRecord]:
    out: dict[tuple[str, str], StatusRecord] = {}
    for rec in records:
        out[rec.key()] = out[rec.key()].merged(rec) if rec.key() in out else rec
    return list(out.values())


async def upsert_statuses(db: Database, session: Any, records: list[StatusRecord],
                          now: datetime) -> None:
    """Raise each status to the maximum of what is stored and what arrived."""
    table = DeliveryStatus.__table__  # type: ignore[attr-defined]
    for rec in merge_statuses(records):
        stmt = dialect_insert(db, table).values(
            provider=rec.provider, provider_message_id=rec.provider_message_id,
            our_id=rec.our_id, rank=rec.rank, failed=rec.failed, error_code=rec.error_code,
            error_title=rec.error_title, recipient=rec.recipient, updated_at=now)
        ex = stmt.excluded  # type: ignore[attr-defined]
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=["provider", "provider_message_id"],
            set_={
                "rank": case((ex.rank > table.c.rank, ex.rank), else_=table.c.rank),
                "failed": table.c.failed | ex.failed,
                "error_code": func.coalesce(ex.error_code, table.c.error_code),
                "error_title": func.coalesce(ex.error_title, table.c.error_title),
                "our_id": func.coalesce(table.c.our_id, ex.our_id),
                "recipient": func.coalesce(table.c.recipient, ex.recipient),
                "updated_at": ex.updated_at,
            })
        await (await session.connection()).execute(stmt)


@dataclass
class _Batch:
    messages: list[InboundRecord]
    statuses: list[StatusRecord]
    done: asyncio.Future[None]


class InboxWriter:
    """Commits inbound messages and statuses in group commits; see the module doc."""

    def __init__(self, db: Database, clock: Any, *, max_batch: int = 500,
                 bus: Any = None) -> None:
        self.db = db
        self.clock = clock
        self.bus = bus  # publishes `message.status` for each committed status report
        self.max_batch = max_batch
        self._pending: list[_Batch] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._committing = False  # a group commit is being written
        self.on_committed: list[Any] = []  # callables run after each commit (wake the processor)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="digital-inbox-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for batch in self._pending:
            if not batch.done.done():
                batch.done.set_exception(RuntimeError("inbox writer stopped"))
        self._pending.clear()

    async def write(self, messages: list[InboundRecord], statuses: list[StatusRecord]) -> None:
        """Return once everything given is committed (raises if the commit failed)."""
        if not messages and not statuses:
            return
        if self._task is None:  # not started: write directly (tests, tools)
            batch = _Batch(messages, statuses, asyncio.get_running_loop().create_future())
            await self._commit([batch])
            self._notify()
            await self._publish_statuses([batch])
            return
        batch = _Batch(messages, statuses, asyncio.get_running_loop().create_future())
        self._pending.append(batch)
        self._wakeup.set()
        await asyncio.shield(batch.done)

    def busy(self) -> bool:
        """Requests are waiting for a commit (the inbox processor yields to them). False
        as soon as the commit is written — not only once every waiting request has
        resumed — so the processor woken by that commit starts at once."""
        return bool(self._pending) or self._committing

    def notify(self) -> None:
        """Tell listeners (the inbox processor) that new rows were committed elsewhere."""
        self._notify()

    def _notify(self) -> None:
        for callback in self.on_committed:
            callback()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                take: list[_Batch] = []
                count = 0
                while self._pending and count < self.max_batch:
                    batch = self._pending.pop(0)
                    take.append(batch)
                    count += len(batch.messages) + len(batch.statuses)
                self._committing = True
                try:
                    await self._commit(take)
                except Exception as exc:
                    log.exception("inbox commit of %d requests failed", len(take))
                    for batch in take:
                        if not batch.done.done():
                            batch.done.set_exception(exc)
                    continue
                finally:
                    self._committing = False
                for batch in take:
                    if not batch.done.done():
                        batch.done.set_result(None)
                self._notify()
                await self._publish_statuses(take)

    async def _publish_statuses(self, batches: list[_Batch]) -> None:
        """Tell desktops a delivery status changed (they re-read the thread's state:
        the stored maximum, not this report, is the truth)."""
        if self.bus is None:
            return
        from core.events import Event

        for batch in batches:
            for st in batch.statuses:
                try:
                    await self.bus.publish(Event("message.status", {
                        "provider": st.provider, "provider_message_id": st.provider_message_id,
                        "our_id": st.our_id, "rank": st.rank, "failed": st.failed,
                        "error_code": st.error_code}))
                except Exception:
                    log.exception("publishing message.status failed")

    async def _commit(self, batches: list[_Batch]) -> None:
        now = self.clock.now()
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        statuses: list[StatusRecord] = []
        for batch in batches:
            for msg in batch.messages:
                rows.setdefault((msg.provider, msg.provider_message_id), msg.row(now))
            statuses += batch.statuses
        async with self.db.session() as s:
            if rows:
                # Cacheable text (core.upsert): a dialect on_conflict insert compiled
                # anew on every acknowledged batch.
                table = DigitalMessage.__table__  # type: ignore[attr-defined]
                stmt = insert_on_conflict(table, ("provider", "provider_message_id"))
                await (await s.connection()).execute(
                    stmt, [full_row(table, r) for r in rows.values()])
            if statuses:
                await upsert_statuses(self.db, s, statuses, now)
            await s.commit()
