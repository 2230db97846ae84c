"""Shared ACD state on the real Redis: the guarantees the cluster relies on — a task is
offered to one agent at a time, an agent never exceeds a channel's capacity, whatever
the interleaving of nodes — and the take-over of a dead node's tasks and timers."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from queues.errors import InvalidArgumentError
from queues.shared import FencedError, NodeIdInUseError, SharedAcdState

pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("shared_worker.py")
REPO = Path(__file__).resolve().parents[2]
CHAT_CAP = 3


async def setup_pool(state: SharedAcdState, tasks: int, agents: int,
                     channel: str = "whatsapp") -> None:
    for i in range(agents):
        await state.set_agent(f"a{i}", {channel: CHAT_CAP, "voice": 1},
                              presence="available")
    for i in range(tasks):
        assert await state.register_task(f"t{i}", channel, {"n": i})


async def assert_consistent(state: SharedAcdState, tasks: int, agents: int) -> None:
    """Counters equal slots, loads within capacity, task status agrees with its offers."""
    held: Counter[str] = Counter()
    for i in range(agents):
        load = await state.agent_load(f"a{i}")
        for channel, n in load.load.items():
            assert 0 <= n <= load.capacity.get(channel, 0), (f"a{i}", load)
            assert n == sum(1 for c in load.slots.values() if c == channel), load
        assert load.total == len(load.slots)
        for token in load.slots:
            held[token] += 1
    for i in range(tasks):
        task = await state.task_state(f"t{i}")
        assert task is not None
        if task["status"] == "waiting":
            assert not task["offers"] and held[f"t{i}"] == 0
        elif task["status"] == "offered":
            assert len(task["offers"]) == 1 and held[f"t{i}"] == 1
        else:
            assert task["status"] == "assigned" and held[f"t{i}"] == 1
            assert not task["offers"]


async def test_concurrent_claims_in_one_process(make_state) -> None:
    state = make_state("node-a")
    await state.join()
    await setup_pool(state, tasks=40, agents=6)
    rng = random.Random(7)
    attempts = [(f"t{rng.randrange(40)}", f"a{rng.randrange(6)}", f"o{i}")
                for i in range(400)]

    async def worker(mine: list[tuple[str, str, str]]) -> list:
        return [await state.claim_offer(t, a, o) for t, a, o in mine]

    # 40 asyncio tasks interleaving their 10 claims each on one connection pool.
    chunks = [attempts[i::40] for i in range(40)]
    per_worker = await asyncio.gather(*(worker(chunk) for chunk in chunks))
    attempts = [att for chunk in chunks for att in chunk]
    results = [res for chunk in per_worker for res in chunk]
    won = [att for att, res in zip(attempts, results, strict=True) if res.ok]
    per_task = Counter(t for t, _a, _o in won)
    per_agent = Counter(a for _t, a, _o in won)
    assert max(per_task.values()) == 1
    assert max(per_agent.values()) <= CHAT_CAP
    # Every agent is full or every task is taken: the refusals were for a reason.
    assert len(won) == min(40, 6 * CHAT_CAP)
    refusals = Counter(r.reason for r in results if not r.ok)
    assert set(refusals) <= {"offered", "full"}, refusals
    await assert_consistent(state, 40, 6)


def run_worker(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def collect(procs: list[subprocess.Popen[str]]) -> list[str]:
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            outs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outs


async def test_two_processes_never_double_offer_or_overfill(
        make_state, redis_url: str, acd_prefix: str) -> None:
    state = make_state("setup")
    await setup_pool(state, tasks=60, agents=8)
    procs = [run_worker("claims", redis_url, acd_prefix, f"p{n}", n, 60, 8, 600)
             for n in range(2)]
    outs = await asyncio.to_thread(collect, procs)
    won = [w for out in outs for w in json.loads(out)]
    assert max(Counter(t for t, _a, _o in won).values()) == 1
    assert max(Counter(a for _t, a, _o in won).values()) <= CHAT_CAP
    assert len(won) == min(60, 8 * CHAT_CAP)
    await assert_consistent(state, 60, 8)


async def test_two_processes_churning_leave_the_state_consistent(
        make_state, redis_url: str, acd_prefix: str) -> None:
    state = make_state("setup")
    await setup_pool(state, tasks=30, agents=5)
    procs = [run_worker("churn", redis_url, acd_prefix, f"p{n}", 100 + n, 30, 5, 800)
             for n in range(2)]
    outs = await asyncio.to_thread(collect, procs)
    counts = [json.loads(out) for out in outs]
    assert sum(c["claimed"] for c in counts) > 0, counts
    assert sum(c["released"] for c in counts) > 0, counts
    await assert_consistent(state, 30, 5)


async def test_ring_all_accept_has_one_winner_and_frees_the_other_slots(
        make_state) -> None:
    state = make_state("node-a")
    await state.join()
    for agent in ("anna", "bob", "carl"):
        await state.set_agent(agent, {"voice": 1}, presence="available")
    assert await state.register_task("call-1", "voice", {}, ring_all=True)
    for n, agent in enumerate(("anna", "bob", "carl")):
        assert await state.claim_offer("call-1", agent, f"o{n}")
    assert (await state.claim_offer("call-1", "anna", "o9")).reason == "offered"
    assert (await state.accept("call-1", "o0", "bob")).reason == "not_yours"
    results = await asyncio.gather(state.accept("call-1", "o1", "bob"),
                                   state.accept("call-1", "o2", "carl"))
    assert sorted(r.reason for r in results) == ["no_offer", "ok"]
    winner, loser = ("bob", "carl") if results[0].ok else ("carl", "bob")
    won = results[0] if results[0].ok else results[1]
    assert {w.agent_id for w in won.withdrawn} == {"anna", loser}
    assert (await state.agent_load("anna")).total == 0
    assert (await state.agent_load(loser)).total == 0
    assert (await state.agent_load(winner)).load == {"voice": 1}
    assert (await state.start_wrap_up("call-1", loser)).reason == "not_assigned"
    assert await state.start_wrap_up("call-1", winner)
    assert (await state.agent_load(winner)).total == 1  # wrap-up keeps the slot
    assert (await state.end_task("call-1")).ok
    assert (await state.agent_load(winner)).total == 0
    assert await state.task_state("call-1") is None
    assert (await state.end_task("call-1")).reason == "ended"  # once, then a tombstone


async def test_voice_exclusive_presence_and_idempotent_release(make_state) -> None:
    state = make_state("node-a")
    await state.set_agent("dora", {"voice": 1, "webchat": 2}, voice_exclusive=True,
                          presence="available")
    assert await state.reserve_agent("dora", "webchat", "chat-1")
    assert (await state.reserve_agent("dora", "voice", "call-1")).reason == "full"
    assert await state.reserve_agent("dora", "webchat", "chat-1")  # same token: no-op
    assert (await state.agent_load("dora")).load["webchat"] == 1
    assert await state.release_agent("dora", "chat-1")
    assert not await state.release_agent("dora", "chat-1")  # never below zero
    assert await state.reserve_agent("dora", "voice", "call-1")
    assert (await state.reserve_agent("dora", "webchat", "chat-2")).reason == "full"
    assert await state.set_presence("dora", "not_ready")
    await state.release_agent("dora", "call-1")
    assert (await state.reserve_agent("dora", "webchat", "chat-3")).reason == \
        "not_available"
    assert (await state.reserve_agent("nobody", "voice", "x")).reason == "unknown_agent"
    assert (await state.set_presence("nobody", "available")).reason == "unknown_agent"


async def test_bad_input_is_refused_clearly(make_state, redis_url: str) -> None:
    state = make_state("node-a")
    with pytest.raises(InvalidArgumentError, match="unknown channel"):
        await state.reserve_agent("anna", "fax", "t1")
    with pytest.raises(InvalidArgumentError, match="agent_id"):
        await state.reserve_agent("an na", "voice", "t1")
    with pytest.raises(InvalidArgumentError, match="capacity"):
        await state.set_agent("anna", {"voice": -1})
    with pytest.raises(InvalidArgumentError, match="presence"):
        await state.set_presence("anna", "busy")
    with pytest.raises(InvalidArgumentError, match="node_id"):
        SharedAcdState(state.redis, "a:b")
    raw = Redis.from_url(redis_url)  # bytes replies would read as refusals: refused
    with pytest.raises(ValueError, match="decode_responses"):
        SharedAcdState(raw, "node-b")
    await raw.aclose()


async def test_a_task_registered_on_two_nodes_is_one_task(make_state) -> None:
    a, b = make_state("node-a"), make_state("node-b")
    results = await asyncio.gather(a.register_task("wa-msg-1", "whatsapp", {}),
                                   b.register_task("wa-msg-1", "whatsapp", {}))
    assert sorted(r.reason for r in results) == ["exists", "ok"]
    await a.set_agent("anna", {"whatsapp": 2}, presence="available")
    owner = a if results[0].ok else b
    other = b if owner is a else a
    assert (await other.claim_offer("wa-msg-1", "anna", "o1")).reason == "not_owner"
    assert await owner.claim_offer("wa-msg-1", "anna", "o2")


async def test_node_id_in_use_is_refused(make_state) -> None:
    first = make_state("node-a", node_ttl_ms=1000)
    await first.join()
    second = make_state("node-a", node_ttl_ms=1000)
    with pytest.raises(NodeIdInUseError):
        await second.join(wait_s=0.3)


async def test_a_lost_lease_fences_the_node(make_state) -> None:
    state = make_state("node-a", node_ttl_ms=300)
    other = make_state("node-b")
    await state.join()
    await other.join()
    await state.register_task("t1", "email", {})
    # The lease expires (a pause) and node B adopts, in one transaction: node A's own
    # keeper, renewing in the background, must not take its lease back in between.
    pipe = state.redis.pipeline(transaction=True)
    pipe.delete(state.node_lease.key)
    await other._adopt(keys=[], args=[other.prefix, "node-a", "node-b"], client=pipe)
    _deleted, adopted = await pipe.execute()
    assert adopted[:3] == ["ok", "t1", "waiting"], adopted
    lost = await state.keeper.renew_all()
    assert lost == [state.node_lease] and state.fenced
    with pytest.raises(FencedError):
        await state.claim_offer("t1", "anna", "o1")
    with pytest.raises(FencedError):
        await state.pop_due_timers()


async def test_a_lease_nobody_adopted_is_taken_again(make_state) -> None:
    """Issue 22: Redis restarted (or the node was cut off) for longer than the lease
    TTL, so the lease key expired, but no node adopted this one meanwhile: it takes its
    lease again with the same token and keeps its tasks instead of every node of the
    cluster being fenced by one Redis restart."""
    state = make_state("node-a", node_ttl_ms=300)
    await state.join()
    await state.register_task("t1", "email", {})
    token = state.node_lease.token
    await state.redis.delete(state.node_lease.key)  # expired while Redis was away
    assert await state.keeper.renew_all() == [] and not state.fenced
    assert state.node_lease.revived >= 1  # by this round, or the keeper's own
    assert await state.redis.get(state.node_lease.key) == token
    assert await state.owned_tasks() == {"t1"}
    assert await state.pop_due_timers() == []  # fenced by the token: still ours


async def test_timers_fire_once_and_only_on_their_owner(make_state) -> None:
    state = make_state("node-a")
    await state.join()
    await state.schedule_timer("rona:o1", 1000)
    await state.schedule_timer("wrap:anna", 5000)
    await state.schedule_timer("rona:o2", 2000)
    await state.cancel_timer("rona:o2")
    assert await state.pop_due_timers(now_epoch_ms=4000) == [("rona:o1", 1000)]
    assert await state.pop_due_timers(now_epoch_ms=4000) == []
    assert await state.pop_due_timers(now_epoch_ms=6000) == [("wrap:anna", 5000)]


async def test_a_killed_nodes_tasks_and_timers_are_taken_over(
        make_state, redis_url: str, acd_prefix: str) -> None:
    survivor = make_state("survivor", node_ttl_ms=1000)
    await survivor.join()
    await survivor.set_agent("anna", {"whatsapp": 1}, presence="available")
    await survivor.set_agent("bob", {"webchat": 1}, presence="available")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), "victim", redis_url, acd_prefix, "victim", "1000",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"ready", "the victim process did not start"
        assert await survivor.take_over_dead_nodes() == {}  # alive: nothing to take
        assert (await survivor.agent_load("anna")).total == 1
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        adopted: dict = {}
        while not adopted and loop.time() - killed_at < 5:
            adopted = await survivor.take_over_dead_nodes()
            await asyncio.sleep(0.1)
        taken_after = loop.time() - killed_at
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert set(adopted) == {"victim"}
    status = {t.task_id: t.status for t in adopted["victim"]}
    assert status == {"chat-offered": "waiting", "chat-assigned": "assigned",
                      "mail-waiting": "waiting"}
    assert taken_after < 2.5  # TTL 1 s: taken within a second or so of expiry
    assert (await survivor.agent_load("anna")).total == 0  # the ringing offer is gone
    assert (await survivor.agent_load("bob")).total == 1  # the accepted chat stays
    assert await survivor.owned_tasks() == set(status)
    assert await survivor.pop_due_timers() == [('{"kind": "rona", "key": "offer-1"}', 1)]
    assert await survivor.claim_offer("chat-offered", "anna", "o-new")
    # The old owner, were it only paused, is fenced off its former tasks.
    ghost = make_state("victim")
    assert (await ghost.claim_offer("mail-waiting", "anna", "o-x")).reason == "not_owner"
    assert await survivor.take_over_dead_nodes() == {}


async def test_a_restarted_node_recovers_what_nobody_took(make_state) -> None:
    first = make_state("node-a", node_ttl_ms=500)
    await first.join()
    await first.register_task("t1", "email", {"queue_id": "mail"})
    await first.keeper.stop(release=False)  # crash: the lease just runs out
    again = make_state("node-a", node_ttl_ms=500)
    recovered = await again.join()
    assert [(t.task_id, t.status, t.data) for t in recovered] == \
        [("t1", "waiting", {"queue_id": "mail"})]
    assert await again.owned_tasks() == {"t1"}


async def test_batched_calls_decide_each_item_on_its_own(make_state) -> None:
    state = make_state("node-a")
    await state.join()
    await state.set_agent("anna", {"whatsapp": 1}, presence="available")
    registered = await state.register_tasks(
        [("t1", "whatsapp", {"n": 1}), ("t2", "whatsapp", {"n": 2}),
         ("t1", "whatsapp", {"n": 3})])
    assert [r.reason for r in registered] == ["ok", "ok", "exists"]
    claims = await state.claim_offers([("t1", "anna", "o1"), ("t2", "anna", "o2")])
    assert [c.reason for c in claims] == ["ok", "full"]
    accepted = await state.accept_offers([("t1", "o1", "anna"), ("t2", "o2", "anna")])
    assert [a.reason for a in accepted] == ["ok", "no_offer"]
    ended = await state.end_tasks(["t1", "t2", "t3"])
    assert [e.reason for e in ended] == ["ok", "ok", "unknown_task"]
    # An ended id stays taken: a late re-run (a node paused past its inbox claim)
    # cannot register the conversation's task again.
    again = await state.register_tasks([("t1", "whatsapp", {}), ("t3", "whatsapp", {})])
    assert [r.reason for r in again] == ["exists", "ok"]
    assert 0 < await state.redis.ttl(state.keys.ended("t1")) <= 86400
    assert (await state.agent_load("anna")).total == 0
    assert await state.claim_offers([]) == []
    with pytest.raises(InvalidArgumentError):
        await state.claim_offers([("t 1", "anna", "o")])


async def test_only_the_owner_ends_a_task(make_state) -> None:
    """A node paused past its lease wakes with a wrap-up timer due on a task its
    adopter now runs: its end is refused (and so never announced), the adopter's goes
    through once (issue 22)."""
    owner, paused = make_state("node-a"), make_state("node-b")
    await owner.join()
    await paused.join()
    await owner.register_task("chat-1", "whatsapp", {})
    assert [r[0] for r in await paused.run_ops([("end", ["chat-1"])])] == ["not_owner"]
    assert await owner.task_state("chat-1") is not None
    assert [r[0] for r in await owner.run_ops([("end", ["chat-1"])])] == ["ok"]
    assert [r[0] for r in await owner.run_ops([("end", ["chat-1"])])] == ["ended"]


def _life_ops(prefix: str) -> list[tuple[str, list[object]]]:
    """One task's whole life and a second task's refusals, as the engine queues them."""
    t, u = f"{prefix}-t", f"{prefix}-u"
    return [
        ("register", [t, "whatsapp", 0, '{"n": 1}']),
        ("register", [t, "whatsapp", 0, "{}"]),           # exists
        ("register", [u, "whatsapp", 0, "{}"]),
        ("claim", [t, "anna", f"{prefix}-o1"]),
        ("claim", [u, "anna", f"{prefix}-o2"]),            # full (capacity 1)
        ("claim", [u, "nobody", f"{prefix}-o3"]),          # unknown agent
        ("accept", [t, f"{prefix}-o1", "anna"]),
        ("update", [t, "whatsapp", '{"n": 2}', 0]),
        ("wrap", [t, "anna"]),
        ("agent_state", ["anna", "not_ready", "s1", "break"]),
        ("end", [t]),
        ("end", [t]),                                     # ended
        ("release", [u, "no-such-offer"]),
    ]


async def test_one_batch_script_answers_as_the_scripts_one_by_one(make_state) -> None:
    """Issue 22 (throughput): a flush's ops go to Redis as one script. Its replies are
    those of the single scripts run in order, it reports the revisions it moved (so the
    node does not read its own changes back), and an op that fails does not stop the
    ops after it."""
    state = make_state("node-a")
    await state.join()
    await state.set_agent("anna", {"whatsapp": 1}, presence="available")
    state.batched = False
    before = await state.agent_revisions()
    one_by_one = await state.run_ops(_life_ops("p"))
    await state.set_agent("anna", {"whatsapp": 1}, presence="available")
    state.batched, state.batch_json = True, False  # the ops as ARGV
    as_argv = await state.run_ops(_life_ops("a"))
    assert as_argv == one_by_one
    await state.set_agent("anna", {"whatsapp": 1}, presence="available")
    state.batch_json = True  # the default: the ops as one JSON argument
    rev = (await state.agent_revisions())["anna"]
    batched, revisions = await state.run_batch(_life_ops("b"))
    assert batched == one_by_one
    assert [r if isinstance(r, str) else r[0] for r in batched] == [
        "ok", "exists", "ok", "ok", "full", "unknown_agent", "ok", "ok", "ok", "ok", "ok",
        "ended", "no_offer"]
    after = (await state.agent_revisions())["anna"]
    assert revisions == [("anna", rev, after)] and after > rev > before["anna"]
    # An op Redis rejects (an agent key of the wrong type) is answered with its error;
    # the ops after it still run.
    await state.redis.set(state.keys.agent("broken"), "not a hash")
    replies, _ = await state.run_batch([("agent_state", ["broken", "available", "", ""]),
                                        ("register", ["b-v", "whatsapp", 0, "{}"])])
    assert replies[0].startswith("error: ") and "WRONGTYPE" in replies[0], replies
    assert replies[1] == "ok"
    with pytest.raises(InvalidArgumentError):
        await state.run_batch([("drop_everything", [])])


async def test_redis_away_gives_up_a_plain_lease_but_not_a_node_lease() -> None:
    """While Redis does not answer, a node lease is kept (whether it is lost is known
    when Redis answers: it may be revived), a singleton job's lease is given up once its
    TTL ran out (another node may take it the moment Redis is back)."""
    import socket

    from queues.shared import Lease, LeaseKeeper

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    lost: list[Lease] = []

    async def on_lost(lease: Lease) -> None:
        lost.append(lease)

    keeper = LeaseKeeper(on_lost=on_lost)
    node = Lease(away, "node:a", 300, revive_in=("nodes", "a"))
    job = Lease(away, "lease:dialer", 300)
    loop = asyncio.get_running_loop()
    for lease in (node, job):
        lease.renewed_at = loop.time()
        keeper.add(lease)
    assert await keeper.renew_all() == [] and keeper.failing  # within the TTL: wait
    for lease in (node, job):
        lease.renewed_at = loop.time() - 1.0  # the TTL has run out since
    assert await keeper.renew_all() == [job] and lost == [job]
    assert keeper.leases == [node] and keeper.failing
    await away.aclose()


async def test_agent_states_read_in_one_script_on_either_connection(make_state) -> None:
    """A node's sync reads the agents other nodes changed through one script
    (scripts.AGENT_STATES) on the lean connection: the same answer as through redis-py,
    for an agent holding slots, one not ready with a reason, and one Redis never knew."""
    state = make_state("node-a")
    await state.join()
    await state.set_agent("anna", {"whatsapp": 2, "voice": 1}, presence="available")
    await state.set_agent("bram", {"whatsapp": 1}, presence="available")
    assert await state.log_in("anna", "sess-1")
    assert await state.reserve_agent("anna", "whatsapp", "t1")
    assert await state.reserve_agent("anna", "whatsapp", "t2")
    await state.run_ops([("agent_state", ["bram", "not_ready", "", "lunch"])])
    ids = ["anna", "bram", "nobody"]
    assert state.lane is not None
    on_lane = await state.agent_states(ids)
    state.use_lane = False
    assert await state.agent_states(ids) == on_lane
    assert on_lane == {
        "anna": {"presence": "available", "session": "sess-1", "reason": None,
                 "slots": {"t1": "whatsapp", "t2": "whatsapp"}},
        "bram": {"presence": "not_ready", "session": None, "reason": "lunch", "slots": {}},
        "nobody": {"presence": None, "session": None, "reason": None, "slots": {}},
    }
    assert await state.agent_states([]) == {}
