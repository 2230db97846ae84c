"""Two `centrale run` processes sharing a real PostgreSQL and a real Redis — the
docker/compose.yaml topology without Docker: both healthy, a session opened on node A is
valid on node B, a config reload on node A is followed by node B, an agent-state change
made through node A's ACD reaches a supervisor's websocket held by node B, and kill -9
of node A leaves node B serving (API, ACD and that same websocket)."""

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


async def wait_for_topic(redis: aioredis.Redis, topic: str, timeout: float = 15,
                         **want: Any) -> Event:
    """Block on the stream (from its start) until an event of `topic` whose payload
    contains `want` is there."""
    last = "0"
    async with asyncio.timeout(timeout):
        while True:
            for _stream, entries in await redis.xread({STREAM: last}, block=1000) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    event = Event.from_json(fields["e"])
                    if event.topic == topic and all(event.payload.get(k) == v
                                                     for k, v in want.items()):
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
                reloaded = await wait_for_topic(shared_redis, "config.reloaded",
                                                node_id="node-a")
                assert reloaded.payload["directory"] == str(site_config)
                assert reloaded.payload["following"] is None
                # ... and node B follows A's reload (same capacities on both nodes).
                await wait_for_topic(shared_redis, "config.reloaded", node_id="node-b",
                                     following="node-a")
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


async def make_case(database_url: str) -> str:
    """A customer with an open case in the nodes' database (what an inbound contact
    would have made)."""
    from cases import CaseService
    from cases.identities import IdentityRef
    from core.bus import InMemoryBus
    from core.clock import SystemClock
    from core.db import Database

    db = Database(database_url)
    try:
        cases = CaseService(db, InMemoryBus(), SystemClock(), default_region="NL")
        res = await cases.resolve(IdentityRef("phone", "+31612345678"), display_name="Eva")
        return res.case.id
    finally:
        await db.dispose()


async def wait_for_task_event(redis: aioredis.Redis, prefix: str, topic: str, task_id: str,
                              *, timeout: float = 15) -> Event:
    """The first event of `topic` for the task on the site's stream."""
    last = "0"
    async with asyncio.timeout(timeout):
        while True:
            for _stream, entries in await redis.xread({f"{prefix}:events": last},
                                                      block=500) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    event = Event.from_json(fields["e"])
                    if event.topic == topic and event.payload.get("task_id") == task_id:
                        return event


async def csrf_of(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    _, me = await get_json(http, f"{base}/api/me")
    return {"X-CSRF-Token": me["csrf_token"]}


async def test_a_task_on_node_a_is_offered_once_to_an_agent_on_node_b_and_survives_kill(
        tmp_path: Path, site_config: Path, fresh_database_url: str, redis_url: str,
        redis_prefix: str) -> None:
    """The ACD on shared Redis state across two `centrale run` processes: anna's desktop
    is on node B; a callback queued through node A (node A's engine owns the task) is
    offered to her once, on node B's websocket, and her accept on node B reaches the
    owner. Then kill -9 of node A: node B adopts its tasks, and the callback that was
    waiting on node A is offered to anna on node B."""
    prefix = f"{redis_prefix}-{{site}}"  # a hash tag of its own: the fixture's keys
    env = {"CENTRALE_DATABASE_URL": fresh_database_url, "CENTRALE_REDIS_URL": redis_url,
           "CENTRALE_REDIS_PREFIX": prefix}
    upgraded = await asyncio.to_thread(run_centrale, "db", "upgrade", "--config",
                                       str(site_config), env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    case_id = await make_case(fresh_database_url)
    # A supervisor who is also an agent may queue a callback for any case.
    users = site_config / "users.yaml"
    text = users.read_text()
    assert "name: Daan Visser, role: agent," in text
    users.write_text(text.replace("name: Daan Visser, role: agent,",
                                  "name: Daan Visser, role: supervisor,"))
    nodes = [NodeProcess(name, tmp_path / name, site_config, env)
             for name in ("node-a", "node-b")]
    stream = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for node in nodes:
            await asyncio.to_thread(node.wait_listening)
        a, b = nodes
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as anna, \
                aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as lead:
            await login(anna, b.url, "anna")
            anna_csrf = await csrf_of(anna, b.url)
            async with anna.ws_connect(f"{b.url}/ws", heartbeat=10) as ws:
                hello = json.loads((await ws.receive(timeout=15)).data)
                assert hello["type"] == "hello"
                async with anna.post(f"{b.url}/api/agents/anna/state",
                                     json={"state": "available"}, headers=anna_csrf) as resp:
                    assert resp.status == 200, await resp.text()
                await login(lead, a.url, "daan")
                async with lead.post(f"{a.url}/api/callbacks", headers=await csrf_of(lead, a.url),
                                     json={"case_id": case_id, "number": "+31612345678",
                                           "queue_id": "sales"}) as resp:
                    assert resp.status == 201, await resp.text()
                    task_id = (await resp.json())["result"]
                async with asyncio.timeout(15):
                    while True:
                        frame = json.loads((await ws.receive()).data)
                        if frame.get("type") == "screenpop" and frame.get("task_id") == task_id:
                            break
                async with anna.post(f"{b.url}/api/offers/{frame['offer_id']}/accept",
                                     headers=anna_csrf) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json())["task_id"] == task_id
                # A second callback on node A waits: anna's voice slot is taken (the
                # first one is in wrap-up once the voice service gave up on it).
                async with lead.post(f"{a.url}/api/callbacks", headers=await csrf_of(lead, a.url),
                                     json={"case_id": case_id, "number": "+31612345679",
                                           "queue_id": "sales"}) as resp:
                    assert resp.status == 201, await resp.text()
                    second = (await resp.json())["result"]
                await wait_for_task_event(stream, prefix, "task.completed", task_id)
                # kill -9 node A: node B adopts both tasks and, when anna ends her
                # wrap-up there, offers her the waiting callback.
                await asyncio.to_thread(a.kill9)
                await wait_for_task_event(stream, prefix, "task.adopted", second, timeout=20)
                async with anna.post(f"{b.url}/api/tasks/{task_id}/wrap-up/end",
                                     headers=anna_csrf,  # the demo queues want a code
                                     json={"wrap_up_code": "resolved"}) as resp:
                    assert resp.status == 200, await resp.text()
                async with asyncio.timeout(15):
                    while True:
                        frame = json.loads((await ws.receive()).data)
                        if frame.get("type") == "screenpop" and frame.get("task_id") == second:
                            break
        events = [Event.from_json(fields["e"]) for _id, fields
                  in await stream.xrange(f"{prefix}:events")]
        mine = [e for e in events if e.payload.get("task_id") == task_id]
        offered = [e for e in mine if e.topic == "task.offered"]
        assert [e.payload["agent_id"] for e in offered] == ["anna"]  # once, to anna
        assert [e.payload["agent_id"] for e in mine if e.topic == "task.accepted"] == ["anna"]
        assert [e.payload["agent_id"] for e in events if e.topic == "task.offered"
                and e.payload["task_id"] == second] == ["anna"]
        adopted = {e.payload["task_id"]: e.payload["node_id"] for e in events
                   if e.topic == "task.adopted"}
        assert adopted == {task_id: "node-b", second: "node-b"}
    except BaseException:
        for node in nodes:
            print(f"---- {node.name} log tail ----\n{node.tail()}")
        raise
    finally:
        await stream.aclose()
        for node in nodes:
            await asyncio.to_thread(node.stop)
