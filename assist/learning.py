"""Keeping the reply index up to date as cases close, on every node.

- `case.closed` (the `assist` consumer group: once per cluster) → the case's reply pairs
  are stored in `assist_reply` (idempotent: `entry_id` is UNIQUE), indexed on this node
  at once, and announced as `assist.learned`;
- `assist.learned` (a broadcast: every node) → the other nodes add them to their own
  in-memory index (one read, skipped when they know them already);
- `task.accepted` → the case's queue, so its replies are suggested in that queue;
- at start, the index is rebuilt from `assist_reply` in the background;
- buffered documents become searchable at the next commit, run in a worker thread at
  most every `commit_interval_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from assist.corpus import last_wrap_up_code, reply_pairs
from assist.replies import ReplyIndex
from assist.tables import AssistCaseQueue, AssistReply
from assist.text import detect_language
from cases import CaseService, NotFound
from config.schema import AssistSettings
from core.bus import EventBus
from core.clock import Clock
from core.db import Database
from core.events import Event

log = logging.getLogger(__name__)

REBUILD_BATCH = 2000
LEARN_TIMELINE = 500  # the last entries of a closed case that are learnt from
QUEUE_CACHE_SECONDS = 30.0
QUEUE_CACHE_SIZE = 50_000


@dataclass(frozen=True)
class LearntReply:
    """A reply pair as stored in `assist_reply` (without the row's own id)."""

    entry_id: str
    case_id: str
    queue_id: str
    language: str
    channel: str
    question: str
    reply: str
    wrap_up_code: str | None


class Learning:
    def __init__(self, replies: ReplyIndex, settings: Callable[[], AssistSettings], *,
                 cases: CaseService, db: Database, bus: EventBus, clock: Clock,
                 default_language: str) -> None:
        self.replies = replies
        self._settings = settings
        self.cases = cases
        self.db = db
        self.bus = bus
        self.clock = clock
        self.default_language = default_language
        self.commit_wanted = asyncio.Event()
        self.ready = asyncio.Event()  # set when the index holds every stored reply
        self._queue_cache: OrderedDict[str, tuple[str, float]] = OrderedDict()

    # ------------------------------------------------------------------ the index

    async def rebuild(self) -> None:
        """Fill the index from `assist_reply` in batches (tokenising off the loop, each
        batch handed to the writer so no document is held twice)."""
        last_id = 0
        total = 0
        while True:
            async with self.db.session() as s:
                rows = list(await s.exec(select(AssistReply)
                                         .where(col(AssistReply.id) > last_id)
                                         .order_by(col(AssistReply.id)).limit(REBUILD_BATCH)))
            if not rows:
                break
            last_id = rows[-1].id or last_id
            total += await asyncio.to_thread(self._index_batch, rows)
        await self.commit()
        self.ready.set()
        log.info("assist index ready", extra={"replies": total})

    def _index_batch(self, rows: list[AssistReply]) -> int:
        added = sum(self.replies.add(r) for r in rows)
        self.replies.index.flush()
        return added

    async def committer(self) -> None:
        while True:
            await self.commit_wanted.wait()
            self.commit_wanted.clear()
            try:
                await self.commit()
            except Exception:
                log.exception("committing the assist index failed")
            await asyncio.sleep(self._settings().commit_interval_seconds)

    async def commit(self) -> int:
        """Make the buffered replies searchable now (tests and the bench call it)."""
        return await asyncio.to_thread(self.replies.index.commit)

    def add_to_index(self, replies: Sequence[LearntReply | AssistReply]) -> int:
        """Buffer replies into this node's index; the committer makes them searchable."""
        added = sum(self.replies.add(r) for r in replies)
        if added:
            self.commit_wanted.set()
        return added

    # ------------------------------------------------------------------ queues

    async def remember_queue(self, case_id: str, queue_id: str) -> None:
        """The queue a case is handled in: its replies are suggested in that queue."""
        self._queue_cache[case_id] = (queue_id, self.clock.monotonic())
        async with self.db.session() as s:
            row = await s.get(AssistCaseQueue, case_id)
            if row is None:
                row = AssistCaseQueue(case_id=case_id, queue_id=queue_id,
                                      updated_at=self.clock.now())
            else:
                row.queue_id, row.updated_at = queue_id, self.clock.now()
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:  # another consumer wrote it first: the same fact
                await s.rollback()

    async def queue_of(self, case_id: str) -> str | None:
        """The case's queue; read from this node's cache for QUEUE_CACHE_SECONDS (another
        node may have seen a transfer since), else from the table."""
        cached = self._queue_cache.get(case_id)
        now = self.clock.monotonic()
        if cached is not None and now - cached[1] < QUEUE_CACHE_SECONDS:
            self._queue_cache.move_to_end(case_id)
            return cached[0]
        async with self.db.session() as s:
            row = await s.get(AssistCaseQueue, case_id)
        if row is None:
            return None
        self._queue_cache[case_id] = (row.queue_id, now)
        while len(self._queue_cache) > QUEUE_CACHE_SIZE:
            self._queue_cache.popitem(last=False)
        return row.queue_id

    # ------------------------------------------------------------------ learning

    async def learn_case(self, case_id: str) -> int:
        """Store the reply pairs of a closed case (idempotent), index them on this node
        and announce them to the others. Returns how many were new."""
        try:
            snap = await self.cases.snapshot(case_id, timeline_limit=LEARN_TIMELINE)
        except NotFound:
            log.warning("case.closed for unknown case %s", case_id)
            return 0
        entries = snap.timeline
        pairs = reply_pairs(entries, last_messages=self._settings().query_messages)
        if not pairs:
            return 0
        queue_id = await self.queue_of(case_id) or ""
        code = last_wrap_up_code(entries)
        closed_at = snap.case.closed_at or self.clock.now()
        language_of_customer = snap.customer.language
        learnt: list[LearntReply] = []
        async with self.db.session() as s:
            known = set(await s.exec(select(AssistReply.entry_id).where(
                AssistReply.case_id == case_id)))
            for pair in pairs:
                if pair.entry_id in known:
                    continue
                language = language_of_customer if language_of_customer in ("en", "nl") \
                    else detect_language(pair.question, self.default_language)
                reply = LearntReply(pair.entry_id, case_id, queue_id, language, pair.channel,
                                    pair.question, pair.reply, code)
                s.add(AssistReply(**asdict(reply), closed_at=closed_at))
                learnt.append(reply)
            try:
                await s.commit()
            except IntegrityError:  # learnt concurrently (a redelivery): nothing new
                await s.rollback()
                learnt = []
        if learnt:
            self.add_to_index(learnt)
        await self.bus.publish(Event("assist.learned", {
            "case_id": case_id, "entry_ids": [r.entry_id for r in learnt]}))
        return len(learnt)

    async def on_learned(self, event: Event) -> None:
        """Every node: add the case's stored replies to this node's index (the node that
        learnt them has them already)."""
        case_id = event.payload.get("case_id")
        entry_ids = event.payload.get("entry_ids") or []
        if not case_id or all(self.replies.knows(str(e)) for e in entry_ids):
            return
        await self.index_case(str(case_id))

    async def index_case(self, case_id: str) -> int:
        async with self.db.session() as s:
            rows = list(await s.exec(select(AssistReply).where(
                AssistReply.case_id == case_id)))
        return self.add_to_index(rows)
