"""What the voice service of the node that adopts a dead node's voice tasks does with
them (two `AcdEngine`s on the real Redis, in one process; the voice backends are
stand-ins that record what they are asked):

- a caller on the dead node's embedded SIP core is gone with that process: the
  adopter ends the task as abandoned (and notes it on the case) instead of offering
  a call nobody can connect, or, when an agent was talking, puts the agent in wrap-up;
- a caller on Asterisk still waits in the holding context: the adopter takes the call
  over from the task's attributes and rings the offered agent through its own AMI
  client; the answer accepts the offer. A caller already talking to an agent stays
  with them, and the hang-up its AMI client reports puts the agent in wrap-up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from config.schema import CentraleConfig
from core.clock import ManualClock
from core.events import Event
from pbx_bridge.asterisk import AgentOffer, RingOutcome, RingResult
from pbx_bridge.asterisk.events import ChannelHungUp
from pbx_bridge.voice import VoiceService
from queues.engine import AcdEngine
from queues.ports import CollectingPublisher
from queues.shared import SharedAcdState
from queues.shared.wiring import SharedAcdService

pytestmark = pytest.mark.redis


def site() -> CentraleConfig:
    return CentraleConfig.model_validate({
        "queues": [{"id": "sales", "channels": ["voice"], "rona_seconds": 20,
                    "wrap_up_seconds": 5}],
        "agents": [{"id": "anna", "name": "Anna", "queues": ["sales"],
                    "sip": {"username": "1001", "password": "x"}}],
    })


class Timeline:
    """The one thing the voice service asks `cases` for here."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def add_timeline(self, case_id: str, **entry: Any) -> None:
        self.entries.append({"case_id": case_id, **entry})


class Asterisk:
    """AsteriskBackend's surface the voice service uses to ring an agent."""

    def __init__(self) -> None:
        self.rung: list[AgentOffer] = []

    def agent_endpoint(self, username: str) -> str:
        return f"PJSIP/{username}"

    async def ring_agent(self, offer: AgentOffer) -> RingResult:
        self.rung.append(offer)
        return RingResult(RingOutcome.ANSWERED, agent_channel="PJSIP/1001-00000001")


class Node:
    def __init__(self, name: str, clock: ManualClock, state: SharedAcdState) -> None:
        self.bus = CollectingPublisher()
        self.engine = AcdEngine(site(), clock, self.bus, shared=state,
                                stats_interval_seconds=1e9)
        self.state = state
        self.cases = Timeline()
        self.voice = VoiceService(config=site(), cases=self.cases, acd=self.engine,  # type: ignore[arg-type]
                                  bus=self.bus, clock=clock, node_id=name)  # type: ignore[arg-type]
        self.fed = 0

    async def feed_voice(self) -> None:
        """Hand the voice service what the engine published since the last call (the
        bus subscription of a running node), and let what it spawned finish."""
        while self.fed < len(self.bus.events):
            event: Event = self.bus.events[self.fed]
            self.fed += 1
            await self.voice.on_task_event(event)
        for task in list(self.voice._background):
            await task


@pytest.fixture
async def two_nodes(make_state: Callable[..., SharedAcdState]
                    ) -> AsyncIterator[tuple[Node, Node, SharedAcdService]]:
    clock = ManualClock()
    a = Node("node-a", clock, make_state("node-a", node_ttl_ms=600))
    b = Node("node-b", clock, make_state("node-b", node_ttl_ms=600))
    await a.state.join()
    for agent_id, capacity, exclusive in a.engine.shared_agents():
        await a.state.set_agent(agent_id, capacity, voice_exclusive=exclusive)
    server = asyncio.create_task(a.state.serve_calls(a.engine.serve_forwarded))
    service = SharedAcdService(b.engine, b.state, takeover_interval_s=0.2)
    await service.start()
    try:
        yield a, b, service
    finally:
        await service.stop()
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


async def kill_and_adopt(a: Node, b: Node, task_id: str) -> Event:
    """Node A stops renewing its lease (as after kill -9); B adopts within seconds."""
    await a.state.keeper.stop(release=False)
    async with asyncio.timeout(10):
        while True:
            adopted = [e for e in b.bus.of("task.adopted") if e.payload["task_id"] == task_id]
            if adopted:
                return adopted[0]
            await asyncio.sleep(0.05)


async def test_a_dead_nodes_sip_caller_is_abandoned_by_the_adopter(two_nodes: Any) -> None:
    a, b, _service = two_nodes
    task = await a.engine.enqueue(queue_id="sales", channel="voice", case_id="k1",
                                  customer_id="c1", attributes={
                                      "call_id": "call-1", "backend": "sip",
                                      "caller": "+31201234567"})
    adopted = await kill_and_adopt(a, b, task.id)
    assert adopted.payload["status"] == "waiting"
    await b.feed_voice()
    assert b.engine.task(task.id).status == "abandoned"
    assert [e.payload["task_id"] for e in b.bus.of("task.abandoned")] == [task.id]
    (lost,) = b.cases.entries
    assert lost["case_id"] == "k1" and lost["meta"]["event"] == "lost"
    assert "node-a" in lost["body"]
    # Nothing is offered for it any more when an agent becomes available.
    await b.engine.agent_login("anna", "s-anna")
    await b.engine.set_state("anna", "available")
    assert not b.bus.of("task.offered")


async def test_a_dead_nodes_sip_call_in_progress_ends_in_wrap_up_on_the_adopter(
        two_nodes: Any) -> None:
    a, b, _service = two_nodes
    await a.engine.agent_login("anna", "s-anna")
    await a.engine.set_state("anna", "available")
    task = await a.engine.enqueue(queue_id="sales", channel="voice", case_id="k4",
                                  customer_id="c4", attributes={
                                      "call_id": "call-4", "backend": "sip"})
    (offer,) = a.engine.offers_for("anna")
    await a.engine.accept(offer.id, "anna")  # anna talks; the media runs through node A
    adopted = await kill_and_adopt(a, b, task.id)
    assert adopted.payload["status"] == "assigned"
    await b.feed_voice()
    assert b.engine.task(task.id).status == "wrap_up"  # anna is not stuck on a dead call
    (completed,) = b.bus.of("task.completed")
    assert completed.payload["agent_id"] == "anna"
    assert b.cases.entries[0]["meta"]["event"] == "lost"


async def test_a_dead_nodes_asterisk_caller_is_rung_through_by_the_adopter(
        two_nodes: Any) -> None:
    a, b, _service = two_nodes
    b.voice.asterisk = Asterisk()
    task = await a.engine.enqueue(queue_id="sales", channel="voice", case_id="k2",
                                  customer_id="c2", attributes={
                                      "call_id": "call-2", "backend": "asterisk",
                                      "caller": "+31201234568"})
    await kill_and_adopt(a, b, task.id)
    await b.feed_voice()
    assert b.engine.task(task.id).status == "waiting"  # Asterisk still holds the caller
    await b.engine.agent_login("anna", "s-anna")
    await b.engine.set_state("anna", "available")
    await b.feed_voice()
    (rung,) = b.voice.asterisk.rung
    assert (rung.call_id, rung.endpoint, rung.task_id, rung.agent_id) == (
        "call-2", "PJSIP/1001", task.id, "anna")
    assert b.engine.task(task.id).status == "assigned"
    assert b.engine.task(task.id).agent_id == "anna"
    assert b.voice.calls_by_task[task.id].agent_id == "anna"
    assert not b.cases.entries  # not a lost call


async def test_a_dead_nodes_asterisk_call_in_progress_ends_in_wrap_up_on_the_adopter(
        two_nodes: Any) -> None:
    a, b, _service = two_nodes
    b.voice.asterisk = Asterisk()
    await a.engine.agent_login("anna", "s-anna")
    await a.engine.set_state("anna", "available")
    task = await a.engine.enqueue(queue_id="sales", channel="voice", case_id="k3",
                                  customer_id="c3", attributes={
                                      "call_id": "call-3", "backend": "asterisk",
                                      "caller": "+31201234569"})
    (offer,) = a.engine.offers_for("anna")
    await a.engine.accept(offer.id, "anna")  # anna talks to the caller
    adopted = await kill_and_adopt(a, b, task.id)
    assert adopted.payload["status"] == "assigned"
    await b.feed_voice()
    assert b.engine.task(task.id).agent_id == "anna"
    assert not b.voice.asterisk.rung  # nobody rings: the call is with anna already
    await b.voice.on_asterisk_event(ChannelHungUp(
        uniqueid="1700000000.7", channel="PJSIP/trunk-00000007", linkedid="1700000000.7",
        call_id="call-3"))
    assert b.engine.task(task.id).status == "wrap_up"
    (ended,) = b.cases.entries
    assert ended["meta"]["event"] == "ended" and ended["meta"]["agent_id"] == "anna"
