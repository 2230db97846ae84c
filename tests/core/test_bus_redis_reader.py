"""The Redis bus's shared broadcast reader and its acknowledgement sent with the next
read (issue 22, screen-pop latency across nodes): what each must keep of the behaviour
of one XREAD loop per listener and one XACK round trip per entry."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest

from core.bus import inline_listener
from core.bus.redis import RedisStreamsBus
from core.events import Event
from tests.waiting import wait_until


@pytest.fixture
async def bus(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStreamsBus]:
    b = RedisStreamsBus(redis_url, prefix=redis_prefix, redeliver_after=0.3, block_ms=50)
    await b.start()
    yield b
    await b.stop()


async def test_listeners_share_one_reader_and_a_slow_one_holds_up_no_other(
        bus: RedisStreamsBus) -> None:
    release = asyncio.Event()
    slow: list[int] = []
    fast: list[int] = []

    async def slow_listener(e: Event) -> None:
        await release.wait()  # a config reload, say
        slow.append(e.payload["n"])

    async def fast_listener(e: Event) -> None:
        fast.append(e.payload["n"])

    await bus.subscribe("t.*", slow_listener)
    await bus.subscribe("t.*", fast_listener)
    await bus.subscribe("other", fast_listener)
    for n in range(5):
        await bus.publish(Event("t.x", {"n": n}))
    await wait_until(lambda: fast == [0, 1, 2, 3, 4])
    assert slow == []
    # one reading loop for the node's three listeners
    assert len(bus._listeners) == 3
    assert bus._broadcast is not None and not bus._broadcast.task.done()  # type: ignore[union-attr]
    release.set()
    await wait_until(lambda: slow == [0, 1, 2, 3, 4])  # its own events, in stream order


async def test_a_listener_gets_what_is_read_after_it_subscribed(
        bus: RedisStreamsBus) -> None:
    first: list[int] = []
    late: list[int] = []

    async def a(e: Event) -> None:
        first.append(e.payload["n"])

    async def b(e: Event) -> None:
        late.append(e.payload["n"])

    await bus.subscribe("*", a)
    await bus.publish(Event("t", {"n": 1}))
    await wait_until(lambda: first == [1])
    await bus.subscribe("*", b)
    await bus.publish(Event("t", {"n": 2}))
    await wait_until(lambda: first == [1, 2] and late == [2])


async def test_an_inline_listener_that_fails_does_not_stop_the_reader(
        bus: RedisStreamsBus) -> None:
    got: list[int] = []

    @inline_listener
    async def fragile(e: Event) -> None:
        if e.payload["n"] == 1:
            raise RuntimeError("listener bug")
        got.append(e.payload["n"])

    await bus.subscribe("*", fragile)
    for n in range(3):
        await bus.publish(Event("t", {"n": n}))
    await wait_until(lambda: got == [0, 2])


async def test_the_reader_stops_with_its_last_listener_and_starts_again(
        bus: RedisStreamsBus) -> None:
    got: list[int] = []

    async def listener(e: Event) -> None:
        got.append(e.payload["n"])

    sub = await bus.subscribe("*", listener)
    await bus.publish(Event("t", {"n": 1}))
    await wait_until(lambda: got == [1])
    await sub.close()
    assert bus._broadcast is None
    await bus.publish(Event("t", {"n": 2}))  # nobody listens: not delivered later
    await bus.subscribe("*", listener)
    await bus.publish(Event("t", {"n": 3}))
    await wait_until(lambda: got == [1, 3])


async def test_a_handled_entry_is_acknowledged_without_waiting_for_the_next_event(
        bus: RedisStreamsBus) -> None:
    """The XACK rides on the next XREADGROUP, which follows at once: nothing stays
    pending until more traffic comes."""
    got: list[int] = []

    async def handler(e: Event) -> None:
        got.append(e.payload["n"])

    await bus.subscribe("*", handler, group="acks", consumer="c1")
    await bus.publish(Event("t", {"n": 1}))
    await wait_until(lambda: got == [1])
    for _ in range(100):
        if await bus.pending_count("acks") == 0:
            break
        await asyncio.sleep(0.02)
    assert await bus.pending_count("acks") == 0


async def test_a_consumer_closed_right_after_handling_leaves_nothing_pending(
        bus: RedisStreamsBus) -> None:
    got: list[int] = []
    gate = asyncio.Event()

    async def handler(e: Event) -> None:
        got.append(e.payload["n"])
        gate.set()

    sub = await bus.subscribe("*", handler, group="closing", consumer="c1")
    await bus.publish(Event("t", {"n": 1}))
    await gate.wait()
    await sub.close()  # cancelled between the handler and its next read, or in it
    assert got == [1]
    assert await bus.pending_count("closing") == 0


async def test_a_failed_entry_stays_pending_behind_acknowledged_ones(
        bus: RedisStreamsBus) -> None:
    got: list[int] = []

    async def handler(e: Event) -> None:
        if e.payload["n"] == 2:
            raise RuntimeError("handler crashed")
        got.append(e.payload["n"])

    await bus.subscribe("*", handler, group="mixed", consumer="c1")
    for n in range(4):
        await bus.publish(Event("t", {"n": n}))
    await wait_until(lambda: got[:3] == [0, 1, 3])
    await asyncio.sleep(0.1)
    pending = await bus.redis.xpending_range(bus.stream, "mixed", min="-", max="+",
                                             count=10)
    assert len(pending) == 1  # only n=2: the others were acknowledged


@pytest.mark.parametrize("from_start", [False, True], ids=["shared-reader", "own-reader"])
async def test_an_entry_that_is_no_event_is_passed_over_and_reading_goes_on(
        bus: RedisStreamsBus, from_start: bool) -> None:
    """Something else writing to the stream (another version, a hand-typed XADD) must
    not end a reader: the node's websockets would go deaf to the other nodes."""
    got: list[int] = []

    async def listener(e: Event) -> None:
        got.append(e.payload["n"])

    await bus.subscribe("*", listener, from_start=from_start)
    await bus.publish(Event("t", {"n": 1}))
    await wait_until(lambda: got == [1])
    await bus.redis.xadd(bus.stream, {"x": "no event field"})
    await bus.redis.xadd(bus.stream, {"e": "{not json"})
    await bus.publish(Event("t", {"n": 2}))
    await wait_until(lambda: got == [1, 2])


def own_tcp_ports() -> set[int]:
    """Local ports of this process's TCP sockets (its fds' inodes in /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                cols = line.split()
                if cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.parametrize("lean_reads", [True, False], ids=["lean", "redis-py"])
async def test_group_reads_survive_a_lost_connection_on_either_client(
        bus: RedisStreamsBus, lean_reads: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group's XREADGROUP (and the XACK riding on it) goes over a lean connection of
    its own (core.bus.lean) by default: events are handled and acknowledged as through
    redis-py, and when Redis drops the connection the group reconnects, replays what it
    had pending and goes on."""
    from core.bus import lean

    calls: list[str] = []
    real_call = lean.LeanConnection.call

    async def counting(self: lean.LeanConnection, *commands: tuple) -> list:
        calls.extend(str(c[0]) for c in commands)
        return await real_call(self, *commands)

    monkeypatch.setattr(lean.LeanConnection, "call", counting)
    bus.lean_reads = lean_reads
    got: list[int] = []

    async def handler(e: Event) -> None:
        got.append(e.payload["n"])

    await bus.subscribe("t", handler, group="lossy", consumer="c1")
    for n in range(3):
        await bus.publish(Event("t", {"n": n}))
    await wait_until(lambda: got == [0, 1, 2])
    assert ("XREADGROUP" in calls) is lean_reads and ("XACK" in calls) is lean_reads
    # Redis drops this process's connections that block in XREADGROUP (only ours: the
    # server is shared with other tests).
    ports = own_tcp_ports()
    killed = 0
    for client in await bus.redis.client_list():
        if client["cmd"] == "xreadgroup" and int(client["addr"].rsplit(":", 1)[1]) in ports:
            killed += await bus.redis.client_kill_filter(_id=client["id"])
    assert killed == 1  # the group's one blocking read
    for n in range(3, 6):
        await bus.publish(Event("t", {"n": n}))
    await wait_until(lambda: sorted(set(got)) == list(range(6)), timeout=10)
    for _ in range(200):
        if await bus.pending_count("lossy") == 0:
            break
        await asyncio.sleep(0.05)
    assert await bus.pending_count("lossy") == 0


async def test_a_lean_read_times_out_as_the_client_would(redis_url: str) -> None:
    """The client's socket timeout applies on the lean connection too: a read that
    Redis does not answer in time fails (the group's loop then retries and replays)
    instead of waiting for ever on a connection that may be gone."""
    from redis.asyncio import Redis
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from core.bus.lean import LeanConnection

    client = Redis.from_url(redis_url, decode_responses=True, socket_timeout=0.2)
    conn = LeanConnection(client)
    try:
        assert await conn.call(("PING",)) == ["PONG"]
        with pytest.raises(RedisTimeoutError):
            await conn.call(("BLPOP", f"lean-timeout-{os.getpid()}", 2))
        assert await conn.call(("PING",)) == ["PONG"]  # a new connection
    finally:
        await conn.close()
        await client.aclose()
