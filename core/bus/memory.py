"""The in-process bus: the embedded default, one node, no Redis.

It keeps the whole contract (groups, acknowledgement, redelivery) so that code written
against it behaves the same on Redis. Positions in its stream are absolute (they count
every event published); the events every group has handled and acknowledged are
dropped from the front now and then (`TRIM_EVERY` publishes), so a node taking
hundreds of calls a second does not hold every event of its life in memory — the
in-memory counterpart of the Redis stream's MAXLEN, except that nothing a group still
needs is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from core import metrics
from core.bus.base import BatchHandler, EventBus, Handler, RequestHandler, Subscription
from core.events import Event

log = logging.getLogger(__name__)

# Look for acknowledged events to drop every this many publishes (cheap: a min over
# the groups; the drop itself is one list slice).
TRIM_EVERY = 1024
# Topics whose listener lists are kept (a node publishes a few dozen topics; the
# bound only matters if topics were ever made of ids).
LISTENER_TOPICS_KEPT = 1024


@dataclass
class _Group:
    cursor: int
    pending: dict[int, str] = field(default_factory=dict)  # stream index -> consumer
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    subs: list[_MemorySubscription] = field(default_factory=list)  # the live consumers
    # topic -> whether a live consumer takes it (a node has a few dozen topics);
    # cleared whenever `subs` changes
    taken: dict[str, bool] = field(default_factory=dict)

    def takes(self, event: Event) -> bool:
        """Whether one of the group's live consumers would handle `event`."""
        hit = self.taken.get(event.topic)
        if hit is None:
            hit = self.taken[event.topic] = any(event.matches(sub.pattern)
                                                for sub in self.subs)
        return hit

    def add(self, sub: _MemorySubscription) -> None:
        self.subs.append(sub)
        self.taken.clear()

    def remove(self, sub: _MemorySubscription) -> None:
        with contextlib.suppress(ValueError):
            self.subs.remove(sub)
        self.taken.clear()


class _MemorySubscription(Subscription):
    def __init__(self, bus: InMemoryBus, pattern: str, handler: Handler,
                 group: str | None, consumer: str,
                 batch: BatchHandler | None = None, max_batch: int = 1) -> None:
        self.bus, self.pattern, self.handler = bus, pattern, handler
        self.group, self.consumer = group, consumer
        self.batch, self.max_batch = batch, max_batch
        self.task: asyncio.Task[None] | None = None
        self._takes: dict[str, bool] = {}  # topic -> whether `pattern` takes it

    def takes(self, event: Event) -> bool:
        """`event.matches(self.pattern)`, remembered per topic (the pattern is fixed)."""
        hit = self._takes.get(event.topic)
        if hit is None:
            hit = self._takes[event.topic] = event.matches(self.pattern)
        return hit

    async def close(self) -> None:
        if self.group is None:
            with contextlib.suppress(ValueError):
                self.bus._listeners.remove(self)
            self.bus._listeners_by_topic.clear()
            return
        task, self.task = self.task, None
        group = self.bus._groups.get(self.group)
        if group is not None:
            group.remove(self)
        # Cancel until the task ends, as the Redis bus does: a handler that absorbs one
        # cancellation (asyncio.wait_for on 3.11 can) must not hang a node's shutdown.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task is not None and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()


class _Served(Subscription):
    def __init__(self, bus: InMemoryBus, service: str) -> None:
        self.bus, self.service = bus, service

    async def close(self) -> None:
        self.bus._served.pop(self.service, None)


class InMemoryBus(EventBus):
    def __init__(self, *, redeliver_after: float = 30.0) -> None:
        self._served: dict[str, RequestHandler] = {}
        self._stream: list[Event] = []
        self._base = 0  # absolute position of self._stream[0] (events dropped before it)
        self._groups: dict[str, _Group] = {}
        self._listeners: list[_MemorySubscription] = []
        # topic -> the listeners whose pattern takes it, in subscription order: each
        # publish matched every listener's pattern (~16 per event on a node). Lists
        # are rebuilt, never changed in place, so a publish iterating one is not
        # affected by a listener added or closed meanwhile (as with the old copy).
        self._listeners_by_topic: dict[str, list[_MemorySubscription]] = {}
        self._subs: list[_MemorySubscription] = []
        self.redeliver_after = redeliver_after

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for sub in list(self._subs):
            await sub.close()
        self._subs.clear()
        self._listeners.clear()
        self._listeners_by_topic.clear()

    @property
    def _end(self) -> int:
        """The absolute position the next event gets."""
        return self._base + len(self._stream)

    async def serve(self, service: str, handler: RequestHandler) -> Subscription:
        self._served[service] = handler
        return _Served(self, service)

    async def request(self, node_id: str, service: str, payload: dict[str, Any], *,
                      ack_timeout: float = 3.0, timeout: float = 60.0
                      ) -> dict[str, Any] | None:
        """One process is one node: the request runs here (a copy of the payload, as
        if it had crossed the wire), or gets no answer when nothing serves it."""
        handler = self._served.get(service)
        if handler is None:
            return None
        try:
            return await asyncio.wait_for(handler(dict(payload)), timeout)
        except TimeoutError:
            return None

    async def publish(self, event: Event) -> str:
        stream = self._stream
        stream.append(event)
        position = self._base + len(stream) - 1
        topic = event.topic
        metrics.count_published(topic, event.payload)
        for group in self._groups.values():
            if group.cursor == position and group.subs:
                taken = group.taken.get(topic)
                if taken is None:
                    taken = group.takes(event)
                if not taken:
                    # Caught up and none of its consumers takes this topic:
                    # acknowledged at once, as its consumer would (most groups want
                    # task.* or case.*, a call publishes 9 timeline.added: no task
                    # wake-up per group for them).
                    group.cursor += 1
                    continue
            group.wakeup.set()
        listeners = self._listeners_by_topic.get(topic)
        if listeners is None:
            if len(self._listeners_by_topic) >= LISTENER_TOPICS_KEPT:
                self._listeners_by_topic.clear()
            listeners = self._listeners_by_topic[topic] = [
                sub for sub in self._listeners if event.matches(sub.pattern)]
        for listener in listeners:
            try:
                await listener.handler(event)
            except Exception:
                log.exception("bus listener for %s failed on %s", listener.pattern,
                              event.topic)
        if position % TRIM_EVERY == 0:
            self._trim()
        return str(position)

    def _trim(self) -> None:
        """Drop the events before the first one some group has not acknowledged."""
        keep = self._end
        for g in self._groups.values():
            keep = min(keep, g.cursor, min(g.pending, default=keep))
        if keep > self._base:
            del self._stream[:keep - self._base]
            self._base = keep

    def stream_length(self) -> int:
        """Events held in memory (for tests and /metrics-style checks)."""
        return len(self._stream)

    async def lag(self) -> dict[str, int]:
        """Per group: events not yet delivered plus delivered but not acknowledged."""
        return {name: self._end - g.cursor + len(g.pending)
                for name, g in self._groups.items()}

    async def subscribe(self, pattern: str, handler: Handler, *, group: str | None = None,
                        consumer: str = "main", from_start: bool = False) -> Subscription:
        sub = _MemorySubscription(self, pattern, handler, group, consumer)
        if group is None:
            self._listeners.append(sub)
            self._listeners_by_topic.clear()
            return sub
        return self._start_consumer(sub, group, from_start)

    async def subscribe_batch(self, pattern: str, handler: BatchHandler, *, group: str,
                              consumer: str = "main", from_start: bool = False,
                              max_batch: int = 200) -> Subscription:
        async def one(event: Event) -> None:
            await handler([event])

        sub = _MemorySubscription(self, pattern, one, group, consumer, batch=handler,
                                  max_batch=max(1, max_batch))
        return self._start_consumer(sub, group, from_start)

    def _start_consumer(self, sub: _MemorySubscription, group: str,
                        from_start: bool) -> Subscription:
        if group not in self._groups:
            self._groups[group] = _Group(cursor=self._base if from_start else self._end)
        self._groups[group].add(sub)
        sub.task = asyncio.create_task(self._consume(sub, self._groups[group]))
        self._subs.append(sub)
        return sub

    async def _consume(self, sub: _MemorySubscription, group: _Group) -> None:
        # A (re)started consumer first replays what it left unacknowledged.
        await self._deliver_all(sub, group, sorted(
            i for i, c in group.pending.items() if c == sub.consumer))
        while True:
            group.wakeup.clear()
            while group.cursor < self._end:
                if sub.batch is None:
                    index = group.cursor
                    group.cursor += 1
                    if not sub.takes(self._stream[index - self._base]):
                        continue  # not this consumer's topic: acknowledged, no await
                    group.pending[index] = sub.consumer
                    await self._deliver(sub, group, index)
                else:
                    first = group.cursor
                    group.cursor = min(self._end, first + sub.max_batch)
                    indices = list(range(first, group.cursor))
                    for index in indices:
                        group.pending[index] = sub.consumer
                    await self._deliver_batch(sub, group, indices)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # races with the wake-up, and close() would then wait forever.
                async with asyncio.timeout(self.redeliver_after):
                    await group.wakeup.wait()
            except TimeoutError:
                indices = sorted(group.pending)
                for index in indices:
                    group.pending[index] = sub.consumer
                await self._deliver_all(sub, group, indices)

    async def _deliver_all(self, sub: _MemorySubscription, group: _Group,
                           indices: list[int]) -> None:
        if sub.batch is None:
            for index in indices:
                await self._deliver(sub, group, index)
            return
        for start in range(0, len(indices), sub.max_batch):
            await self._deliver_batch(sub, group, indices[start:start + sub.max_batch])

    async def _deliver(self, sub: _MemorySubscription, group: _Group, index: int) -> None:
        event = self._stream[index - self._base]
        if not sub.takes(event):
            group.pending.pop(index, None)
            return
        try:
            await sub.handler(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("bus handler %s/%s failed on %s; left pending", sub.group,
                          sub.consumer, event.topic)
            return
        group.pending.pop(index, None)

    async def _deliver_batch(self, sub: _MemorySubscription, group: _Group,
                             indices: list[int]) -> None:
        """The matching events among `indices` in one handler call; all acknowledged
        when it returns, all left pending when it raises."""
        assert sub.batch is not None
        events = []
        for index in indices:
            event = self._stream[index - self._base]
            if sub.takes(event):
                events.append(event)
            else:
                group.pending.pop(index, None)
        if not events:
            return
        try:
            await sub.batch(events)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("bus handler %s/%s failed on a batch of %d (%s ...); left "
                          "pending", sub.group, sub.consumer, len(events), events[0].topic)
            return
        for index in indices:
            group.pending.pop(index, None)

    def pending_count(self, group: str) -> int:
        return len(self._groups[group].pending) if group in self._groups else 0
