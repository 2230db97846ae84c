"""Shared ACD state in Redis: what several nodes must agree on so that, cluster-wide,
a task is offered to one agent at a time (ring-all aside) and an agent never holds more
tasks of a channel than its capacity, and so that a dead node's tasks and timers are
taken over by a live one.

What lives here is deliberately small: per agent, presence, capacity and the capacity
slots it holds; per task, status, owner node, open offers and the assigned agent; per
node, a lease, its owned tasks and its timers. Routing *decisions* (which agent is best)
stay in each node's in-memory engine; every decision is *confirmed* here by one Lua
script (see queues.shared.scripts), which refuses it when another node got there first.

A node's lease (SET NX PX, renewed by a LeaseKeeper) is what makes it the owner of its
tasks and timers. When it expires, any live node's `take_over_dead_nodes` adopts them in
one script; routing changes from the old owner are then refused (`not_owner`), so a
node that was only paused cannot act on what it lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.clock import Clock, SystemClock
from core.tasks import raise_if_cancelling
from queues.errors import InvalidArgumentError, RemoteNodeError
from queues.model import CHANNELS
from queues.shared import scripts as S
from queues.shared.keys import DEFAULT_PREFIX, Keys
from queues.shared.lane import ScriptLane
from queues.shared.lease import Lease, LeaseKeeper

log = logging.getLogger(__name__)

_ID = re.compile(r"^[^\s:{}]{1,200}$")
PRESENCES = ("available", "not_ready", "logged_out")
AdoptedHandler = Callable[[str, list["AdoptedTask"]], Awaitable[None]]


class NodeIdInUseError(RuntimeError):
    """Another live process holds this node id's lease."""


class FencedError(RuntimeError):
    """This node lost its lease: its tasks and timers belong to another node now."""


@dataclass(frozen=True, slots=True)
class Claim:
    """Outcome of an atomic change: `reason` is "ok" or why it was refused
    (full, not_available, offered, not_owner, unknown_task, ...)."""

    reason: str

    @property
    def ok(self) -> bool:
        return self.reason == "ok"

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class Withdrawn:
    offer_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """A change that may withdraw other offers (accept, requeue, end)."""

    reason: str
    withdrawn: tuple[Withdrawn, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason == "ok"

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class AdoptedTask:
    task_id: str
    status: str  # waiting (offers were withdrawn), assigned or wrap_up
    data: dict[str, Any]
    # When the adoption was asked of Redis (by the state's clock): it took effect then
    # or a moment later, not when its reply was handled. The adopter's `task.adopted`
    # carries this time: the withdrawals the adoption made in Redis free agents'
    # slots, and another node can offer such a slot while the adopter is still busy
    # with the reply; in the nodes' time line the adoption must come first.
    adopted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AgentLoad:
    presence: str | None
    capacity: dict[str, int]
    load: dict[str, int]
    total: int
    slots: dict[str, str] = field(default_factory=dict)  # token -> channel


def _check_id(what: str, value: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidArgumentError(
            f"{what} must be 1-200 characters without spaces, ':' or braces: {value!r}")
    return value


def _check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise InvalidArgumentError(f"unknown channel {channel!r}; one of {CHANNELS}")
    return channel


def adopted_tasks(reply: list[Any], adopted_at: datetime | None = None
                  ) -> list[AdoptedTask]:
    """The ADOPT script's reply as tasks. An accepted task's agent and accept time are
    kept beside its data in Redis (the accept does not rewrite the data): merged here."""
    out = []
    flat = reply[1:]
    for i in range(0, len(flat), 5):
        task_id, status, raw, agent, accepted_at = flat[i:i + 5]
        data = json.loads(raw or "{}")
        if status in ("assigned", "wrap_up") and agent and accepted_at:
            data["agent_id"], data["accepted_at"] = agent, accepted_at
        out.append(AdoptedTask(task_id, status, data, adopted_at))
    return out


@contextlib.asynccontextmanager
async def _unavailable_if_redis_is_away(what: str) -> AsyncIterator[None]:
    """A look-up the engine makes before acting on another node's task: Redis away is
    RemoteNodeError (HTTP 503, retry later), not an unexpected failure (500)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise RemoteNodeError(f"the shared ACD state (Redis) does not answer; cannot "
                              f"{what} ({type(exc).__name__})") from None


def _withdrawn(flat: list[str]) -> tuple[Withdrawn, ...]:
    return tuple(Withdrawn(flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


def _ended(reply: list[str]) -> Outcome:
    """END_TASK's reply: only 'ok' lists withdrawn offers ('ended' names its node)."""
    return Outcome(reply[0], _withdrawn(reply[1:]) if reply[0] == "ok" else ())


class SharedAcdState:
    """One node's handle on the shared ACD state. `join()` before use, `leave()` after."""

    def __init__(self, redis: Redis, node_id: str, *, prefix: str = DEFAULT_PREFIX,
                 node_ttl_ms: int = 3000,
                 on_fenced: Callable[[], Awaitable[None]] | None = None) -> None:
        if not redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("SharedAcdState needs a Redis client with decode_responses=True "
                             "(use SharedAcdState.from_url)")
        self.redis = redis
        self.node_id = _check_id("node_id", node_id)
        self.keys = Keys(prefix)
        self.prefix = prefix
        self.node_ttl_ms = node_ttl_ms
        self.fenced = False
        self.serving = False  # serve_calls runs (see stop_serving)
        # Stamps adoptions (AdoptedTask.adopted_at); the wiring gives it the engine's.
        self.clock: Clock = SystemClock()
        self.on_fenced = on_fenced  # called when the lease is lost (see wiring)
        self.node_lease = Lease(redis, self.keys.node(node_id), node_ttl_ms,
                                revive_in=(self.keys.nodes, node_id))
        self.keeper = LeaseKeeper(on_lost=self._lost)
        self._takeover: asyncio.Task[None] | None = None
        reg = redis.register_script
        self._set_agent = reg(S.SET_AGENT)
        self._set_presence = reg(S.SET_PRESENCE)
        self._log_in = reg(S.LOG_IN)
        self._reserve = reg(S.RESERVE_AGENT)
        self._release = reg(S.RELEASE_AGENT)
        self._register = reg(S.REGISTER_TASK)
        self._claim = reg(S.CLAIM_OFFER)
        self._release_offer = reg(S.RELEASE_OFFER)
        self._accept = reg(S.ACCEPT)
        self._wrap = reg(S.START_WRAP_UP)
        self._requeue = reg(S.REQUEUE)
        self._end = reg(S.END_TASK)
        self._adopt = reg(S.ADOPT)
        self._pop_due = reg(S.POP_DUE_TIMERS)
        self._update = reg(S.UPDATE_TASK)
        self._agent_state = reg(S.SET_AGENT_STATE)
        self._capacity = reg(S.SET_CAPACITY)
        self._batch = reg(S.BATCH)
        self._agent_states = reg(S.AGENT_STATES)
        # One batch script per flush (the default) or, for the benchmark's A/B, one
        # EVALSHA per op in a pipeline (the way it was done before): same replies.
        self.batched = True
        # The batch's ops as one JSON argument (the default) or as ARGV (A/B).
        self.batch_json = True
        # The batch script over its own lean connection (queues.shared.lane) when the
        # client is plain TCP; False (the benchmark's A/B): through redis-py.
        self.lane: ScriptLane | None = ScriptLane(redis, S.BATCH) \
            if ScriptLane.usable(redis) else None
        self.use_lane = True
        self._by_op = {
            "register": self._register, "claim": self._claim,
            "release": self._release_offer, "accept": self._accept, "wrap": self._wrap,
            "requeue": self._requeue, "end": self._end, "update": self._update,
            "agent_state": self._agent_state, "capacity": self._capacity,
        }

    @classmethod
    def from_url(cls, url: str, node_id: str, **kwargs: Any) -> SharedAcdState:
        return cls(Redis.from_url(url, decode_responses=True), node_id, **kwargs)

    async def _run(self, script: Any, *args: Any) -> Any:
        # Keys are built inside the scripts from the prefix; they all share its hash tag.
        return await script(keys=[], args=[self.prefix, *args])

    async def _run_many(self, script: Any, arg_lists: list[list[Any]]) -> list[Any]:
        """One round trip for many scripts (a pipeline, not a transaction: each script
        is atomic on its own, and the engine decides many things per settle)."""
        if not arg_lists:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for args in arg_lists:
            await script(keys=[], args=[self.prefix, *args], client=pipe)
        return await pipe.execute()

    async def run_ops(self, ops: list[tuple[str, list[Any]]]) -> list[Any]:
        """Many changes of different kinds in one round trip, applied in order. An op is
        (name, args) with the script's ARGV after the prefix; names: register, claim,
        release, accept, wrap, requeue, end, update, agent_state, capacity. The engine's
        `_flush` sends what one settle decided this way. Fenced ops (register, claim,
        release, requeue, end) carry this node's id, added here."""
        return (await self.run_batch(ops))[0]

    async def run_batch(self, ops: list[tuple[str, list[Any]]]
                        ) -> tuple[list[Any], list[tuple[str, int, int]]]:
        """`run_ops`, plus the agent revisions the ops moved: (agent, revision before
        the first change, revision after the last). The ops run in one script, so nobody
        else changed those agents in between: a node that knew an agent at `before`
        knows it at `after` without reading it back (queues.cluster.sync_remote)."""
        if not ops:
            return [], []
        if not self.batched:
            return await self._run_ops_pipelined(ops), []
        for name, _op_args in ops:
            if name not in self._by_op:
                raise InvalidArgumentError(f"unknown shared-state op {name!r}")
        if self.batch_json:
            payload = json.dumps([[name, *map(str, self._with_node(name, op_args))]
                                  for name, op_args in ops])
            if self.lane is not None and self.use_lane:
                reply = await self.lane.evalsha(self.prefix, payload)
            else:
                reply = await self._batch(keys=[], args=[self.prefix, payload])
        else:
            args: list[Any] = [self.prefix]
            for name, op_args in ops:
                op_args = self._with_node(name, op_args)
                args += [name, len(op_args), *op_args]
            reply = await self._batch(keys=[], args=args)
        flat = reply[-1]
        revisions = [(flat[i], int(flat[i + 1]), int(flat[i + 2]))
                     for i in range(0, len(flat), 3)]
        return reply[:-1], revisions

    def _with_node(self, name: str, args: list[Any]) -> list[Any]:
        if name == "register":
            return [args[0], self.node_id, *args[1:]]
        if name == "end":  # the node before the optional announcement (END_TASK)
            return [args[0], self.node_id, *args[1:]]
        if name in ("claim", "release", "requeue"):
            return [*args, self.node_id]
        return list(args)

    async def _run_ops_pipelined(self, ops: list[tuple[str, list[Any]]]) -> list[Any]:
        """The ops as one EVALSHA each in a pipeline (not a transaction: each script is
        atomic on its own): the former way, kept for the benchmark's A/B."""
        pipe = self.redis.pipeline(transaction=False)
        for name, args in ops:
            script = self._by_op.get(name)
            if script is None:
                raise InvalidArgumentError(f"unknown shared-state op {name!r}")
            await script(keys=[], args=[self.prefix, *self._with_node(name, args)],
                         client=pipe)
        return await pipe.execute()

    async def agent_revisions(self) -> dict[str, int]:
        """agent id -> revision: what changed since a node's last look (one command)."""
        return {a: int(r) for a, r in
                (await self.redis.hgetall(self.keys.agent_revisions)).items()}

    async def agent_states(self, agent_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Presence, session, reason and held slots (token -> channel) of many agents,
        in one script (`scripts.AGENT_STATES`, over the lean connection when there is
        one): how an engine learns what other nodes did with them. A node's sync reads
        every agent another node changed, often all of them, a few times a second."""
        if not agent_ids:
            return {}
        if self.lane is not None and self.use_lane:
            replies = await self.lane.evalsha_other(S.AGENT_STATES, self.prefix, *agent_ids)
        else:
            replies = await self._agent_states(keys=[], args=[self.prefix, *agent_ids])
        out: dict[str, dict[str, Any]] = {}
        for agent, (presence, session, reason, slots) in zip(agent_ids, replies,
                                                            strict=True):
            out[agent] = {"presence": presence or None, "session": session or None,
                          "reason": reason or None,
                          "slots": dict(zip(slots[::2], slots[1::2], strict=True))}
        return out

    # ------------------------------------------------------------------ forwarded calls

    async def find_offer(self, offer_id: str, agent_id: str) -> tuple[str, str] | None:
        """(task id, owner node) of an open offer to the agent, wherever it was made:
        the agent's slots name the tasks it holds, the tasks' offers name the offer."""
        async with _unavailable_if_redis_is_away("find the offer's node"):
            return await self._find_offer(offer_id, agent_id)

    async def _find_offer(self, offer_id: str, agent_id: str) -> tuple[str, str] | None:
        slots = await self.redis.hkeys(self.keys.slots(agent_id))
        if not slots:
            return None
        pipe = self.redis.pipeline(transaction=False)
        for task in slots:
            pipe.hget(self.keys.offers(task), offer_id)
            pipe.hget(self.keys.task(task), "owner")
        replies = await pipe.execute()
        for i, task in enumerate(slots):
            if replies[2 * i] == agent_id and replies[2 * i + 1]:
                return task, replies[2 * i + 1]
        return None

    async def task_owner(self, task_id: str) -> str | None:
        async with _unavailable_if_redis_is_away("find the task's node"):
            return await self.redis.hget(self.keys.task(task_id), "owner")

    async def agent_tasks(self, agent_id: str) -> dict[str, tuple[str, str]]:
        """task id -> (status, owner) of every task holding one of the agent's slots."""
        async with _unavailable_if_redis_is_away("read the agent's tasks"):
            return await self._agent_tasks(agent_id)

    async def _agent_tasks(self, agent_id: str) -> dict[str, tuple[str, str]]:
        slots = await self.redis.hkeys(self.keys.slots(agent_id))
        pipe = self.redis.pipeline(transaction=False)
        for task in slots:
            pipe.hmget(self.keys.task(task), "status", "owner")
        out: dict[str, tuple[str, str]] = {}
        for task, (status, owner) in zip(slots, await pipe.execute(), strict=True):
            if status and owner:
                out[task] = (status, owner)
        return out

    async def call(self, node_id: str, method: str, kwargs: Mapping[str, Any], *,
                   timeout_s: float = 5.0) -> dict[str, Any] | None:
        """Run `method(**kwargs)` on the engine of `node_id` (see `serve_calls`) and
        return its reply ({"result": ...} or {"error": class name, "message": ...});
        None when the node did not answer within `timeout_s`."""
        call_id = secrets.token_hex(12)
        try:
            await self.redis.rpush(self.keys.inbox(node_id), json.dumps(
                {"id": call_id, "method": method, "kwargs": dict(kwargs),
                 "from": self.node_id, "deadline": time.time() + timeout_s}, default=str))
            reply = await self.redis.blpop([self.keys.reply(call_id)], timeout=timeout_s)
        except RedisError as exc:  # Redis slow or away: the same as no answer (retry)
            log.warning("forwarded %s to %s: no answer (%s)", method, node_id, exc)
            return None
        return None if reply is None else json.loads(reply[1])

    async def serve_calls(self, handler: Callable[[str, dict[str, Any]],
                                                  Awaitable[dict[str, Any]]]) -> None:
        """Answer the calls other nodes forward to this one, until cancelled. A call
        whose caller gave up already (past its deadline) is dropped, not run."""
        inbox = self.keys.inbox(self.node_id)
        self.serving = True
        while self.serving:  # stop_serving() ends it within a BLPOP's second
            try:
                item = await self.redis.blpop([inbox], timeout=1)
            except RedisError as exc:
                raise_if_cancelling()
                # A Redis timeout or outage must not end this loop: every call other
                # nodes forward here (an accept on a task this node owns) would then go
                # unanswered for the rest of the node's life.
                log.warning("forwarded calls: Redis did not answer (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if item is None:
                continue
            try:
                call = json.loads(item[1])
                call_id, method = str(call["id"]), str(call["method"])
                kwargs = dict(call.get("kwargs") or {})
                deadline = float(call.get("deadline", 0))
            except (ValueError, KeyError, TypeError, AttributeError):
                log.error("dropped a malformed forwarded call: %.200s", item[1])
                continue
            if time.time() > deadline:
                log.warning("dropped a forwarded %s: its caller gave up", method)
                continue
            try:
                reply = await handler(method, kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failing call is answered, never kills the loop
                log.exception("forwarded %s failed", method)
                reply = {"error": "AcdError", "message": str(exc)}
            key = self.keys.reply(call_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.rpush(key, json.dumps(reply, default=str))
            pipe.expire(key, 30)
            try:
                await pipe.execute()
            except RedisError as exc:  # the caller times out and retries
                log.warning("forwarded %s: the reply was not delivered (%s)", method, exc)

    def stop_serving(self) -> None:
        """End `serve_calls` at its next round, cancelled or not: a cancellation it did
        not see (a test's teardown hung on one in CI; not understood yet, see
        docs/deploy.md) must not keep it running."""
        self.serving = False

    # ------------------------------------------------------------------ node life

    async def join(self, *, wait_s: float | None = None) -> list[AdoptedTask]:
        """Take this node's lease and start renewing it. A previous life of the same
        node id (a crash and restart) is waited out for one TTL, and what it owned and
        nobody adopted yet is returned, to be loaded back into the engine."""
        deadline = time.monotonic() + (self.node_ttl_ms / 1000 + 1 if wait_s is None
                                       else wait_s)
        while await self.redis.exists(self.node_lease.key):
            if time.monotonic() >= deadline:
                raise NodeIdInUseError(f"node id {self.node_id!r} is held by a live node")
            await asyncio.sleep(0.1)
        recovered = await self._adopt_from(self.node_id)
        if not await self.node_lease.acquire():
            raise NodeIdInUseError(f"node id {self.node_id!r} was taken while joining")
        await self.redis.sadd(self.keys.nodes, self.node_id)
        self.fenced = False
        self.keeper.add(self.node_lease)
        self.keeper.start()
        return recovered

    async def leave(self, *, release: bool = True) -> None:
        """Stop renewing. With release, the lease is given back at once, so another node
        takes over this node's remaining tasks without waiting for the TTL."""
        await self.stop_takeover()
        await self.keeper.stop(release=release)
        if self.lane is not None:
            await self.lane.close()  # reconnects by itself if the node joins again

    async def _lost(self, lease: Lease) -> None:
        if lease is self.node_lease:
            self.fenced = True
            log.error("node %s lost its lease: its tasks go to another node", self.node_id)
            if self.on_fenced is not None:
                await self.on_fenced()

    # ------------------------------------------------------------------ agents

    async def set_agent(self, agent_id: str, capacity: Mapping[str, int], *,
                        voice_exclusive: bool = False,
                        presence: str | None = None) -> None:
        """Publish an agent's capacity (from the config; every node writes the same) and
        optionally its presence. Slots held stay held."""
        _check_id("agent_id", agent_id)
        pairs: list[Any] = []
        for channel, cap in capacity.items():
            _check_channel(channel)
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
                raise InvalidArgumentError(f"capacity for {channel} must be an int >= 0")
            pairs += [channel, cap]
        if presence is None:
            presence = await self.redis.hget(self.keys.agent(agent_id), "presence") \
                or "logged_out"
        if presence not in PRESENCES:
            raise InvalidArgumentError(f"presence must be one of {PRESENCES}")
        await self._run(self._set_agent, agent_id, presence, int(voice_exclusive), *pairs)

    async def set_presence(self, agent_id: str, presence: str) -> Claim:
        _check_id("agent_id", agent_id)
        if presence not in PRESENCES:
            raise InvalidArgumentError(f"presence must be one of {PRESENCES}")
        return Claim(await self._run(self._set_presence, agent_id, presence))

    async def log_in(self, agent_id: str, session_id: str) -> Claim:
        """Available with `session_id`, unless another session holds the agent
        ("elsewhere"): the one check-and-set that makes log-in atomic across nodes."""
        _check_id("agent_id", agent_id)
        _check_id("session_id", session_id)
        return Claim(await self._run(self._log_in, agent_id, session_id))

    async def reserve_agent(self, agent_id: str, channel: str, token: str) -> Claim:
        """Take one capacity slot of `channel` for `token` (idempotent per token)."""
        _check_id("agent_id", agent_id)
        _check_channel(channel)
        _check_id("token", token)
        return Claim(await self._run(self._reserve, agent_id, channel, token))

    async def release_agent(self, agent_id: str, token: str) -> bool:
        """Give back the slot `token` holds; False when it held none (already freed)."""
        _check_id("agent_id", agent_id)
        _check_id("token", token)
        return await self._run(self._release, agent_id, token) == "ok"

    async def agent_load(self, agent_id: str) -> AgentLoad:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys.agent(agent_id))
        pipe.hgetall(self.keys.slots(agent_id))
        fields, slots = await pipe.execute()
        cap = {k[4:]: int(v) for k, v in fields.items() if k.startswith("cap:")}
        load = {k[5:]: int(v) for k, v in fields.items() if k.startswith("load:")}
        # The total is the sum of the channels' loads (no counter of its own in Redis).
        return AgentLoad(fields.get("presence"), cap, load, sum(load.values()),
                         dict(slots))

    # ------------------------------------------------------------------ tasks

    async def register_task(self, task_id: str, channel: str, data: Mapping[str, Any],
                            *, ring_all: bool = False) -> Claim:
        """Record a new task as waiting and owned by this node. "exists" when any node
        registered that id already: a webhook delivered to two nodes makes one task."""
        _check_id("task_id", task_id)
        _check_channel(channel)
        return Claim(await self._run(self._register, task_id, self.node_id, channel,
                                     int(ring_all), json.dumps(dict(data), default=str)))

    async def claim_offer(self, task_id: str, agent_id: str, offer_id: str, *,
                          fenced: bool = True) -> Claim:
        """Confirm a routing decision: the task (waiting) is offered to the agent, who
        must be available with a free slot of the task's channel. Fenced (the default):
        only the task's owner node may; unfenced: any node (a supervisor's pick)."""
        _check_id("task_id", task_id)
        _check_id("agent_id", agent_id)
        _check_id("offer_id", offer_id)
        if fenced:
            self._not_fenced()
        return Claim(await self._run(self._claim, task_id, agent_id, offer_id,
                                     self.node_id if fenced else ""))

    async def register_tasks(self, tasks: list[tuple[str, str, Mapping[str, Any]]]
                             ) -> list[Claim]:
        """`register_task` for (task id, channel, data) triples, in one round trip."""
        for task_id, channel, _data in tasks:
            _check_id("task_id", task_id)
            _check_channel(channel)
        replies = await self._run_many(self._register, [
            [t, self.node_id, c, 0, json.dumps(dict(d), default=str)] for t, c, d in tasks])
        return [Claim(r) for r in replies]

    async def claim_offers(self, offers: list[tuple[str, str, str]]) -> list[Claim]:
        """`claim_offer` for (task id, agent id, offer id) triples, in one round trip:
        the decisions of one settle confirmed together. Each is decided on its own."""
        for task_id, agent_id, offer_id in offers:
            _check_id("task_id", task_id)
            _check_id("agent_id", agent_id)
            _check_id("offer_id", offer_id)
        self._not_fenced()
        replies = await self._run_many(self._claim, [[t, a, o, self.node_id]
                                                     for t, a, o in offers])
        return [Claim(r) for r in replies]

    async def accept_offers(self, offers: list[tuple[str, str, str]]) -> list[Outcome]:
        """`accept` for (task id, offer id, agent id) triples, in one round trip."""
        replies = await self._run_many(self._accept, [list(o) for o in offers])
        return [Outcome(r[0], _withdrawn(r[1:])) for r in replies]

    async def end_tasks(self, task_ids: list[str]) -> list[Outcome]:
        """`end_task` for many tasks, in one round trip."""
        replies = await self._run_many(self._end, [[t] for t in task_ids])
        return [_ended(r) for r in replies]

    async def release_offer(self, task_id: str, offer_id: str, *,
                            fenced: bool = True) -> Claim:
        """Reject, RONA or withdrawal: the agent's slot comes back; with no offer left
        the task waits again."""
        if fenced:
            self._not_fenced()
        return Claim(await self._run(self._release_offer, task_id, offer_id,
                                     self.node_id if fenced else ""))

    async def accept(self, task_id: str, offer_id: str, agent_id: str) -> Outcome:
        """The agent takes the task; other (ring-all) offers are withdrawn. Any node may
        call it: of two accepts, exactly one wins."""
        reply = await self._run(self._accept, task_id, offer_id, agent_id)
        return Outcome(reply[0], _withdrawn(reply[1:]))

    async def start_wrap_up(self, task_id: str, agent_id: str) -> Claim:
        return Claim(await self._run(self._wrap, task_id, agent_id))

    async def requeue(self, task_id: str, *, fenced: bool = True) -> Outcome:
        """Transfer, move or callback: every slot the task holds is freed; it waits."""
        if fenced:
            self._not_fenced()
        reply = await self._run(self._requeue, task_id, self.node_id if fenced else "")
        return Outcome(reply[0], _withdrawn(reply[1:]))

    async def end_task(self, task_id: str) -> Outcome:
        """Wrap-up over, abandoned or exited: slots freed, the task's keys removed."""
        return _ended(await self._run(self._end, task_id))

    async def task_state(self, task_id: str) -> dict[str, Any] | None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys.task(task_id))
        pipe.hgetall(self.keys.offers(task_id))
        fields, offers = await pipe.execute()
        if not fields:
            return None
        out: dict[str, Any] = dict(fields)
        out["data"] = json.loads(fields.get("data") or "{}")
        out["offers"] = dict(offers)
        return out

    async def owned_tasks(self, node_id: str | None = None) -> set[str]:
        return set(await self.redis.smembers(self.keys.owned(node_id or self.node_id)))

    def _not_fenced(self) -> None:
        if self.fenced:
            raise FencedError(f"node {self.node_id!r} lost its lease")

    # ------------------------------------------------------------------ timers

    async def schedule_timer(self, timer: str, due_epoch_ms: int) -> None:
        """Mirror one timer (RONA, overflow, max wait, wrap-up end, callback retry) so
        that whoever adopts this node's tasks fires it. `timer` is the engine's own
        encoding (e.g. JSON of kind, key, data); the same string twice is one timer."""
        if not isinstance(timer, str) or not timer:
            raise InvalidArgumentError("timer must be a non-empty string")
        await self.redis.zadd(self.keys.timers(self.node_id), {timer: int(due_epoch_ms)})

    async def cancel_timer(self, timer: str) -> None:
        await self.redis.zrem(self.keys.timers(self.node_id), timer)

    async def pop_due_timers(self, now_epoch_ms: int | None = None,
                             limit: int = 500) -> list[tuple[str, int]]:
        """This node's timers due by now, each returned once. FencedError when this
        node's lease is gone (its timers belong to the adopter)."""
        now = int(time.time() * 1000) if now_epoch_ms is None else int(now_epoch_ms)
        reply = await self._run(self._pop_due, self.node_id, self.node_lease.token, now,
                                int(limit))
        if reply[0] != "ok":
            self.fenced = True
            raise FencedError(f"node {self.node_id!r} lost its lease")
        flat = reply[1:]
        return [(flat[i], int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]

    # ------------------------------------------------------------------ take-over

    async def dead_nodes(self) -> list[str]:
        nodes = sorted(await self.redis.smembers(self.keys.nodes))
        if not nodes:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for node in nodes:
            pipe.exists(self.keys.node(node))
        alive = await pipe.execute()
        return [n for n, up in zip(nodes, alive, strict=True) if not up and n != self.node_id]

    async def _adopt_from(self, dead: str) -> list[AdoptedTask]:
        asked_at = self.clock.now()
        reply = await self._run(self._adopt, dead, self.node_id)
        if reply[0] != "ok":
            return []
        return adopted_tasks(reply, asked_at)

    async def adopt(self, dead_node: str) -> list[AdoptedTask]:
        """Take over a dead node's tasks and timers (nothing if it is alive, or another
        node was first)."""
        _check_id("node_id", dead_node)
        self._not_fenced()
        return await self._adopt_from(dead_node)

    async def take_over_dead_nodes(self) -> dict[str, list[AdoptedTask]]:
        out: dict[str, list[AdoptedTask]] = {}
        for node in await self.dead_nodes():
            adopted = await self.adopt(node)
            out[node] = adopted
            log.warning("took over %d task(s) of dead node %s", len(adopted), node,
                        extra={"node": self.node_id})
        return out

    def start_takeover(self, on_adopted: AdoptedHandler, interval_s: float = 1.0) -> None:
        """Look for dead nodes every `interval_s`: with the default 3 s lease a dead
        node's tasks are adopted within about 4 s."""
        if self._takeover is None:
            self._takeover = asyncio.create_task(self._takeover_loop(on_adopted, interval_s),
                                                 name="acd-takeover")

    async def stop_takeover(self) -> None:
        if self._takeover is not None:
            self._takeover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._takeover
            self._takeover = None

    async def _takeover_loop(self, on_adopted: AdoptedHandler, interval_s: float) -> None:
        """Adopt dead nodes' tasks, but not within one lease TTL (and a round) of Redis
        answering again after an outage: every node's lease may have expired during it,
        and the live ones take theirs back (`Lease` revival) within that time. Adopting
        before would move a live node's tasks, its embedded-SIP callers included, to a
        node that cannot reach them."""
        loop = asyncio.get_running_loop()
        grace = self.node_ttl_ms / 1000 + interval_s
        failing, back_at = False, -grace
        while True:
            await asyncio.sleep(interval_s)
            if self.fenced:
                continue
            kept = self.keeper.back_at
            if kept is not None and kept > back_at:
                back_at = kept
            if self.keeper.failing or loop.time() - back_at < grace:
                continue
            try:
                dead = await self.dead_nodes()
                if failing:  # Redis answers again: give the live nodes their grace
                    failing, back_at = False, loop.time()
                    continue
                for node in dead:
                    tasks = await self.adopt(node)
                    log.warning("took over %d task(s) of dead node %s", len(tasks), node,
                                extra={"node": self.node_id})
                    await on_adopted(node, tasks)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                if not failing:
                    log.warning("take-over round: Redis does not answer (%s)", exc)
                failing = True
            except Exception:
                log.exception("take-over round failed; retrying")
