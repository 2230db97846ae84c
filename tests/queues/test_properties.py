"""Property tests: random sequences of operations, invariants checked after each one.

- no agent above capacity (per channel, voice exclusivity), and load == offers + tasks
  in hand + wrap-ups;
- no task lost or duplicated: every task is live in exactly one state or finished once;
  a task is with at most one agent, offered to several only by ring-all;
- FIFO within a priority: an offer never passes over an earlier waiting task of the same
  queue and channel that the agent could take (callbacks included: they keep their
  place, so they are never ahead of earlier contacts, and each goes to one agent);
- service-level arithmetic: the figures equal a recount from the published events.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from acd_helpers import Rig, agent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import CentraleConfig
from queues.errors import AcdError
from queues.model import ASSIGNED, OFFERED, WAITING, WRAP_UP, LiveAgent, LiveTask

CONFIG: dict[str, Any] = {
    "queues": [
        {"id": "q1", "channels": ["voice", "webchat", "email"], "skills": {"fr": 2},
         "rona_seconds": 15, "wrap_up_seconds": 5, "sticky_agent_seconds": 10,
         "service_level_seconds": 20, "short_abandon_seconds": 5,
         "overflow": [{"after_seconds": 20, "relax_skills": {"fr": 3}},
                      {"after_seconds": 40, "add_queues": ["q3"]}]},
        {"id": "q2", "strategy": "ring_all", "channels": ["voice"], "rona_seconds": 10,
         "rona_action": "stay_available", "wrap_up_seconds": 0, "service_level_seconds": 10},
        {"id": "q3", "strategy": "round_robin", "channels": ["voice", "webchat"],
         "max_length": 6, "max_wait_seconds": 100, "exit": {"queue": "q1"},
         "wrap_up_seconds": 3},
    ],
    "agents": [
        agent("a1", ["q1", "q2"], {"fr": 1}, webchat=2, email=2),
        agent("a2", ["q2", "q3"], {"fr": 3}, webchat=1, voice_exclusive=False),
        agent("a3", ["q3", "q1"], {"fr": 2}, webchat=2, email=1),
        agent("a4", ["q1", "q2", "q3"], {}, webchat=3),
    ],
    "wrap_up_codes": [{"id": "done"}],
    "reason_codes": [{"id": "break"}],
}
# The same centre after a hot reload: other skills, memberships, rules and orders.
CONFIG_B: dict[str, Any] = {
    **CONFIG,
    "acd": {"agent_queue_order": "longest_waiting_task"},
    "queues": [
        {**CONFIG["queues"][0], "skills": {"fr": 3}, "strategy": "least_occupied",
         "overflow": [{"after_seconds": 15, "add_queues": ["q2"], "priority_boost": 1}]},
        CONFIG["queues"][1],
        {**CONFIG["queues"][2], "strategy": "best_skill", "max_length": 3},
    ],
    "agents": [
        agent("a1", ["q2", "q1"], {"fr": 2}, webchat=2, email=2),
        agent("a2", ["q3"], {"fr": 1}, webchat=1, voice_exclusive=False),
        agent("a3", ["q3", "q1"], {"fr": 2}, webchat=2, email=1),
        agent("a4", ["q1", "q2", "q3"], {}, webchat=3),
    ],
}
AGENTS = ["a1", "a2", "a3", "a4"]
QUEUE_CHANNELS = {"q1": ["voice", "webchat", "email"], "q2": ["voice"], "q3": ["voice", "webchat"]}

ops = st.one_of(
    st.tuples(st.just("enqueue"), st.sampled_from(sorted(QUEUE_CHANNELS)), st.integers(0, 2),
              st.integers(0, 2), st.sampled_from([None, "a1", "a3"]), st.booleans()),
    st.tuples(st.just("abandon"), st.integers(0, 50)),
    st.tuples(st.just("login"), st.sampled_from(AGENTS)),
    st.tuples(st.just("logout"), st.sampled_from(AGENTS)),
    st.tuples(st.just("state"), st.sampled_from(AGENTS), st.sampled_from(["available",
                                                                          "not_ready"])),
    st.tuples(st.just("accept"), st.sampled_from(AGENTS), st.integers(0, 3)),
    st.tuples(st.just("accept"), st.sampled_from(AGENTS), st.integers(0, 3)),
    st.tuples(st.just("reject"), st.sampled_from(AGENTS), st.integers(0, 3)),
    st.tuples(st.just("complete"), st.sampled_from(AGENTS), st.integers(0, 3)),
    st.tuples(st.just("end_wrap"), st.sampled_from(AGENTS)),
    st.tuples(st.just("extend_wrap"), st.sampled_from(AGENTS)),
    st.tuples(st.just("callback"), st.integers(0, 50)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1, 3, 5, 10, 15, 30])),
    st.tuples(st.just("reload"), st.booleans()),
)


CONFIGS = {False: CentraleConfig.model_validate(CONFIG),
           True: CentraleConfig.model_validate(CONFIG_B)}


class CheckedRig(Rig):
    """A rig whose engine checks the FIFO rule at the moment of every offer."""

    def __init__(self) -> None:
        super().__init__(CONFIG)
        engine = self.engine
        original = engine._offer
        self.fifo_violations: list[str] = []

        def checked_offer(t: LiveTask, a: LiveAgent, via: str) -> None:
            if not t.sticky_until:
                now = engine._mono()
                for w in engine._tasks.values():
                    sees_w = any(q in a.queues for q in (w.queue_id, *w.add_queues)
                                 if w.channel in engine._queues[q].channels)
                    if (w is not t and w.status == WAITING and not w.sticky_until
                            and w.channel == t.channel and w.queue_id == t.queue_id
                            and sees_w and w.key() < t.key() and a.qualifies(w.requirements)
                            and not engine._declined(w, a.id, now)):
                        self.fifo_violations.append(f"{t.id} offered to {a.id} before {w.id}")
            original(t, a, via)

        engine._offer = checked_offer  # type: ignore[method-assign]


def check_invariants(r: CheckedRig, enqueued: list[str]) -> None:
    e = r.engine
    assert not r.fifo_violations, r.fifo_violations
    for a in e._agents.values():
        per_channel: Counter[str] = Counter()
        for offer_id, task_id in a.offers.items():
            assert e._offers[offer_id].agent_id == a.id
            per_channel[e._tasks[task_id].channel] += 1
        for task_id in a.active:
            t = e._tasks[task_id]
            assert t.status == ASSIGNED and t.agent_id == a.id
            per_channel[t.channel] += 1
        for task_id, w in a.wraps.items():
            assert e._tasks[task_id].status == WRAP_UP
            per_channel[w.channel] += 1
        for c, used in a.load.items():
            assert used == per_channel[c], (a.id, c)
            assert used <= a.capacity[c], (a.id, c, used)
        if a.voice_exclusive and a.load["voice"]:
            assert a.total_load == a.load["voice"]
        assert a.total_load == sum(a.load.values())
        if a.presence == "logged_out":
            assert a.total_load == 0
    holders: Counter[str] = Counter()
    for a in e._agents.values():
        holders.update(list(a.active))
        holders.update(list(a.wraps))
    for t in e._tasks.values():
        if t.status in (ASSIGNED, WRAP_UP):
            assert holders[t.id] == 1
        else:
            assert holders[t.id] == 0
        if t.status == OFFERED:
            assert t.offers
            if len(t.offers) > 1:
                assert e._queues[t.queue_id].strategy == "ring_all" and t.kind == "normal"
        else:
            assert not t.offers
        in_queue = [q for q, ids in e._in_queue.items() if t.id in ids]
        assert in_queue == ([t.queue_id] if t.status in (WAITING, OFFERED) else [])
    # nothing lost, nothing twice: live or finished, exactly once, one terminal event
    live, finished = set(e._tasks), set(e._finished)
    assert not live & finished
    assert live | finished == set(enqueued)
    assert len(enqueued) == len(set(enqueued))
    terminal = Counter(
        ev.payload["task_id"] for ev in r.bus.events
        if ev.topic in ("task.abandoned", "task.exited", "task.wrap_up_ended"))
    assert set(terminal) == finished and all(n == 1 for n in terminal.values())


def check_service_level(r: CheckedRig) -> None:
    stats = r.engine.stats()["queues"]
    for qid, q in r.engine._queues.items():
        answered = [ev.payload["wait_seconds"] for ev in r.bus.of("task.accepted")
                    if ev.payload["queue_id"] == qid]
        abandoned = [ev.payload["wait_seconds"] for ev in r.bus.of("task.abandoned")
                     if ev.payload["queue_id"] == qid]
        exited = sum(1 for ev in r.bus.of("task.exited") if ev.payload["queue_id"] == qid)
        in_sl = sum(1 for w in answered if w <= q.service_level_seconds)
        short = sum(1 for w in abandoned if w < q.short_abandon_seconds)
        offered = len(answered) + len(abandoned) + exited
        s = stats[qid]
        assert (s["answered"], s["abandoned"], s["short_abandoned"], s["exited"]) == (
            len(answered), len(abandoned), short, exited)
        assert s["offered"] == offered
        assert s["service_level"] == (in_sl / offered if offered else None)
        excl = offered - short
        assert s["service_level_excl_short"] == (in_sl / excl if excl else None)
        if answered:
            assert abs(s["asa"] - sum(answered) / len(answered)) < 1e-9


async def run_sequence(sequence: list[tuple]) -> None:
    r = CheckedRig()
    e = r.engine
    enqueued: list[str] = []
    for n, op in enumerate(sequence):
        kind = op[0]
        try:
            if kind == "enqueue":
                _, qid, ch, prio, pref, vip = op
                channels = QUEUE_CHANNELS[qid]
                t = await e.enqueue(
                    queue_id=qid, channel=channels[ch % len(channels)], case_id=f"k{n}",
                    customer_id=f"c{n}", priority=prio, preferred_agent_id=pref,
                    skills={"fr": 1} if vip else None)
                enqueued.append(t.id)
            elif kind in ("abandon", "callback"):
                live = [t for t in e._tasks.values() if t.status in (WAITING, OFFERED)]
                if live:
                    t = live[op[1] % len(live)]
                    if kind == "abandon":
                        await e.abandon(t.id)
                    else:
                        await e.request_callback(t.id, "+3312345678")
            elif kind == "login":
                await e.agent_login(op[1], "s")
            elif kind == "logout":
                await e.agent_logout(op[1])
            elif kind == "state":
                await e.set_state(op[1], op[2], "break" if op[2] == "not_ready" else None)
            elif kind in ("accept", "reject"):
                offers = e.offers_for(op[1])
                if offers:
                    offer = offers[op[2] % len(offers)]
                    method = e.accept if kind == "accept" else e.reject
                    await method(offer.id, op[1])
            elif kind == "complete":
                tasks = e.agent(op[1]).tasks
                if tasks:
                    await e.complete(tasks[op[2] % len(tasks)], op[1], wrap_up_code="done")
            elif kind == "end_wrap":
                await e.end_wrap_up(op[1])
            elif kind == "extend_wrap":
                await e.extend_wrap_up(op[1], 4)
            elif kind == "reload":
                await e.apply_config(CONFIGS[op[1]])
            elif kind == "advance":
                r.clock.advance(op[1])
                await e.tick()
        except AcdError:
            pass  # refused input is part of the sequence; the invariants must still hold
        check_invariants(r, enqueued)
    check_service_level(r)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=20, max_size=120))
def test_invariants_hold_over_random_event_sequences(sequence: list[tuple]) -> None:
    asyncio.run(run_sequence(sequence))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=25))
def test_fifo_within_priority_by_arrival(arrivals: list[tuple[int, int]]) -> None:
    """With one agent taking tasks one by one, the service order is exactly: priority
    descending, then arrival — whatever the arrival pattern, callbacks included."""

    async def scenario() -> None:
        r = Rig({"queues": [{"id": "q", "wrap_up_seconds": 0}], "agents": [agent("a1", ["q"])]})
        expected = []
        for i, (priority, gap) in enumerate(arrivals):
            r.clock.advance(gap)
            t = await r.enqueue(priority=priority, case_id=f"k{i}")
            if i % 3 == 1:
                await r.engine.request_callback(t.id, "+3312345678")
            expected.append((-priority, i, t.id))
        await r.login("a1")
        served = []
        for _ in arrivals:
            (offer,) = r.engine.offers_for("a1")
            served.append(offer.task_id)
            await r.engine.accept(offer.id, "a1")
            await r.engine.complete(offer.task_id, "a1")
        assert served == [tid for *_, tid in sorted(expected)]

    asyncio.run(scenario())
