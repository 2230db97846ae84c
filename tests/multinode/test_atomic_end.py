"""What Redis ran and the node never heard back (issue 22): a task's end and its
announcement in one atomic step — the script that ends the task in Redis adds the
task's events up to its end to the event stream itself — and a registration whose
reply was lost, taken back by the retry.

Found by the nemesis test: an agent ended a wrap-up, the owner confirmed the end in
Redis and was killed before it published `task.wrap_up_ended`. The task's keys were
gone, so the adopter found nothing to restate, and the agent's desktop showed a wrap-up
that could never end. These tests play that death (the flush's publish never happens),
a reply lost after Redis ran the end (the retry must not announce twice), and the
normal path (every event once, in order)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from config.schema import CentraleConfig
from core.bus.redis import RedisStreamsBus
from core.clock import ManualClock
from core.events import Event
from queues.engine import AcdEngine
from queues.shared import SharedAcdState

pytestmark = pytest.mark.redis


def site() -> CentraleConfig:
    return CentraleConfig.model_validate({
        "queues": [{"id": "sales", "channels": ["whatsapp"], "rona_seconds": 20,
                    "wrap_up_seconds": 30}],
        "agents": [{"id": "a1", "name": "a1", "queues": ["sales"],
                    "capacity": {"voice": 1, "whatsapp": 2}}],
    })


class Node:
    """One engine on shared state, publishing on the Redis bus of the same server."""

    def __init__(self, engine: AcdEngine, bus: RedisStreamsBus) -> None:
        self.engine, self.bus = engine, bus
        self.dropped: list[str] = []

    def die_before_publishing(self) -> None:
        """What a kill -9 right after Redis confirmed the flush's changes leaves: the
        events the flush would have published next never reach the stream."""
        async def lost(event: Event) -> str:
            self.dropped.append(event.topic)
            return ""
        self.bus.publish = lost  # type: ignore[method-assign]

    async def stream(self, task_id: str) -> list[str]:
        client = aioredis.Redis.from_url(self.bus.url, decode_responses=True)
        try:
            entries = await client.xrange(self.bus.stream)
        finally:
            await client.aclose()
        events = [Event.from_json(fields["e"]) for _id, fields in entries]
        return [e.topic for e in events if e.payload.get("task_id") == task_id]


@pytest.fixture
async def node(redis_url: str, redis_prefix: str,
               make_state: Callable[..., SharedAcdState]) -> AsyncIterator[Callable[..., Any]]:
    made: list[RedisStreamsBus] = []

    async def make(*, atomic: bool = True) -> Node:
        bus = RedisStreamsBus(redis_url, prefix=redis_prefix, node_id="node-a")
        await bus.start()
        made.append(bus)
        state = make_state("node-a")
        engine = AcdEngine(site(), ManualClock(), bus, shared=state,
                           stats_interval_seconds=1e9)
        if atomic:
            engine.announce_ends_through(bus.atomic_stream)
        await state.join()
        for agent_id, capacity, exclusive in engine.shared_agents():
            await state.set_agent(agent_id, capacity, voice_exclusive=exclusive)
        await engine.agent_login("a1", "s1")
        return Node(engine, bus)

    yield make
    for bus in made:
        await bus.stop()


async def in_wrap_up(n: Node) -> str:
    task = await n.engine.enqueue(queue_id="sales", channel="whatsapp", case_id="k",
                                  customer_id="c")
    (offer,) = n.engine.offers_for("a1")
    await n.engine.accept(offer.id, "a1")
    await n.engine.complete(task.id, "a1")
    return task.id


async def test_an_end_confirmed_by_a_node_that_dies_before_publishing_is_announced(
        node: Callable[..., Any]) -> None:
    n = await node()
    task_id = await in_wrap_up(n)
    n.die_before_publishing()
    await n.engine.end_wrap_up("a1", task_id=task_id)
    # The flush had only the agent's event left to publish: the script sent the end.
    assert n.dropped == ["agent.state_changed"]
    assert await n.stream(task_id) == ["task.enqueued", "task.offered", "task.accepted",
                                       "task.completed", "task.wrap_up_ended"]


async def test_without_the_atomic_end_that_death_loses_the_end(
        node: Callable[..., Any]) -> None:
    """The same death with the end published by the flush (what a node whose bus is
    not on the ACD's Redis still does): the end is lost. Why the script carries it."""
    n = await node(atomic=False)
    task_id = await in_wrap_up(n)
    n.die_before_publishing()
    await n.engine.end_wrap_up("a1", task_id=task_id)
    assert n.dropped == ["task.wrap_up_ended", "agent.state_changed"]
    assert "task.wrap_up_ended" not in await n.stream(task_id)


async def test_an_end_whose_reply_was_lost_is_announced_once(
        node: Callable[..., Any]) -> None:
    n = await node()
    task_id = await in_wrap_up(n)
    engine = n.engine
    real = engine._run_batch

    async def reply_lost(ops: list[tuple[str, list[Any]]]) -> list[Any]:
        replies = await real(ops)  # Redis ran it ...
        if any(name == "end" for name, _args in ops):
            engine._run_batch = real  # type: ignore[method-assign]
            raise ConnectionError("connection reset after the reply was sent")  # ... lost
        return replies

    engine._run_batch = reply_lost  # type: ignore[method-assign]
    await engine.end_wrap_up("a1", task_id=task_id)
    assert engine.routing_paused  # the reply was lost: the end waits to be confirmed
    await engine.sync_remote()  # the next flush retries it: "ended", by this node
    assert not engine.routing_paused and not engine._ops
    assert await n.stream(task_id) == ["task.enqueued", "task.offered", "task.accepted",
                                       "task.completed", "task.wrap_up_ended"]


async def test_abandoned_while_offered_announces_the_withdrawal_before_the_end(
        node: Callable[..., Any]) -> None:
    """The task's events of the same flush ride with the end, in their order."""
    n = await node()
    task = await n.engine.enqueue(queue_id="sales", channel="whatsapp", case_id="k",
                                  customer_id="c")
    assert n.engine.offers_for("a1")
    n.die_before_publishing()
    await n.engine.abandon(task.id)
    assert await n.stream(task.id) == ["task.enqueued", "task.offered",
                                       "task.offer_withdrawn", "task.abandoned"]
    assert n.dropped == ["agent.state_changed"]  # an agent's event: the flush's to send


async def test_an_end_in_the_batch_of_its_own_unconfirmed_offer_goes_by_the_flush(
        node: Callable[..., Any]) -> None:
    """Offered and abandoned in one flush: the offer is tentative until Redis confirms
    the claim (a refused one must never reach the stream), so that end is published by
    the flush, after the confirmation, and every event is on the stream once, in order."""
    import asyncio

    n = await node()
    engine = n.engine
    seen: list[list[str]] = []
    real = engine._run_batch

    async def spy(ops: list[tuple[str, list[Any]]]) -> list[Any]:
        seen.append([name for name, _args in ops])
        return await real(ops)

    engine._run_batch = spy  # type: ignore[method-assign]
    task_id = "t-one-flush"

    async def abandon_once_known() -> None:
        for _turn in range(1000):  # loop turns, not time: the enqueue runs meanwhile
            if task_id in {t["task_id"] for t in engine.snapshot()["tasks"]}:
                break
            await asyncio.sleep(0)
        await engine.abandon(task_id)

    await asyncio.gather(
        engine.enqueue(queue_id="sales", channel="whatsapp", case_id="k", customer_id="c",
                       task_id=task_id),
        abandon_once_known())
    assert any("claim" in names and "end" in names for names in seen), seen
    assert await n.stream(task_id) == ["task.enqueued", "task.offered",
                                       "task.offer_withdrawn", "task.abandoned"]


async def test_a_registration_whose_reply_was_lost_is_taken_back_by_the_retry(
        node: Callable[..., Any]) -> None:
    """A conversation's task (id = conversation id) registered in Redis, which then
    died before answering: the inbox retries the enqueue when Redis is back. Refused as
    a duplicate, the task stayed registered and held by no engine, and the conversation
    waited for good (the nemesis found it). The retry takes it back and it is offered."""
    from queues import errors as E

    n = await node()
    engine = n.engine
    real = engine._run_batch

    async def reply_lost(ops: list[tuple[str, list[Any]]]) -> list[Any]:
        await real(ops)  # Redis ran it ...
        engine._run_batch = real  # type: ignore[method-assign]
        raise ConnectionError("Redis died before it answered")  # ... and never answered

    engine._run_batch = reply_lost  # type: ignore[method-assign]
    with pytest.raises(E.RemoteNodeError):
        await engine.enqueue(queue_id="sales", channel="whatsapp", case_id="k",
                             customer_id="c", task_id="conv-1")
    task = await engine.enqueue(queue_id="sales", channel="whatsapp", case_id="k",
                                customer_id="c", task_id="conv-1")
    assert task.status == "offered" and engine.offers_for("a1")
    # Once answered, a second registration of the id is the duplicate it always was.
    with pytest.raises(E.DuplicateTaskError):
        await engine.enqueue(queue_id="sales", channel="whatsapp", case_id="k",
                             customer_id="c", task_id="conv-1")


async def test_another_nodes_task_is_not_taken_by_a_retry(
        node: Callable[..., Any], make_state: Callable[..., SharedAcdState]) -> None:
    n = await node()
    other = make_state("node-b")
    await other.join()
    assert (await other.register_task("conv-2", "whatsapp", {})).ok
    n.engine._unanswered_registrations["conv-2"] = None  # as if its reply had been lost
    from queues import errors as E

    with pytest.raises(E.DuplicateTaskError):
        await n.engine.enqueue(queue_id="sales", channel="whatsapp", case_id="k",
                               customer_id="c", task_id="conv-2")
