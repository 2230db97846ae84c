"""One contract, two buses: the in-process bus and Redis Streams behave the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.bus import EventBus, InMemoryBus
from core.bus.redis import RedisStreamsBus
from core.events import Event


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "memory":
        b: EventBus = InMemoryBus(redeliver_after=0.3)
    else:
        b = RedisStreamsBus(request.getfixturevalue("redis_url"),
                            prefix=request.getfixturevalue("redis_prefix"),
                            redeliver_after=0.3, block_ms=50)
    await b.start()
    yield b
    await b.stop()


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_group_receives_events_in_order(bus: EventBus) -> None:
    got: list[str] = []

    async def handler(event: Event) -> None:
        got.append(event.payload["n"])

    await bus.subscribe("task.*", handler, group="acd")
    for n in range(20):
        await bus.publish(Event("task.enqueued", {"n": n}))
    await bus.publish(Event("case.opened", {"n": "not for acd"}))
    await wait_for(lambda: len(got) == 20)
    assert got == list(range(20))


async def test_each_group_sees_every_event_once(bus: EventBus) -> None:
    a: list[int] = []
    b: list[int] = []

    async def ha(e: Event) -> None:
        a.append(e.payload["n"])

    async def hb(e: Event) -> None:
        b.append(e.payload["n"])

    await bus.subscribe("*", ha, group="web")
    await bus.subscribe("*", hb, group="reports")
    for n in range(5):
        await bus.publish(Event("x.y", {"n": n}))
    await wait_for(lambda: len(a) == 5 and len(b) == 5)
    await asyncio.sleep(0.1)
    assert a == b == list(range(5))


async def test_two_consumers_of_one_group_share_the_work(bus: EventBus) -> None:
    seen: list[tuple[str, int]] = []

    def handler_for(name: str):  # type: ignore[no-untyped-def]
        async def handler(e: Event) -> None:
            seen.append((name, e.payload["n"]))
            await asyncio.sleep(0)
        return handler

    await bus.subscribe("*", handler_for("node-a"), group="acd", consumer="node-a")
    await bus.subscribe("*", handler_for("node-b"), group="acd", consumer="node-b")
    for n in range(40):
        await bus.publish(Event("t", {"n": n}))
    await wait_for(lambda: len(seen) >= 40)
    await asyncio.sleep(0.2)
    numbers = sorted(n for _, n in seen)
    assert numbers == list(range(40)), "each event exactly once across the group"


async def test_unacknowledged_event_is_replayed_after_restart(bus: EventBus) -> None:
    attempts: list[int] = []
    fail = True

    async def flaky(e: Event) -> None:
        attempts.append(e.payload["n"])
        if fail:
            raise RuntimeError("handler crashed before acknowledging")

    sub = await bus.subscribe("*", flaky, group="g", consumer="c1")
    await bus.publish(Event("t", {"n": 1}))
    await wait_for(lambda: attempts == [1])
    await sub.close()  # the consumer "dies" with the event unacknowledged

    fail = False
    await bus.subscribe("*", flaky, group="g", consumer="c1")  # restart
    await wait_for(lambda: len(attempts) >= 2)
    assert attempts[:2] == [1, 1]
    if isinstance(bus, InMemoryBus):
        assert bus.pending_count("g") == 0
    else:
        assert isinstance(bus, RedisStreamsBus)
        await wait_for(lambda: True)
        assert await bus.pending_count("g") == 0


async def test_acknowledged_event_is_not_replayed(bus: EventBus) -> None:
    got: list[int] = []

    async def ok(e: Event) -> None:
        got.append(e.payload["n"])

    sub = await bus.subscribe("*", ok, group="g2", consumer="c1")
    await bus.publish(Event("t", {"n": 7}))
    await wait_for(lambda: got == [7])
    await sub.close()
    await bus.subscribe("*", ok, group="g2", consumer="c1")
    await asyncio.sleep(0.4)
    assert got == [7]


async def test_dead_consumers_pending_is_claimed_by_another(bus: EventBus) -> None:
    got: list[tuple[str, int]] = []

    async def dies(e: Event) -> None:
        raise RuntimeError("node A crashes mid-handling")

    async def survives(e: Event) -> None:
        got.append(("b", e.payload["n"]))

    sub_a = await bus.subscribe("*", dies, group="g3", consumer="node-a")
    await bus.publish(Event("t", {"n": 42}))
    await asyncio.sleep(0.2)
    await sub_a.close()
    await bus.subscribe("*", survives, group="g3", consumer="node-b")
    await wait_for(lambda: ("b", 42) in got, timeout=5)


async def test_broadcast_listener_sees_events_without_group(bus: EventBus) -> None:
    got: list[str] = []

    async def listener(e: Event) -> None:
        got.append(e.topic)

    await bus.subscribe("offer.*", listener)
    await bus.publish(Event("offer.created", {}))
    await bus.publish(Event("other", {}))
    await wait_for(lambda: got == ["offer.created"])


async def test_listeners_added_and_closed_between_events_of_one_topic(
        bus: EventBus) -> None:
    """The memory bus remembers which listeners take a topic: one added or closed
    after that topic was published must be seen by the next event of it."""
    first: list[str] = []
    second: list[str] = []

    async def one(e: Event) -> None:
        first.append(e.payload["n"])

    async def two(e: Event) -> None:
        second.append(e.payload["n"])

    sub1 = await bus.subscribe("offer.*", one)
    await bus.publish(Event("offer.created", {"n": "a"}))
    await wait_for(lambda: first == ["a"])
    sub2 = await bus.subscribe("*", two)
    await bus.publish(Event("offer.created", {"n": "b"}))
    await wait_for(lambda: first == ["a", "b"] and second == ["b"])
    await sub1.close()
    await bus.publish(Event("offer.created", {"n": "c"}))
    await wait_for(lambda: second == ["b", "c"])
    await sub2.close()
    await bus.publish(Event("offer.created", {"n": "d"}))
    await asyncio.sleep(0.2)
    assert first == ["a", "b"] and second == ["b", "c"]


async def test_batch_consumer_gets_matching_events_in_order_once(bus: EventBus) -> None:
    batches: list[list[int]] = []

    async def handler(events: list[Event]) -> None:
        batches.append([e.payload["n"] for e in events])
        await asyncio.sleep(0.01)  # events published meanwhile make the next batch

    await bus.subscribe_batch("task.*", handler, group="gb", max_batch=50)
    for n in range(60):
        await bus.publish(Event("task.enqueued", {"n": n}))
        await bus.publish(Event("case.opened", {"n": -1}))
    await wait_for(lambda: sum(len(b) for b in batches) == 60)
    assert [n for b in batches for n in b] == list(range(60))
    assert all(0 < len(b) <= 50 for b in batches)
    assert any(len(b) > 1 for b in batches)  # batched, not one by one
    await asyncio.sleep(0.4)  # nothing is delivered again once acknowledged
    assert sum(len(b) for b in batches) == 60


async def test_failed_batch_stays_pending_and_is_delivered_again(bus: EventBus) -> None:
    attempts: list[list[int]] = []

    async def flaky(events: list[Event]) -> None:
        attempts.append([e.payload["n"] for e in events])
        if len(attempts) == 1:
            raise RuntimeError("the batch's transaction failed")

    await bus.publish(Event("t", {"n": 0}))  # the group starts after this one
    await bus.subscribe_batch("*", flaky, group="gf", consumer="c1")
    for n in (1, 2, 3):
        await bus.publish(Event("t", {"n": n}))
    await wait_for(lambda: sorted(n for a in attempts[1:] for n in a) == [1, 2, 3])
    assert sorted(attempts[0]) == sorted(set(attempts[0]))
    assert set(attempts[0]) <= {1, 2, 3}
    if isinstance(bus, InMemoryBus):
        assert bus.pending_count("gf") == 0
    else:
        assert isinstance(bus, RedisStreamsBus)
        await wait_for(lambda: True)
        assert await bus.pending_count("gf") == 0


async def test_a_group_passes_over_other_topics_and_keeps_what_it_left(
        bus: EventBus) -> None:
    """Events no consumer of a group takes are acknowledged for it (its lag goes to 0,
    with or without a wake-up per event); once its consumer is gone, what is published
    meanwhile waits for the next consumer of the group, in order."""
    got: list[int] = []

    async def handler(e: Event) -> None:
        got.append(e.payload["n"])

    sub = await bus.subscribe("task.*", handler, group="acd")
    for n in range(30):
        await bus.publish(Event("timeline.added", {"n": -1}))
        if n % 10 == 0:
            await bus.publish(Event("task.enqueued", {"n": n}))
    await wait_for(lambda: len(got) == 3)
    lag: dict[str, int] = {}

    async def lag_is_zero() -> bool:
        lag.update(await bus.lag())
        return lag.get("acd") == 0

    for _ in range(500):
        if await lag_is_zero():
            break
        await asyncio.sleep(0.01)
    assert lag["acd"] == 0 and got == [0, 10, 20]

    await sub.close()
    await bus.publish(Event("timeline.added", {"n": -1}))
    await bus.publish(Event("task.enqueued", {"n": 30}))
    await bus.subscribe("task.*", handler, group="acd")
    await wait_for(lambda: len(got) == 4)
    assert got == [0, 10, 20, 30]


async def test_memory_bus_drops_what_every_group_acknowledged() -> None:
    """The in-process stream does not grow with the node's life: events every group has
    handled are dropped; an event a group has not acknowledged is kept."""
    from core.bus.memory import TRIM_EVERY

    bus = InMemoryBus(redeliver_after=30)
    await bus.start()
    got: list[int] = []
    stuck: list[int] = []

    async def ok(e: Event) -> None:
        got.append(e.payload["n"])

    async def fails_on_first(e: Event) -> None:
        if e.payload["n"] == 0:
            stuck.append(0)
            raise RuntimeError("left pending")

    try:
        await bus.subscribe("*", ok, group="fast")
        for n in range(3 * TRIM_EVERY):
            await bus.publish(Event("t", {"n": n}))
            if n % 100 == 0:
                await asyncio.sleep(0)
        await bus.publish(Event("t", {"n": -1}))  # position 3 * TRIM_EVERY: a trim
        await wait_for(lambda: len(got) == 3 * TRIM_EVERY + 1)
        await bus.publish(Event("t", {"n": -2}))
        for _ in range(TRIM_EVERY - 1):
            await bus.publish(Event("t", {"n": -3}))
        await wait_for(lambda: len(got) == 4 * TRIM_EVERY + 1)
        assert bus.stream_length() <= TRIM_EVERY + 1  # not 4,097
        assert await bus.lag() == {"fast": 0}

        sub = await bus.subscribe("*", fails_on_first, group="slow")
        await bus.publish(Event("t", {"n": 0}))
        await wait_for(lambda: stuck == [0])
        for _ in range(2 * TRIM_EVERY):
            await bus.publish(Event("t", {"n": 1}))
        await wait_for(lambda: bus.pending_count("slow") == 1
                       and len(got) == 6 * TRIM_EVERY + 2)
        assert bus.stream_length() > 2 * TRIM_EVERY  # the pending event holds the tail
        await sub.close()
    finally:
        await bus.stop()


async def test_event_round_trips_through_json() -> None:
    e = Event("case.opened", {"case_id": "k1", "nested": {"a": [1, 2]}})
    assert Event.from_json(e.to_json()) == e


# ---------------------------------------------------------------- request / reply
@pytest.fixture(params=["memory", "redis"])
async def node_buses(request: pytest.FixtureRequest) -> AsyncIterator[tuple[EventBus, EventBus]]:
    """(requester, server): two nodes' buses on Redis; one process's bus in memory."""
    if request.param == "memory":
        one = InMemoryBus()
        await one.start()
        yield one, one
        await one.stop()
        return
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    a = RedisStreamsBus(url, prefix=prefix, node_id="node-a")
    b = RedisStreamsBus(url, prefix=prefix, node_id="node-b")
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_a_request_is_answered_by_the_named_node(
        node_buses: tuple[EventBus, EventBus]) -> None:
    """The reply comes back even when the handler takes longer than the ack timeout
    (it acknowledged at once), and concurrent requests do not wait for each other."""
    requester, server = node_buses
    release = asyncio.Event()

    async def handler(payload: dict) -> dict:  # type: ignore[type-arg]
        if payload["slow"]:
            await release.wait()
        return {"echo": payload["n"] * 2}

    await server.serve("svc", handler)
    slow = asyncio.ensure_future(requester.request("node-b", "svc", {"n": 1, "slow": True},
                                                   ack_timeout=0.5, timeout=10))
    fast = await requester.request("node-b", "svc", {"n": 21, "slow": False},
                                   ack_timeout=2, timeout=10)
    assert fast == {"echo": 42}
    await asyncio.sleep(0.7)  # past the slow one's ack timeout
    release.set()
    assert await asyncio.wait_for(slow, 10) == {"echo": 2}


async def test_a_request_nobody_serves_is_none_within_the_ack_timeout(
        node_buses: tuple[EventBus, EventBus]) -> None:
    requester, _server = node_buses
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await requester.request("node-b", "nobody", {"n": 1}, ack_timeout=0.5) is None
    assert loop.time() - started < 3
