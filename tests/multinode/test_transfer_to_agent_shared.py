"""Transfer to a named agent on the shared ACD state (two engines, one real Redis):
the directed offer is confirmed in Redis like any other, a request from the node that
does not own the task is forwarded to the owner, and an agent busy on another node
is skipped (Redis refuses the claim) for the next one in line."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from config.schema import CentraleConfig
from core.clock import ManualClock
from queues.engine import AcdEngine
from queues.ports import CollectingPublisher
from queues.shared import SharedAcdState

pytestmark = pytest.mark.redis


def site() -> CentraleConfig:
    cap = {"voice": 1, "whatsapp": 2, "webchat": 1, "email": 0, "sms": 0}
    return CentraleConfig.model_validate({
        "queues": [{"id": "sales", "channels": ["voice", "whatsapp"], "rona_seconds": 20,
                    "wrap_up_seconds": 5, "rona_action": "stay_available"}],
        "agents": [{"id": a, "name": a, "queues": ["sales"], "capacity": cap}
                   for a in ("a1", "a2", "a3")],
    })


@pytest.fixture
async def nodes(make_state: Callable[..., SharedAcdState]
                ) -> AsyncIterator[list[tuple[AcdEngine, CollectingPublisher,
                                              SharedAcdState]]]:
    clock = ManualClock()
    made, servers = [], []
    for name in ("node-a", "node-b"):
        state = make_state(name)
        bus = CollectingPublisher()
        engine = AcdEngine(site(), clock, bus, shared=state, stats_interval_seconds=1e9)
        await state.join()
        for agent_id, capacity, exclusive in engine.shared_agents():
            await state.set_agent(agent_id, capacity, voice_exclusive=exclusive)
        servers.append(asyncio.create_task(state.serve_calls(engine.serve_forwarded)))
        made.append((engine, bus, state))
    yield made
    for server in servers:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


async def test_an_agent_full_on_another_node_is_refused_by_redis_and_skipped(
        nodes: list[Any]) -> None:
    (a, a_bus, a_state), (b, _b_bus, _b_state) = nodes
    await a.agent_login("a1", "s1")
    await a.sync_remote()
    task = await a.enqueue(queue_id="sales", channel="voice", case_id="k", customer_id="c")
    (offer,) = a.offers_for("a1")
    await a.accept(offer.id, "a1")
    # a2 (desktop on node B) takes two chats there: full for whatsapp and, voice being
    # exclusive, for voice.
    await b.agent_login("a2", "s2")
    await a.sync_remote()  # node A sees a2 available and free ...
    for n in range(2):  # ... and then not any more, but has not synced again
        chat = await b.enqueue(queue_id="sales", channel="whatsapp", case_id=f"k{n}",
                               customer_id="c")
        (mine,) = [o for o in b.offers_for("a2") if o.task_id == chat.id]
        await b.accept(mine.id, "a2")
    refused = a.refused
    # The request lands on node B, which does not own the task: forwarded to node A.
    moved = await b.transfer_to_agent(task.id, "a2", by="a1", reason="needs a specialist")
    assert moved.status == "offered"
    assert a.refused == refused + 1  # Redis refused the claim for a2 ...
    offered = [e.payload for e in a_bus.of("task.offered")]
    assert offered[-1]["agent_id"] == "a1"  # ... and the task went back to the giver
    assert offered[-1]["attributes"]["transfer"] == {
        "by": "a1", "reason": "needs a specialist", "to_agent_id": "a2",
        "at": offered[-1]["attributes"]["transfer"]["at"]}
    assert not a._ops and not a._unpublished  # every decision confirmed in Redis
    assert task.id in (await a_state.agent_load("a1")).slots
    assert task.id not in (await a_state.agent_load("a2")).slots


async def test_directed_offer_accepted_on_the_other_node(nodes: list[Any]) -> None:
    (a, a_bus, a_state), (b, _b_bus, _b_state) = nodes
    await a.agent_login("a1", "s1")
    await a.sync_remote()
    task = await a.enqueue(queue_id="sales", channel="voice", case_id="k", customer_id="c")
    (offer,) = a.offers_for("a1")
    await a.accept(offer.id, "a1")
    await b.agent_login("a3", "s3")
    await a.sync_remote()
    await a.transfer_to_agent(task.id, "a3", by="a1", reason="billing")
    offered = a_bus.of("task.offered")[-1].payload
    assert offered["agent_id"] == "a3"
    accepted = await b.accept(offered["offer_id"], "a3")  # forwarded to the owner
    assert accepted.agent_id == "a3" and a.task(task.id).status == "assigned"
    assert (await a_state.agent_load("a1")).total == 0
    assert task.id in (await a_state.agent_load("a3")).slots
