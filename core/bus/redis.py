"""The Redis Streams bus: several nodes share one stream of domain events.

One stream (`<prefix>:events`, capped by MAXLEN ~); a group is a Redis consumer group,
so each event reaches one node of the group and stays in the group's pending list
(PEL) until acknowledged. A consumer that restarts reads its own PEL first (XREADGROUP
from id 0); entries a dead consumer left behind are claimed after `redeliver_after`
seconds (XAUTOCLAIM), so losing a node loses no event. Broadcast listeners (no group)
use plain XREAD from `$`: every node sees every event, for its own websockets. One
reader per node serves all its broadcast listeners (each entry read and decoded once),
each listener with its own queue and worker, so a slow one holds up no other.

Redis lost while the node runs: an event that cannot be added to the stream waits in
the node's backlog, in order, and later events queue behind it; a background task adds
them when Redis answers again. A node that keeps running through a Redis restart so
loses none of the events it published meanwhile (one that dies meanwhile loses its
backlog, as it loses its memory).

A publish whose outcome is unknown (the connection dropped or timed out after the
XADD was sent: Redis may have added the entry) is not simply sent again: the retry
runs `REPUBLISH`, which looks for the event's id among the entries added since the
first attempt (on Redis's own clock) and adds it only when it is not there. So an
event is in the stream once, whatever failed between the node and Redis; consumers
need no de-duplication. redis-py's own retry of a failed command is off on the
client that publishes, for the same reason (it would send the XADD again blindly).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from core import metrics
from core.bus import lean
from core.bus.base import BatchHandler, EventBus, Handler, RequestHandler, Subscription
from core.events import Event
from core.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

# Loop turns a group consumer lets pass between reading entries and handling them (see
# RedisStreamsBus._consume): two, because the broadcast reader that spawns the pop may
# itself resume after the consumers in the turn their replies arrived.
GROUP_YIELD_TURNS = 2

# KEYS[1]: stream. ARGV: maxlen, event JSON, event id, how long ago (ms) the first
# attempt was sent. The first attempt, if it landed, was added at most that long ago
# by Redis's clock: its entry is among the first ones since then (Redis runs one
# command at a time, so few others can precede it), hence the bounded scan.
REPUBLISH = r"""
local t = redis.call('TIME')
local since = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  - tonumber(ARGV[4]) - 2000
if since < 0 then since = 0 end
local needle = '"event_id":"' .. ARGV[3] .. '"'
local entries = redis.call('XRANGE', KEYS[1], tostring(since), '+', 'COUNT', 5000)
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'e' and string.find(fields[i + 1], needle, 1, true) then
      return {entry[1], 1}
    end
  end
end
return {redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2]), 0}
"""


class _RedisSubscription(Subscription):
    """A reading loop that stops when closed.

    Cancelling alone is not enough: a cancellation that lands inside a blocking
    XREADGROUP can be absorbed by the client library, and the loop then polls on for
    ever while `close()` waits for it (seen as a hung test on a loaded machine). The
    loop therefore also checks `stopping`, and `close()` cancels until the task ends.
    """

    def __init__(self) -> None:
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        self.stopping = True
        task = self.task
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task is not None and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()


class _Listener(Subscription):
    """One broadcast listener fed by the node's shared stream reader
    (`RedisStreamsBus._read_broadcast`).

    Its own queue and worker task: a listener that takes long (a config reload) delays
    neither the reader nor the other listeners (the desktop's screen-pops), as when
    each listener had a reading loop of its own; its events stay in stream order."""

    def __init__(self, bus: RedisStreamsBus, pattern: str, handler: Handler,
                 after: str) -> None:
        self.bus, self.pattern, self.handler = bus, pattern, handler
        self.after = _entry_id(after)  # entries up to this one were before it subscribed
        self.inline = bool(getattr(handler, "bus_inline", False))  # see inline_listener
        self.queue: collections.deque[Event] = collections.deque()
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None if self.inline else asyncio.create_task(
            self._work(), name=f"bus-listener:{pattern}")

    def offer(self, entry: tuple[int, int], event: Event) -> None:
        if entry > self.after and event.matches(self.pattern):
            self.queue.append(event)
            self.ready.set()

    async def _work(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.queue:
                event = self.queue.popleft()
                try:
                    await self.handler(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("bus listener %s failed on %s", self.pattern, event.topic)

    async def close(self) -> None:
        await self.bus._broadcast_drop(self)
        task, self.task = self.task, None
        while task is not None and not task.done():  # as _RedisSubscription.close
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)


def _entry_id(entry: str) -> tuple[int, int]:
    """A stream entry id ("ms-seq") as a comparable pair."""
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)


class RedisStreamsBus(EventBus):
    shared = True

    def __init__(self, url: str, *, prefix: str = "centrale", maxlen: int = 1_000_000,
                 redeliver_after: float = 30.0, block_ms: int = 1000,
                 node_id: str | None = None, backlog_max: int = 100_000) -> None:
        self.url = url
        self.node_id = node_id
        self.stream = f"{prefix}:events"
        self.prefix = prefix
        self.maxlen = maxlen
        self.redeliver_after = redeliver_after
        self.block_ms = block_ms
        self._redis: Redis | None = None
        self._pub: Redis | None = None
        self._subs: list[_RedisSubscription] = []
        # Broadcast listeners share one reading loop per node (see `subscribe`).
        self._listeners: list[_Listener] = []
        self._broadcast: _RedisSubscription | None = None
        self._broadcast_last = "0"
        self._backlog: collections.deque[Event] = collections.deque()
        self._backlog_task: asyncio.Task[None] | None = None
        self.backlog_max = backlog_max
        # Events whose XADD may have reached Redis: event id -> when it was first sent.
        self._attempted: dict[str, float] = {}
        self.republished_found = 0  # retries that found their first attempt in the stream
        # Consumer groups read on lean connections (core.bus.lean) when Redis is plain
        # TCP; False: through redis-py (the benchmark's A/B, and the fallback).
        self.lean_reads = True

    @property
    def _publisher(self) -> Redis:
        if self._pub is None:
            raise RuntimeError("RedisStreamsBus used before start()")
        return self._pub

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("RedisStreamsBus used before start()")
        return self._redis

    async def start(self) -> None:
        self._redis = Redis.from_url(self.url, decode_responses=True)
        # Publishing has a client of its own without redis-py's blind retry of a command
        # (see the module's docstring). The readers keep it: a re-sent XREADGROUP or XACK
        # is harmless, while an XACK that fails instead makes the group's pending list
        # replay entries another node may have acted on since (seen in the nemesis).
        self._pub = Redis.from_url(self.url, decode_responses=True,
                                   retry=Retry(NoBackoff(), 0))
        self._republish = self._pub.register_script(REPUBLISH)
        await self._redis.ping()

    async def stop(self) -> None:
        if self._backlog_task is not None:
            self._backlog_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._backlog_task
            self._backlog_task = None
        if self._backlog:
            log.error("redis bus: stopped with %d event(s) never published (Redis away)",
                      len(self._backlog))
        for listener in list(self._listeners):
            await listener.close()
        for sub in self._subs:
            await sub.close()
        self._subs.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._pub is not None:
            await self._pub.aclose()
            self._pub = None

    async def publish(self, event: Event) -> str:
        """Add the event to the stream; its id, or "" when Redis is away and the event
        waits in the backlog (published, in order, when Redis is back)."""
        if self._backlog:  # behind what waits already: order per node is kept
            self._queue(event)
            return ""
        sent = time.monotonic()
        try:
            position = await self._xadd(event)
        except (RedisError, OSError) as exc:
            if self._redis is None:
                raise
            log.warning("redis bus: publish failed (%s); %s kept until Redis is back",
                        exc, event.topic)
            self._attempted[event.event_id] = sent
            self._queue(event)
            return ""
        return position

    async def _xadd(self, event: Event) -> str:
        first = self._attempted.get(event.event_id)
        if first is None:
            position = await self._publisher.xadd(
                self.stream, {"e": event.to_json()}, maxlen=self.maxlen, approximate=True
            )
        else:  # an earlier attempt may have landed: add it only if it did not
            ago_ms = int((time.monotonic() - first) * 1000)
            position, found = await self._republish(
                keys=[self.stream], args=[self.maxlen, event.to_json(), event.event_id,
                                          ago_ms])
            if int(found):
                self.republished_found += 1
                log.warning("redis bus: %s %s had reached Redis before; not added again",
                            event.topic, event.event_id)
            del self._attempted[event.event_id]
        metrics.count_published(event.topic, event.payload)
        return position  # type: ignore[no-any-return]

    def atomic_stream(self) -> tuple[str, int] | None:
        """(stream key, MAXLEN) for a Redis script that adds events itself, in the same
        atomic step as the change they announce (the ACD's task ends: queues.cluster),
        or None while this node's events wait in the backlog: a script's would overtake
        them."""
        if self._redis is None or self._backlog:
            return None
        return self.stream, self.maxlen

    @property
    def backlog(self) -> int:
        """Events waiting for Redis (0 when it answers)."""
        return len(self._backlog)

    def _queue(self, event: Event) -> None:
        if len(self._backlog) >= self.backlog_max:
            dropped = self._backlog.popleft()
            self._attempted.pop(dropped.event_id, None)
            log.error("redis bus: backlog full (%d); dropped %s %s", self.backlog_max,
                      dropped.topic, dropped.event_id)
        self._backlog.append(event)
        if self._backlog_task is None or self._backlog_task.done():
            self._backlog_task = asyncio.create_task(self._drain_backlog(),
                                                     name="bus-backlog")

    async def _drain_backlog(self) -> None:
        while self._backlog:
            event, sent = self._backlog[0], time.monotonic()
            try:
                await self._xadd(event)
            except (RedisError, OSError):
                self._attempted.setdefault(event.event_id, sent)
                await asyncio.sleep(0.5)
                continue
            self._backlog.popleft()
        log.info("redis bus: backlog published, Redis is back")

    async def subscribe(self, pattern: str, handler: Handler, *, group: str | None = None,
                        consumer: str = "main", from_start: bool = False) -> Subscription:
        if consumer == "main" and self.node_id:
            # Each node is its own consumer, so what a dead node left pending is
            # claimed by a live one under its own name.
            consumer = self.node_id
        if group is None and not from_start:
            return await self._broadcast_add(pattern, handler)
        sub = _RedisSubscription()
        if group is None:  # from the stream's start: a reading loop of its own
            sub.task = asyncio.create_task(self._listen(sub, pattern, handler, "0"))
        else:
            try:
                await self.redis.xgroup_create(self.stream, group,
                                               id="0" if from_start else "$", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            sub.task = asyncio.create_task(
                self._consume(sub, pattern, handler, group, consumer))
        self._subs.append(sub)
        return sub

    async def subscribe_batch(self, pattern: str, handler: BatchHandler, *, group: str,
                              consumer: str = "main", from_start: bool = False,
                              max_batch: int = 200) -> Subscription:
        """What one XREADGROUP (or XAUTOCLAIM) returns, up to 100 entries, handed over
        in one call and acknowledged with one XACK."""
        async def one(event: Event) -> None:
            await handler([event])

        one.batch = handler  # type: ignore[attr-defined]  # read by _handle_entries
        return await self.subscribe(pattern, one, group=group, consumer=consumer,
                                    from_start=from_start)

    # -- request/reply: a Redis list per node and service, one per reply --
    def _inbox(self, node_id: str, service: str) -> str:
        return f"{self.prefix}:rpc:{node_id}:{service}"

    async def serve(self, service: str, handler: RequestHandler) -> Subscription:
        if not self.node_id:
            raise RuntimeError("serving requests needs the bus's node_id")
        sub = _RedisSubscription()
        sub.task = asyncio.create_task(self._serve(sub, self._inbox(self.node_id, service),
                                                   handler))
        self._subs.append(sub)
        return sub

    async def _serve(self, sub: _RedisSubscription, inbox: str,
                     handler: RequestHandler) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            while not sub.stopping:
                try:
                    item = await self.redis.blpop([inbox], timeout=1)
                except (RedisError, OSError) as exc:  # never end the loop: retry
                    raise_if_cancelling()
                    log.warning("redis bus: %s unreadable (%s); retrying", inbox, exc)
                    await asyncio.sleep(0.5)
                    continue
                if item is None:
                    continue
                try:
                    request = json.loads(item[1])
                    reply_key, deadline = str(request["reply"]), float(request["deadline"])
                    payload = dict(request["payload"])
                except (ValueError, KeyError, TypeError):
                    log.error("redis bus: dropped a malformed request: %.200s", item[1])
                    continue
                if time.time() > deadline:  # the requester gave up already
                    continue
                task = asyncio.create_task(self._answer(reply_key, payload, handler))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()

    async def _answer(self, reply_key: str, payload: dict[str, Any],
                      handler: RequestHandler) -> None:
        await self._push(reply_key, {"ack": True})
        try:
            reply = await handler(payload)
        except Exception as exc:  # answered, so the requester does not wait it out
            log.exception("redis bus: a request handler failed")
            reply = {"error": "internal", "message": str(exc)[:200]}
        await self._push(reply_key, {"reply": reply})

    async def _push(self, key: str, value: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, json.dumps(value, default=str))
        pipe.expire(key, 120)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("redis bus: reply not delivered (%s)", exc)

    async def request(self, node_id: str, service: str, payload: dict[str, Any], *,
                      ack_timeout: float = 3.0, timeout: float = 60.0
                      ) -> dict[str, Any] | None:
        reply_key = f"{self.prefix}:rpc:reply:{secrets.token_hex(12)}"
        try:
            await self.redis.rpush(self._inbox(node_id, service), json.dumps(
                {"reply": reply_key, "payload": payload, "from": self.node_id,
                 "deadline": time.time() + ack_timeout}, default=str))
            got = await self.redis.blpop([reply_key], timeout=ack_timeout)
            if got is None:  # not taken: the node is down, frozen or not serving
                return None
            got = await self.redis.blpop([reply_key], timeout=timeout)
        except (RedisError, OSError) as exc:
            log.warning("redis bus: request to %s/%s failed (%s)", node_id, service, exc)
            return None
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(reply_key)
        if got is None:
            return None
        return dict(json.loads(got[1]).get("reply") or {})

    async def _last_id(self) -> str:
        info = await self.redis.xinfo_stream(self.stream) if await self.redis.exists(
            self.stream) else None
        return info["last-generated-id"] if info else "0"

    async def _broadcast_add(self, pattern: str, handler: Handler) -> Subscription:
        """A broadcast listener from now on, fed by the node's one shared reader.

        Every listener used to run its own XREAD loop: a node has about seven (the
        desktop hub, the webchat push and typing, voice, call control, config reload,
        assist), so each event on the stream woke seven connections, and the node read,
        parsed and decoded it seven times — most of them for a topic the listener then
        ignored (issue 22: ~1 ms of the node's CPU per event, on the screen-pop's path).
        One reader now reads each entry once and hands it to the listeners it matches.
        A listener gets the entries read after it subscribed (the reader's position
        then, or the stream's end when it starts the reader)."""
        if self._broadcast is None or self._broadcast.task is None \
                or self._broadcast.task.done():
            self._broadcast_last = await self._last_id()
            sub = _RedisSubscription()
            sub.task = asyncio.create_task(self._read_broadcast(sub), name="bus-broadcast")
            self._broadcast = sub
        listener = _Listener(self, pattern, handler, self._broadcast_last)
        self._listeners.append(listener)
        return listener

    async def _broadcast_drop(self, listener: _Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)
        if not self._listeners and self._broadcast is not None:
            sub, self._broadcast = self._broadcast, None
            await sub.close()

    async def _read_after(self, last: str, conn: lean.LeanConnection | None = None
                          ) -> list[tuple[str, Event | None]]:
        """The next entries after `last` (None for one that is no event), or none after
        a read that failed: the caller reads again from the same id, so nothing
        published meanwhile is skipped, and no error (a lost or slow Redis, an entry
        some other writer put on the stream) ends a reader and leaves the node's
        websockets deaf to the other nodes. On `conn` (a lean connection) when given."""
        try:
            if conn is not None:
                (streams,) = await conn.call(("XREAD", "COUNT", 200, "BLOCK", self.block_ms,
                                              "STREAMS", self.stream, last))
                replies = [[name, [(entry_id, dict(zip(flat[::2], flat[1::2], strict=True))
                                    if flat is not None else None)
                                   for entry_id, flat in entries]]
                           for name, entries in streams or []]
            else:
                replies = await self.redis.xread({self.stream: last}, count=200,
                                                 block=self.block_ms)
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            log.warning("redis bus: read failed (%s); retrying", exc)
            await asyncio.sleep(1)
            return []
        read: list[tuple[str, Event | None]] = []
        for _stream, entries in replies or []:
            for entry_id, fields in entries:
                event = None
                if fields:
                    try:
                        event = Event.from_json(fields["e"])
                    except (KeyError, TypeError, ValueError):
                        log.error("redis bus: entry %s is no event; passed over", entry_id)
                read.append((entry_id, event))
        return read

    async def _read_broadcast(self, sub: _RedisSubscription) -> None:
        # On a lean connection like the groups' reads: besides its CPU, the reader must
        # wake as soon as they do, so that the pop it spawns starts before the groups'
        # handling (GROUP_YIELD_TURNS counts loop turns from the same wake-up).
        conn = self._lean_connection()
        try:
            await self._read_broadcast_on(sub, conn)
        finally:
            if conn is not None:
                await conn.close()

    def _lean_connection(self) -> lean.LeanConnection | None:
        return lean.LeanConnection(self.redis) if self.lean_reads \
            and lean.usable(self.redis) else None

    async def _read_broadcast_on(self, sub: _RedisSubscription,
                                 conn: lean.LeanConnection | None) -> None:
        while not sub.stopping:
            for entry_id, event in await self._read_after(self._broadcast_last, conn):
                self._broadcast_last = entry_id
                if event is None:
                    continue
                position = _entry_id(entry_id)
                for listener in tuple(self._listeners):  # one may (un)subscribe
                    if not listener.inline:
                        listener.offer(position, event)
                    elif position > listener.after and event.matches(listener.pattern):
                        try:
                            await listener.handler(event)
                        except Exception:
                            log.exception("bus listener %s failed on %s",
                                          listener.pattern, event.topic)

    async def _listen(self, sub: _RedisSubscription, pattern: str, handler: Handler,
                      last: str) -> None:
        while not sub.stopping:
            for entry_id, event in await self._read_after(last):
                last = entry_id
                if event is not None and event.matches(pattern):
                    try:
                        await handler(event)
                    except Exception:
                        log.exception("bus listener %s failed on %s", pattern, event.topic)

    async def _consume(self, sub: _RedisSubscription, pattern: str, handler: Handler,
                       group: str, consumer: str) -> None:
        # Replay this consumer's own unacknowledged entries first (restart); again
        # after every Redis error, since entries read then may be pending here.
        replay = True
        idle_ms = int(self.redeliver_after * 1000)
        next_claim = asyncio.get_running_loop().time() + self.redeliver_after
        # The last handled entries' acknowledgement goes out with the next read, in one
        # round trip (see _read_group).
        acks: list[str] = []
        # The group's reads on a lean connection of its own (core.bus.lean): a blocking
        # XREADGROUP holds its connection, and redis-py's per-call cost, seven groups
        # times every event, was a sixth of a node's CPU in the screen-pop benchmark.
        conn = self._lean_connection()
        try:
            while not sub.stopping:
                try:
                    if replay:
                        await self._ack(group, acks)
                        await self._drain(pattern, handler, group, consumer, "0")
                        replay = False
                    if asyncio.get_running_loop().time() >= next_claim:
                        await self._ack(group, acks)
                        await self._claim_stale(pattern, handler, group, consumer, idle_ms)
                        next_claim = asyncio.get_running_loop().time() + self.redeliver_after
                    replies = await self._read_group(group, consumer, acks, conn)
                    acks = []
                    if replies:
                        # Latency-sensitive work woken by the same entries (the hub's
                        # screen-pop, spawned by the broadcast reader) starts first: a
                        # group's handling (ledger and report writes, webhooks) is
                        # background work, and when it went first the pop's database
                        # reads queued behind it (issue 22).
                        for _ in range(GROUP_YIELD_TURNS):
                            await asyncio.sleep(0)
                    for _stream, entries in replies or []:
                        acks += await self._handle_entries(pattern, handler, group, entries,
                                                           defer=True)
                except (RedisError, OSError) as exc:
                    raise_if_cancelling()
                    # Lost or timed out: the group's pending list keeps what was read and
                    # not acknowledged; a consumer loop that ended here would stop this
                    # node's share of the group's work for good. Acknowledgements not
                    # known to have landed are sent again (XACK twice is harmless).
                    log.warning("redis bus: group %s read failed (%s); retrying", group, exc)
                    replay = True
                    await asyncio.sleep(1)
        finally:
            if conn is not None:
                await conn.close()
            if acks:  # stopped (or cancelled) between a handler and the next read
                with contextlib.suppress(RedisError, OSError):
                    await self.redis.xack(self.stream, group, *acks)

    async def _ack(self, group: str, acks: list[str]) -> None:
        """Acknowledge (and forget) the deferred ids, alone."""
        if acks:
            await self.redis.xack(self.stream, group, *acks)
            acks.clear()

    async def _read_group(self, group: str, consumer: str, acks: list[str],
                          conn: lean.LeanConnection | None = None) -> Any:
        """XREADGROUP (blocking), preceded in the same round trip by the XACK of the
        entries handled last. A group consumer used to wait for its XACK's reply before
        it read again: two round trips per event and group, and a node runs about seven
        groups (ledger, webhooks, reports, cases, conversations, assist, inbox), so a
        screen-pop's `task.offered` cost the node fourteen redis-py calls beside the pop
        itself (issue 22). The XACK is still sent before the read, as before; Redis runs
        the two in order. On `conn` (a lean connection) when given; the reply has
        redis-py's shape either way: [[stream, [(id, {field: value} or None), ...]]]."""
        if conn is not None:
            read = ("XREADGROUP", "GROUP", group, consumer, "COUNT", 100,
                    "BLOCK", self.block_ms, "STREAMS", self.stream, ">")
            replies = await (conn.call(("XACK", self.stream, group, *acks), read) if acks
                             else conn.call(read))
            streams = replies[-1]
            if not streams:
                return []
            return [[name, [(entry_id, dict(zip(flat[::2], flat[1::2], strict=True))
                             if flat is not None else None)
                            for entry_id, flat in entries]]
                    for name, entries in streams]
        if not acks:
            return await self.redis.xreadgroup(group, consumer, {self.stream: ">"},
                                               count=100, block=self.block_ms)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.stream, group, *acks)
        pipe.xreadgroup(group, consumer, {self.stream: ">"}, count=100, block=self.block_ms)
        return (await pipe.execute())[1]

    async def _drain(self, pattern: str, handler: Handler, group: str, consumer: str,
                     start: str) -> None:
        last = start
        while True:
            replies = await self.redis.xreadgroup(group, consumer, {self.stream: last},
                                                  count=100)
            entries = replies[0][1] if replies else []
            if not entries:
                return
            last = entries[-1][0]
            await self._handle_entries(pattern, handler, group, entries)

    async def _claim_stale(self, pattern: str, handler: Handler, group: str, consumer: str,
                           idle_ms: int) -> None:
        start = "0-0"
        while True:
            result = await self.redis.xautoclaim(self.stream, group, consumer, idle_ms,
                                                 start_id=start, count=100)
            start, entries = result[0], result[1]
            await self._handle_entries(pattern, handler, group,
                                       [(i, f) for i, f in entries if f])
            if start == "0-0" or not entries:
                return

    async def _handle_entries(self, pattern: str, handler: Handler, group: str,
                              entries: list[tuple[str, dict[str, str] | None]], *,
                              defer: bool = False) -> list[str]:
        """Entries read for a group: one by one, or in one call for a batch consumer
        (`subscribe_batch`), whose entries are acknowledged together once it returns.

        `defer`: the acknowledgement of the last entry (of the whole batch, for a batch
        consumer) is not sent but returned, for the caller to send with its next read;
        the ones before it are acknowledged one by one as they are handled, so a crash
        mid-way replays no more than before."""
        batch: BatchHandler | None = getattr(handler, "batch", None)
        if batch is None:
            last = len(entries) - 1
            for n, (entry_id, fields) in enumerate(entries):
                done = await self._handle(pattern, handler, group, entry_id, fields,
                                          ack=not (defer and n == last))
                if done and defer and n == last:
                    return [entry_id]
            return []
        if not entries:
            return []
        events = [e for e in (Event.from_json(f["e"]) for _i, f in entries if f)
                  if e.matches(pattern)]
        if events:
            try:
                await batch(events)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus handler %s failed on a batch of %d (%s ...); left "
                              "pending", group, len(events), events[0].topic)
                return []
        ids = [i for i, _f in entries]
        if defer:
            return ids
        await self.redis.xack(self.stream, group, *ids)
        return []

    async def _handle(self, pattern: str, handler: Handler, group: str, entry_id: str,
                      fields: dict[str, str] | None, *, ack: bool = True) -> bool:
        """Handle one entry; whether it is done (to acknowledge). Acknowledged here
        unless `ack` is false."""
        if fields:  # else trimmed away by MAXLEN: nothing left to deliver
            event = Event.from_json(fields["e"])
            if event.matches(pattern):
                try:
                    await handler(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("bus handler %s failed on %s; left pending", group,
                                  event.topic)
                    return False
        if ack:
            await self.redis.xack(self.stream, group, entry_id)
        return True

    async def lag(self) -> dict[str, int]:
        """Per group: entries not yet delivered (XINFO's `lag`) plus delivered but not
        acknowledged (`pending`)."""
        try:
            groups = await self.redis.xinfo_groups(self.stream)
        except ResponseError:  # no stream yet
            return {}
        out = {}
        for g in groups:
            name = g["name"].decode() if isinstance(g["name"], bytes) else str(g["name"])
            out[name] = int(g.get("lag") or 0) + int(g.get("pending") or 0)
        return out

    async def pending_count(self, group: str) -> int:
        info = await self.redis.xpending(self.stream, group)
        return int(info["pending"])
