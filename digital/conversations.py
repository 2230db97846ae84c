"""Conversations: from an inbound message to an agent and back, on every digital channel.

A stored inbound message is resolved to a customer and case (`cases.resolve`), put on
the case timeline, and attached to the contact's open conversation. A conversation that
no agent has yet becomes one ACD task in its channel's queue (preferring the case's last
agent); follow-ups go to the agent who has it (event `conversation.message`); the
agent's wrap-up (`task.completed`) ends it. The desktop calls `reply`, `send_template`,
`conversations_for_case`, `messages`, `window` and `typing`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cases import CaseService, InvalidIdentity, Resolution
from cases.service import TimelineDraft
from core import metrics
from core.bus import EventBus
from core.clock import Clock
from core.db import Database
from core.events import Event
from core.ids import new_id
from digital.adapter import ChannelAdapter, Prepared
from digital.http import SendRefused
from digital.ports import (
    TASK_ADOPTED_AS,
    TASK_ADOPTED_TOPIC,
    TASK_ASSIGNED_TOPICS,
    TASK_ENDED_TOPICS,
    TASK_WRAP_UP_TOPICS,
    AcdPort,
)
from digital.tables import RANK_NAME, Conversation, DeliveryStatus, DigitalMessage

log = logging.getLogger(__name__)
SYSTEM_SENDER = "centrale"  # the sender of messages no agent wrote

WINDOW = timedelta(hours=24)
WINDOW_CHANNELS = ("whatsapp",)  # channels with Meta's customer-service window


class ConversationError(Exception):
    """A desktop request that cannot be honoured; the message says why."""


@dataclass(frozen=True)
class ReplyResult:
    ok: bool
    message_id: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None  # when not ok: what the agent sees


@dataclass(frozen=True)
class WindowInfo:
    applies: bool  # False: the channel has no window (webchat, e-mail, SMS)
    open: bool
    closes_at: datetime | None
    reason: str | None


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass
class _Routed:
    """What recording one inbound message decided."""

    conv: Conversation | None = None
    created: bool = False  # the conversation was opened by this message
    queue: bool = False  # the conversation waits for an agent: (re)queue it
    last_agent: str | None = None  # the case's last agent, preferred by the ACD


class ConversationService:
    def __init__(self, db: Database, bus: EventBus, clock: Clock, cases: CaseService,
                 acd: AcdPort, *, queues: dict[str, str],
                 adapters: dict[str, ChannelAdapter] | None = None) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.cases = cases
        self.acd = acd
        self.queues = queues  # channel -> queue id
        self.adapters: dict[str, ChannelAdapter] = adapters or {}  # provider -> adapter
        # Checked before routing an inbound message; True: it was consumed (a survey
        # answer) and is not routed to an agent.
        # Failed sends in a row per channel, reset by a success: /healthz reads it.
        self.send_failures: dict[str, int] = {}
        self.inbound_hooks: list[Callable[[DigitalMessage, Prepared], Awaitable[bool]]] = []
        # (channel, contact) -> (lock, how many messages hold or wait for it)
        self._contact_locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        # Messages routed during an inbox pass, waiting for their `processed` mark: one
        # UPDATE and one commit for the whole pass (`end_pass`) instead of one each.
        # None outside a pass: the mark is committed at once, as before.
        self._deferred_marks: list[str] | None = None
        self._subs: list[Any] = []

    async def start(self) -> None:
        if self._subs:  # started already (the wiring may start it on its own too)
            return
        # One subscription per group: a group shares one cursor, whatever the pattern.
        self._subs.append(await self.bus.subscribe("task.*", self.on_task_event,
                                                   group="digital-conversations"))

    async def stop(self) -> None:
        for sub in self._subs:
            # The in-memory bus cancels its consumer task with wait_for inside; on
            # Python 3.11 that cancellation can be lost (CPython gh-86296) and close()
            # would wait forever. Bounded here; a second cancel gets through.
            try:
                await asyncio.wait_for(sub.close(), 2.0)
            except TimeoutError:
                log.warning("bus subscription did not close within 2 s")
        self._subs.clear()

    # ---- inbound -------------------------------------------------------------------

    async def process_inbound(self, row: DigitalMessage) -> None:
        """Route one stored inbound message. Safe to run twice for the same row: the
        timeline entry is deduplicated, the open conversation is found again, queueing
        it again is refused as a duplicate, and the row is marked processed at the end.

        The customer, case, timeline entry, conversation and the message row are written
        in ONE transaction (`CaseService.resolve_and_record`). A message that queues its
        conversation is marked processed only after the ACD took the task, in a second,
        small commit: a crash in between leaves it in the inbox, and processing it again
        queues the conversation (the duplicate is refused), so no conversation is left
        waiting without a task."""
        adapter = self.adapters[row.provider]
        prepared = await adapter.prepare(row)
        if prepared.store_only:
            await self._mark_processed(row, None, None, None, prepared)
            return
        key = (row.channel, prepared.contact)
        lock, users = self._contact_locks.get(key) or (asyncio.Lock(), 0)
        self._contact_locks[key] = (lock, users + 1)
        try:
            async with lock:
                await self._route(row, prepared)
        finally:
            # Forget the lock when nobody holds or waits for it (counted, not
            # `locked()`: a released lock with a waiter about to wake looks free).
            lock, users = self._contact_locks[key]
            if users == 1:
                del self._contact_locks[key]
            else:
                self._contact_locks[key] = (lock, users - 1)

    async def _route(self, row: DigitalMessage, prepared: Prepared) -> None:
        for hook in self.inbound_hooks:
            if await hook(row, prepared):
                await self._mark_processed(row, None, None, None, prepared)
                return
        if prepared.case_id:
            step = await self._record_on_known_case(row, prepared)
        else:
            step = await self._record(row, prepared)
        conv = step.conv
        if conv is None:
            return
        if step.created:
            await self.bus.publish(Event("conversation.created", self._conv_payload(conv)))
        if step.queue:
            # Idempotent (task id = conversation id): re-offering it on every
            # message of a waiting conversation also heals a crash between
            # creating the conversation and queueing it, or an ACD restart.
            await self._enqueue(conv, step.last_agent)
            await self._set_processed(row.id)
        await self.bus.publish(Event("conversation.message", {
            **self._conv_payload(conv), "message_id": row.id, "direction": "inbound",
            "kind": row.kind, "body": (row.body or "")[:1000]}))

    def _draft(self, row: DigitalMessage, prepared: Prepared) -> TimelineDraft:
        meta: dict[str, Any] = {"message_id": row.id, "provider": row.provider,
                                "provider_message_id": row.provider_message_id,
                                "type": row.kind}
        if prepared.media_path:
            meta["media_path"] = prepared.media_path
        if prepared.note:
            meta["note"] = prepared.note
        meta.update(prepared.timeline_meta)
        if not prepared.route:
            meta["routed"] = False
        return TimelineDraft(
            kind=prepared.timeline_kind if row.kind != "unsupported" else "unsupported",
            channel=row.channel, direction="inbound", body=row.body, meta=meta,
            occurred_at=_aware(row.occurred_at),
            dedup_key=f"msg:{row.provider}:{row.provider_message_id}")

    async def _record(self, row: DigitalMessage, prepared: Prepared) -> _Routed:
        """Resolve, timeline, conversation and message row: one transaction."""
        step = _Routed()

        async def within(s: AsyncSession, res: Resolution) -> dict[str, Any]:
            nonlocal step  # the unit may be retried: start from scratch each time
            step = await self._attach(s, row, prepared, res.case.id, res.customer.id)
            step.last_agent = res.case.last_agent_id
            return {"conversation_id": step.conv.id if step.conv else None}

        draft = self._draft(row, prepared)
        try:
            await self.cases.resolve_and_record(
                prepared.identity, draft, display_name=prepared.display_name,
                unverified=prepared.unverified, subject=prepared.subject, within=within)
        except InvalidIdentity as exc:
            log.warning("inbound %s %s: %s; treated as anonymous", row.provider,
                        row.provider_message_id, exc)
            await self.cases.resolve_and_record(None, draft, display_name=prepared.display_name,
                                                within=within)
        return step

    async def _record_on_known_case(self, row: DigitalMessage, prepared: Prepared) -> _Routed:
        """A message that names its case (a bounce of our own mail): no resolution."""
        case = await self.cases.get_case(prepared.case_id or "")
        async with self.db.session() as s:
            step = await self._attach(s, row, prepared, case.id, case.customer_id,
                                      processed=False)
            await s.commit()
        step.last_agent = case.last_agent_id
        draft = self._draft(row, prepared)
        await self.cases.add_timeline(
            case.id, kind=draft.kind, channel=draft.channel, direction=draft.direction,
            body=draft.body, meta={**draft.meta,
                                   "conversation_id": step.conv.id if step.conv else None},
            occurred_at=draft.occurred_at, dedup_key=draft.dedup_key)
        if not step.queue:
            await self._set_processed(row.id)
        return step

    async def _attach(self, s: AsyncSession, row: DigitalMessage, prepared: Prepared,
                      case_id: str, customer_id: str, *, processed: bool = True) -> _Routed:
        """In the caller's transaction: find or open the contact's conversation, move its
        24-hour window, and record the routing on the message row. The row stays
        unprocessed when its conversation still has to be queued (see process_inbound).

        Keyed by the message: the row is read again under a row lock first, so a node
        that lost its inbox claim (paused past the lease) and resumes after another node
        routed the message changes nothing (processed already), and a message recorded
        by a node that died before queueing keeps the conversation it was recorded in
        (queued again under the same task id, refused as a duplicate if it exists)."""
        prior = (await s.exec(select(  # type: ignore[call-overload]
            DigitalMessage.processed, DigitalMessage.conversation_id)
            .where(col(DigitalMessage.id) == row.id).with_for_update())).first()
        created = False
        if prior is not None and prior[0]:
            return _Routed()  # routed by another node (or an earlier run) already
        if prior is not None and prior[1]:
            conv = await s.get(Conversation, prior[1])
            if conv is None or conv.state == "ended":  # its conversation is over: done
                await s.exec(update(DigitalMessage).where(  # type: ignore[call-overload]
                    col(DigitalMessage.id) == row.id).values(processed=True))
                return _Routed()
        else:
            conv, created = await self._conversation_for(s, row, prepared, case_id,
                                                         customer_id)
        if conv is not None and prepared.route and not created:
            seen = _aware(row.occurred_at) or self.clock.now()
            last = _aware(conv.last_inbound_at)
            if last is None or seen > last:
                conv.last_inbound_at = seen
                s.add(conv)
        queue = conv is not None and conv.state == "waiting" and prepared.route
        values: dict[str, Any] = {
            "processed": processed and not queue, "case_id": case_id,
            "customer_id": customer_id, "conversation_id": conv.id if conv else None}
        if prepared.media_path:
            values["media_path"] = prepared.media_path
        if prepared.note:
            values["error"] = prepared.note[:300]
        await s.exec(update(DigitalMessage).where(  # type: ignore[call-overload]
            col(DigitalMessage.id) == row.id).values(**values))
        return _Routed(conv, created, queue)

    def begin_pass(self) -> None:
        """The inbox processor starts a pass: `processed` marks wait for `end_pass`."""
        if self._deferred_marks is None:
            self._deferred_marks = []

    async def end_pass(self) -> None:
        """Commit the marks of the messages routed in the pass, in one statement.

        Durability is unchanged: every message was committed before its webhook was
        answered, and a message whose mark is lost (a crash before this commit) is
        routed again on start, which is safe (see `process_inbound`). What changes is
        the cost while the inbox has a backlog: a pass of N messages pays one commit
        for their marks, not N — on SQLite each is an fsync under the one writer lock
        that the next message's routing waits for."""
        marks, self._deferred_marks = self._deferred_marks, None
        if not marks:
            return
        async with self.db.session() as s:
            await s.exec(update(DigitalMessage).where(  # type: ignore[call-overload]
                col(DigitalMessage.id).in_(marks)).values(processed=True))
            await s.commit()

    async def _set_processed(self, message_id: str) -> None:
        if self._deferred_marks is not None:
            self._deferred_marks.append(message_id)
            return
        async with self.db.session() as s:
            await s.exec(update(DigitalMessage).where(  # type: ignore[call-overload]
                col(DigitalMessage.id) == message_id).values(processed=True))
            await s.commit()

    async def _mark_processed(self, row: DigitalMessage, case_id: str | None,
                              customer_id: str | None, conv: Conversation | None,
                              prepared: Prepared) -> None:
        async with self.db.session() as s:
            stored = await s.get(DigitalMessage, row.id)
            if stored is None:
                return
            stored.processed = True
            stored.case_id, stored.customer_id = case_id, customer_id
            stored.conversation_id = conv.id if conv else None
            if prepared.media_path:
                stored.media_path = prepared.media_path
            if prepared.note:
                stored.error = prepared.note[:300]
            s.add(stored)
            await s.commit()

    async def _conversation_for(self, s: AsyncSession, row: DigitalMessage,
                                prepared: Prepared, case_id: str, customer_id: str,
                                ) -> tuple[Conversation | None, bool]:
        conv: Conversation | None = None
        if prepared.conversation_id:
            conv = await s.get(Conversation, prepared.conversation_id)
            if conv is not None and conv.state == "ended":
                conv = None
        if conv is None and row.channel != "email":
            conv = (await s.exec(select(Conversation).where(
                Conversation.channel == row.channel,
                Conversation.contact == prepared.contact,
                Conversation.state != "ended")
                .order_by(col(Conversation.created_at).desc()))).first()
        if conv is not None:
            return conv, False
        if not prepared.route:
            return None, False
        queue = self.queues.get(row.channel)
        if queue is None:
            log.error("no queue configured for channel %s", row.channel)
            return None, False
        conv_id = new_id()
        conv = Conversation(id=conv_id, task_id=conv_id, channel=row.channel,
                            contact=prepared.contact,
                            case_id=case_id, customer_id=customer_id, queue_id=queue,
                            state="waiting", thread_token=prepared.thread_token or None,
                            subject=prepared.subject, last_inbound_at=row.occurred_at,
                            created_at=self.clock.now())
        s.add(conv)
        return conv, True

    async def _enqueue(self, conv: Conversation, preferred: str | None) -> None:
        """Queue the conversation under task id = conversation id, so queueing it again
        is refused by the ACD as a duplicate instead of creating a second task."""
        try:
            result = await self.acd.enqueue(
                queue_id=conv.queue_id, channel=conv.channel, case_id=conv.case_id,
                customer_id=conv.customer_id, preferred_agent_id=preferred,
                attributes={"conversation_id": conv.id, "contact": conv.contact},
                task_id=conv.id)
        except Exception as exc:
            if type(exc).__name__ != "DuplicateTaskError":
                raise
            return
        task_id = str(getattr(result, "id", result))
        if task_id != conv.task_id:  # an ACD that picks its own ids
            async with self.db.session() as s:
                stored = await s.get(Conversation, conv.id)
                if stored is not None:
                    stored.task_id = task_id
                    s.add(stored)
                    await s.commit()
            conv.task_id = task_id

    # ---- ACD events ----------------------------------------------------------------

    async def on_task_event(self, event: Event) -> None:
        task_id = event.payload.get("task_id")
        topics = (*TASK_ASSIGNED_TOPICS, *TASK_ENDED_TOPICS, *TASK_WRAP_UP_TOPICS)
        if event.topic == TASK_ADOPTED_TOPIC:
            # The adopter restates what Redis holds: an agent has the task (assigned),
            # or had it and is in its wrap-up (the chat is over). The dead node may have
            # confirmed the accept or the completion and died before publishing it; a
            # wrap-up read as an accept left the conversation open for good.
            restates = TASK_ADOPTED_AS.get(str(event.payload.get("status")))
            if not restates or not event.payload.get("agent_id"):
                return
            event = Event(restates, {**event.payload, "restated": True})
        if not task_id or event.topic not in topics:
            return
        if event.payload.get("channel") == "voice":
            # A conversation is a digital thread (its task id is its own id): a call's
            # task has none, and looking cost a query per call (issue 21).
            return
        async with self.db.session() as s:
            conv = (await s.exec(select(Conversation).where(
                Conversation.task_id == str(task_id)))).first()
            if conv is None:
                return
            if event.topic in TASK_WRAP_UP_TOPICS and conv.state == "ended":
                # The code may only come at the end of the wrap-up.
                code = event.payload.get("wrap_up_code")
                if code and conv.wrap_up_code != code:
                    conv.wrap_up_code = code
                    s.add(conv)
                    await s.commit()
                return
            if conv.state == "ended":
                return
            if event.topic in TASK_ASSIGNED_TOPICS and event.payload.get("restated") \
                    and conv.state != "waiting":
                return  # the accept was seen: nothing was missed
            if event.topic in TASK_ASSIGNED_TOPICS:
                conv.state = "assigned"
                conv.agent_id = str(event.payload.get("agent_id") or "") or None
                topic = "conversation.assigned"
            else:  # completed, or (its completion never published) its wrap-up over
                conv.state = "ended"
                conv.ended_at = self.clock.now()
                conv.wrap_up_code = event.payload.get("wrap_up_code") or (
                    None if event.topic in ("task.completed", *TASK_WRAP_UP_TOPICS)
                    else event.topic.split(".", 1)[1])
                topic = "conversation.ended"
            s.add(conv)
            await s.commit()
        if topic == "conversation.assigned" and conv.agent_id:
            await self.cases.set_last_agent(conv.case_id, conv.agent_id)
        await self.bus.publish(Event(topic, self._conv_payload(conv)))

    async def end(self, conversation_id: str, *, wrap_up_code: str | None = None) -> None:
        """End a conversation directly (no ACD task, or an administrative close)."""
        async with self.db.session() as s:
            conv = await s.get(Conversation, conversation_id)
            if conv is None:
                raise ConversationError(f"conversation {conversation_id} not found")
            if conv.state == "ended":
                return
            conv.state, conv.ended_at, conv.wrap_up_code = "ended", self.clock.now(), wrap_up_code
            s.add(conv)
            await s.commit()
        await self.bus.publish(Event("conversation.ended", self._conv_payload(conv)))

    # ---- desktop API ---------------------------------------------------------------

    async def get(self, conversation_id: str) -> Conversation:
        async with self.db.session() as s:
            conv = await s.get(Conversation, conversation_id)
        if conv is None:
            raise ConversationError(f"conversation {conversation_id} not found")
        return conv

    async def conversations_for_case(self, case_id: str) -> list[Conversation]:
        async with self.db.session() as s:
            return list(await s.exec(select(Conversation).where(Conversation.case_id == case_id)
                                     .order_by(col(Conversation.created_at))))

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """The thread with each outbound message's delivery status."""
        async with self.db.session() as s:
            return await self._messages(s, [conversation_id])

    async def case_threads(self, case_id: str, *, last: int = 50,
                           ) -> list[tuple[Conversation, WindowInfo, list[dict[str, Any]]]]:
        """A case's conversations, oldest first, each with its 24-hour window and its
        last `last` messages (with delivery status): what a screen-pop shows, in one
        session and three statements. Read one by one (`conversations_for_case`, then
        `window` and `messages` per conversation) that was 1 + 2 per conversation
        sessions, each a pool checkout (and on SQLite a hop to aiosqlite's thread) on
        the path from the offer to the pop frame."""
        async with self.db.session() as s:
            convs = list(await s.exec(select(Conversation).where(
                Conversation.case_id == case_id).order_by(col(Conversation.created_at))))
            threads = await self._messages(s, [c.id for c in convs])
        by_conv: dict[str, list[dict[str, Any]]] = {}
        for item in threads:
            by_conv.setdefault(item["conversation_id"], []).append(item)
        return [(c, self._window(c), by_conv.get(c.id, [])[-last:]) for c in convs]

    async def _messages(self, s: AsyncSession, conversation_ids: list[str],
                        ) -> list[dict[str, Any]]:
        """The messages of these conversations in order, with the delivery status of
        each outbound one (one query for all of them)."""
        if not conversation_ids:
            return []
        rows = list(await s.exec(select(DigitalMessage).where(
            col(DigitalMessage.conversation_id).in_(conversation_ids))
            .order_by(col(DigitalMessage.created_at), col(DigitalMessage.id))))
        sent = [(m.provider, m.provider_message_id) for m in rows
                if m.direction == "outbound" and m.provider_message_id]
        statuses: dict[tuple[str, str], DeliveryStatus] = {}
        if sent:
            found = await s.exec(select(DeliveryStatus).where(
                col(DeliveryStatus.provider_message_id).in_({pid for _, pid in sent})))
            statuses = {(st.provider, st.provider_message_id): st for st in found}
        out = []
        for m in rows:
            item = {"id": m.id, "conversation_id": m.conversation_id,
                    "provider_message_id": m.provider_message_id,
                    "direction": m.direction, "kind": m.kind, "body": m.body,
                    "agent_id": m.agent_id, "at": m.occurred_at, "send_state": m.send_state,
                    "error": m.error, "media_path": m.media_path}
            st = statuses.get((m.provider, m.provider_message_id or ""))
            if st is not None and m.direction == "outbound":
                item.update(delivery=RANK_NAME.get(st.rank, "sent"), failed=st.failed,
                            error_code=st.error_code)
            out.append(item)
        return out

    async def window(self, conversation_id: str) -> WindowInfo:
        conv = await self.get(conversation_id)
        return self._window(conv)

    def _window(self, conv: Conversation) -> WindowInfo:
        if conv.channel not in WINDOW_CHANNELS:
            return WindowInfo(False, True, None, None)
        last = _aware(conv.last_inbound_at)
        if last is None:
            return WindowInfo(True, False, None, "the customer has not written yet: only a "
                                                 "template can be sent")
        closes = last + WINDOW
        if self.clock.now() >= closes:
            return WindowInfo(True, False, closes, "outside the WhatsApp 24-hour window: only "
                                                   "a template can be sent")
        return WindowInfo(True, True, closes, None)

    async def reply(self, conversation_id: str, agent_id: str, text: str) -> ReplyResult:
        """Send the agent's text. Refusals come back as `ok=False` with the reason."""
        if not text or not text.strip():
            return ReplyResult(False, reason="the message is empty")
        try:
            conv = await self.get(conversation_id)
        except ConversationError as exc:
            return ReplyResult(False, reason=str(exc))
        refusal = self._may_send(conv, agent_id)
        if refusal:
            return ReplyResult(False, reason=refusal)
        win = self._window(conv)
        if not win.open:
            return ReplyResult(False, reason=win.reason)
        return await self._send(conv, agent_id, text, None)

    async def send_template(self, conversation_id: str, agent_id: str, name: str,
                            language: str = "en", components: list[Any] | None = None,
                            ) -> ReplyResult:
        """A WhatsApp template: allowed outside the 24-hour window."""
        try:
            conv = await self.get(conversation_id)
        except ConversationError as exc:
            return ReplyResult(False, reason=str(exc))
        if conv.channel != "whatsapp":
            return ReplyResult(False, reason="templates exist only on WhatsApp")
        refusal = self._may_send(conv, agent_id)
        if refusal:
            return ReplyResult(False, reason=refusal)
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        if components:
            template["components"] = components
        return await self._send(conv, agent_id, f"[template {name}]", template)

    def _may_send(self, conv: Conversation, agent_id: str) -> str | None:
        if conv.state == "ended":
            return "the conversation has ended"
        if conv.agent_id and conv.agent_id != agent_id:
            return f"the conversation is assigned to {conv.agent_id}"
        if conv.state != "assigned":
            return "the conversation is not assigned to you yet"
        return None

    async def send_system(self, conversation_id: str, text: str, *,
                          interactive: dict[str, Any] | None = None,
                          template: dict[str, Any] | None = None) -> ReplyResult:
        """A message from Centrale itself (a survey question, its thanks), also after the
        conversation ended; the 24-hour rule still holds (a template outside it)."""
        try:
            conv = await self.get(conversation_id)
        except ConversationError as exc:
            return ReplyResult(False, reason=str(exc))
        if template is None and not (win := self._window(conv)).open:
            return ReplyResult(False, reason=win.reason)
        return await self._send(conv, SYSTEM_SENDER, text, template, interactive)

    async def _send(self, conv: Conversation, agent_id: str, text: str,
                    template: dict[str, Any] | None,
                    interactive: dict[str, Any] | None = None) -> ReplyResult:
        provider = self._provider_for(conv)
        adapter = self.adapters.get(provider)
        if adapter is None:
            return ReplyResult(False, reason=f"channel {conv.channel} is not enabled")
        now = self.clock.now()
        kind = "template" if template else "interactive" if interactive else "text"
        payload: dict[str, Any] = ({"template": template} if template else
                                   {"interactive": interactive} if interactive else {})
        msg = DigitalMessage(id=new_id(), provider=provider, channel=conv.channel,
                             direction="outbound", kind=kind,
                             sender=agent_id, body=text, payload=payload,
                             conversation_id=conv.id, case_id=conv.case_id,
                             customer_id=conv.customer_id,
                             agent_id=None if agent_id == SYSTEM_SENDER else agent_id,
                             send_state="pending", occurred_at=now, created_at=now)
        async with self.db.session() as s:
            s.add(msg)
            await s.commit()
        try:
            outcome = await adapter.send(conv, msg, template)
        except SendRefused as exc:
            await self._finish_send(msg, "refused", None, str(exc))
            return ReplyResult(False, msg.id, reason=str(exc))
        except Exception as exc:
            log.exception("sending %s on %s failed", msg.id, conv.channel)
            await self._finish_send(msg, "failed", None, f"send failed: {exc}")
            return ReplyResult(False, msg.id, reason=f"the message could not be sent: {exc}")
        await self._finish_send(msg, outcome.state, outcome.provider_message_id, outcome.error)
        if outcome.state != "sent":
            return ReplyResult(False, msg.id, reason=outcome.error or "the message was not sent")
        await self.cases.add_timeline(
            conv.case_id, kind="message", channel=conv.channel, direction="outbound", body=text,
            meta={"message_id": msg.id, "agent_id": agent_id, "conversation_id": conv.id,
                  "provider_message_id": outcome.provider_message_id},
            dedup_key=f"msg:out:{msg.id}")
        await self.bus.publish(Event("conversation.message", {
            **self._conv_payload(conv), "message_id": msg.id, "direction": "outbound",
            "kind": msg.kind, "body": text[:1000]}))
        return ReplyResult(True, msg.id, outcome.provider_message_id)

    async def _finish_send(self, msg: DigitalMessage, state: str, provider_id: str | None,
                           error: str | None) -> None:
        metrics.message_send_outcome(msg.channel, state)
        if state == "failed":
            self.send_failures[msg.channel] = self.send_failures.get(msg.channel, 0) + 1
        elif state == "sent":
            self.send_failures[msg.channel] = 0
        async with self.db.session() as s:
            stored = await s.get(DigitalMessage, msg.id)
            if stored is None:
                return
            stored.send_state, stored.error = state, (error or None) and error[:300]
            if provider_id:
                stored.provider_message_id = provider_id
            s.add(stored)
            await s.commit()
        msg.send_state, msg.provider_message_id = state, provider_id

    def _provider_for(self, conv: Conversation) -> str:
        if conv.channel == "sms" or (conv.channel == "whatsapp"
                                     and conv.contact.startswith("whatsapp:")):
            return "twilio"
        return conv.channel

    async def typing(self, conversation_id: str, agent_id: str) -> None:
        conv = await self.get(conversation_id)
        await self.bus.publish(Event("conversation.typing", {
            **self._conv_payload(conv), "from": "agent", "agent_id": agent_id}))

    @staticmethod
    def _conv_payload(conv: Conversation) -> dict[str, Any]:
        return {"conversation_id": conv.id, "channel": conv.channel, "case_id": conv.case_id,
                "customer_id": conv.customer_id, "queue_id": conv.queue_id,
                "state": conv.state, "agent_id": conv.agent_id, "task_id": conv.task_id}
