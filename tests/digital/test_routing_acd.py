"""Digital conversations through the real ACD engine (queues.AcdEngine): offered to a
logged-in agent within chat capacity, accepted, replied to, wrapped up — and the next
contact from the same person prefers the same agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from config.schema import Agent, WrapUpCode
from core.bus import InMemoryBus
from core.db import Database
from core.events import Event
from digital.tables import Conversation
from queues import AcdEngine

from .conftest import FakeGraph, Stack, make_config, make_stack, wa_payload, wa_text


@pytest.fixture
async def acd_stack(database: Database, tmp_path: Path, graph: FakeGraph,
                    ) -> AsyncIterator[tuple[Stack, AcdEngine, list[Event]]]:
    base = make_config(graph_url=graph.base_url)
    config = base.model_copy(update={
        "agents": [Agent(id="ann", name="Ann", queues=["support", "chat"],
                         capacity={"whatsapp": 2})],
        "wrap_up_codes": [WrapUpCode(id="resolved")]})
    engines: list[AcdEngine] = []

    def factory(cfg: Any, clock: Any, bus: Any) -> AcdEngine:
        engines.append(AcdEngine(cfg, clock, bus, tick_interval_seconds=0.02))
        return engines[-1]

    bus = InMemoryBus()
    offers: list[Event] = []

    async def keep(event: Event) -> None:
        offers.append(event)

    await bus.subscribe("task.offered", keep)
    st, client = await make_stack(database, tmp_path, config, acd_factory=factory, bus=bus)
    graph.webhook_url = str(client.make_url("/webhooks/whatsapp"))
    engine = engines[0]
    loop = asyncio.create_task(engine.run())
    try:
        yield st, engine, offers
    finally:
        await client.close()
        await st.digital.stop()
        await engine.stop()
        loop.cancel()


async def offer_for(offers: list[Event], task_id: str) -> Event:
    for _ in range(250):
        for event in offers:
            if event.payload["task_id"] == task_id:
                return event
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} was never offered")


async def test_whatsapp_conversation_through_the_real_acd(
        acd_stack: tuple[Stack, AcdEngine, list[Event]], graph: FakeGraph) -> None:
    stack, engine, offers = acd_stack
    await engine.agent_login("ann", "session-1")
    for wa in ("31611110001", "31611110002"):
        await stack.post_wa(wa_payload([wa_text(wa, "hello")]))
    await stack.drain()
    async with stack.db.session() as s:
        convs = list(await s.exec(select(Conversation).order_by(Conversation.created_at)))
    assert [engine.task(c.task_id).channel for c in convs] == ["whatsapp", "whatsapp"]
    # chat capacity 2: both are offered to ann at once
    first, second = [await offer_for(offers, c.task_id) for c in convs]
    assert {first.payload["agent_id"], second.payload["agent_id"]} == {"ann"}
    await engine.accept(first.payload["offer_id"], "ann")
    conv = await stack.conversation_state(convs[0].id, "assigned")
    assert conv.agent_id == "ann"
    result = await stack.conversations.reply(conv.id, "ann", "Hi, Ann here")
    assert result.ok, result.reason and graph.sent
    await engine.complete(conv.task_id, "ann", wrap_up_code="resolved")
    ended = await stack.conversation_state(conv.id, "ended")
    assert ended.wrap_up_code == "resolved"
    # the same person writes again: a new task on the same case, preferring ann
    await stack.post_wa(wa_payload([wa_text("31611110001", "one more question")]))
    await stack.drain()
    async with stack.db.session() as s:
        newest = (await s.exec(select(Conversation).where(
            Conversation.contact == "31611110001", Conversation.state != "ended"))).one()
    task = engine.task(newest.task_id)
    assert task.case_id == conv.case_id and task.preferred_agent_id == "ann"
