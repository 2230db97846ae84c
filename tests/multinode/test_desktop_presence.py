"""Presence follows the agent across nodes: two `centrale run` processes sharing a real
PostgreSQL and a real Redis. Anna's desktop moves from node A to node B (a reconnect to
the other node, as after a load balancer's choice): node A, where her desktop closed,
must not put her not-ready nor reject her offers — she is connected, on B. When her
desktop closes on B too, she goes not-ready "disconnected" as on one node."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from core.events import Event
from tests.multinode.nodes import NodeProcess, login, redis_database, run_centrale
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# The bus's stream key is fixed (`centrale:events`): a Redis database of its own.
REDIS_DB_URL = os.environ.get("CENTRALE_TEST_PRESENCE_REDIS_URL",
                              "redis://127.0.0.1:6379/12")
STREAM = "centrale:events"
OFFER_GRACE, GRACE = 1, 2  # seconds; the demo's are 2 and 10


@pytest.fixture
async def shared_redis() -> AsyncIterator[aioredis.Redis]:
    async with redis_database(REDIS_DB_URL) as client:
        yield client


@pytest.fixture
def short_grace_config(site_config: Path) -> Path:
    path = site_config / "centrale.yaml"
    text = path.read_text()
    assert "\n  web:\n" in text
    path.write_text(text.replace(
        "\n  web:\n", f"\n  web:\n    disconnect_grace_seconds: {GRACE}\n"
                      f"    offer_disconnect_grace_seconds: {OFFER_GRACE}\n", 1))
    return site_config


async def wait_for_event(redis: aioredis.Redis, topic: str, since: str,
                         timeout: float = 30, **want: Any) -> tuple[str, Event]:
    """The first event of `topic` after stream id `since` whose payload has `want`."""
    last = since
    async with asyncio.timeout(timeout):
        while True:
            for _stream, entries in await redis.xread({STREAM: last}, block=1000) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    event = Event.from_json(fields["e"])
                    if event.topic == topic and all(event.payload.get(k) == v
                                                     for k, v in want.items()):
                        return entry_id, event


async def wait_for_log(node: NodeProcess, text: str, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            for line in node.log.read_text().splitlines():
                if text in line:
                    return json.loads(line)
            await asyncio.sleep(0.1)


async def presence_entry(redis: aioredis.Redis, node: str, timeout: float = 15) -> None:
    """Until `node` holds an entry in anna's presence set (written as the socket opens)."""
    for _ in range(int(timeout / 0.05)):
        if await redis.zscore("centrale:desktop:presence:anna", node):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{node} wrote no presence entry for anna")


async def stream_end(redis: aioredis.Redis) -> str:
    last = await redis.xrevrange(STREAM, count=1)
    return last[0][0] if last else "0"


async def anna_on(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """Anna's row of the supervisor's agent list on that node."""
    async with http.get(f"{base}/api/agents") as resp:
        assert resp.status == 200, await resp.text()
        return next(a for a in (await resp.json())["agents"] if a["id"] == "anna")


async def anna_synced_on(http: aiohttp.ClientSession, base: str, state: str,
                         timeout: float = 10) -> dict[str, Any]:
    """Anna's row on a node that did not make the change, once that node shows `state`.
    A node's view of an agent changed elsewhere follows the shared state within a sync
    round (0.25 s); `timeout` only bounds a busy machine."""
    async def shows() -> bool:
        return (await anna_on(http, base))["state"] == state

    await wait_until(shows, timeout=timeout)
    return await anna_on(http, base)


async def test_a_desktop_moved_to_another_node_keeps_the_agent_available(
        tmp_path: Path, short_grace_config: Path, fresh_database_url: str,
        shared_redis: aioredis.Redis) -> None:
    env = {"CENTRALE_DATABASE_URL": fresh_database_url, "CENTRALE_REDIS_URL": REDIS_DB_URL}
    upgraded = await asyncio.to_thread(run_centrale, "db", "upgrade", "--config",
                                       str(short_grace_config), env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    nodes = [NodeProcess(name, tmp_path / name, short_grace_config, env)
             for name in ("node-a", "node-b")]
    try:
        for node in nodes:
            await asyncio.to_thread(node.wait_listening)
        a, b = nodes
        anna_jar, sam_jar = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=anna_jar) as anna, \
                aiohttp.ClientSession(cookie_jar=sam_jar) as sam:
            await login(anna, a.url, "anna")
            await login(sam, a.url, "sam")
            ws_a = await anna.ws_connect(f"{a.url}/ws", heartbeat=10)
            assert json.loads((await ws_a.receive(timeout=15)).data)["type"] == "hello"
            async with anna.get(f"{a.url}/api/me") as resp:
                token = (await resp.json())["csrf_token"]
            async with anna.post(f"{a.url}/api/agents/anna/state", json={"state": "available"},
                                 headers={"X-CSRF-Token": token}) as resp:
                assert resp.status == 200, await resp.text()
            # Node A records her desktop in the cluster's presence directory.
            await presence_entry(shared_redis, "node-a")
            # Node B learns she is available from the shared state at its next sync
            # round and says so itself; that event must come before the mark below
            # (on a loaded machine B's round came after it once, in a CI run).
            await wait_for_event(shared_redis, "agent.state_changed", "0", agent_id="anna",
                                 state="available", node_id="node-b")

            # The desktop moves: open on B, then the socket on A closes.
            ws_b = await anna.ws_connect(f"{b.url}/ws", heartbeat=10)
            assert json.loads((await ws_b.receive(timeout=15)).data)["type"] == "hello"
            await presence_entry(shared_redis, "node-b")
            mark = await stream_end(shared_redis)
            await ws_a.close()

            # Node A's grace runs out; it finds her desktop on B and leaves her be.
            moved = await wait_for_log(a, "has a desktop on another node")
            assert "anna" in json.dumps(moved), moved
            assert await shared_redis.zscore("centrale:desktop:presence:anna",
                                             "node-a") is None
            # After the longer grace too, on either node's view of the shared ACD:
            await asyncio.sleep(GRACE + 0.5)  # the not-ready timer's time, to show it is off
            for node in nodes:
                row = await anna_on(sam, node.url)
                assert row["state"] == "available" and row["reason"] is None, (node.name, row)
            events = await shared_redis.xrange(STREAM, min=f"({mark}", max="+")
            assert not [e for _, f in events
                        if (e := Event.from_json(f["e"])).topic == "agent.state_changed"
                        and e.payload.get("agent_id") == "anna"], "anna's state changed"

            # Her last desktop (on B) closes: not-ready "disconnected", as on one node.
            await ws_b.close()
            _, changed = await wait_for_event(shared_redis, "agent.state_changed", mark,
                                              agent_id="anna", state="not_ready")
            assert changed.payload.get("reason") == "disconnected", changed.payload
            # B acted: its view has the change at once. A learns it from the shared
            # state on its next sync round (every 0.25 s), not from the event.
            row = await anna_on(sam, b.url)
            assert row["state"] == "not_ready" and row["reason"] == "disconnected", row
            row = await anna_synced_on(sam, a.url, "not_ready")
            assert row["reason"] == "disconnected", row
    finally:
        for node in nodes:
            node.stop()
