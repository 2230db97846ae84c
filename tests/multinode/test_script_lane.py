"""The batch script's lean connection (queues.shared.lane) against a real Redis of the
test's own: it authenticates and selects the URL's database as redis-py would, keeps
the replies of overlapping calls with their callers, loads the script again after a
Redis restart (NOSCRIPT), fails the calls of a lost connection with redis-py's error
and reconnects for the next one — and never runs a batch twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from queues.shared import SharedAcdState
from queues.shared.lane import ScriptLane
from tests.multinode.private_redis import PrivateRedis

pytestmark = [pytest.mark.redis]

ECHO = "return {ARGV[1], redis.call('INCR', 'lane-calls')}"


async def test_lane_answers_in_order_and_survives_a_restart(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "redis", password="s3cret")
    server.start()
    client = Redis.from_url(server.url.replace("/0", "/3"), decode_responses=True)
    lane = ScriptLane(client, ECHO)
    try:
        assert ScriptLane.usable(client)
        replies = await asyncio.gather(*(lane.evalsha(f"call-{i}") for i in range(50)))
        assert [r[0] for r in replies] == [f"call-{i}" for i in range(50)]
        assert sorted(r[1] for r in replies) == list(range(1, 51))
        assert await client.get("lane-calls") == "50"  # database 3, as the URL says

        server.kill9()
        with pytest.raises((RedisConnectionError, ConnectionError)):
            await lane.evalsha("while-down")
        server.start()  # AOF kept the counter, the script cache is empty: NOSCRIPT
        assert await lane.evalsha("after") == ["after", 51]
        assert await client.get("lane-calls") == "51"  # the failed call never ran
    finally:
        await lane.close()
        await client.aclose()
        server.stop()


async def test_shared_state_uses_the_lane_for_batches(redis_url: str, acd_prefix: str
                                                      ) -> None:
    state = SharedAcdState.from_url(redis_url, "lane-node", prefix=acd_prefix)
    try:
        await state.join()
        assert state.lane is not None
        await state.set_agent("ann", {"whatsapp": 2}, presence="available")
        replies, revisions = await state.run_batch([
            ("register", ["t1", "whatsapp", 0, "{}"]), ("claim", ["t1", "ann", "o1"])])
        assert replies == ["ok", "ok"]
        assert [r[0] for r in revisions] == ["ann"]
        assert state.lane._proto is not None  # the batch went over the lane
        load = await state.agent_load("ann")
        assert load.load == {"whatsapp": 1} and load.slots == {"t1": "whatsapp"}
    finally:
        await state.leave()
        keys = [k async for k in state.redis.scan_iter(f"{acd_prefix}*")]
        if keys:
            await state.redis.delete(*keys)
        await state.redis.aclose()
