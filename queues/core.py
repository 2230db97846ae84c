"""The ACD engine's core: state, indexes and the routing decisions themselves.

All routing state lives in this object and changes only inside its methods, between two
`await`s: each public method validates, mutates, settles (routes whatever the change made
routable) and only then awaits the bus and the store. A decision is therefore atomic on
the node: an agent never exceeds a channel's capacity and a task is offered to one agent
at a time (ring-all aside, until one accepts). Time comes from the injected clock only,
so a `ManualClock` makes every test and property run deterministic.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from config.schema import CentraleConfig
from config.schema.acd import Queue as QueueCfg
from core.clock import Clock
from core.events import Event
from queues import errors as E
from queues.ids import fast_id_factory
from queues.index import AgentEntry, AgentHeap, AgentIndex, TaskEntry, TaskIndex
from queues.model import (
    CHANNELS,
    COMPLETED,
    EXITED,
    OFFERED,
    WAITING,
    AgentView,
    LiveAgent,
    LiveTask,
    LiveWrapUp,
    Task,
    WrapUp,
)
from queues.ports import EventPublisher, SharedStatePort
from queues.stats import Counters
from queues.store import AcdStore, AgentStateRecord, InMemoryAcdStore, TaskEventRecord

log = logging.getLogger(__name__)

_MAX_HOPS = 8  # queue moves per task: an exit/overflow cycle in the config cannot loop
_FINISHED_KEEP = 10_000
_ENDED_OFFERS_KEEP = 50_000


@dataclass(slots=True)
class LiveOffer:
    id: str
    task_id: str
    agent_id: str
    queue_id: str  # the queue whose agent list the agent was chosen from
    expires_mono: float
    expires_at: datetime


class RoutingCore:
    """The engine's state and routing machinery; `AcdEngine` adds the public API.

    Everything here is synchronous: a change and the routing it triggers happen between
    two awaits. Events and report records are queued and sent by `_flush`."""

    def __init__(
        self,
        config: CentraleConfig,
        clock: Clock,
        bus: EventPublisher,
        store: AcdStore | None = None,
        *,
        id_factory: Callable[[], str] | None = None,
        default_aht_seconds: float = 180.0,
        stats_interval_seconds: float = 1.0,
        tick_interval_seconds: float = 0.2,
        shared: SharedStatePort | None = None,
    ) -> None:
        self._clock = clock
        # Shared ACD state (queues.shared, several nodes on one Redis): None = this node
        # routes alone. See queues.cluster.
        self._shared = shared
        self._ops: list[tuple[str, list[Any]]] = []
        self._unpublished: dict[str, tuple[Event, TaskEventRecord]] = {}
        # Shared state: a task's end event until Redis confirmed the end (queues.cluster
        # drops it when Redis says another node owns the task, or it ended already).
        self._unconfirmed_ends: dict[str, Event] = {}
        # Shared state on the bus's Redis: where the end script adds a task's events
        # itself (queues.cluster.announce_ends_through), and what each end in flight
        # carries, kept the same for its retries.
        self._announce_stream: Callable[[], tuple[str, int] | None] | None = None
        self._announcing: dict[str, tuple[str, int, list[Event]]] = {}
        self._refused = 0
        # False from a failed round trip to the shared state to the next one that
        # answers: routing decisions are refused meanwhile (queues.cluster._coordinated).
        self._shared_reachable = True
        # Shared state: wait one loop turn before a flush's first round trip, so that
        # concurrent calls share it (False only for the benchmark's A/B).
        self.gather_before_flush = True
        self._registering: list[tuple[list[Any], asyncio.Future[str]]] = []
        # Task ids whose registration got no reply (Redis may have run it): the next
        # registration of the id takes that one back (queues.cluster._register_now).
        self._unanswered_registrations: dict[str, None] = {}
        self._seen_revisions: dict[str, int] = {}  # agent -> revision last read back
        self._bus = bus
        self._store: AcdStore = store if store is not None else InMemoryAcdStore(keep=False)
        self._new_id = id_factory or fast_id_factory()
        self._default_aht = default_aht_seconds
        self._stats_interval = stats_interval_seconds
        self._tick_interval = tick_interval_seconds
        self._queues: dict[str, QueueCfg] = {}
        self._closed_queues: set[str] = set()  # removed by a reload, kept for live tasks
        self._agents: dict[str, LiveAgent] = {}
        self._retired_agents: set[str] = set()  # removed by a reload
        self._in_queue: dict[str, dict[str, None]] = {}
        self._qstats: dict[str, Counters] = {}
        self._astats: dict[str, Counters] = {}
        self._tasks: dict[str, LiveTask] = {}
        self._finished: OrderedDict[str, Task] = OrderedDict()
        self._offers: dict[str, LiveOffer] = {}
        self._ended_offers: OrderedDict[str, str] = OrderedDict()
        self._task_index = TaskIndex()
        self._agent_index = AgentIndex()
        self._timers: list[tuple[float, int, str, str, Any]] = []
        self._dirty_tasks: dict[str, None] = {}
        self._dirty_agents: dict[str, None] = {}
        self._outbox: list[Event] = []
        self._task_records: list[TaskEventRecord] = []
        self._agent_records: list[AgentStateRecord] = []
        self._failed_records: tuple[list[TaskEventRecord], list[AgentStateRecord]] = ([], [])
        self._cstats: dict[str, Counters] = {c: Counters() for c in CHANNELS}
        self._aht: dict[tuple[str, str], float] = {}
        self._seq = 0
        self._turn = 0
        self._timer_seq = 0
        self._decisions = 0
        self._stats_dirty = False
        self._last_stats_pub = -math.inf
        self._flushing = False
        self._generation = 0  # bumped by apply_config: queue timers of older configs lapse
        self._load_config(config)
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------ config checks

    @staticmethod
    def _check_config(config: CentraleConfig) -> None:
        problems: list[str] = []
        queue_ids = {q.id for q in config.queues}
        seen: set[str] = set()
        for q in config.queues:
            if q.id in seen:
                problems.append(f"queue {q.id!r} is defined twice")
            seen.add(q.id)
            for i, rule in enumerate(q.overflow):
                for ref in [*rule.add_queues, *([rule.move_to] if rule.move_to else [])]:
                    if ref not in queue_ids:
                        problems.append(f"queue {q.id!r} overflow[{i}] names unknown queue {ref!r}")
            if q.exit and q.exit.queue and q.exit.queue not in queue_ids:
                problems.append(f"queue {q.id!r} exit names unknown queue {q.exit.queue!r}")
        agent_ids: set[str] = set()
        for a in config.agents:
            if a.id in agent_ids:
                problems.append(f"agent {a.id!r} is defined twice")
            agent_ids.add(a.id)
            for qid in a.queues:
                if qid not in queue_ids:
                    problems.append(f"agent {a.id!r} serves unknown queue {qid!r}")
        if problems:
            raise E.AcdConfigError("; ".join(problems))

    def _load_config(self, config: CentraleConfig) -> None:
        """Take a (checked) config: queues, agents, codes and the indexes built on them.
        Used at construction and by `apply_config`; live tasks, agent sessions, loads,
        offers, wrap-ups and counters are kept."""
        self._check_config(config)
        self._settings = config.acd
        self._reason_codes = {r.id for r in config.reason_codes} | {
            config.acd.missed_reason, config.acd.disconnected_reason,
            config.acd.unreachable_reason}
        self._wrap_codes = {w.id for w in config.wrap_up_codes}
        self._skills = {sk.id for sk in config.skills}  # empty: skills are not declared
        new_queues = {q.id: q for q in config.queues}
        self._closed_queues = (set(self._queues) | self._closed_queues) - set(new_queues)
        self._queues.update(new_queues)
        for qid in new_queues:
            self._in_queue.setdefault(qid, {})
            self._qstats.setdefault(qid, Counters())

        self._members: dict[str, list[str]] = {q: [] for q in self._queues}
        configured = {a.id for a in config.agents}
        for agent_id in set(self._agents) - configured:
            self._retired_agents.add(agent_id)
            retired = self._agents[agent_id]
            retired.queues, retired.skill_rank, retired.idx = (), {}, len(config.agents)
        for idx, cfg in enumerate(config.agents):
            self._retired_agents.discard(cfg.id)
            cap = cfg.capacity
            capacity = {c: int(getattr(cap, c)) for c in CHANNELS}
            agent = self._agents.get(cfg.id)
            if agent is None:
                agent = self._agents[cfg.id] = LiveAgent(
                    id=cfg.id, idx=idx, skills={}, capacity={}, voice_exclusive=True,
                    queues=(), load={c: 0 for c in CHANNELS}, time_in={},
                    state_since=self._mono(),  # logged out since now, not since boot
                )
                self._astats[cfg.id] = Counters()
            agent.idx = idx
            agent.skills = dict(cfg.skills)
            agent.capacity = capacity
            agent.voice_exclusive = cap.voice_exclusive
            agent.queues = tuple(dict.fromkeys(cfg.queues))
            agent.total_capacity = sum(capacity.values()) or 1
            agent.skill_rank = {}
            for qid in agent.queues:
                self._members[qid].append(agent.id)
                agent.skill_rank[qid] = sum(
                    agent.skills.get(s, 99) for s in self._queues[qid].skills
                )
        self._serving_order: dict[str, tuple[str, ...]] = {}
        for agent in self._agents.values():
            order = agent.queues
            if self._settings.agent_queue_order == "priority":
                order = tuple(
                    sorted(order, key=lambda q: (-self._queues[q].priority, order.index(q)))
                )
            self._serving_order[agent.id] = order
        self._agent_index = AgentIndex()
        self._build_agent_slots()

    # ------------------------------------------------------------------ small helpers

    def _mono(self) -> float:
        return self._clock.monotonic()

    def _at(self, mono: float) -> datetime:
        """Wall-clock time of a monotonic instant (for payloads and records)."""
        return self._clock.now() + timedelta(seconds=mono - self._clock.monotonic())

    @property
    def clock(self) -> Clock:
        """The engine's clock: the shared state stamps what it does for the engine with
        it (an adoption's time), so the engine's events stay on one time line."""
        return self._clock

    def _emit(self, topic: str, payload: dict[str, Any], *,
              at: datetime | None = None) -> None:
        """Queue an event. `at` when the thing happened before now (an adoption took
        effect in Redis when it was asked, not when its reply was handled)."""
        if self._shared is not None:  # which node published it (owns the task)
            payload["node_id"] = self._shared.node_id
        self._outbox.append(
            Event(topic=topic, payload=payload, event_id=self._new_id(),
                  occurred_at=self._clock.now() if at is None else at)
        )
        self._stats_dirty = True

    def _record(self, t: LiveTask, event: str, **extra: Any) -> None:
        self._task_records.append(
            TaskEventRecord(
                task_id=t.id, event=event, occurred_at=self._clock.now(), queue_id=t.queue_id,
                channel=t.channel, kind=t.kind, case_id=t.case_id, customer_id=t.customer_id,
                **extra,
            )
        )

    def _task_payload(self, t: LiveTask, **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "task_id": t.id, "queue_id": t.queue_id, "channel": t.channel, "kind": t.kind,
            "case_id": t.case_id, "customer_id": t.customer_id,
        }
        payload.update(extra)
        return payload

    def _timer(self, due: float, kind: str, key: str, data: Any = None) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (due, self._timer_seq, kind, key, data))

    def _queue(self, queue_id: str) -> QueueCfg:
        q = self._queues.get(queue_id) if isinstance(queue_id, str) else None
        if q is None or queue_id in self._closed_queues:
            raise E.UnknownQueueError(f"unknown queue {queue_id!r}")
        return q

    def _agent(self, agent_id: str) -> LiveAgent:
        a = self._agents.get(agent_id) if isinstance(agent_id, str) else None
        if a is None:
            raise E.UnknownAgentError(f"unknown agent {agent_id!r}")
        return a

    def _task(self, task_id: str) -> LiveTask:
        t = self._tasks.get(task_id) if isinstance(task_id, str) else None
        if t is None:
            if isinstance(task_id, str) and task_id in self._finished:
                raise E.TaskStateError(
                    f"task {task_id!r} is {self._finished[task_id].status} already"
                )
            raise E.UnknownTaskError(f"unknown task {task_id!r}")
        return t

    def _logged_in(self, agent_id: str) -> LiveAgent:
        a = self._agent(agent_id)
        if a.presence == "logged_out":
            raise E.AgentNotLoggedInError(f"agent {agent_id!r} is not logged in")
        return a

    # ------------------------------------------------------------------ task requirements

    def _compute_requirements(self, t: LiveTask) -> None:
        """Effective skills, priority and extra queues: the queue's skills merged with the
        task's own (stricter wins), then every overflow rule in force, in list order."""
        q = self._queues[t.queue_id]
        reqs = dict(q.skills)
        for skill, level in t.own_skills.items():
            reqs[skill] = min(reqs.get(skill, level), level)
        priority = t.base_priority
        add: list[str] = []
        for i in sorted(t.rules_in_force):
            rule = q.overflow[i]
            for skill, level in (rule.relax_skills or {}).items():
                if skill in reqs:
                    reqs[skill] = max(reqs[skill], level)
            for skill in rule.drop_skills:
                reqs.pop(skill, None)
            for qid in rule.add_queues:
                if qid != t.queue_id and qid not in add:
                    add.append(qid)
            priority += rule.priority_boost
        t.requirements = tuple(sorted(reqs.items()))
        t.priority = priority
        t.add_queues = tuple(add)

    def _schedule_queue_timers(self, t: LiveTask) -> None:
        q = self._queues[t.queue_id]
        entered = t.queue_entered_mono
        for i, rule in enumerate(q.overflow):
            self._timer(entered + rule.after_seconds, "overflow", t.id,
                        (i, entered, self._generation))
        if q.max_wait_seconds is not None:
            self._timer(entered + q.max_wait_seconds, "max_wait", t.id,
                        (entered, self._generation))

    # ------------------------------------------------------------------ indexes

    def _task_live(self, entry: TaskEntry) -> bool:
        t = self._tasks.get(entry[4])
        return t is not None and t.status == WAITING and t.version == entry[3] \
            and t.sticky_until == 0.0

    def _index_task(self, t: LiveTask) -> None:
        """(Re)publish a waiting task in the task index of its queue and extra queues."""
        t.version += 1
        if t.status != WAITING or t.sticky_until:
            return
        entry = (-t.priority, t.enqueued_mono, t.seq, t.version, t.id)
        self._task_index.push(t.queue_id, t.channel, t.requirements, entry, self._task_live)
        for qid in t.add_queues:
            if t.channel in self._queues[qid].channels:
                self._task_index.push(qid, t.channel, t.requirements, entry, self._task_live)

    @staticmethod
    def _agent_entry(a: LiveAgent, queue_id: str, strategy: str) -> AgentEntry:
        """The agent's heap entry for a queue: the strategy's order, then config order."""
        if strategy == "round_robin":
            return (a.rr_last.get(queue_id, -1), a.idx, a.version, a.id)
        if strategy == "least_occupied":
            return (a.total_load / a.total_capacity, a.idle_since, a.idx, a.version, a.id)
        if strategy == "best_skill":
            return (a.skill_rank.get(queue_id, 0), a.idle_since, a.idx, a.version, a.id)
        return (a.idle_since, a.idx, a.version, a.id)  # longest_idle, ring_all

    def _make_live_check(self, channel: str) -> Callable[[AgentEntry], bool]:
        agents = self._agents

        def live(entry: AgentEntry) -> bool:
            a = agents[entry[-1]]
            return a.version == entry[-2] and a.can_take(channel)

        return live

    def _agent_live_for(self, channel: str) -> Callable[[AgentEntry], bool]:
        return self._live_checks[channel]

    def _build_agent_slots(self) -> None:
        """Per agent, the (queue, channel) agent heaps it may appear in, resolved once so
        that re-indexing an agent is a few heap pushes and no dictionary walks."""
        self._live_checks = {c: self._make_live_check(c) for c in CHANNELS}
        self._agent_slots: dict[str, list[tuple[str, str, AgentHeap, int, str]]] = {}
        for a in self._agents.values():
            slots = []
            for qid in a.queues:
                q = self._queues[qid]
                for c in q.channels:
                    if a.capacity.get(c, 0) > 0:
                        slots.append((qid, c, self._agent_index.heap(qid, c),
                                      2 * len(self._members[qid]) + 32, q.strategy))
            self._agent_slots[a.id] = slots

    def _touch_agent(self, a: LiveAgent) -> None:
        """The agent's load, presence or order key changed: re-index and re-derive state."""
        a.version += 1
        if a.presence == "available":
            can = {c: a.can_take(c) for c in CHANNELS}
            idle_entry = (a.idle_since, a.idx, a.version, a.id)
            push = heapq.heappush
            for qid, c, heap, limit, strategy in self._agent_slots[a.id]:
                if not can[c]:
                    continue
                if strategy == "longest_idle" or strategy == "ring_all":
                    entry = idle_entry
                else:
                    entry = self._agent_entry(a, qid, strategy)
                entries = heap.heap
                push(entries, entry)
                if len(entries) > limit:
                    heap.compact(self._live_checks[c])
        self._derive_state(a)

    def _derive_state(self, a: LiveAgent) -> None:
        if a.presence == "logged_out":
            state = "logged_out"
        elif a.active or a.offers:
            state = "busy"
        elif a.wraps:
            state = "wrap_up"
        elif a.presence == "not_ready":
            state = "not_ready"
        else:
            state = "available"
        reason = a.reason if a.presence == "not_ready" else None
        if state == a.state and reason == a.published_reason:
            return
        now = self._mono()
        previous = a.state
        a.time_in[previous] = a.time_in.get(previous, 0.0) + (now - a.state_since)
        a.state = state
        a.state_since = now
        a.published_reason = reason
        self._emit("agent.state_changed", {
            "agent_id": a.id, "state": state, "previous": previous, "reason": reason,
            "presence": a.presence, "load": dict(a.load),
        })
        self._agent_records.append(
            AgentStateRecord(a.id, state, previous, reason, self._clock.now())
        )

    # ------------------------------------------------------------------ routing core

    def _settle(self) -> None:
        """Route until nothing more is routable. Afterwards no waiting task has a free,
        qualified agent that did not recently decline it — the invariant that makes FIFO
        within a priority hold without comparing tasks across the whole queue."""
        tasks = self._tasks
        dirty_tasks = self._dirty_tasks
        dirty_agents = self._dirty_agents
        while dirty_tasks or dirty_agents:
            # Freed agents first: each takes the best task for it in routing order, so a
            # task made routable by the same change cannot jump ahead of earlier ones.
            while dirty_agents:
                aid = next(iter(dirty_agents))
                del dirty_agents[aid]
                self._fill_agent(self._agents[aid])
            if dirty_tasks:
                # Then tasks, earliest first, so that when several tasks became waiting
                # at once the earlier one gets the first pick of the free agents.
                batch = [tasks[tid] for tid in dirty_tasks if tid in tasks]
                dirty_tasks.clear()
                batch.sort(key=LiveTask.key)
                for t in batch:
                    if t.status == WAITING:
                        self._route_task(t)

    @staticmethod
    def _declined(t: LiveTask, agent_id: str, now: float) -> bool:
        until = t.declined.get(agent_id)
        return until is not None and until > now

    def _eligible(self, a: LiveAgent, t: LiveTask, now: float) -> bool:
        return (
            a.can_take(t.channel)
            and a.qualifies(t.requirements)
            and not self._declined(t, a.id, now)
        )

    def _route_task(self, t: LiveTask) -> None:
        """Task side: the best free agent for this task, by its queues' strategies."""
        now = self._mono()
        if t.sticky_until:
            preferred = self._agents[t.preferred_agent_id or ""]
            if self._eligible(preferred, t, now):
                self._offer(t, preferred, t.queue_id)
            return
        requirements = t.requirements
        live = self._agent_live_for(t.channel)

        def accept(agent_id: str) -> bool:
            return self._agents[agent_id].qualifies(requirements) and not self._declined(
                t, agent_id, now
            )

        for qid in (t.queue_id, *t.add_queues):
            heap = self._agent_index.heap(qid, t.channel)
            if qid == t.queue_id and t.kind != "callback" and \
                    self._queues[qid].strategy == "ring_all":
                chosen = [aid for aid in heap.all_live(live) if accept(aid)]
                for aid in chosen:
                    self._offer(t, self._agents[aid], qid)
                if chosen:
                    return
                continue
            aid = heap.best(live, accept)
            if aid is not None:
                self._offer(t, self._agents[aid], qid)
                return

    def _fill_agent(self, a: LiveAgent) -> None:
        """Agent side: give a freed agent work until it is full or nothing fits."""
        while True:
            found = self._best_task_for(a)
            if found is None:
                return
            self._offer(found[0], a, found[1])

    def _best_task_for(self, a: LiveAgent) -> tuple[LiveTask, str] | None:
        if a.presence != "available":
            return None
        now = self._mono()
        for tid in list(a.sticky):
            t = self._tasks.get(tid)
            if t is None or t.status != WAITING or not t.sticky_until:
                continue
            if self._eligible(a, t, now):
                return t, t.queue_id
        channels = [c for c in CHANNELS if a.can_take(c)]
        if not channels:
            return None
        by_wait = self._settings.agent_queue_order == "longest_waiting_task"
        tasks = self._tasks
        agent_id = a.id

        def accept(task_id: str) -> bool:
            return not self._declined(tasks[task_id], agent_id, now)

        best: TaskEntry | None = None
        best_via = ""
        groups_of = self._task_index.groups
        for qid in self._serving_order[a.id]:
            for c in channels:
                for group in groups_of(qid, c):
                    if not group.heap or not a.qualifies(group.requirements):
                        continue
                    entry = group.best(self._task_live, accept)
                    if entry is not None and (best is None or entry[:3] < best[:3]):
                        best, best_via = entry, qid
            if best is not None and not by_wait:
                break
        if best is None:
            return None
        return tasks[best[4]], best_via

    def _offer(self, t: LiveTask, a: LiveAgent, via: str) -> None:
        now = self._mono()
        q = self._queues[t.queue_id]
        offer_id = self._new_id()
        expires = now + q.rona_seconds
        offer = LiveOffer(offer_id, t.id, a.id, via, expires, self._at(expires))
        self._offers[offer_id] = offer
        t.offers[a.id] = offer_id
        t.status = OFFERED
        if t.sticky_until:
            self._release_sticky(t)
        a.offers[offer_id] = t.id
        a.load[t.channel] += 1
        a.total_load += 1
        a.idle_since = now
        self._turn += 1
        a.rr_last[via] = self._turn
        self._timer(expires, "rona", offer_id)
        self._decisions += 1
        self._qstats[t.queue_id].offers += 1
        self._cstats[t.channel].offers += 1
        self._astats[a.id].offers += 1
        self._emit("task.offered", self._task_payload(
            t, offer_id=offer_id, agent_id=a.id, expires_at=offer.expires_at.isoformat(),
            attributes=t.attributes, callback_number=t.callback_number, via_queue_id=via,
            ring_all=len(t.offers) > 1 or q.strategy == "ring_all",
            enqueued_at=t.enqueued_at.isoformat(),
        ))
        self._record(t, "offered", agent_id=a.id, offer_id=offer_id)
        if self._shared is not None:  # tentative until Redis confirms (queues.cluster)
            self._unpublished[offer_id] = (self._outbox[-1], self._task_records[-1])
            self._ops.append(("claim", [t.id, a.id, offer_id]))
        self._touch_agent(a)

    def _end_offer(self, offer: LiveOffer, reason: str) -> None:
        """Close an offer; unless accepted, its capacity slot goes back to the agent."""
        del self._offers[offer.id]
        if reason != "accepted":
            self._ended_offers[offer.id] = reason
            if len(self._ended_offers) > _ENDED_OFFERS_KEEP:
                self._ended_offers.popitem(last=False)
        t = self._tasks[offer.task_id]
        t.offers.pop(offer.agent_id, None)
        a = self._agents[offer.agent_id]
        a.offers.pop(offer.id, None)
        if self._shared is not None:
            if reason == "accepted":
                self._op("accept", t.id, offer.id, a.id, self._at(self._mono()).isoformat())
            else:
                self._op("release", t.id, offer.id)
        if reason != "accepted":
            a.load[t.channel] -= 1
            a.total_load -= 1
            self._touch_agent(a)
            self._dirty_agents[a.id] = None

    def _withdraw_all(self, t: LiveTask, reason: str) -> None:
        for agent_id, offer_id in list(t.offers.items()):
            self._end_offer(self._offers[offer_id], "withdrawn")
            self._emit("task.offer_withdrawn", self._task_payload(
                t, offer_id=offer_id, agent_id=agent_id, reason=reason))
            self._record(t, "offer_withdrawn", agent_id=agent_id, offer_id=offer_id,
                         reason=reason)

    def _return_to_waiting(self, t: LiveTask) -> None:
        if t.status == OFFERED and not t.offers:
            if t.directed is not None:
                self._offer_directed(t)  # the next named agent, or the queue
                return
            t.status = WAITING
            self._index_task(t)
            self._dirty_tasks[t.id] = None

    def _offer_directed(self, t: LiveTask) -> None:
        """A transfer to a named agent (`t.directed`: who is left to try, in order):
        offer the task to the first of them who can take it now. Nobody left (not
        logged in, not ready, full, or each one missed or rejected it) → the task waits
        in its queue like any other, so the customer is never left with no one."""
        now = self._mono()
        while t.directed:
            a = self._agents.get(t.directed.pop(0))
            if a is not None and a.can_take(t.channel) and not self._declined(t, a.id, now):
                t.status = OFFERED
                self._offer(t, a, t.queue_id)
                return
        t.directed = None
        self._emit("task.transfer_fell_back", self._task_payload(
            t, to_queue_id=t.queue_id, transfer=t.attributes.get("transfer")))
        self._record(t, "moved", reason=f"transfer_fallback:{t.queue_id}")
        declined = dict(t.declined)  # who just let it go is not rung again at once
        self._place(t)
        t.declined.update(declined)
        if t.id in self._tasks:
            self._op_update(t)

    def _decline(self, t: LiveTask, agent_id: str) -> None:
        """A reject or a miss: that agent is skipped for this task for one RONA period, so
        a ring-all or a lone agent cannot be rung in a tight loop; a timer retries after."""
        until = self._mono() + self._queues[t.queue_id].rona_seconds
        t.declined[agent_id] = until
        self._timer(until, "retry", t.id)

    def _release_sticky(self, t: LiveTask) -> None:
        if t.sticky_until:
            t.sticky_until = 0.0
            if t.preferred_agent_id in self._agents:
                self._agents[t.preferred_agent_id].sticky.pop(t.id, None)

    def _release_all_sticky(self, a: LiveAgent) -> None:
        for tid in list(a.sticky):
            t = self._tasks.get(tid)
            a.sticky.pop(tid, None)
            if t is not None and t.sticky_until:
                t.sticky_until = 0.0
                if t.status == WAITING:
                    self._index_task(t)
                    self._dirty_tasks[t.id] = None

    def _hold_for_preferred(self, t: LiveTask, q: QueueCfg) -> None:
        """Sticky routing: keep the task for the case's last agent for
        `sticky_agent_seconds` when that agent serves the queue, is logged in and not
        not-ready, and has the skills and the channel."""
        pid = t.preferred_agent_id
        if not pid or q.sticky_agent_seconds <= 0:
            return
        a = self._agents.get(pid)
        if a is None or a.presence != "available" or q.id not in a.queues:
            return
        if a.capacity.get(t.channel, 0) <= 0 or not a.qualifies(t.requirements):
            return
        t.sticky_until = self._mono() + q.sticky_agent_seconds
        a.sticky[t.id] = None
        self._timer(t.sticky_until, "sticky", t.id, t.sticky_until)

    # ------------------------------------------------------------------ queue membership

    def _place(self, t: LiveTask) -> None:
        """Put a task into its current queue (first entry, move, overflow, transfer)."""
        q = self._queues[t.queue_id]
        now = self._mono()
        t.queue_entered_mono = now
        t.rules_in_force = set()
        t.declined = {}
        self._compute_requirements(t)
        self._qstats[q.id].entered += 1
        if q.max_length is not None and len(self._in_queue[q.id]) >= q.max_length:
            self._exit(t, "full")
            return
        self._in_queue[q.id][t.id] = None
        t.status = WAITING
        self._schedule_queue_timers(t)
        self._hold_for_preferred(t, q)
        self._index_task(t)
        self._dirty_tasks[t.id] = None

    def _leave_queue(self, t: LiveTask, reason: str) -> None:
        self._withdraw_all(t, reason)
        self._in_queue[t.queue_id].pop(t.id, None)
        self._release_sticky(t)

    def _move(self, t: LiveTask, to_queue: str, reason: str) -> None:
        from_queue = t.queue_id
        self._leave_queue(t, reason)
        self._qstats[from_queue].moved_out += 1
        t.queue_id = to_queue
        t.hops += 1
        self._emit("task.moved", self._task_payload(
            t, from_queue_id=from_queue, to_queue_id=to_queue, reason=reason))
        self._record(t, "moved", reason=f"{reason}:{from_queue}")
        self._place(t)
        if t.id in self._tasks:
            self._op_update(t)

    def _can_move(self, t: LiveTask, to_queue: str | None) -> bool:
        return (
            to_queue is not None
            and to_queue != t.queue_id
            and to_queue in self._queues
            and to_queue not in self._closed_queues
            and t.channel in self._queues[to_queue].channels
            and t.hops < _MAX_HOPS
        )

    def _exit(self, t: LiveTask, reason: str) -> None:
        """Queue full or wait over: to the exit queue if any, else out of the ACD."""
        q = self._queues[t.queue_id]
        dest = q.exit
        if dest is not None and self._can_move(t, dest.queue):
            self._move(t, dest.queue or "", reason)
            return
        self._leave_queue(t, reason)
        t.status = EXITED
        t.exit_reason = reason
        t.exit = dest.model_dump() if dest is not None else None
        self._qstats[q.id].exited += 1
        self._cstats[t.channel].exited += 1
        self._emit("task.exited", self._task_payload(
            t, reason=reason, exit=t.exit, wait_seconds=self._mono() - t.enqueued_mono))
        self._record(t, "exited", reason=reason)
        self._finish(t)

    def _finish(self, t: LiveTask) -> None:
        self._op("end", t.id)
        if self._shared is not None:
            for event in reversed(self._outbox):
                if event.payload.get("task_id") == t.id:
                    self._unconfirmed_ends[t.id] = event
                    break
        self._tasks.pop(t.id, None)
        self._finished[t.id] = self._view(t)
        if len(self._finished) > _FINISHED_KEEP:
            self._finished.popitem(last=False)

    def _apply_rule(self, t: LiveTask, index: int) -> None:
        q = self._queues[t.queue_id]
        rule = q.overflow[index]
        if rule.move_to and self._can_move(t, rule.move_to):
            self._emit("task.overflowed", self._task_payload(
                t, rule=index, move_to=rule.move_to))
            self._move(t, rule.move_to, "overflow")
            return
        t.rules_in_force.add(index)
        self._compute_requirements(t)
        self._emit("task.overflowed", self._task_payload(
            t, rule=index, skills=dict(t.requirements), add_queues=list(t.add_queues),
            priority=t.priority))
        self._record(t, "overflowed", reason=f"rule {index}")
        self._op_update(t)
        if t.status == WAITING:
            self._index_task(t)
            self._dirty_tasks[t.id] = None

    def _miss(self, offer: LiveOffer) -> None:
        """RONA: the offer timed out. Next agent; the agent becomes not-ready (configurable)."""
        t = self._tasks[offer.task_id]
        a = self._agents[offer.agent_id]
        q = self._queues[t.queue_id]
        self._end_offer(offer, "missed")
        self._decline(t, a.id)
        self._qstats[q.id].missed += 1
        self._cstats[t.channel].missed += 1
        self._astats[a.id].missed += 1
        self._emit("task.missed", self._task_payload(t, offer_id=offer.id, agent_id=a.id))
        self._record(t, "missed", agent_id=a.id, offer_id=offer.id)
        if q.rona_action == "not_ready" and a.presence == "available":
            a.presence = "not_ready"
            a.reason = self._settings.missed_reason
            self._release_all_sticky(a)
            self._op_agent_state(a)
            self._touch_agent(a)
        self._return_to_waiting(t)

    def _end_wrap(self, a: LiveAgent, w: LiveWrapUp, reason: str) -> None:
        now = self._mono()
        a.wraps.pop(w.task_id, None)
        a.load[w.channel] -= 1
        a.total_load -= 1
        a.idle_since = now
        t = self._tasks[w.task_id]
        handle = now - t.accepted_mono
        t.status = COMPLETED
        for counters in (self._qstats[w.queue_id], self._cstats[w.channel],
                         self._astats[a.id]):
            counters.handled += 1
            counters.handle_total += handle
        key = (w.queue_id, w.channel)
        previous = self._aht.get(key)
        self._aht[key] = handle if previous is None else 0.8 * previous + 0.2 * handle
        self._emit("task.wrap_up_ended", self._task_payload(
            t, agent_id=a.id, wrap_up_code=w.wrap_up_code, notes=w.notes,
            handle_seconds=handle, reason=reason))
        self._record(t, "wrap_up_ended", agent_id=a.id, handle_seconds=handle,
                     wrap_up_code=w.wrap_up_code, notes=w.notes, reason=reason)
        self._finish(t)
        self._touch_agent(a)
        self._dirty_agents[a.id] = None

    def _code_missing(self, w: LiveWrapUp) -> bool:
        """A queue with `wrap_up_code_required` keeps a wrap-up open until it has a
        code: the timer alone must not end it with none (the agent ends it, or logs out)."""
        q = self._queues.get(w.queue_id)
        return bool(getattr(q, "wrap_up_code_required", False) and self._wrap_codes
                    and not w.wrap_up_code)

    def _fire(self, kind: str, key: str, data: Any, now: float) -> None:
        if kind == "rona":
            offer = self._offers.get(key)
            if offer is not None and offer.expires_mono <= now:
                self._miss(offer)
            return
        if kind == "wrap":
            a = self._agents[key]
            w = a.wraps.get(data)
            if w is not None and w.ends_mono <= now and not self._code_missing(w):
                self._end_wrap(a, w, "timer")
            return
        t = self._tasks.get(key)
        if t is None or t.status not in (WAITING, OFFERED):
            return
        if kind == "overflow":
            index, entered, generation = data
            if t.queue_entered_mono == entered and generation == self._generation \
                    and index not in t.rules_in_force:
                self._apply_rule(t, index)
        elif kind == "max_wait":
            if (t.queue_entered_mono, self._generation) == data:
                self._exit(t, "max_wait")
        elif kind == "sticky":
            if t.sticky_until == data and t.status == WAITING:
                self._release_sticky(t)
                self._index_task(t)
                self._dirty_tasks[t.id] = None
        elif kind == "retry" and t.status == WAITING:
            self._dirty_tasks[t.id] = None

    # ------------------------------------------------------------------ views

    def _view(self, t: LiveTask) -> Task:
        return Task(
            id=t.id, channel=t.channel, queue_id=t.queue_id, case_id=t.case_id,
            customer_id=t.customer_id, skills=dict(t.requirements), priority=t.priority,
            enqueued_at=t.enqueued_at, attributes=dict(t.attributes),
            preferred_agent_id=t.preferred_agent_id, kind=t.kind, status=t.status,
            agent_id=t.agent_id, callback_number=t.callback_number,
            exit_reason=t.exit_reason, exit=t.exit,
        )

    def _wrap_view(self, a: LiveAgent, w: LiveWrapUp) -> WrapUp:
        return WrapUp(w.task_id, a.id, w.queue_id, w.channel, self._at(w.ends_mono),
                      w.wrap_up_code, w.notes)

    def _agent_view(self, a: LiveAgent) -> AgentView:
        return AgentView(
            id=a.id, state=a.state, reason=a.reason if a.presence == "not_ready" else None,
            session_id=a.session_id, load=dict(a.load), offers=tuple(a.offers),
            tasks=tuple(a.active),
            wrap_ups=tuple(self._wrap_view(a, w) for w in a.wraps.values()),
        )

    # ------------------------------------------------------------------ output

    async def _flush(self) -> None:
        """Publish events and store records in the order the changes happened.

        Re-entrant by design: a bus listener may call back into the engine while an
        event is being published (the in-process bus runs listeners inline); that call
        only queues its events, which the flush already running sends next, in order.
        """
        if self._flushing:
            return
        self._flushing = True
        try:
            if self._shared is not None and self._ops and self.gather_before_flush:
                # One loop turn first: the calls that arrived together (a burst of
                # webhooks, agents' clicks, the replies of one registration) queue
                # their changes, and one round trip to Redis carries them all instead
                # of the first call's alone and then everybody else's.
                await asyncio.sleep(0)
            reachable = True
            while self._outbox or self._task_records or self._agent_records or (
                    self._ops and reachable):
                if self._ops and self._shared is not None and reachable:
                    # Nothing is published before Redis confirmed it (queues.cluster).
                    reachable = await self._sync_shared()
                if self._shared is not None and not self._shared_reachable:
                    # Redis away: the events wait here, in order, with the changes they
                    # announce; an end Redis will refuse (another node adopted the task
                    # meanwhile) must not have been announced. Records go to the store.
                    await self._save_records()
                    break
                events, self._outbox = self._outbox, []
                task_records, self._task_records = self._task_records, []
                agent_records, self._agent_records = self._agent_records, []
                for event in events:
                    try:
                        await self._bus.publish(event)
                    except Exception:
                        log.exception("ACD could not publish %s", event.topic)
                await self._save_records(task_records, agent_records)
        finally:
            self._flushing = False

    async def _save_records(self, task_records: list[TaskEventRecord] | None = None,
                            agent_records: list[AgentStateRecord] | None = None) -> None:
        """Store report records (the queued ones by default); they do not wait for
        Redis, the store is the database. What fails is retried with the next batch."""
        if task_records is None:
            task_records, self._task_records = self._task_records, []
        if agent_records is None:
            agent_records, self._agent_records = self._agent_records, []
        if task_records or agent_records:
            failed_tasks, failed_agents = self._failed_records
            task_records = failed_tasks + task_records
            agent_records = failed_agents + agent_records
            try:
                await self._store.save(task_records, agent_records)
                self._failed_records = ([], [])
            except Exception:
                log.exception("ACD could not store %d records; will retry",
                              len(task_records) + len(agent_records))
                self._failed_records = (task_records[-100_000:],
                                        agent_records[-100_000:])
