"""Routing writes a message in one transaction and marks it processed only after the ACD
took the task: a failure (or a crash) in between leaves the row in the inbox, and
processing it again ends with one timeline entry, one conversation and one task."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import update
from sqlmodel import col, func, select

from core.events import Event
from digital.tables import Conversation, DigitalMessage

from .conftest import Stack, wa_payload, wa_text


async def _row(stack: Stack, provider_id: str) -> DigitalMessage:
    async with stack.db.session() as s:
        return (await s.exec(select(DigitalMessage).where(
            DigitalMessage.provider_message_id == provider_id))).one()


async def _conversations(stack: Stack) -> int:
    async with stack.db.session() as s:
        return int((await s.exec(select(func.count()).select_from(Conversation))).one())


async def test_acd_failure_after_the_routing_commit_is_healed_by_the_retry(
        stack: Stack) -> None:
    seen: list[dict[str, Any]] = []
    real_enqueue = stack.acd.enqueue

    async def enqueue_failing_once(**kw: Any) -> str:
        if not seen:  # what a crash at this point would leave behind
            row = await _row(stack, "wamid.R1")
            seen.append({"processed": row.processed, "case_id": row.case_id,
                         "conversation_id": row.conversation_id,
                         "timeline": len(await stack.cases.timeline(kw["case_id"])),
                         "conversations": await _conversations(stack)})
            raise ConnectionError("ACD unreachable")
        return await real_enqueue(**kw)

    stack.acd.enqueue = enqueue_failing_once  # type: ignore[method-assign]
    assert (await stack.post_wa(wa_payload([wa_text(body="hello", msg_id="wamid.R1")]))
            ).status == 200
    await stack.drain()

    assert seen == [{"processed": False, "case_id": seen[0]["case_id"],
                     "conversation_id": seen[0]["conversation_id"], "timeline": 1,
                     "conversations": 1}]
    assert seen[0]["case_id"] and seen[0]["conversation_id"]
    row = await _row(stack, "wamid.R1")
    assert row.processed and row.error is None
    assert len(stack.acd.tasks) == 1 and stack.acd.ids == [row.conversation_id]
    assert [e.body for e in await stack.cases.timeline(row.case_id or "")] == ["hello"]
    assert await _conversations(stack) == 1


async def test_a_processed_message_processed_again_changes_nothing(stack: Stack) -> None:
    assert (await stack.post_wa(wa_payload([wa_text(body="once", msg_id="wamid.R2")]))
            ).status == 200
    await stack.drain()
    first = await _row(stack, "wamid.R2")
    async with stack.db.session() as s:  # as if the node died before the last commit
        await s.exec(update(DigitalMessage).where(  # type: ignore[call-overload]
            col(DigitalMessage.id) == first.id).values(processed=False))
        await s.commit()
    await stack.drain()

    again = await _row(stack, "wamid.R2")
    assert again.processed
    assert (again.case_id, again.conversation_id) == (first.case_id, first.conversation_id)
    assert len(stack.acd.tasks) == 1  # the second enqueue was refused as a duplicate
    assert [e.body for e in await stack.cases.timeline(first.case_id or "")] == ["once"]
    assert await _conversations(stack) == 1


async def test_a_stale_rerun_after_the_conversation_ended_opens_nothing(stack: Stack) -> None:
    """A node paused past its inbox claim resumes with the row as it read it (not
    processed) after another node routed the message and the conversation ended since:
    the row, read again under a lock, says it is done — no second conversation, no
    second task (issue 22)."""
    assert (await stack.post_wa(wa_payload([wa_text(body="late", msg_id="wamid.R3")]))
            ).status == 200
    stale = await _row(stack, "wamid.R3")  # what the paused node holds in memory
    assert not stale.processed
    await stack.drain()
    routed = await _row(stack, "wamid.R3")
    assert routed.processed and routed.conversation_id
    await stack.conversations.end(routed.conversation_id, wrap_up_code="resolved")

    await stack.conversations.process_inbound(stale)

    assert await _conversations(stack) == 1
    assert len(stack.acd.tasks) == 1
    assert [e.body for e in await stack.cases.timeline(routed.case_id or "")] == ["late"]


async def test_a_rerun_of_a_recorded_message_keeps_its_conversation(stack: Stack) -> None:
    """Recorded (conversation chosen) but not queued when its node died, and the
    conversation ended meanwhile: the message is marked done, nothing new is opened."""
    assert (await stack.post_wa(wa_payload([wa_text(body="first", msg_id="wamid.R4")]))
            ).status == 200
    await stack.drain()
    row = await _row(stack, "wamid.R4")
    await stack.conversations.end(row.conversation_id or "", wrap_up_code="resolved")
    async with stack.db.session() as s:  # as if the node died before queueing
        await s.exec(update(DigitalMessage).where(  # type: ignore[call-overload]
            col(DigitalMessage.id) == row.id).values(processed=False))
        await s.commit()
    await stack.drain()
    again = await _row(stack, "wamid.R4")
    assert again.processed and again.conversation_id == row.conversation_id
    assert await _conversations(stack) == 1 and len(stack.acd.tasks) == 1


async def test_a_redis_outage_longer_than_the_retries_sets_nothing_aside(
        stack: Stack) -> None:
    """The shared ACD state cannot register the task (Redis down) for longer than the
    inbox's three tries: the message waits and is routed once Redis answers — it is not
    set aside as a poison message (issue 22)."""
    from queues.errors import RemoteNodeError

    real_enqueue = stack.acd.enqueue
    refused: list[str] = []

    async def enqueue_during_outage(**kw: Any) -> str:
        if len(refused) < 5:  # more than InboxProcessor.max_failures
            refused.append(kw["task_id"])
            raise RemoteNodeError("the shared ACD state did not register the task: "
                                  "ConnectionError('Redis is down')")
        return await real_enqueue(**kw)

    stack.acd.enqueue = enqueue_during_outage  # type: ignore[method-assign]
    stack.digital.processor.max_failures = 3
    assert (await stack.post_wa(wa_payload([wa_text(body="wait", msg_id="wamid.R5")]))
            ).status == 200
    for _ in range(200):
        await stack.drain()
        row = await _row(stack, "wamid.R5")
        if row.processed:
            break
    assert len(refused) == 5
    assert row.processed and row.error is None, row.error
    assert stack.acd.ids == [row.conversation_id]
    assert await _conversations(stack) == 1


async def test_a_backlog_is_marked_processed_in_one_statement_per_pass(stack: Stack) -> None:
    """Five messages waiting in the inbox are routed in one pass; their `processed`
    marks are committed together at its end (one UPDATE), and each message ends with
    one conversation and one task as when they came one by one."""
    from sqlalchemy import event

    marks: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().startswith("UPDATE digital_message SET processed"):
            marks.append(statement)

    processor = stack.digital.processor
    await processor.stop()  # the backlog builds up while nothing routes
    for n in range(5):
        payload = wa_payload([wa_text(body=f"backlog {n}", msg_id=f"wamid.B{n}",
                                      wa_id=f"3161100000{n}")])
        assert (await stack.post_wa(payload)).status == 200
    event.listen(stack.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        await processor.start()
        await stack.drain()
    finally:
        event.remove(stack.db.engine.sync_engine, "before_cursor_execute", count)
    rows = [await _row(stack, f"wamid.B{n}") for n in range(5)]
    assert all(r.processed and r.conversation_id for r in rows)
    assert len(marks) == 1
    assert sorted(stack.acd.ids) == sorted(r.conversation_id for r in rows)
    assert await _conversations(stack) == 5


async def _assigned_conversation(stack: Stack, msg_id: str) -> Any:
    assert (await stack.post_wa(wa_payload([wa_text(body="help", msg_id=msg_id)]))
            ).status == 200
    await stack.drain()
    row = await _row(stack, msg_id)
    await stack.acd.accept(stack.acd.ids[-1], "agent-ann")
    return await stack.conversation_state(row.conversation_id or "", "assigned")


async def test_an_adopted_wrap_up_ends_the_conversation_its_dead_node_did_not(
        stack: Stack) -> None:
    """The agent completed the chat; its node confirmed the wrap-up in Redis and died
    before publishing `task.completed`. The adopter's `task.adopted` says the task is in
    wrap-up: the conversation ends (it was read as an accept and stayed open for good,
    which the nemesis test caught as a conversation never quiet), and the wrap-up's end
    later brings the code (issue 22)."""
    conv = await _assigned_conversation(stack, "wamid.A1")
    await stack.bus.publish(Event("task.adopted", {
        "task_id": conv.task_id, "agent_id": "agent-ann", "status": "wrap_up",
        "channel": "whatsapp", "from_node": "node-dead"}))
    ended = await stack.conversation_state(conv.id, "ended")
    assert ended.agent_id == "agent-ann" and ended.wrap_up_code is None
    await stack.bus.publish(Event("task.wrap_up_ended", {
        "task_id": conv.task_id, "agent_id": "agent-ann", "wrap_up_code": "resolved"}))
    for _ in range(250):
        if (await stack.conversations.get(conv.id)).wrap_up_code == "resolved":
            break
        await asyncio.sleep(0.02)
    again = await stack.conversations.get(conv.id)
    assert (again.state, again.wrap_up_code, again.ended_at) == (
        "ended", "resolved", ended.ended_at)


async def test_an_adopted_accept_changes_nothing_the_conversation_saw(stack: Stack) -> None:
    seen: list[Event] = []
    await stack.bus.subscribe("conversation.*", _collect(seen), group="test-a2")
    conv = await _assigned_conversation(stack, "wamid.A2")
    await stack.bus.publish(Event("task.adopted", {
        "task_id": conv.task_id, "agent_id": "agent-ann", "status": "assigned",
        "channel": "whatsapp", "from_node": "node-dead"}))
    await stack.acd.complete(conv.task_id, "resolved")
    ended = await stack.conversation_state(conv.id, "ended")
    assert ended.wrap_up_code == "resolved"
    def assigned_or_ended() -> list[str]:
        return [e.topic for e in seen
                if e.topic in ("conversation.assigned", "conversation.ended")]

    for _ in range(250):  # published after the commit; a second assignment comes first
        if "conversation.ended" in assigned_or_ended():
            break
        await asyncio.sleep(0.02)
    assert assigned_or_ended() == ["conversation.assigned", "conversation.ended"]


async def test_a_wrap_up_end_whose_completion_was_lost_ends_the_conversation(
        stack: Stack) -> None:
    """No adoption restated it (a node paused past its lease resumed and published only
    the end): the end of the task's wrap-up still ends its conversation."""
    conv = await _assigned_conversation(stack, "wamid.A3")
    await stack.bus.publish(Event("task.wrap_up_ended", {
        "task_id": conv.task_id, "agent_id": "agent-ann", "wrap_up_code": "sold"}))
    ended = await stack.conversation_state(conv.id, "ended")
    assert ended.wrap_up_code == "sold"


def _collect(into: list[Event]) -> Any:
    async def handler(event: Event) -> None:
        into.append(event)
    return handler
