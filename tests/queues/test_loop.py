"""The engine with the real in-process bus and its own loop."""

from __future__ import annotations

import asyncio

import pytest
from acd_helpers import agent

from config.schema import CentraleConfig
from core.bus import InMemoryBus
from core.clock import ManualClock
from core.events import Event
from queues.engine import AcdEngine
from queues.store import InMemoryAcdStore

pytestmark = pytest.mark.asyncio

CONFIG = CentraleConfig.model_validate({
    "queues": [{"id": "q", "rona_seconds": 10, "wrap_up_seconds": 0}],
    "agents": [agent("a1", ["q"]), agent("a2", ["q"])],
})


async def test_a_listener_may_call_back_into_the_engine_while_it_publishes() -> None:
    """The in-process bus runs broadcast listeners inside publish(); a desktop that
    accepts on task.offered re-enters the engine. That must neither deadlock nor
    reorder events."""
    bus = InMemoryBus()
    engine = AcdEngine(CONFIG, ManualClock(), bus, InMemoryAcdStore())
    seen: list[str] = []

    async def auto_accept(event: Event) -> None:
        seen.append(event.topic)
        if event.topic == "task.offered":
            await engine.accept(event.payload["offer_id"], event.payload["agent_id"])

    await bus.subscribe("*", auto_accept)
    await engine.agent_login("a1", "s")
    task = await asyncio.wait_for(
        engine.enqueue(queue_id="q", channel="voice", case_id="k", customer_id="c"), 5)
    assert engine.task(task.id).status == "assigned"
    assert seen.index("task.offered") < seen.index("task.accepted")
    await bus.stop()


async def test_run_processes_timers_until_stopped() -> None:
    clock = ManualClock()
    bus = InMemoryBus()
    received: list[Event] = []
    missed = asyncio.Event()

    async def keep(event: Event) -> None:
        received.append(event)
        if event.topic == "task.missed":
            missed.set()

    await bus.subscribe("task.*", keep)
    engine = AcdEngine(CONFIG, clock, bus, tick_interval_seconds=0.01)
    await engine.agent_login("a1", "s")
    await engine.enqueue(queue_id="q", channel="voice", case_id="k", customer_id="c")
    runner = asyncio.create_task(engine.run())
    clock.advance(10)  # a1 does not answer: RONA, then the offer goes to... nobody else
    await asyncio.wait_for(missed.wait(), 5)  # a generous bound, not a timing assertion
    await engine.agent_login("a2", "s2")
    assert any(e.topic == "task.offered" and e.payload["agent_id"] == "a2" for e in received)
    await engine.stop()
    await asyncio.wait_for(runner, 5)
    await bus.stop()


async def test_the_engine_satisfies_the_queueing_port() -> None:
    from queues.ports import QueueingPort

    port: QueueingPort = AcdEngine(CONFIG, ManualClock(), InMemoryBus())
    assert callable(port.enqueue) and callable(port.request_callback)
