"""The engine's side of shared ACD state: what it does when several nodes route on one
Redis (queues.shared). Without a shared-state port none of this runs.

The engine keeps deciding in memory, synchronously, as on one node. Each change it
makes to a task or an agent is also queued as an *op* (`_ops`, in order). `_flush`
sends the queued ops in one pipeline (`SharedStatePort.run_ops`) before it publishes
any event, so:

- an offer is *tentative* until Redis confirms it (the claim script refuses when
  another node took the agent's last slot, or the agent went not-ready elsewhere);
  a refused offer is undone here — slot back, its `task.offered` never published —
  the agent's cluster-wide state is read back, and the engine routes again;
- accepts, releases, wrap-ups, ends, requeues and presence changes reach Redis in the
  order they happened here;
- what other nodes do with the same agents (slots they hold, presence changes made
  there) is read back (`refresh_agents`, `sync_remote`) and counted as *remote load*:
  capacity this engine must not offer.

A dead node's tasks are rebuilt here by `adopt` from the data each task carries in
Redis (queue, enqueue and queue-entry times, rules in force, agent, wrap-up end); the
timers a task needs (overflow, max wait, wrap-up end) are derived again from those
times, so an adopted task keeps its place in line and its deadlines.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from core import metrics
from core.events import Event
from queues import errors as E
from queues.core import RoutingCore
from queues.model import (
    ASSIGNED,
    CHANNELS,
    WAITING,
    WRAP_UP,
    LiveAgent,
    LiveTask,
    LiveWrapUp,
    Task,
    WrapUp,
)
from queues.ports import SharedStatePort

log = logging.getLogger(__name__)

_MAX_CONFIRM_ROUNDS = 6  # settle -> confirm -> refused -> re-settle, per flush
_REFUSED_COOL_OFF = 1.0  # seconds an agent is skipped for a task after repeated refusals
_UNANSWERED_KEEP = 10_000  # registrations without a reply remembered (an outage's worth)

# Calls an agent's or a supervisor's node forwards to the node that owns the task.
FORWARDABLE = frozenset({
    "accept", "reject", "complete", "end_wrap_up", "extend_wrap_up", "transfer",
    "transfer_to_agent", "abandon", "request_callback", "move", "position", "estimated_wait",
})
LOCAL: Any = object()  # "run it here": the task is here, or nowhere
_serving_forwarded: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "acd_serving_forwarded", default=False)


def encode_result(value: Any) -> Any:
    """A public method's result as JSON-able data (Task, WrapUp, lists, numbers)."""
    if isinstance(value, list):
        return [encode_result(v) for v in value]
    if isinstance(value, Task | WrapUp):
        out = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = v.isoformat()
        return {"__type": type(value).__name__, **out}
    return value


def decode_result(value: Any) -> Any:
    if isinstance(value, list):
        return [decode_result(v) for v in value]
    if isinstance(value, dict) and value.get("__type") in ("Task", "WrapUp"):
        fields = {k: v for k, v in value.items() if k != "__type"}
        if value["__type"] == "Task":
            fields["enqueued_at"] = datetime.fromisoformat(fields["enqueued_at"])
            return Task(**fields)
        fields["ends_at"] = datetime.fromisoformat(fields["ends_at"])
        return WrapUp(**fields)
    return value


def _iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class ClusterSync(RoutingCore):
    """Shared-state replication for `AcdEngine` (inert when `self._shared` is None)."""

    def attach_shared(self, shared: SharedStatePort) -> None:
        """Route on shared state from now on (before the first task: the composition
        root builds the engine, then attaches the port when Redis is configured)."""
        if self._tasks:
            raise RuntimeError("attach the shared state before the engine holds tasks")
        self._shared = shared

    def announce_ends_through(self, stream: Callable[[], tuple[str, int] | None]) -> None:
        """Have the end of a task and its announcement happen in one atomic step: the
        script that ends the task in Redis also adds the task's events up to its end to
        the event stream. `stream` gives the bus's (stream key, MAXLEN) on the same
        Redis, or None while the bus holds back events (they would be overtaken)."""
        self._announce_stream = stream

    def _with_announcements(self, batch: list[tuple[str, list[Any]]]
                            ) -> list[tuple[str, list[Any]]]:
        """The batch as sent: each end carries the task's events still to publish, up
        to its end event (see `announce_ends_through`); a retry carries the same."""
        if self._announce_stream is None:
            return batch
        sent: list[tuple[str, list[Any]]] = []
        stream: tuple[str, int] | None = None
        asked = False
        for name, args in batch:
            if name == "end":
                task_id = args[0]
                announcing = self._announcing.get(task_id)
                end = self._unconfirmed_ends.get(task_id)
                if announcing is None and end is not None:
                    if not asked:
                        stream, asked = self._announce_stream(), True
                    if stream is not None:
                        events = self._events_until(task_id, end)
                        if events:
                            announcing = (*stream, events)
                            self._announcing[task_id] = announcing
                if announcing is not None:
                    key, maxlen, events = announcing
                    args = [task_id, key, maxlen, *(e.to_json() for e in events)]
            sent.append((name, args))
        return sent

    def _events_until(self, task_id: str, end: Event) -> list[Event]:
        """The task's events waiting in the outbox, in order, up to `end`. None when the
        end is not there (published or dropped already) or when one of them is an offer
        Redis has not confirmed yet: a refused claim's offer must never reach the
        stream, so such an end is published by the flush as before."""
        tentative = {id(event) for event, _record in self._unpublished.values()}
        events: list[Event] = []
        for event in self._outbox:
            if event.payload.get("task_id") == task_id:
                if id(event) in tentative:
                    return []
                events.append(event)
            if event is end:
                return events
        return []

    def _announced(self, task_id: str, reply: Any) -> bool:
        """After an end's reply: True when its events are on the stream through the
        script (this attempt, or an earlier one whose reply was lost), so the flush must
        not publish them again."""
        announcing = self._announcing.pop(task_id, None)
        if announcing is None or self._shared is None:
            return False
        status = reply[0] if isinstance(reply, list) else reply
        by_me = status == "ok" or (status == "ended" and isinstance(reply, list)
                                   and reply[1:2] == [self._shared.node_id])
        if not by_me:
            return False
        events = announcing[2]
        gone = {id(e) for e in events}
        self._outbox = [e for e in self._outbox if id(e) not in gone]
        for event in events:
            metrics.count_published(event.topic, event.payload)
        return True

    def shared_agents(self) -> list[tuple[str, dict[str, int], bool]]:
        """(agent id, capacity per channel, voice exclusive) of every configured agent:
        what the shared state must know to refuse a slot beyond capacity."""
        return [(a.id, dict(a.capacity), a.voice_exclusive)
                for aid, a in self._agents.items() if aid not in self._retired_agents]

    def _coordinated(self) -> None:
        """Refuse a routing decision (accept, reject, transfer, move, callback) while
        the shared state does not answer: the other nodes could not learn of it, and a
        node cut off for longer than its lease has its tasks adopted elsewhere, where
        such a decision would be unknown. Nothing has changed; the caller retries (HTTP
        503). Facts are still taken (a call that ended completes its task, a customer
        who left abandons it): they queue, in order, for when Redis is back."""
        if self._shared is not None and not self._shared_reachable:
            raise E.RemoteNodeError(
                "the shared ACD state (Redis) does not answer; nothing was changed, "
                "try again when it is back")

    @property
    def routing_paused(self) -> bool:
        """True while the shared state does not answer (no new offers, routing
        decisions refused): what /healthz reports as the `acd` check."""
        return self._shared is not None and not self._shared_reachable

    @property
    def refused(self) -> int:
        """Tentative offers Redis refused (another node was first); each was re-routed."""
        return self._refused

    # ------------------------------------------------------------------ ops

    def _op(self, name: str, *args: Any) -> None:
        if self._shared is not None:
            self._ops.append((name, list(args)))

    def _task_data(self, t: LiveTask) -> dict[str, Any]:
        """Everything another node needs to rebuild the task (see `adopt`)."""
        data: dict[str, Any] = {
            "queue_id": t.queue_id, "channel": t.channel, "case_id": t.case_id,
            "customer_id": t.customer_id, "skills": t.own_skills,
            "priority": t.base_priority, "enqueued_at": t.enqueued_at.isoformat(),
            "queue_entered_at": self._at(t.queue_entered_mono).isoformat(),
            "attributes": t.attributes, "preferred_agent_id": t.preferred_agent_id,
            "kind": t.kind, "callback_number": t.callback_number, "hops": t.hops,
            "rules": sorted(t.rules_in_force), "agent_id": t.agent_id,
        }
        if t.status in (ASSIGNED, WRAP_UP):
            data["accepted_at"] = self._at(t.accepted_mono).isoformat()
        if t.status == WRAP_UP and t.agent_id in self._agents:
            w = self._agents[t.agent_id].wraps.get(t.id)
            if w is not None:
                data["wrap"] = {"queue_id": w.queue_id, "ends_at": self._at(w.ends_mono)
                                .isoformat(), "code": w.wrap_up_code, "notes": w.notes}
        return data

    def _op_update(self, t: LiveTask) -> None:
        if self._shared is not None:
            self._op("update", t.id, t.channel, self._json(self._task_data(t)),
                     self._rings_all(t))

    def _rings_all(self, t: LiveTask) -> int:
        """1 when the task's queue offers it to every free agent at once (Redis then
        admits several open offers for it)."""
        q = self._queues.get(t.queue_id)
        return int(q is not None and q.strategy == "ring_all" and t.kind != "callback")

    def _op_register(self, t: LiveTask, ring_all: int = 0) -> None:
        if self._shared is not None:
            self._op("register", t.id, t.channel, ring_all, self._json(self._task_data(t)))

    async def _register_now(self, t: LiveTask, ring_all: int) -> str:
        """Register one task in Redis and wait for the answer. Enqueues that arrive
        together (a burst of webhooks) share one round trip: the first waits one loop
        turn for the others, then sends them all in one pipeline."""
        assert self._shared is not None
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        args: list[Any] = [t.id, t.channel, ring_all, self._json(self._task_data(t))]
        if t.id in self._unanswered_registrations:
            args.append("1")  # an earlier attempt may have registered it (REGISTER_TASK)
        self._registering.append((["register", args], fut))
        if len(self._registering) == 1:
            batch: list[tuple[list[Any], asyncio.Future[str]]] = []
            try:
                await asyncio.sleep(0)
                batch, self._registering = self._registering, []
                replies = await self._run_batch([(op[0], op[1]) for op, _f in batch])
            except BaseException as exc:  # cancelled too: nobody may wait forever
                for op, _waiting in batch:  # sent: Redis may have run them
                    self._unanswered_registrations[op[1][0]] = None
                while len(self._unanswered_registrations) > _UNANSWERED_KEEP:
                    del self._unanswered_registrations[
                        next(iter(self._unanswered_registrations))]
                for _op, waiting in batch or self._registering:
                    if not waiting.done():
                        waiting.set_exception(E.RemoteNodeError(
                            f"the shared ACD state did not register the task: {exc!r}"))
                if not batch:
                    self._registering = []
                if not isinstance(exc, Exception):
                    raise
            else:
                for (op, waiting), reply in zip(batch, replies, strict=True):
                    self._unanswered_registrations.pop(op[1][0], None)
                    if not waiting.done():
                        waiting.set_result(str(reply))
        return await fut

    async def _run_batch(self, ops: list[tuple[str, list[Any]]]) -> list[Any]:
        """Send ops to the shared state; what they changed on agents this node knew up
        to date is known up to date after them (see `sync_remote`): this node's own
        changes are never read back."""
        assert self._shared is not None
        replies, revisions = await self._shared.run_batch(ops)
        seen = self._seen_revisions
        for agent_id, before, after in revisions:
            if seen.get(agent_id) == before:
                seen[agent_id] = after
        return replies

    def _op_agent_state(self, a: LiveAgent) -> None:
        if self._shared is not None:
            a.presence_version += 1
            self._op("agent_state", a.id, a.presence, a.session_id or "", a.reason or "")

    @staticmethod
    def _json(data: dict[str, Any]) -> str:
        return json.dumps(data, default=str)

    # ------------------------------------------------------------------ confirm

    async def _sync_shared(self) -> bool:
        """Send the queued ops until none is left; undo refused offers and route again.
        False when Redis could not be reached (the ops stay queued for the next flush)."""
        shared = self._shared
        assert shared is not None
        rounds = 0
        while self._ops:
            rounds += 1
            batch, self._ops = self._ops, []
            try:
                replies = await self._run_batch(self._with_announcements(batch))
            except Exception:
                if self._shared_reachable:
                    log.exception("ACD could not reach the shared state; %d change(s) "
                                  "will be retried, tentative offers are undone", len(batch))
                self._shared_reachable = False
                self._ops = [op for op in batch if op[0] != "claim"] + self._ops
                for name, args in batch:
                    if name == "claim":
                        self._undo_offer(args[2], cool_off=True)
                return False
            self._shared_reachable = True
            stale: dict[str, None] = {}
            confirmed: dict[int, str] = {}  # id of a task.offered event -> offer id
            for (name, args), reply in zip(batch, replies, strict=True):
                status = reply[0] if isinstance(reply, list) else reply
                if name == "claim":
                    offer_id = args[2]
                    if status != "ok":
                        self._refused += 1
                        self._undo_offer(offer_id, cool_off=rounds >= _MAX_CONFIRM_ROUNDS)
                        stale[args[1]] = None
                    else:
                        # Confirmed. Withdrawn here meanwhile? Its release op follows
                        # this claim in order, so Redis frees the slot too.
                        ev_rec = self._unpublished.pop(offer_id, None)
                        if ev_rec is not None:
                            confirmed[id(ev_rec[0])] = offer_id
                elif name == "end":
                    event = self._unconfirmed_ends.pop(args[0], None)
                    if self._announced(args[0], reply):
                        pass  # the script added the end (and what came before) itself
                    elif status in ("not_owner", "ended") and event is not None:
                        # Another node runs (or ended) this task: its end is announced
                        # there, once; this node's would be a second.
                        self._outbox = [e for e in self._outbox if e is not event]
                        log.warning("end of task %s not announced here: %s", args[0],
                                    status)
                elif status not in ("ok", "no_offer", "unknown_task"):
                    log.warning("shared ACD state refused %s %s: %s", name, args[:3], status)
            if confirmed:
                self._date_confirmed_offers(confirmed)
            if stale:
                await self.refresh_agents(list(stale))
                self._settle()
        return True

    def _date_confirmed_offers(self, confirmed: dict[int, str]) -> None:
        """Date the `task.offered` events of confirmed claims when Redis confirmed
        them, not when this node decided. Why: the decision is optimistic (this node's
        view of the agent may be a sync old) and the offer exists only once the claim
        script ran; what freed the slot it takes (another node's end, release, or an
        adoption's withdrawals) is dated no later than it was sent to Redis. So in the
        nodes' shared time line a slot's free comes before the offer that takes it,
        which is the order the multi-node offer audit replays (tests/multinode/
        traffic.audit_offers). An event of the same offer queued after it (withdrawn
        here before the claim was confirmed) keeps coming after it.

        Re-dated in place: none of these events is published yet, and the flush tracks
        them by identity (`_unpublished`, `_unconfirmed_ends`, an end's announcement),
        so a copy in the outbox would escape that tracking."""
        now = self._clock.now()
        later: set[str] = set()
        for event in self._outbox:
            offer_id = confirmed.get(id(event))
            if offer_id is not None:
                object.__setattr__(event, "occurred_at", now)
                later.add(offer_id)
            elif later and event.payload.get("offer_id") in later \
                    and event.occurred_at < now:
                object.__setattr__(event, "occurred_at", now)

    def _undo_offer(self, offer_id: str, *, cool_off: bool = False) -> None:
        """A tentative offer Redis refused: as if it had never been made."""
        ev_rec = self._unpublished.pop(offer_id, None)
        if ev_rec is not None:  # never published: nobody saw it
            event, record = ev_rec
            self._outbox = [e for e in self._outbox if e is not event]
            self._task_records = [r for r in self._task_records if r is not record]
        offer = self._offers.pop(offer_id, None)
        if offer is None:
            return  # withdrawn meanwhile; its release op finds nothing to free
        t = self._tasks[offer.task_id]
        a = self._agents[offer.agent_id]
        t.offers.pop(a.id, None)
        a.offers.pop(offer_id, None)
        a.load[t.channel] -= 1
        a.total_load -= 1
        self._decisions -= 1
        self._qstats[t.queue_id].offers -= 1
        self._cstats[t.channel].offers -= 1
        self._astats[a.id].offers -= 1
        if cool_off:
            until = self._mono() + _REFUSED_COOL_OFF
            t.declined[a.id] = until
            self._timer(until, "retry", t.id)
        self._return_to_waiting(t)  # a transfer to a named agent tries the next one
        self._touch_agent(a)

    # ------------------------------------------------------------------ other nodes' work

    async def refresh_agents(self, agent_ids: Iterable[str] | None = None) -> None:
        """Read the agents' cluster-wide state back from Redis and apply it: slots held
        for other nodes' tasks become remote load, presence changed elsewhere applies
        here. A presence changed here while the read was under way wins."""
        if self._shared is None:
            return
        ids = [a for a in (agent_ids if agent_ids is not None else self._agents)
               if a in self._agents]
        versions = {a: self._agents[a].presence_version for a in ids}
        states = await self._shared.agent_states(ids)
        for agent_id, state in states.items():
            a = self._agents[agent_id]
            self._apply_remote(a, state, same_presence=versions[agent_id]
                               == a.presence_version)

    async def sync_remote(self) -> None:
        """One round of learning what other nodes did (the shared-state service calls
        it a few times a second): re-read the agents whose revision moved since the last
        round (one command when nothing did), route what that freed, publish."""
        if self._shared is None:
            return
        try:
            revisions = await self._shared.agent_revisions()
        except Exception:
            self._shared_reachable = False
            raise
        self._shared_reachable = True
        changed = [a for a, rev in revisions.items()
                   if a in self._agents and self._seen_revisions.get(a) != rev]
        # Read after the revisions: the state read is at least that new, and a change
        # made meanwhile bumps the revision again, so the next round sees it.
        self._seen_revisions.update(revisions)
        if changed:
            await self.refresh_agents(changed)
        self._settle()
        await self._flush()

    def _apply_remote(self, a: LiveAgent, state: dict[str, Any], *,
                      same_presence: bool) -> None:
        own = set(a.offers.values()) | set(a.active) | set(a.wraps)
        remote = {c: 0 for c in CHANNELS}
        for token, channel in state["slots"].items():
            if token not in own and channel in remote:
                remote[channel] += 1
        changed = freed = False
        for c in CHANNELS:
            delta = remote[c] - a.remote_load.get(c, 0)
            if delta:
                a.load[c] += delta
                a.total_load += delta
                changed = True
                freed = freed or delta < 0
        a.remote_load = remote
        presence = state.get("presence")
        if same_presence and presence in ("available", "not_ready", "logged_out") and (
                presence != a.presence or (presence == "not_ready"
                                           and state.get("reason") != a.reason)):
            changed = True
            if presence == "available":
                a.presence, a.reason = "available", None
                a.session_id = state.get("session") or a.session_id
                a.idle_since = self._mono()
                freed = True
            else:
                self._drop_offers(a, "agent_state_elsewhere")
                self._release_all_sticky(a)
                a.presence = presence
                a.reason = state.get("reason") if presence == "not_ready" else None
                if presence == "logged_out":
                    a.session_id = None
                else:
                    a.session_id = state.get("session") or a.session_id
        if changed:
            self._touch_agent(a)
            if freed and a.presence == "available":
                self._dirty_agents[a.id] = None

    # ------------------------------------------------------------------ forwarded calls

    def _forwarding(self) -> bool:
        return self._shared is not None and not _serving_forwarded.get()

    async def _forward_task(self, task_id: Any, method: str, /, **kwargs: Any) -> Any:
        """Run `method` on the node that owns `task_id` when that is another node (the
        agent's websocket or the supervisor's request landed here); LOCAL otherwise."""
        if not self._forwarding() or not isinstance(task_id, str) or task_id in self._tasks \
                or task_id in self._finished:
            return LOCAL
        assert self._shared is not None
        owner = await self._shared.task_owner(task_id)
        if owner is None or owner == self._shared.node_id:
            return LOCAL
        return await self._call(owner, method, kwargs)

    async def _forward_offer(self, method: str, offer_id: Any, agent_id: Any) -> Any:
        if not self._forwarding() or not isinstance(offer_id, str) \
                or not isinstance(agent_id, str) or offer_id in self._offers \
                or agent_id not in self._agents:
            return LOCAL
        assert self._shared is not None
        found = await self._shared.find_offer(offer_id, agent_id)
        if found is None or found[1] == self._shared.node_id:
            return LOCAL
        return await self._call(found[1], method,
                                {"offer_id": offer_id, "agent_id": agent_id})

    async def _remote_wraps(self, agent_id: str) -> list[tuple[str, str]]:
        """(task id, owner) of the agent's wrap-ups owned by other nodes."""
        if not self._forwarding() or agent_id not in self._agents:
            return []
        assert self._shared is not None
        me = self._shared.node_id
        return [(t, owner) for t, (status, owner) in
                (await self._shared.agent_tasks(agent_id)).items()
                if status == WRAP_UP and owner != me and t not in self._tasks]

    async def _logout_elsewhere(self, a: LiveAgent) -> None:
        """Log-out, cluster-wide: refused while another node has a task in the agent's
        hands; wrap-ups other nodes run end now, as local ones do."""
        assert self._shared is not None
        me = self._shared.node_id
        remote = {t: v for t, v in (await self._shared.agent_tasks(a.id)).items()
                  if v[1] != me and t not in self._tasks}
        busy = [t for t, (status, _owner) in remote.items() if status == ASSIGNED]
        if busy:
            raise E.AgentBusyError(
                f"agent {a.id!r} still handles {len(busy)} task(s) on another node; "
                "complete or transfer them first")
        for task_id, (status, owner) in remote.items():
            if status == WRAP_UP:
                await self._call(owner, "end_wrap_up", {"agent_id": a.id, "task_id": task_id})

    def forget_tasks(self) -> int:
        """This node lost its lease (fenced): another node adopted its tasks, so drop
        them here without a word — no events, no ops — and keep only the agents (their
        load is read back from Redis at the next sync). Returns how many were dropped."""
        dropped = len(self._tasks)
        for event, _record in self._unpublished.values():
            self._outbox = [e for e in self._outbox if e is not event]
        self._unpublished.clear()
        for event in self._unconfirmed_ends.values():  # ends Redis never confirmed
            self._outbox = [e for e in self._outbox if e is not event]
        self._unconfirmed_ends.clear()
        self._announcing.clear()
        self._ops = [op for op in self._ops if op[0] == "agent_state"]
        self._tasks.clear()
        self._offers.clear()
        for members in self._in_queue.values():
            members.clear()
        self._task_index = type(self._task_index)()
        self._timers.clear()  # every timer belongs to a task or a wrap-up
        self._dirty_tasks.clear()
        for a in self._agents.values():
            a.offers.clear()
            a.active.clear()
            a.wraps.clear()
            a.sticky.clear()
            a.load = {c: 0 for c in CHANNELS}
            a.total_load = 0
            a.remote_load = {}
            self._touch_agent(a)
        self._emit("acd.fenced", {"dropped_tasks": dropped})
        return dropped

    async def _call(self, node: str, method: str, kwargs: dict[str, Any]) -> Any:
        assert self._shared is not None
        reply = await self._shared.call(node, method, kwargs)
        if reply is None:
            raise E.RemoteNodeError(f"node {node!r}, which holds the task, did not answer")
        if "error" in reply:
            cls = getattr(E, str(reply["error"]), None)
            if not (isinstance(cls, type) and issubclass(cls, E.AcdError)):
                cls = E.AcdError
            raise cls(reply.get("message") or reply["error"])
        return decode_result(reply.get("result"))

    async def serve_forwarded(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Run a call another node forwarded (queues.shared.SharedAcdState.serve_calls):
        the result, or the ACD error it raised, as JSON-able data."""
        if method not in FORWARDABLE or not isinstance(kwargs, dict):
            return {"error": "InvalidArgumentError",
                    "message": f"{method!r} cannot be forwarded"}
        token = _serving_forwarded.set(True)
        try:
            result = await getattr(self, method)(**kwargs)
        except E.AcdError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        except TypeError as exc:  # arguments that do not fit the method
            return {"error": "InvalidArgumentError", "message": str(exc)}
        finally:
            _serving_forwarded.reset(token)
        return {"result": encode_result(result)}

    # ------------------------------------------------------------------ adoption

    async def adopt(self, dead_node: str, tasks: list[Any]) -> list[str]:
        """Take over tasks another node owned (`queues.shared.AdoptedTask`s, handed over
        by `SharedAcdState.take_over_dead_nodes`). Waiting tasks keep their enqueue time
        (so their place) and queue-entry time (so their overflow and max-wait deadlines);
        accepted tasks and wrap-ups stay with their agent. Returns the adopted ids."""
        adopted: list[str] = []
        agents: set[str] = set()
        for item in tasks:
            try:
                t = self._rebuild(item.task_id, item.status, item.data)
            except Exception:
                log.exception("could not adopt task %s of node %s", item.task_id, dead_node)
                continue
            if t is None:
                continue
            adopted.append(t.id)
            if t.agent_id:
                agents.add(t.agent_id)
            # Stamped when Redis was asked to adopt (see AdoptedTask.adopted_at): the
            # offers it withdrew there freed slots other nodes may offer before this
            # event is published; the event order by time stays the order of effects.
            self._emit("task.adopted", self._task_payload(
                t, from_node=dead_node, status=t.status, agent_id=t.agent_id),
                at=getattr(item, "adopted_at", None))
        if agents:
            await self.refresh_agents(sorted(agents))
        self._settle()
        await self._flush()
        return adopted

    def _rebuild(self, task_id: str, status: str, data: dict[str, Any]) -> LiveTask | None:
        if task_id in self._tasks:
            return None
        queue_id = data["queue_id"]
        if queue_id not in self._queues:
            log.error("adopted task %s is in unknown queue %s; dropped", task_id, queue_id)
            return None
        now, wall = self._mono(), self._clock.now()

        def mono(value: str | None) -> float:
            at = _iso(value)
            return now if at is None else now - (wall - at).total_seconds()

        self._seq += 1
        enqueued_at = _iso(data.get("enqueued_at")) or wall
        t = LiveTask(
            id=task_id, channel=data["channel"], queue_id=queue_id,
            case_id=data["case_id"], customer_id=data["customer_id"],
            own_skills=dict(data.get("skills") or {}),
            base_priority=int(data.get("priority") or 0), enqueued_at=enqueued_at,
            enqueued_mono=mono(data.get("enqueued_at")), seq=self._seq,
            attributes=dict(data.get("attributes") or {}),
            preferred_agent_id=data.get("preferred_agent_id"),
            kind=data.get("kind") or "normal", callback_number=data.get("callback_number"),
            hops=int(data.get("hops") or 0),
        )
        t.queue_entered_mono = mono(data.get("queue_entered_at"))
        t.rules_in_force = {int(i) for i in data.get("rules") or ()
                            if int(i) < len(self._queues[queue_id].overflow)}
        self._compute_requirements(t)
        agent_id = data.get("agent_id")
        if status in (ASSIGNED, WRAP_UP) and agent_id in self._agents:
            a = self._agents[agent_id]
            t.agent_id = agent_id
            t.accepted_mono = mono(data.get("accepted_at"))
            self._tasks[t.id] = t
            a.load[t.channel] += 1
            a.total_load += 1
            wrap = data.get("wrap")
            if status == WRAP_UP and wrap:
                t.status = WRAP_UP
                w = LiveWrapUp(t.id, wrap.get("queue_id") or queue_id, t.channel,
                               mono(wrap.get("ends_at")), wrap.get("code"),
                               wrap.get("notes"))
                a.wraps[t.id] = w
                self._timer(w.ends_mono, "wrap", a.id, t.id)
            else:
                t.status = ASSIGNED
                a.active[t.id] = None
            self._touch_agent(a)
            return t
        # Waiting (the adoption withdrew ringing offers): back in line, in its place.
        t.status = WAITING
        self._tasks[t.id] = t
        self._in_queue[queue_id][t.id] = None
        self._schedule_queue_timers(t)
        self._index_task(t)
        self._dirty_tasks[t.id] = None
        return t
