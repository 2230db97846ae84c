"""Two `centrale run` processes sharing a real PostgreSQL and a real Redis — the
docker/compose.yaml topology without Docker: both healthy, a session opened on node A is
valid on node B, an agent-state change made through node A's ACD reaches a supervisor's
websocket held by node B, and kill -9 of node A leaves node B serving (API, ACD and that
same websocket)."""

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

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# The bus's stream key is fixed (`centrale:events`), so the nodes get a Redis database
# of their own rather than a key prefix.
REDIS_DB_URL = os.environ.get("CENTRALE_TEST_MULTINODE_REDIS_URL",
                              "redis://127.0.0.1:6379/11")
STREAM = "centrale:events"


@pytest.fixture
async def shared_redis() -> AsyncIterator[aioredis.Redis]:
    async with redis_database(REDIS_DB_URL) as client:
        yield client


async def frame_where(ws: aiohttp.ClientWebSocketResponse, want: dict[str, Any],
                      timeout: float = 15) -> dict[str, Any]:
    """The first frame whose payload contains `want` (other frames are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            payload = frame.get("payload") or {}
            if all(payload.get(k) == v for k, v in want.items()):
                return frame


async def publish_raw(redis: aioredis.Redis, topic: str, **payload: Any) -> None:
    """What any node's RedisStreamsBus.publish does: XADD the event's JSON."""
    await redis.xadd(STREAM, {"e": Event(topic=topic, payload=payload).to_json()})


async def wait_for_topic(redis: aioredis.Redis, topic: str, timeout: float = 15) -> Event:
    """Block on the stream (from its start) until an event of `topic` is there."""
    last = "0"
    async with asyncio.timeout(timeout):
        while True:
            for _stream, entries in await redis.xread({STREAM: last}, block=1000) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    event = Event.from_json(fields["e"])
                    if event.topic == topic:
                        return event


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return resp.status, await resp.json()


async def test_two_nodes_share_bus_and_sessions_and_survive_a_kill(
        tmp_path: Path, site_config: Path, fresh_database_url: str,
        shared_redis: aioredis.Redis) -> None:
    env = {"CENTRALE_DATABASE_URL": fresh_database_url, "CENTRALE_REDIS_URL": REDIS_DB_URL}
    upgraded = await asyncio.to_thread(run_centrale, "db", "upgrade", "--config",
                                       str(site_config), env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr

    nodes = [NodeProcess(name, tmp_path / name, site_config, env)
             for name in ("node-a", "node-b")]
    try:
        for node in nodes:
            await asyncio.to_thread(node.wait_listening)
        a, b = nodes
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1, any port
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            for node in nodes:
                status, body = await get_json(http, f"{node.url}/healthz")
                assert status == 200 and body["node"] == node.name, body
                assert body["checks"]["database"] == "ok"

            # A session opened on node A (stored in PostgreSQL) is valid on node B.
            await login(http, a.url, "sam")
            async with http.ws_connect(f"{b.url}/ws", heartbeat=10) as ws:
                hello = json.loads((await ws.receive(timeout=15)).data)
                assert hello["type"] == "hello" and hello["user"]["username"] == "sam"

                # Node A publishes onto the shared stream ...
                a.hup()
                reloaded = await wait_for_topic(shared_redis, "config.reloaded")
                assert reloaded.payload["directory"] == str(site_config)
                # ... and what node A's ACD publishes reaches the websocket node B holds:
                # the supervisor, connected to B, sees anna go available on A.
                _, me = await get_json(http, f"{a.url}/api/me")
                async with http.post(f"{a.url}/api/agents/anna/state",
                                     json={"state": "available"},
                                     headers={"X-CSRF-Token": me["csrf_token"]}) as resp:
                    assert resp.status == 200, await resp.text()
                frame = await frame_where(ws, {"agent_id": "anna", "state": "available"})
                assert frame["type"] == "agent_state"
                # Anything on the shared stream reaches B, whoever published it.
                await publish_raw(shared_redis, "agent.state_changed", agent_id="bram",
                                  state="available", previous="logged_out",
                                  reason=None, marker="before-kill")
                await frame_where(ws, {"marker": "before-kill"})

                # kill -9 node A: node B keeps serving, its websocket keeps receiving.
                await asyncio.to_thread(a.kill9)
                status, body = await get_json(http, f"{b.url}/healthz")
                assert status == 200 and body["node"] == "node-b"
                async with http.post(f"{b.url}/api/agents/anna/state",
                                     json={"state": "not_ready", "reason": "break"},
                                     headers={"X-CSRF-Token": me["csrf_token"]}) as resp:
                    assert resp.status == 200, await resp.text()
                frame = await frame_where(ws, {"agent_id": "anna", "state": "not_ready"})
                assert frame["payload"]["reason"] == "break"
            # A fresh log-in straight on the surviving node works too.
            await login(http, b.url, "admin")
            status, _ = await get_json(http, f"{b.url}/healthz")
            assert status == 200
    except BaseException:
        for node in nodes:
            print(f"---- {node.name} log tail ----\n{node.tail()}")
        raise
    finally:
        for node in nodes:
            await asyncio.to_thread(node.stop)
