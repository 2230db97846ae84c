"""The ACD engine: one router for every channel.

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
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
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
    ABANDONED,
    ASSIGNED,
    CHANNELS,
    COMPLETED,
    EXITED,
    OFFERED,
    SETTABLE_STATES,
    WAITING,
    WRAP_UP,
    AgentView,
    LiveAgent,
    LiveTask,
    LiveWrapUp,
    Offer,
    Task,
    WrapUp,
)
from queues.ports import EventPublisher
from queues.stats import Counters, occupancy
from queues.store import AcdStore, AgentStateRecord, InMemoryAcdStore, TaskEventRecord

log = logging.getLogger(__name__)

_CALLBACK_NUMBER = re.compile(r"^\+?[0-9*#]{2,32}$")
_MAX_HOPS = 8  # queue moves per task: an exit/overflow cycle in the config cannot loop
_FINISHED_KEEP = 10_000
_ENDED_OFFERS_KEEP = 50_000
_MAX_EXTEND_SECONDS = 3600.0


@dataclass(slots=True)
class _LiveOffer:
    id: str
    task_id: str
    agent_id: str
    queue_id: str  # the queue whose agent list the agent was chosen from
    expires_mono: float
    expires_at: datetime


class AcdEngine:
    """Routes tasks to agents. See docs/acd.md for the rules and the public API."""

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
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._store: AcdStore = store if store is not None else InMemoryAcdStore(keep=False)
        self._new_id = id_factory or fast_id_factory()
        self._default_aht = default_aht_seconds
        self._stats_interval = stats_interval_seconds
        self._tick_interval = tick_interval_seconds
        self._settings = config.acd

        self._queues: dict[str, QueueCfg] = {q.id: q for q in config.queues}
        self._reason_codes = {r.id for r in config.reason_codes} | {config.acd.missed_reason}
        self._wrap_codes = {w.id for w in config.wrap_up_codes}
        self._check_config(config)

        self._members: dict[str, list[str]] = {q: [] for q in self._queues}
        self._agents: dict[str, LiveAgent] = {}
        for idx, cfg in enumerate(config.agents):
            cap = cfg.capacity
            capacity = {c: int(getattr(cap, c)) for c in CHANNELS}
            agent = LiveAgent(
                id=cfg.id,
                idx=idx,
                skills=dict(cfg.skills),
                capacity=capacity,
                voice_exclusive=cap.voice_exclusive,
                queues=tuple(dict.fromkeys(cfg.queues)),
                load={c: 0 for c in CHANNELS},
                time_in={},
                total_capacity=sum(capacity.values()) or 1,
            )
            for qid in agent.queues:
                self._members[qid].append(agent.id)
                agent.skill_rank[qid] = sum(
                    agent.skills.get(s, 99) for s in self._queues[qid].skills
                )
            self._agents[agent.id] = agent
        self._serving_order: dict[str, tuple[str, ...]] = {}
        for agent in self._agents.values():
            order = agent.queues
            if self._settings.agent_queue_order == "priority":
                order = tuple(
                    sorted(order, key=lambda q: (-self._queues[q].priority, order.index(q)))
                )
            self._serving_order[agent.id] = order

        self._tasks: dict[str, LiveTask] = {}
        self._finished: OrderedDict[str, Task] = OrderedDict()
        self._offers: dict[str, _LiveOffer] = {}
        self._ended_offers: OrderedDict[str, str] = OrderedDict()
        self._in_queue: dict[str, dict[str, None]] = {q: {} for q in self._queues}
        self._task_index = TaskIndex()
        self._agent_index = AgentIndex()
        self._timers: list[tuple[float, int, str, str, Any]] = []
        self._dirty_tasks: dict[str, None] = {}
        self._dirty_agents: dict[str, None] = {}
        self._outbox: list[Event] = []
        self._task_records: list[TaskEventRecord] = []
        self._agent_records: list[AgentStateRecord] = []
        self._failed_records: tuple[list[TaskEventRecord], list[AgentStateRecord]] = ([], [])
        self._qstats: dict[str, Counters] = {q: Counters() for q in self._queues}
        self._cstats: dict[str, Counters] = {c: Counters() for c in CHANNELS}
        self._astats: dict[str, Counters] = {a: Counters() for a in self._agents}
        self._aht: dict[tuple[str, str], float] = {}
        self._seq = 0
        self._turn = 0
        self._timer_seq = 0
        self._decisions = 0
        self._stats_dirty = False
        self._last_stats_pub = -math.inf
        self._build_agent_slots()
        self._flush_lock = asyncio.Lock()
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------ config checks

    def _check_config(self, config: CentraleConfig) -> None:
        problems: list[str] = []
        seen: set[str] = set()
        for q in config.queues:
            if q.id in seen:
                problems.append(f"queue {q.id!r} is defined twice")
            seen.add(q.id)
            for i, rule in enumerate(q.overflow):
                for ref in [*rule.add_queues, *([rule.move_to] if rule.move_to else [])]:
                    if ref not in self._queues:
                        problems.append(f"queue {q.id!r} overflow[{i}] names unknown queue {ref!r}")
            if q.exit and q.exit.queue and q.exit.queue not in self._queues:
                problems.append(f"queue {q.id!r} exit names unknown queue {q.exit.queue!r}")
        agent_ids: set[str] = set()
        for a in config.agents:
            if a.id in agent_ids:
                problems.append(f"agent {a.id!r} is defined twice")
            agent_ids.add(a.id)
            for qid in a.queues:
                if qid not in self._queues:
                    problems.append(f"agent {a.id!r} serves unknown queue {qid!r}")
        if problems:
            raise E.AcdConfigError("; ".join(problems))

    # ------------------------------------------------------------------ small helpers

    def _mono(self) -> float:
        return self._clock.monotonic()

    def _at(self, mono: float) -> datetime:
        """Wall-clock time of a monotonic instant (for payloads and records)."""
        return self._clock.now() + timedelta(seconds=mono - self._clock.monotonic())

    def _emit(self, topic: str, payload: dict[str, Any]) -> None:
        self._outbox.append(
            Event(topic=topic, payload=payload, event_id=self._new_id(),
                  occurred_at=self._clock.now())
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
        if q is None:
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
            self._timer(entered + rule.after_seconds, "overflow", t.id, (i, entered))
        if q.max_wait_seconds is not None:
            self._timer(entered + q.max_wait_seconds, "max_wait", t.id, entered)

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
        offer = _LiveOffer(offer_id, t.id, a.id, via, expires, self._at(expires))
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
        self._touch_agent(a)

    def _end_offer(self, offer: _LiveOffer, reason: str) -> None:
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
            t.status = WAITING
            self._index_task(t)
            self._dirty_tasks[t.id] = None

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

    def _can_move(self, t: LiveTask, to_queue: str | None) -> bool:
        return (
            to_queue is not None
            and to_queue != t.queue_id
            and to_queue in self._queues
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
        if t.status == WAITING:
            self._index_task(t)
            self._dirty_tasks[t.id] = None

    def _miss(self, offer: _LiveOffer) -> None:
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

    def _fire(self, kind: str, key: str, data: Any, now: float) -> None:
        if kind == "rona":
            offer = self._offers.get(key)
            if offer is not None and offer.expires_mono <= now:
                self._miss(offer)
            return
        if kind == "wrap":
            a = self._agents[key]
            w = a.wraps.get(data)
            if w is not None and w.ends_mono <= now:
                self._end_wrap(a, w, "timer")
            return
        t = self._tasks.get(key)
        if t is None or t.status not in (WAITING, OFFERED):
            return
        if kind == "overflow":
            index, entered = data
            if t.queue_entered_mono == entered and index not in t.rules_in_force:
                self._apply_rule(t, index)
        elif kind == "max_wait":
            if t.queue_entered_mono == data:
                self._exit(t, "max_wait")
        elif kind == "sticky":
            if t.sticky_until == data and t.status == WAITING:
                self._release_sticky(t)
                self._index_task(t)
                self._dirty_tasks[t.id] = None
        elif kind == "retry" and t.status == WAITING:
            self._dirty_tasks[t.id] = None

    # ------------------------------------------------------------------ validation helpers

    @staticmethod
    def _check_id(name: str, value: Any, *, optional: bool = False) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not value or len(value) > 128:
            raise E.InvalidArgumentError(f"{name} must be a non-empty string of at most 128 chars")

    @staticmethod
    def _check_skills(skills: Any) -> dict[str, int]:
        if skills is None:
            return {}
        if not isinstance(skills, Mapping):
            raise E.InvalidArgumentError("skills must be a mapping of skill -> maximum level")
        out: dict[str, int] = {}
        for skill, level in skills.items():
            if not isinstance(skill, str) or not skill:
                raise E.InvalidArgumentError(f"skill name {skill!r} is not a string")
            if isinstance(level, bool) or not isinstance(level, int) or level < 1:
                raise E.InvalidArgumentError(
                    f"skill {skill!r}: level must be an integer >= 1, not {level!r}")
            out[skill] = level
        return out

    def _check_wrap_code(self, code: Any) -> None:
        if code is not None and code not in self._wrap_codes:
            raise E.UnknownWrapUpCodeError(f"unknown wrap-up code {code!r}")

    @staticmethod
    def _check_notes(notes: Any) -> None:
        if notes is not None and (not isinstance(notes, str) or len(notes) > 10_000):
            raise E.InvalidArgumentError("notes must be a string of at most 10000 chars")

    def _offer_for(self, offer_id: str, agent_id: str) -> _LiveOffer:
        self._agent(agent_id)
        offer = self._offers.get(offer_id) if isinstance(offer_id, str) else None
        if offer is None:
            ended = self._ended_offers.get(offer_id) if isinstance(offer_id, str) else None
            if ended == "missed":
                raise E.OfferExpiredError(f"offer {offer_id!r} expired (not answered in time)")
            if ended is not None:
                raise E.OfferWithdrawnError(f"offer {offer_id!r} was {ended}")
            raise E.UnknownOfferError(f"unknown offer {offer_id!r}")
        if offer.agent_id != agent_id:
            raise E.OfferNotYoursError(f"offer {offer_id!r} is not for agent {agent_id!r}")
        if self._mono() >= offer.expires_mono:
            raise E.OfferExpiredError(f"offer {offer_id!r} expired at {offer.expires_at}")
        return offer

    # ------------------------------------------------------------------ public: tasks

    async def enqueue(
        self,
        *,
        queue_id: str,
        channel: str,
        case_id: str,
        customer_id: str,
        skills: Mapping[str, int] | None = None,
        priority: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        preferred_agent_id: str | None = None,
        task_id: str | None = None,
        enqueued_at: datetime | None = None,
    ) -> Task:
        """Put a task in a queue. Returns its snapshot: usually `waiting` or `offered`,
        `exited` when the queue was full and has no exit queue. `enqueued_at` lets a
        re-queued contact keep its original time (and so its place)."""
        q = self._queue(queue_id)
        if channel not in CHANNELS:
            raise E.InvalidArgumentError(f"unknown channel {channel!r}; one of {CHANNELS}")
        if channel not in q.channels:
            raise E.ChannelNotServedError(f"queue {queue_id!r} does not take {channel}")
        self._check_id("case_id", case_id)
        self._check_id("customer_id", customer_id)
        self._check_id("task_id", task_id, optional=True)
        self._check_id("preferred_agent_id", preferred_agent_id, optional=True)
        own_skills = self._check_skills(skills)
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise E.InvalidArgumentError("priority must be an integer")
        if attributes is not None and not isinstance(attributes, Mapping):
            raise E.InvalidArgumentError("attributes must be a mapping")
        if task_id is not None and (task_id in self._tasks or task_id in self._finished):
            raise E.DuplicateTaskError(f"task {task_id!r} exists already")
        now = self._mono()
        enq_mono = now
        wall = self._clock.now()
        if enqueued_at is not None:
            if not isinstance(enqueued_at, datetime) or enqueued_at.tzinfo is None:
                raise E.InvalidArgumentError("enqueued_at must be a timezone-aware datetime")
            if enqueued_at > wall:
                raise E.InvalidArgumentError("enqueued_at is in the future")
            enq_mono = now - (wall - enqueued_at).total_seconds()
            wall = enqueued_at
        self._seq += 1
        t = LiveTask(
            id=task_id or self._new_id(),
            channel=channel,
            queue_id=q.id,
            case_id=case_id,
            customer_id=customer_id,
            own_skills=own_skills,
            base_priority=q.priority if priority is None else priority,
            enqueued_at=wall,
            enqueued_mono=enq_mono,
            seq=self._seq,
            attributes=dict(attributes or {}),
            preferred_agent_id=preferred_agent_id,
        )
        self._tasks[t.id] = t
        self._cstats[channel].entered += 1
        self._emit("task.enqueued", self._task_payload(
            t, priority=t.base_priority, skills=own_skills,
            enqueued_at=wall.isoformat(), preferred_agent_id=preferred_agent_id,
            attributes=t.attributes))
        self._record(t, "enqueued")
        self._place(t)
        self._settle()
        view = self._view(t)
        await self._flush()
        return view

    async def abandon(self, task_id: str) -> Task:
        """The customer left (caller hung up, chat closed) before an agent accepted."""
        t = self._task(task_id)
        if t.status not in (WAITING, OFFERED):
            raise E.TaskStateError(f"task {task_id!r} is {t.status}; only a waiting task "
                                   "can be abandoned")
        q = self._queues[t.queue_id]
        wait = self._mono() - t.enqueued_mono
        short = wait < q.short_abandon_seconds
        self._leave_queue(t, "abandoned")
        t.status = ABANDONED
        for counters in (self._qstats[q.id], self._cstats[t.channel]):
            counters.abandoned += 1
            counters.short_abandoned += short
        self._emit("task.abandoned", self._task_payload(t, wait_seconds=wait, short=short))
        self._record(t, "abandoned", wait_seconds=wait, reason="short" if short else None)
        self._finish(t)
        self._settle()
        await self._flush()
        return self._finished[t.id]

    async def request_callback(self, task_id: str, number: str) -> Task:
        """Virtual hold: the waiting contact becomes a voice callback task that keeps its
        enqueue time and so its place in line. When an agent accepts it, the voice backend
        places the call (it reads `callback_number` from task.accepted)."""
        t = self._task(task_id)
        if not isinstance(number, str) or not _CALLBACK_NUMBER.match(number):
            raise E.InvalidArgumentError(f"callback number {number!r} is not a phone number")
        if t.kind == "callback":
            raise E.TaskStateError(f"task {task_id!r} is a callback already")
        if t.status not in (WAITING, OFFERED):
            raise E.TaskStateError(f"task {task_id!r} is {t.status}, not waiting")
        if "voice" not in self._queues[t.queue_id].channels:
            raise E.ChannelNotServedError(
                f"queue {t.queue_id!r} takes no voice tasks, so no callbacks")
        self._withdraw_all(t, "callback")
        self._release_sticky(t)
        previous = t.channel
        t.kind = "callback"
        t.callback_number = number
        t.channel = "voice"
        t.status = WAITING
        self._index_task(t)
        self._dirty_tasks[t.id] = None
        self._emit("callback.requested", self._task_payload(
            t, number=number, previous_channel=previous,
            enqueued_at=t.enqueued_at.isoformat()))
        self._record(t, "callback_requested", reason=previous)
        self._settle()
        await self._flush()
        return self._view(self._tasks.get(t.id, t))

    async def move(self, task_id: str, queue_id: str) -> Task:
        """Move a waiting task to another queue (supervisor); it keeps its enqueue time."""
        t = self._task(task_id)
        q = self._queue(queue_id)
        if t.status not in (WAITING, OFFERED):
            raise E.TaskStateError(f"task {task_id!r} is {t.status}, not waiting")
        if t.channel not in q.channels:
            raise E.ChannelNotServedError(f"queue {queue_id!r} does not take {t.channel}")
        if q.id == t.queue_id:
            raise E.InvalidArgumentError(f"task {task_id!r} is in queue {queue_id!r} already")
        self._move(t, q.id, "moved")
        self._settle()
        await self._flush()
        return self._view(self._tasks.get(t.id, t))

    async def transfer(self, task_id: str, agent_id: str, queue_id: str) -> Task:
        """An agent hands an accepted task to another queue; it keeps its enqueue time.
        The agent's capacity slot is freed at once (no wrap-up for a transfer)."""
        a = self._agent(agent_id)
        t = self._task(task_id)
        q = self._queue(queue_id)
        if t.status != ASSIGNED or t.agent_id != agent_id:
            raise E.TaskStateError(f"task {task_id!r} is not with agent {agent_id!r}")
        if t.channel not in q.channels:
            raise E.ChannelNotServedError(f"queue {queue_id!r} does not take {t.channel}")
        a.active.pop(t.id, None)
        a.load[t.channel] -= 1
        a.total_load -= 1
        a.idle_since = self._mono()
        self._touch_agent(a)
        self._dirty_agents[a.id] = None
        t.agent_id = None
        from_queue = t.queue_id
        t.queue_id = q.id
        t.hops += 1
        self._emit("task.moved", self._task_payload(
            t, from_queue_id=from_queue, to_queue_id=q.id, reason="transfer",
            agent_id=agent_id))
        self._record(t, "moved", agent_id=agent_id, reason=f"transfer:{from_queue}")
        self._place(t)
        if t.status == WAITING:
            self._decline(t, agent_id)  # not straight back to the agent who handed it on
        self._settle()
        await self._flush()
        return self._view(self._tasks.get(t.id, t))

    # ------------------------------------------------------------------ public: agents

    async def agent_login(self, agent_id: str, session_id: str) -> AgentView:
        """Log in as available. A second log-in from the same session is a no-op; from
        another session it is refused (log out there first)."""
        a = self._agent(agent_id)
        self._check_id("session_id", session_id)
        if a.presence != "logged_out":
            if a.session_id == session_id:
                return self._agent_view(a)
            raise E.AgentAlreadyLoggedInError(
                f"agent {agent_id!r} is logged in from another session")
        now = self._mono()
        a.session_id = session_id
        a.presence = "available"
        a.reason = None
        a.idle_since = now
        self._touch_agent(a)
        self._dirty_agents[a.id] = None
        self._settle()
        await self._flush()
        return self._agent_view(a)

    async def agent_logout(self, agent_id: str, session_id: str | None = None) -> AgentView:
        """Log out. Refused while the agent holds accepted tasks; ringing offers go back
        to their queues (keeping their place), running wrap-ups end now."""
        a = self._logged_in(agent_id)
        if session_id is not None and session_id != a.session_id:
            raise E.ForbiddenStateChangeError(
                f"agent {agent_id!r} is logged in from another session")
        if a.active:
            raise E.AgentBusyError(
                f"agent {agent_id!r} still handles {len(a.active)} task(s); complete or "
                "transfer them first")
        self._drop_offers(a, "agent_logged_out")
        for w in list(a.wraps.values()):
            self._end_wrap(a, w, "logout")
        self._release_all_sticky(a)
        a.presence = "logged_out"
        a.session_id = None
        a.reason = None
        self._touch_agent(a)
        self._settle()
        await self._flush()
        return self._agent_view(a)

    def _drop_offers(self, a: LiveAgent, reason: str) -> None:
        for offer_id in list(a.offers):
            offer = self._offers[offer_id]
            t = self._tasks[offer.task_id]
            self._end_offer(offer, "withdrawn")
            self._emit("task.offer_withdrawn", self._task_payload(
                t, offer_id=offer_id, agent_id=a.id, reason=reason))
            self._record(t, "offer_withdrawn", agent_id=a.id, offer_id=offer_id, reason=reason)
            self._return_to_waiting(t)

    async def set_state(self, agent_id: str, state: str, reason: str | None = None) -> AgentView:
        """available or not_ready (with a reason code). busy and wrap_up are the engine's;
        use agent_login / agent_logout for logged_out. Going not-ready withdraws ringing
        offers; tasks in hand continue."""
        a = self._agent(agent_id)
        if state not in SETTABLE_STATES:
            raise E.ForbiddenStateChangeError(
                f"state {state!r} cannot be set; one of {SETTABLE_STATES}"
                + (" (use agent_login/agent_logout)" if state == "logged_out" else ""))
        if a.presence == "logged_out":
            raise E.AgentNotLoggedInError(f"agent {agent_id!r} is not logged in")
        if state == "available" and reason is not None:
            raise E.InvalidArgumentError("a reason goes with not_ready only")
        if state == "not_ready" and reason is not None and reason not in self._reason_codes:
            raise E.UnknownReasonCodeError(f"unknown reason code {reason!r}")
        if state == a.presence and (state == "available" or reason == a.reason):
            return self._agent_view(a)
        if state == "not_ready":
            self._drop_offers(a, "agent_not_ready")
            self._release_all_sticky(a)
            a.presence = "not_ready"
            a.reason = reason
        else:
            a.presence = "available"
            a.reason = None
            a.idle_since = self._mono()
            self._dirty_agents[a.id] = None
        self._touch_agent(a)
        self._settle()
        await self._flush()
        return self._agent_view(a)

    async def accept(self, offer_id: str, agent_id: str) -> Task:
        """The agent takes the offered task. Other ring-all offers are withdrawn."""
        offer = self._offer_for(offer_id, agent_id)
        a = self._agents[agent_id]
        t = self._tasks[offer.task_id]
        self._end_offer(offer, "accepted")
        self._withdraw_all(t, "answered_elsewhere")
        now = self._mono()
        t.status = ASSIGNED
        t.agent_id = a.id
        t.accepted_mono = now
        a.active[t.id] = None
        self._in_queue[t.queue_id].pop(t.id, None)
        q = self._queues[t.queue_id]
        wait = now - t.enqueued_mono
        in_sl = wait <= q.service_level_seconds
        for counters in (self._qstats[q.id], self._cstats[t.channel], self._astats[a.id]):
            counters.answered += 1
            counters.answered_in_sl += in_sl
            counters.wait_answered_total += wait
        self._emit("task.accepted", self._task_payload(
            t, offer_id=offer_id, agent_id=a.id, wait_seconds=wait,
            callback_number=t.callback_number, attributes=t.attributes))
        self._record(t, "accepted", agent_id=a.id, offer_id=offer_id, wait_seconds=wait)
        self._derive_state(a)
        self._settle()
        await self._flush()
        return self._view(t)

    async def reject(self, offer_id: str, agent_id: str) -> Task:
        """The agent declines; the task goes to the next agent (this one is skipped for
        it during one RONA period). The agent stays available."""
        offer = self._offer_for(offer_id, agent_id)
        t = self._tasks[offer.task_id]
        self._end_offer(offer, "rejected")
        self._decline(t, agent_id)
        self._qstats[t.queue_id].rejected += 1
        self._cstats[t.channel].rejected += 1
        self._astats[agent_id].rejected += 1
        self._emit("task.rejected", self._task_payload(t, offer_id=offer_id, agent_id=agent_id))
        self._record(t, "rejected", agent_id=agent_id, offer_id=offer_id)
        self._return_to_waiting(t)
        self._settle()
        await self._flush()
        return self._view(self._tasks.get(t.id, t))

    async def complete(
        self, task_id: str, agent_id: str, wrap_up_code: str | None = None,
        notes: str | None = None,
    ) -> WrapUp:
        """The conversation is over: wrap-up starts (the queue's wrap_up_seconds; zero
        ends it at once). The task keeps its capacity slot until wrap-up ends."""
        a = self._agent(agent_id)
        t = self._task(task_id)
        if t.status != ASSIGNED or t.agent_id != agent_id:
            raise E.TaskStateError(f"task {task_id!r} is not in the hands of {agent_id!r}")
        self._check_wrap_code(wrap_up_code)
        self._check_notes(notes)
        q = self._queues[t.queue_id]
        now = self._mono()
        a.active.pop(t.id, None)
        t.status = WRAP_UP
        w = LiveWrapUp(t.id, q.id, t.channel, now + q.wrap_up_seconds, wrap_up_code, notes)
        a.wraps[t.id] = w
        view = self._wrap_view(a, w)
        self._emit("task.completed", self._task_payload(
            t, agent_id=a.id, talk_seconds=now - t.accepted_mono,
            wrap_up_seconds=q.wrap_up_seconds, wrap_up_code=wrap_up_code))
        self._record(t, "completed", agent_id=a.id, handle_seconds=now - t.accepted_mono,
                     wrap_up_code=wrap_up_code, notes=notes)
        if q.wrap_up_seconds <= 0:
            self._end_wrap(a, w, "no_wrap_up")
        else:
            self._timer(w.ends_mono, "wrap", a.id, t.id)
            self._derive_state(a)
        self._settle()
        await self._flush()
        return view

    def _wraps_of(self, a: LiveAgent, task_id: str | None) -> list[LiveWrapUp]:
        if task_id is None:
            if not a.wraps:
                raise E.NotInWrapUpError(f"agent {a.id!r} is not in wrap-up")
            return list(a.wraps.values())
        w = a.wraps.get(task_id)
        if w is None:
            raise E.NotInWrapUpError(f"agent {a.id!r} has no wrap-up for task {task_id!r}")
        return [w]

    async def end_wrap_up(
        self, agent_id: str, task_id: str | None = None, wrap_up_code: str | None = None,
        notes: str | None = None,
    ) -> None:
        """End wrap-up early (all of the agent's wrap-ups, or one task's)."""
        a = self._agent(agent_id)
        wraps = self._wraps_of(a, task_id)
        self._check_wrap_code(wrap_up_code)
        self._check_notes(notes)
        for w in wraps:
            if wrap_up_code is not None:
                w.wrap_up_code = wrap_up_code
            if notes is not None:
                w.notes = notes
            self._end_wrap(a, w, "agent")
        self._settle()
        await self._flush()

    async def extend_wrap_up(
        self, agent_id: str, seconds: float, task_id: str | None = None
    ) -> list[WrapUp]:
        a = self._agent(agent_id)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                or not math.isfinite(seconds) or not 0 < seconds <= _MAX_EXTEND_SECONDS:
            raise E.InvalidArgumentError(
                f"seconds must be a number in (0, {_MAX_EXTEND_SECONDS:g}]")
        wraps = self._wraps_of(a, task_id)
        out = []
        for w in wraps:
            w.ends_mono += float(seconds)
            self._timer(w.ends_mono, "wrap", a.id, w.task_id)
            view = self._wrap_view(a, w)
            out.append(view)
            t = self._tasks[w.task_id]
            self._emit("task.wrap_up_extended", self._task_payload(
                t, agent_id=a.id, ends_at=view.ends_at.isoformat(), seconds=float(seconds)))
        await self._flush()
        return out

    # ------------------------------------------------------------------ public: queries

    async def position(self, task_id: str) -> int:
        """1 = next in line for its queue and channel; 0 = being offered right now."""
        t = self._task(task_id)
        if t.status == OFFERED:
            return 0
        if t.status != WAITING:
            raise E.TaskStateError(f"task {task_id!r} is {t.status}, not waiting")
        key = t.key()
        ahead = 0
        for tid in self._in_queue[t.queue_id]:
            other = self._tasks[tid]
            if other.channel == t.channel and other.status == WAITING and other.key() < key:
                ahead += 1
        return ahead + 1

    def _staffed(self, queue_id: str, channel: str) -> int:
        """Capacity for `channel` of the queue's agents who are logged in and not not-ready."""
        agents = self._agents
        return sum(
            agents[aid].capacity.get(channel, 0)
            for aid in self._members[queue_id]
            if agents[aid].presence == "available"
        )

    def _ewt(self, queue_id: str, channel: str, position: int) -> float | None:
        staffed = self._staffed(queue_id, channel)
        if staffed == 0:
            return None
        aht = self._aht.get((queue_id, channel), self._default_aht)
        return position * aht / staffed

    async def estimated_wait(self, task_id: str) -> float | None:
        """Seconds until an offer, estimated as position x AHT / staffed capacity (AHT: a
        moving average of the queue's handle time for the channel). None = nobody staffed."""
        position = await self.position(task_id)
        if position == 0:
            return 0.0
        t = self._tasks[task_id]
        return self._ewt(t.queue_id, t.channel, position)

    async def queue_estimated_wait(self, queue_id: str, channel: str) -> float | None:
        """The wait a new contact would face: for the IVR's announcement before enqueue."""
        self._queue(queue_id)
        if channel not in CHANNELS:
            raise E.InvalidArgumentError(f"unknown channel {channel!r}")
        waiting = sum(
            1 for tid in self._in_queue[queue_id]
            if self._tasks[tid].channel == channel and self._tasks[tid].status == WAITING
        )
        return self._ewt(queue_id, channel, waiting + 1)

    def task(self, task_id: str) -> Task:
        t = self._tasks.get(task_id)
        if t is not None:
            return self._view(t)
        if task_id in self._finished:
            return self._finished[task_id]
        raise E.UnknownTaskError(f"unknown task {task_id!r}")

    def agent(self, agent_id: str) -> AgentView:
        return self._agent_view(self._agent(agent_id))

    def offer(self, offer_id: str) -> Offer:
        o = self._offers.get(offer_id)
        if o is None:
            raise E.UnknownOfferError(f"no open offer {offer_id!r}")
        return Offer(o.id, o.task_id, o.agent_id, o.queue_id, o.expires_at)

    def offers_for(self, agent_id: str) -> list[Offer]:
        a = self._agent(agent_id)
        return [self.offer(oid) for oid in a.offers]

    def waiting(self, queue_id: str) -> list[Task]:
        """The queue's contacts not yet answered, in routing order."""
        self._queue(queue_id)
        tasks = sorted((self._tasks[tid] for tid in self._in_queue[queue_id]),
                       key=LiveTask.key)
        return [self._view(t) for t in tasks]

    @property
    def decisions(self) -> int:
        """Offers made since start (each ring-all offer counts)."""
        return self._decisions

    def _view(self, t: LiveTask) -> Task:
        return Task(
            id=t.id, channel=t.channel, queue_id=t.queue_id, case_id=t.case_id,
            customer_id=t.customer_id, skills=dict(t.requirements), priority=t.priority,
            enqueued_at=t.enqueued_at, attributes=t.attributes,
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

    # ------------------------------------------------------------------ statistics

    def _time_in(self, a: LiveAgent, now: float) -> dict[str, float]:
        out = dict(a.time_in)
        out[a.state] = out.get(a.state, 0.0) + (now - a.state_since)
        return out

    def stats(self, *, agents: bool = True) -> dict[str, Any]:
        """Live statistics per queue, channel and (optionally) agent. See docs/acd.md."""
        now = self._mono()
        tasks = self._tasks
        queues: dict[str, Any] = {}
        channel_waiting = {c: 0 for c in CHANNELS}
        channel_oldest = {c: 0.0 for c in CHANNELS}
        time_cache: dict[str, dict[str, float]] = {}
        for qid, q in self._queues.items():
            fig = self._qstats[qid].figures()
            oldest = 0.0
            for tid in self._in_queue[qid]:
                t = tasks[tid]
                age = now - t.enqueued_mono
                oldest = max(oldest, age)
                channel_waiting[t.channel] += 1
                channel_oldest[t.channel] = max(channel_oldest[t.channel], age)
            by_state = {s: 0 for s in ("logged_out", "available", "not_ready", "busy", "wrap_up")}
            totals: dict[str, float] = {}
            for aid in self._members[qid]:
                a = self._agents[aid]
                by_state[a.state] += 1
                spent = time_cache.get(aid)
                if spent is None:
                    spent = time_cache[aid] = self._time_in(a, now)
                for state, secs in spent.items():
                    totals[state] = totals.get(state, 0.0) + secs
            fig.update(
                waiting=len(self._in_queue[qid]), oldest_wait_seconds=oldest,
                agents=by_state, occupancy=occupancy(totals),
                service_level_seconds=q.service_level_seconds,
            )
            queues[qid] = fig
        channels: dict[str, Any] = {}
        for c in CHANNELS:
            fig = self._cstats[c].figures()
            capacity = load = 0
            for a in self._agents.values():
                if a.presence != "logged_out":
                    capacity += a.capacity.get(c, 0)
                    load += a.load.get(c, 0)
            fig.update(waiting=channel_waiting[c], oldest_wait_seconds=channel_oldest[c],
                       capacity=capacity, load=load,
                       utilisation=load / capacity if capacity else None)
            channels[c] = fig
        out: dict[str, Any] = {
            "at": self._clock.now().isoformat(), "decisions": self._decisions,
            "queues": queues, "channels": channels,
        }
        if agents:
            out["agents"] = {
                aid: {
                    **self._astats[aid].figures(), "state": a.state,
                    "reason": a.reason if a.presence == "not_ready" else None,
                    "load": dict(a.load), "time_in": (ti := self._time_in(a, now)),
                    "occupancy": occupancy(ti),
                }
                for aid, a in self._agents.items()
            }
        return out

    def snapshot(self) -> dict[str, Any]:
        """Everything a wallboard or a debugging session needs, JSON-serialisable."""
        return {
            "stats": self.stats(),
            "tasks": [
                {**self._task_payload(t), "status": t.status, "agent_id": t.agent_id,
                 "priority": t.priority, "enqueued_at": t.enqueued_at.isoformat(),
                 "offers": dict(t.offers)}
                for t in self._tasks.values()
            ],
            "agents": {
                a.id: {"state": a.state, "presence": a.presence, "reason": a.reason,
                       "load": dict(a.load), "offers": list(a.offers),
                       "tasks": list(a.active), "wrap_ups": list(a.wraps)}
                for a in self._agents.values()
            },
        }

    # ------------------------------------------------------------------ timers and loop

    async def tick(self) -> int:
        """Process every timer due by the clock (RONA, overflow, max wait, sticky release,
        retry after a decline, wrap-up end), route, publish throttled stats. Returns the
        number of timers fired."""
        now = self._mono()
        fired = 0
        timers = self._timers
        while timers and timers[0][0] <= now:
            _due, _seq, kind, key, data = heapq.heappop(timers)
            self._fire(kind, key, data, now)
            fired += 1
            self._settle()
        self._settle()
        if self._stats_dirty and now - self._last_stats_pub >= self._stats_interval:
            self._last_stats_pub = now
            self._emit("stats.updated", self.stats(agents=False))
            self._stats_dirty = False
        await self._flush()
        return fired

    async def run(self) -> None:
        """The node's ACD loop: tick every tick_interval_seconds until stop()."""
        self._stopping = asyncio.Event()
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:  # a bug in one tick must not stop routing for the node
                log.exception("ACD tick failed")
            try:
                await asyncio.wait_for(self._stopping.wait(), self._tick_interval)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        await self._flush()

    async def _flush(self) -> None:
        """Publish events and store records in the order the changes happened."""
        if not self._outbox and not self._task_records and not self._agent_records \
                and not self._failed_records[0] and not self._failed_records[1]:
            return
        async with self._flush_lock:
            events, self._outbox = self._outbox, []
            failed_tasks, failed_agents = self._failed_records
            task_records = failed_tasks + self._task_records
            agent_records = failed_agents + self._agent_records
            self._task_records, self._agent_records = [], []
            self._failed_records = ([], [])
            for event in events:
                try:
                    await self._bus.publish(event)
                except Exception:
                    log.exception("ACD could not publish %s", event.topic)
            if task_records or agent_records:
                try:
                    await self._store.save(task_records, agent_records)
                except Exception:
                    log.exception("ACD could not store %d records; will retry",
                                  len(task_records) + len(agent_records))
                    self._failed_records = (task_records[-100_000:], agent_records[-100_000:])

