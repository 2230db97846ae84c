"""Issue #22, bad input: Redis lost while nodes run. Two `centrale run` nodes with the
embedded SIP core and WhatsApp on a Redis server of the test's own (password set, AOF),
callers waiting on both nodes, a chat ringing an agent; then Redis is killed (-9) for
longer than the nodes' 3 s leases and started again on the same port and data.

Asserted:
- while Redis is away, each node's `/healthz` is 503 and says so (naming the URL
  without its password) and that routing is paused; an agent's accept is then refused
  with 503 (nothing changed);
  a webhook is still acknowledged (stored in PostgreSQL); no offer is made;
- the callers' calls are kept (each hangs up normally, its BYE answered), and a caller
  who arrives during the outage waits on the line and is queued when Redis is back;
- when Redis is back: both nodes healthy again, neither node's tasks moved to the other
  (the leases were taken again, no `task.adopted`), the accept goes through, the message
  acknowledged during the outage becomes one task offered once; every message once on
  the timeline, every task enqueued once, every call's task ended once (abandoned when
  its caller hung up), no task on two agents at once, no agent above capacity.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import redis.asyncio as aioredis

from core.events import Event
from tests.multinode.nodes import NodeProcess, login, run_centrale
from tests.multinode.private_redis import PrivateRedis
from tests.multinode.traffic import (
    CAPACITY,
    ENDS_A_TASK,
    audit_offers,
    free_port,
    post_whatsapp,
    sip_env,
    sipp_callers,
    wait_events,
    write_site,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.sipp]

PASSWORD = "outage-secret-4711"
PREFIX = "outage-{site}"
OUTAGE_S = 5.0  # past the 3 s node lease
HOLD_MS = 16_000  # the callers wait through the outage


def db_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


class Desk:
    def __init__(self, user: str, base: str) -> None:
        self.user, self.base = user, base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          timeout=aiohttp.ClientTimeout(total=10))
        self.csrf: dict[str, str] = {}

    async def open(self) -> Desk:
        await login(self.http, self.base, self.user)
        async with self.http.get(f"{self.base}/api/me") as resp:
            self.csrf = {"X-CSRF-Token": (await resp.json())["csrf_token"]}
        return self

    async def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        async with self.http.post(f"{self.base}{path}", json=body or {},
                                  headers=self.csrf) as resp:
            return resp.status, await resp.text()


async def healthz(http: aiohttp.ClientSession, node: NodeProcess) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{node.url}/healthz") as resp:
        return resp.status, await resp.json()


async def test_nodes_ride_out_a_redis_restart(
        tmp_path: Path, fresh_database_url: str) -> None:
    server = PrivateRedis(tmp_path / "redis", password=PASSWORD)
    server.start()
    cfg = write_site(tmp_path / "cfg")
    env = {"CENTRALE_DATABASE_URL": fresh_database_url, "CENTRALE_REDIS_URL": server.url,
           "CENTRALE_REDIS_PREFIX": PREFIX}
    upgraded = await asyncio.to_thread(run_centrale, "db", "upgrade", "--config", str(cfg),
                                       env={**env, **sip_env(5060, 30000)}, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    sip_ports = [free_port(), free_port()]
    nodes = [NodeProcess(name, tmp_path / name, cfg,
                         {**env, **sip_env(port, 34000 + 1000 * i)})
             for i, (name, port) in enumerate(zip(("node-a", "node-b"), sip_ports,
                                                  strict=True))]
    stream = aioredis.Redis.from_url(server.url, decode_responses=True)
    desks: list[Desk] = []
    meta = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    callers: list[asyncio.Future[Any]] = []
    try:
        await asyncio.gather(*(asyncio.to_thread(n.wait_listening, 120) for n in nodes))
        a, b = nodes
        anna, chloe, bram = (await Desk("anna", a.url).open(), await Desk("chloe", b.url).open(),
                             await Desk("bram", b.url).open())
        desks += [anna, chloe, bram]
        assert (await anna.post("/api/agents/anna/state", {"state": "available"}))[0] == 200
        assert (await bram.post("/api/agents/bram/state",
                                {"state": "not_ready", "reason": "lunch"}))[0] == 200
        # Callers on both nodes wait in `sales` (bram is not ready) through the outage.
        callers = [sipp_callers(tmp_path / f"sipp-{n.name}", port, 1, HOLD_MS)
                   for n, port in zip(nodes, sip_ports, strict=True)]
        assert await post_whatsapp(meta, a.url, "31640000001", "wamid.outage.1") == 200
        events = await wait_events(stream, PREFIX, lambda ev: any(
            e.topic == "task.offered" and e.payload["agent_id"] == "anna" for e in ev)
            and sum(1 for e in ev if e.topic == "task.enqueued"
                    and e.payload["channel"] == "voice") == 2,
            timeout=40, what="the chat ringing anna and both callers queued")
        offer = next(e.payload for e in events if e.topic == "task.offered")

        # ---- Redis goes away ------------------------------------------------------
        await asyncio.to_thread(server.kill9)
        down_at = time.time()
        for node in nodes:
            status, body = await healthz(meta, node)
            assert status == 503, body
            said = body["checks"]["redis"]
            assert "does not answer" in said and f"127.0.0.1:{server.port}" in said, said
            assert PASSWORD not in str(body)
            async with asyncio.timeout(10):  # the ACD notices at its next sync (0.25 s)
                while body["checks"]["acd"] == "ok":
                    await asyncio.sleep(0.05)
                    status, body = await healthz(meta, node)
            assert "routing paused" in body["checks"]["acd"], body
        # A routing decision is refused, not made behind the cluster's back ...
        status, text = await anna.post(f"/api/offers/{offer['offer_id']}/accept")
        assert status == 503 and "Redis" in text, (status, text)
        # ... on the node that holds it, and through another node (which would have to
        # look the task's node up in Redis): 503 too, not a server error.
        anna_on_b = await Desk("anna", b.url).open()
        desks.append(anna_on_b)
        status, text = await anna_on_b.post(f"/api/offers/{offer['offer_id']}/accept")
        assert status == 503 and "Redis" in text, (status, text)
        # A caller who arrives now stays on the line and is queued when Redis is back.
        callers.append(sipp_callers(tmp_path / "sipp-during", sip_ports[0], 1, HOLD_MS))
        # ... while a customer's message is still acknowledged (PostgreSQL has it).
        assert await post_whatsapp(meta, b.url, "31640000002", "wamid.outage.2") == 200
        assert (await chloe.post("/api/agents/chloe/state", {"state": "available"}))[0] \
            in (200, 503)
        await asyncio.sleep(max(0.0, down_at + OUTAGE_S - time.time()))
        await asyncio.to_thread(server.start)
        up_at = time.time()

        # ---- Redis is back ----------------------------------------------------------
        async with asyncio.timeout(30):
            while True:
                answers = [await healthz(meta, n) for n in nodes]
                if all(s == 200 for s, _ in answers):
                    break
                await asyncio.sleep(0.2)
        async with asyncio.timeout(30):
            while True:
                status, text = await chloe.post("/api/agents/chloe/state",
                                                {"state": "available"})
                if status == 200:
                    break
                assert status == 503, (status, text)
                await asyncio.sleep(0.2)
        async with asyncio.timeout(30):
            while True:
                status, text = await anna.post(f"/api/offers/{offer['offer_id']}/accept")
                if status == 200:
                    break
                assert status == 503, (status, text)
                await asyncio.sleep(0.2)
        events = await wait_events(stream, PREFIX, lambda ev: sum(
            1 for e in ev if e.topic == "task.offered") >= 2, timeout=30,
            what="the message acknowledged during the outage offered")

        # The callers were kept: both hang up normally, their BYE answered.
        for result in await asyncio.gather(*callers):
            assert result.returncode == 0, result.stdout[-2000:] + result.errors[-2000:]
        # The caller of the outage too is queued, once: its node queues it when Redis
        # answers again, which may be after the second offer was read above.

        def voice_tasks(ev: list[Event]) -> set[str]:
            return {e.payload["task_id"] for e in ev if e.topic == "task.enqueued"
                    and e.payload["channel"] == "voice"}

        events = await wait_events(stream, PREFIX, lambda ev: len(voice_tasks(ev)) >= 3,
                                   timeout=20, what="the three callers queued")
        voice = voice_tasks(events)
        assert len(voice) == 3, voice
        events = await wait_events(stream, PREFIX, lambda ev: voice <= {
            e.payload["task_id"] for e in ev if e.topic in ENDS_A_TASK}, timeout=20,
            what="both calls' tasks ended")

        # ---- the checker ------------------------------------------------------------
        assert not [e for e in events if e.topic == "task.adopted"], \
            "a node's tasks moved although the node never died"
        for node in nodes:  # the leases did expire meanwhile: each was taken again
            assert "taken again (nobody had adopted it)" in node.tail(100_000), node.name
        offered = [e for e in events if e.topic == "task.offered"]
        during = [e for e in offered if down_at <= e.occurred_at.timestamp() <= up_at]
        assert not during, f"offers made while Redis was away: {during}"
        enqueued = Counter(e.payload["task_id"] for e in events if e.topic == "task.enqueued")
        assert enqueued and max(enqueued.values()) == 1, enqueued
        ended = Counter(e.payload["task_id"] for e in events if e.topic in ENDS_A_TASK)
        assert {t: ended[t] for t in voice} == {t: 1 for t in voice}, ended
        assert [e.payload["agent_id"] for e in offered] == ["anna", "chloe"], \
            [(e.payload["task_id"], e.payload["agent_id"]) for e in offered]
        accepted = [e.payload["offer_id"] for e in events if e.topic == "task.accepted"]
        assert accepted == [offer["offer_id"]]
        timeline = Counter(r[0] for r in db_rows(
            fresh_database_url, "SELECT dedup_key FROM timeline_entry "
                                "WHERE dedup_key LIKE 'msg:whatsapp:%'"))
        assert timeline == Counter(["msg:whatsapp:wamid.outage.1",
                                    "msg:whatsapp:wamid.outage.2"]), timeline
        conversations = db_rows(fresh_database_url,
                                "SELECT contact, task_id FROM digital_conversation")
        assert sorted(c[0] for c in conversations) == ["31640000001", "31640000002"]
        assert {c[1] for c in conversations} <= set(enqueued)
        audit = audit_offers(sorted(events, key=lambda e: e.occurred_at), CAPACITY)
        assert not audit.violations, audit.violations
        print(f"Redis away {up_at - down_at:.1f} s; "
              f"{sum(len(v) for v in audit.offers.values())} offers, "
              f"{len(enqueued)} tasks, calls kept")
    except BaseException:
        for node in nodes:
            print(f"---- {node.name} log: warnings and errors ----\n" + "\n".join(
                line for line in node.tail(3000).splitlines()
                if '"level": "info"' not in line)[-6000:])
        raise
    finally:
        for caller in callers:
            if not caller.done():
                caller.cancel()
        for desk in desks:
            await desk.http.close()
        await meta.close()
        await stream.aclose()
        for node in nodes:
            await asyncio.to_thread(node.stop)
        server.stop()


async def test_the_bus_keeps_what_it_could_not_publish_until_redis_is_back(
        private_redis: PrivateRedis) -> None:
    """Events published while Redis is away wait in the node's backlog, in order, and
    reach the stream once when Redis answers again; later events queue behind them."""
    from core.bus.redis import RedisStreamsBus
    from core.events import Event

    bus = RedisStreamsBus(private_redis.url, prefix="backlog")
    await bus.start()
    try:
        assert await bus.publish(Event(topic="t.before", payload={"n": 0}))
        await asyncio.to_thread(private_redis.kill9)
        for n in (1, 2, 3):
            assert await bus.publish(Event(topic="t.during", payload={"n": n})) == ""
        assert bus.backlog == 3
        await asyncio.to_thread(private_redis.start)
        after = asyncio.ensure_future(bus.publish(Event(topic="t.after", payload={"n": 4})))
        async with asyncio.timeout(20):  # the backlog drains on its own
            while True:
                if not bus.backlog:
                    break
                await asyncio.sleep(0.05)
        await after
        entries = await bus.redis.xrange(bus.stream)
        assert [Event.from_json(f["e"]).payload["n"] for _id, f in entries] == [0, 1, 2, 3, 4]
    finally:
        await bus.stop()
