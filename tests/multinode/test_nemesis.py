"""Issue #22: a correctness checker in the spirit of Jepsen. Three real `centrale run`
processes, each with the embedded SIP core on its own port, on one PostgreSQL and on a
Redis server of the test's own (tests/multinode/private_redis.py, AOF), behind
docker/proxy/nginx.conf (the real nginx); while clients send WhatsApp webhooks to every
node, sipp callers call every node (they wait in a queue nobody serves, then hang up)
and agents (through the proxy) accept, complete and end wrap-up, a nemesis kills (-9)
and restarts nodes, pauses one (SIGSTOP past every lease) and restarts Redis twice
(kill -9; down 1 s, then 5 s, past the nodes' leases). Afterwards the checker reads the
database and the event history and asserts:

- every acknowledged message is exactly once on the timeline, processed, in a
  conversation of its own contact; a contact never has two conversations open at once;
- every conversation's task and every call's task is enqueued at most once, and ends
  exactly once (a call's when its caller hangs up or its node dies);
- a task is never offered to two agents at a time, no agent holds more than its
  capacity (tests/multinode/traffic.audit_offers replays the stream);
- a call whose node was neither killed nor paused while it lasted was kept (its BYE
  answered), Redis restarts included, unless the node refused it at once (503 with
  Retry-After: its call setup was behind, the overload rule of issue 21);
- every live node shows the same state for every agent (what any node changed reached
  all of them).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import signal
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import redis.asyncio as aioredis

from tests.multinode.nodes import NodeProcess, login, run_centrale
from tests.multinode.private_redis import PrivateRedis
from tests.multinode.test_proxy import NGINX_CONF, nginx
from tests.multinode.test_proxy import free_port as free_tcp_port
from tests.multinode.traffic import (
    ENDS_A_TASK,
    audit_offers,
    free_port,
    post_whatsapp,
    sip_env,
    sipp_callers,
    stream_events,
    write_site,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

NODES = ("node-a", "node-b", "node-c")
AGENTS = {"anna": 1, "chloe": 1, "daan": 3}  # WhatsApp capacity
CONTACTS = 24
TIMEOUT = aiohttp.ClientTimeout(total=5)


def db_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def proxy_conf(cluster: Cluster, port: int, workdir: Path) -> Path:
    """docker/proxy/nginx.conf as shipped, with the three nodes' addresses as its
    upstream servers (as tests/multinode/test_proxy.local_conf does for two)."""
    conf = NGINX_CONF.read_text()
    conf = conf.replace("resolver 127.0.0.11 valid=5s ipv6=off;", "")
    lines = [ln for ln in conf.splitlines(keepends=True)
             if not ln.strip().startswith("server centrale-")]
    at = next(i for i, ln in enumerate(lines) if "upstream centrale" in ln) + 1
    lines[at:at] = [f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n"
                    for p in cluster.ports.values()]
    conf = "".join(lines)
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("pid /tmp/nginx.pid;", f"pid {workdir / 'nginx.pid'};")
    assert "centrale-1:8080" not in conf and f"127.0.0.1:{port}" in conf
    (workdir / "logs").mkdir(exist_ok=True)
    path = workdir / "nginx.conf"
    path.write_text(conf)
    return path


class Cluster:
    """The three nodes (each on a fixed HTTP and SIP port, so the proxy and the callers
    find a restarted one), the Redis server and the nemesis's log of what it did."""

    def __init__(self, tmp_path: Path, cfg: Path, env: dict[str, str],
                 redis: PrivateRedis) -> None:
        self.tmp_path, self.cfg, self.env, self.redis = tmp_path, cfg, env, redis
        self.ports = {name: free_tcp_port() for name in NODES}
        self.sip_ports = {name: free_port() for name in NODES}
        self.lives = Counter[str]()
        self.history: list[tuple[float, str]] = []
        # What the callers' checker needs: when each node could not keep its calls.
        self.down: dict[str, list[tuple[float, float]]] = {name: [] for name in NODES}
        self.paused: set[str] = set()
        self.nodes = {name: self._start(name) for name in NODES}

    def _start(self, name: str) -> NodeProcess:
        self.lives[name] += 1
        i = NODES.index(name)
        return NodeProcess(name, self.tmp_path / f"{name}-{self.lives[name]}", self.cfg,
                           {**self.env, **sip_env(self.sip_ports[name], 36000 + 1000 * i)},
                           port=self.ports[name])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def up(self) -> list[str]:
        return [n for n, p in self.nodes.items()
                if p.proc.poll() is None and n not in self.paused]

    def note(self, what: str) -> None:
        # The wall clock too: the events' occurred_at are in it.
        what = f"{datetime.now(UTC).time().isoformat()} {what}"
        self.history.append((time.monotonic(), what))
        print(f"nemesis: {what}")

    async def kill(self, name: str) -> None:
        self.down[name].append((time.monotonic(), float("inf")))
        await asyncio.to_thread(self.nodes[name].kill9)
        self.note(f"kill -9 {name}")

    async def restart(self, name: str) -> None:
        self.nodes[name] = self._start(name)
        await asyncio.to_thread(self.nodes[name].wait_listening, 240)
        self.down[name][-1] = (self.down[name][-1][0], time.monotonic())
        self.note(f"restarted {name}")

    async def pause(self, name: str, seconds: float) -> None:
        self.nodes[name].proc.send_signal(signal.SIGSTOP)
        self.paused.add(name)
        started = time.monotonic()
        self.note(f"SIGSTOP {name} for {seconds} s")
        try:
            await asyncio.sleep(seconds)
        finally:
            self.nodes[name].proc.send_signal(signal.SIGCONT)
            self.paused.discard(name)
            # A paused node's SIP dialogs time out at the callers' side: not kept.
            self.down[name].append((started, time.monotonic()))
            self.note(f"SIGCONT {name}")

    async def restart_redis(self, down_s: float) -> None:
        """kill -9 of Redis, `down_s` without it, then the same server again (port and
        AOF data): an operator's restart or a crash of the Redis host."""
        await asyncio.to_thread(self.redis.kill9)
        self.note(f"kill -9 Redis for {down_s} s")
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.redis.start)
        self.note("Redis started again")

    def kept_calls_expected(self, node: str, start: float, end: float) -> bool:
        """A call on `node` from `start` to `end` must have been kept: its node was
        neither killed nor paused meanwhile."""
        return not any(a <= end and start <= b for a, b in self.down[node])

    def stop_all(self) -> None:
        for p in self.nodes.values():
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGCONT)
            p.stop()


class AgentBot:
    """One agent's desktop through the proxy: available, then accepts every offer,
    completes every chat and ends its wrap-up with a code, retrying what fails (a node
    died under the request: the next one goes to a live node)."""

    def __init__(self, agent: str, base: str) -> None:
        self.agent, self.base = agent, base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          timeout=TIMEOUT)
        self.csrf: dict[str, str] = {}
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    async def open(self) -> None:
        await login(self.http, self.base, self.agent)
        async with self.http.get(f"{self.base}/api/me") as resp:
            self.csrf = {"X-CSRF-Token": (await resp.json())["csrf_token"]}
        await self._post(f"/api/agents/{self.agent}/state", {"state": "available"})

    async def _post(self, path: str, json: dict[str, Any] | None = None) -> int:
        try:
            async with self.http.post(f"{self.base}{path}", json=json or {},
                                      headers=self.csrf) as resp:
                await resp.read()
                if resp.status >= 400:
                    self.errors[str(resp.status)] += 1
                return resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return 0

    async def step(self) -> None:
        try:
            async with self.http.get(f"{self.base}/api/tasks?mine=1&all=1") as resp:
                if resp.status != 200:
                    self.errors[f"list {resp.status}"] += 1
                    return
                rows = (await resp.json())["tasks"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return
        for row in rows:
            status, task = row.get("status"), row.get("task_id")
            if status == "offered" and row.get("offer_id"):
                if await self._post(f"/api/offers/{row['offer_id']}/accept") == 200:
                    self.done["accepted"] += 1
            elif status == "accepted":
                if await self._post(f"/api/tasks/{task}/complete",
                                    {"wrap_up_code": "resolved"}) == 200:
                    self.done["completed"] += 1
            elif status == "wrap_up":
                if await self._post(f"/api/tasks/{task}/wrap-up/end",
                                    {"wrap_up_code": "resolved"}) == 200:
                    self.done["wrap_up_ended"] += 1

    async def run(self, stop: asyncio.Event) -> None:
        last_available = time.monotonic()
        while not stop.is_set():
            await self.step()
            if time.monotonic() - last_available > 5:  # a desktop's "available" button
                await self._post(f"/api/agents/{self.agent}/state", {"state": "available"})
                last_available = time.monotonic()
            await asyncio.sleep(0.3)


def refused_at_once(result: Any) -> bool:
    """sipp's call got a 503 to its INVITE (it was never answered): refused, not dropped."""
    return re.search(r"while expecting '(100|180|200)' \(index [1-3]\), "
                     r"received 'SIP/2.0 503", result.errors) is not None


async def send_messages(cluster: Cluster, http: aiohttp.ClientSession,
                        acked: dict[str, str], stop: asyncio.Event) -> None:
    """Meta's side: each contact writes now and then, to any node; a delivery that gets
    no 200 is retried on another node, and some acknowledged ones are delivered again
    (Meta redelivers)."""
    rng = random.Random(22)
    n = 0
    while not stop.is_set():
        wa_id = f"3167000{rng.randrange(CONTACTS):04d}"
        n += 1
        msg_id = f"wamid.nemesis.{n}"
        for _attempt in range(6):
            up = cluster.up()
            if not up:
                await asyncio.sleep(0.5)
                continue
            node = rng.choice(up)
            try:
                status = await post_whatsapp(http, cluster.url(node), wa_id, msg_id,
                                             text=f"bericht {n}")
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            if status == 200:
                acked[msg_id] = wa_id
                if rng.random() < 0.2:  # a redelivery to another node
                    other = rng.choice(cluster.up() or [node])
                    try:
                        await post_whatsapp(http, cluster.url(other), wa_id, msg_id,
                                            text=f"bericht {n}")
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(rng.uniform(0.05, 0.4))


async def make_calls(cluster: Cluster, calls: list[tuple[str, float, float, Any]],
                     stop: asyncio.Event) -> None:
    """Callers: every couple of seconds one sipp caller to each node that is up; each
    waits in `sales` (nobody serves it) for 3-6 s of music on hold, then hangs up."""
    rng = random.Random(2222)
    wave = 0
    running: list[asyncio.Task[None]] = []

    async def one(node: str, hold_ms: int) -> None:
        start = time.monotonic()
        workdir = cluster.tmp_path / "sipp" / f"{wave:03d}-{node}"
        result = await sipp_callers(workdir, cluster.sip_ports[node], 1, hold_ms)
        calls.append((node, start, time.monotonic(), result))

    while not stop.is_set():
        wave += 1
        for node in cluster.up():
            running.append(asyncio.create_task(one(node, rng.randrange(3000, 6000))))
        await asyncio.sleep(2.5)
    await asyncio.gather(*running)


async def nemesis(cluster: Cluster) -> None:
    await asyncio.sleep(6)
    await cluster.kill("node-c")
    await asyncio.sleep(5)
    await cluster.restart("node-c")
    await asyncio.sleep(3)
    await cluster.restart_redis(1)  # shorter than the leases
    await asyncio.sleep(4)
    await cluster.pause("node-b", 8)  # past the node lease (3 s) and inbox claim (6 s)
    await asyncio.sleep(3)
    await cluster.kill("node-a")
    await asyncio.sleep(4)
    await cluster.restart("node-a")
    await asyncio.sleep(3)
    await cluster.restart_redis(5)  # past every node's lease
    await asyncio.sleep(6)


async def test_three_nodes_under_a_nemesis_keep_every_invariant(
        tmp_path: Path, fresh_database_url: str, private_redis: PrivateRedis) -> None:
    prefix = "nemesis-{site}"
    redis_url = private_redis.url
    cfg = write_site(tmp_path / "cfg")
    site = cfg / "site.yaml"
    text = site.read_text()
    text = text.replace("capacity: {voice: 1, whatsapp: 20}", "capacity: {voice: 1, whatsapp: 3}")
    text = text.replace("rona_seconds: 300, wrap_up_seconds: 5}",
                        "rona_seconds: 20, wrap_up_seconds: 2}")
    site.write_text(text)
    env = {"CENTRALE_DATABASE_URL": fresh_database_url, "CENTRALE_REDIS_URL": redis_url,
           "CENTRALE_REDIS_PREFIX": prefix}
    upgraded = await asyncio.to_thread(run_centrale, "db", "upgrade", "--config", str(cfg),
                                       env={**env, **sip_env(5060, 30000)}, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    cluster = Cluster(tmp_path, cfg, env, private_redis)
    stream = aioredis.Redis.from_url(redis_url, decode_responses=True)
    proxy: asyncio.subprocess.Process | None = None
    bots: list[AgentBot] = []
    meta = aiohttp.ClientSession(timeout=TIMEOUT)
    stop_agents = asyncio.Event()
    try:
        await asyncio.gather(*(asyncio.to_thread(p.wait_listening, 240)
                               for p in cluster.nodes.values()))
        proxy_port = free_tcp_port()
        conf = proxy_conf(cluster, proxy_port, tmp_path)
        proxy = await asyncio.create_subprocess_exec(
            nginx(), "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        base = f"http://127.0.0.1:{proxy_port}"
        async with asyncio.timeout(20):
            while True:
                try:
                    async with meta.get(f"{base}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        for agent in AGENTS:
            bot = AgentBot(agent, base)
            await bot.open()
            bots.append(bot)
        # bram, the only agent of `sales`, is not ready: callers wait and hang up.
        bram = AgentBot("bram", base)
        bots.append(bram)
        await login(bram.http, base, "bram")
        async with bram.http.get(f"{base}/api/me") as resp:
            bram.csrf = {"X-CSRF-Token": (await resp.json())["csrf_token"]}
        assert await bram._post("/api/agents/bram/state",
                                {"state": "not_ready", "reason": "lunch"}) == 200

        acked: dict[str, str] = {}
        calls: list[tuple[str, float, float, Any]] = []
        stop_traffic = asyncio.Event()
        agents = [asyncio.create_task(bot.run(stop_agents)) for bot in bots
                  if bot is not bram]
        senders = [asyncio.create_task(send_messages(cluster, meta, acked, stop_traffic))
                   for _ in range(2)]
        callers = asyncio.create_task(make_calls(cluster, calls, stop_traffic))
        started = time.monotonic()
        await nemesis(cluster)
        stop_traffic.set()
        await asyncio.gather(*senders, callers)
        print(f"traffic: {len(acked)} messages acknowledged, {len(calls)} calls in "
              f"{time.monotonic() - started:.0f} s")

        # Quiet: every stored message routed, every conversation handled to its end.
        deadline = time.monotonic() + 120
        while True:
            unprocessed, open_ = db_rows(fresh_database_url, "SELECT "
                           "(SELECT count(*) FROM digital_message WHERE NOT processed), "
                           "(SELECT count(*) FROM digital_conversation "
                           " WHERE state <> 'ended')")[0]
            unended: set[str] = set()
            if (unprocessed, open_) == (0, 0):
                # ... and every wrap-up over: each conversation's task has its end.
                events = [e for _id, e in await stream_events(stream, prefix)]
                ends = {e.payload["task_id"] for e in events if e.topic in ENDS_A_TASK}
                unended = {t for (t,) in db_rows(
                    fresh_database_url, "SELECT task_id FROM digital_conversation")} - ends
                if not unended:
                    break
            if time.monotonic() > deadline:
                events = [e for _id, e in await stream_events(stream, prefix)]
                stuck = db_rows(fresh_database_url, "SELECT id, task_id, state, agent_id "
                                "FROM digital_conversation WHERE state <> 'ended'"
                                + "".join(f" OR task_id = '{t}'" for t in sorted(unended)))
                for conv, task, state, agent in stuck:
                    print(f"stuck conversation {conv} ({state}, {agent}):", [
                        (e.topic, e.payload.get("node_id"), e.payload.get("agent_id"),
                         e.payload.get("status"), e.occurred_at.isoformat())
                        for e in events if e.payload.get("task_id") == task])
                    print("  ledger:", db_rows(
                        fresh_database_url, "SELECT agent_id, status, offer_id FROM "
                        f"web_agent_task WHERE task_id = '{task}'"))
                print("nemesis history:", cluster.history)
                raise AssertionError(
                    f"not quiet: {unprocessed} unprocessed messages, {open_} open "
                    f"conversations, {len(unended)} ended conversations whose task never "
                    f"ended; bots: {[(b.agent, b.done, b.errors) for b in bots]}")
            await asyncio.sleep(0.5)
        stop_agents.set()
        await asyncio.gather(*agents)
        print("agents:", {b.agent: dict(b.done) for b in bots},
              "errors:", {b.agent: dict(b.errors) for b in bots})

        # ---- the checker -------------------------------------------------------------
        rows = db_rows(fresh_database_url,
                       "SELECT m.provider_message_id, m.sender, m.processed, m.error, "
                       "c.contact FROM digital_message m LEFT JOIN digital_conversation c "
                       "ON c.id = m.conversation_id WHERE m.direction = 'inbound'")
        stored = {r[0] for r in rows}
        assert set(acked) <= stored, "an acknowledged message was lost"
        bad = [r for r in rows if not r[2] or r[3] or r[4] != r[1]]
        assert not bad, f"messages not routed into their contact's conversation: {bad}"
        timeline = Counter(r[0] for r in db_rows(
            fresh_database_url,
            "SELECT dedup_key FROM timeline_entry WHERE dedup_key LIKE 'msg:whatsapp:%'"))
        assert timeline == Counter(f"msg:whatsapp:{m}" for m in stored), \
            [(k, v) for k, v in timeline.items() if v != 1]

        conversations = db_rows(fresh_database_url,
                                "SELECT contact, id, task_id, created_at, ended_at "
                                "FROM digital_conversation ORDER BY created_at")
        by_contact: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for conv in conversations:
            by_contact[conv[0]].append(conv)
        for contact, convs in by_contact.items():
            for earlier, later in itertools.pairwise(convs):
                assert earlier[4] is not None and earlier[4] <= later[3], \
                    f"{contact} had two conversations open at once: {earlier} {later}"

        events = [e for _id, e in await stream_events(stream, prefix)]
        tasks = {c[2] for c in conversations}
        enqueued = Counter(e.payload["task_id"] for e in events if e.topic == "task.enqueued")
        assert not [t for t, n in enqueued.items() if n > 1], "a task enqueued twice"
        known = set(enqueued) | {e.payload["task_id"] for e in events
                                 if e.topic == "task.adopted"}
        assert tasks <= known, f"tasks never seen on the stream: {tasks - known}"
        # Calls: every call's task ends exactly once, as chats' do.
        voice = {e.payload["task_id"] for e in events if e.payload.get("channel") == "voice"
                 and e.topic in ("task.enqueued", "task.adopted")}
        assert voice, "no call reached a queue"
        ended = Counter(e.payload["task_id"] for e in events if e.topic in ENDS_A_TASK)
        wrong = {t: ended.get(t, 0) for t in tasks | voice if ended.get(t, 0) != 1}
        assert not wrong, f"tasks not ended exactly once: {wrong}"
        # A call was kept unless its own node was killed or paused while it lasted, or
        # refused at once: a node whose call setup is behind (this machine under the
        # nemesis, Redis just back) answers a new INVITE with a fast 503 and
        # Retry-After (issue 21's overload rule), which a carrier routes elsewhere. An
        # accepted call is never dropped.
        refused = [r for *_x, r in calls if r.returncode != 0 and refused_at_once(r)]
        assert all("Retry-After:" in r.errors for r in refused), [r.errors for r in refused]
        dropped = [(node, round(end - start, 1), r.stdout[-600:], r.errors[-1500:])
                   for node, start, end, r in calls if r.returncode != 0
                   and not refused_at_once(r)
                   and cluster.kept_calls_expected(node, start, end)]
        assert not dropped, f"calls dropped by a node that kept running: {dropped}"
        kept = sum(1 for *_x, r in calls if r.returncode == 0)
        # Replayed in the order the nodes decided (one machine, one clock): the stream
        # is in publish order, and a node publishes a task's end only after Redis
        # confirmed it, so another node's offer for the freed slot can reach the
        # stream first without the agent ever being above capacity in Redis.
        decided = sorted(events, key=lambda e: e.occurred_at)
        audit = audit_offers(decided, AGENTS)
        assert not audit.violations, audit.violations

        # Every live node sees every agent as the others do.
        seen: dict[str, dict[str, Any]] = {}
        for name in cluster.up():
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             timeout=TIMEOUT) as sam:
                await login(sam, cluster.url(name), "sam")
                async with sam.get(f"{cluster.url(name)}/api/agents") as resp:
                    assert resp.status == 200
                    seen[name] = {a["id"]: (a["state"], a.get("reason"))
                                  for a in (await resp.json())["agents"]}
        assert len(seen) == 3 and all(v == seen["node-a"] for v in seen.values()), seen
        assert all(seen["node-a"][a] == ("available", None) for a in AGENTS), seen
        print(f"checked: {len(stored)} messages, {len(conversations)} conversations, "
              f"{len(calls)} calls ({kept} kept, {len(refused)} refused at once with "
              f"503, {len(voice)} call tasks), "
              f"{sum(len(v) for v in audit.offers.values())} offers, "
              f"{len(cluster.history)} nemesis steps")
    except BaseException:
        for p in cluster.nodes.values():
            print(f"---- {p.name} log: warnings and errors ----\n" + "\n".join(
                line for line in p.tail(3000).splitlines()
                if '"level": "info"' not in line)[-5000:])
        raise
    finally:
        stop_agents.set()
        for bot in bots:
            await bot.http.close()
        await meta.close()
        await stream.aclose()
        if proxy is not None and proxy.returncode is None:
            proxy.terminate()
            try:
                await asyncio.wait_for(proxy.wait(), 10)
            except TimeoutError:
                proxy.kill()
                await proxy.wait()
        await asyncio.to_thread(cluster.stop_all)
