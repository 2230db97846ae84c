"""The bus contract both implementations honour.

Semantics (the contract tests in tests/core/test_bus_contract.py hold both to them):

- `publish` appends an event to one ordered stream and returns once it is durable in
  the implementation's sense (in memory: appended; Redis: XADD acknowledged).
- A *group* is a named consumer group: each event reaches one consumer of the group.
  Several groups each see every event (fan-out). A group created after events were
  published starts at the end, unless `from_start=True`.
- Delivery is at-least-once: an event stays pending for its group until the handler
  returns without raising. A handler that raises leaves it pending; it is delivered
  again on the next `subscribe` of that group (a restart) or after `redeliver_after`.
- `subscribe` with `group=None` is a broadcast listener local to this process (no ack,
  no replay): websockets use it to push what happens on any node.
- `subscribe_batch` is a group consumer whose handler gets every matching event that is
  waiting (up to `max_batch`, in stream order) in one call, and acknowledges them all
  when it returns; if it raises, all of them stay pending. A consumer that writes each
  event to the database can then write a whole batch in one transaction (one commit
  for many events: issue 21) without giving up at-least-once delivery.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from core.events import Event

Handler = Callable[[Event], Awaitable[None]]
BatchHandler = Callable[[list[Event]], Awaitable[None]]

# Request/reply between nodes (`serve` / `request`): a JSON object in, one out.
RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def inline_listener(handler: Handler) -> Handler:
    """Mark a broadcast listener that never waits (it only sorts the event and hands
    work to tasks of its own, as the desktop hub does): the Redis bus then calls it
    straight from its reader, as the in-process bus calls every listener from
    `publish`, instead of through the listener's queue and worker — one loop turn
    less between an event's arrival and, say, the screen-pop's database read."""
    handler.bus_inline = True  # type: ignore[attr-defined]
    return handler


class Subscription(ABC):
    @abstractmethod
    async def close(self) -> None:
        """Stop delivering. Unacknowledged events stay pending for the group."""


class EventBus(ABC):
    #: True when other nodes share this bus (their events arrive, requests reach them)
    shared: bool = False

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def publish(self, event: Event) -> str:
        """Append the event; returns its position in the stream."""

    @abstractmethod
    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        group: str | None = None,
        consumer: str = "main",
        from_start: bool = False,
    ) -> Subscription: ...

    async def subscribe_batch(self, pattern: str, handler: BatchHandler, *, group: str,
                              consumer: str = "main", from_start: bool = False,
                              max_batch: int = 200) -> Subscription:
        """A group consumer that gets events in batches (see the module docstring).

        This default hands them over one at a time (batches of one): correct for any
        implementation; the built-in buses override it with real batches."""

        async def one(event: Event) -> None:
            await handler([event])

        return await self.subscribe(pattern, one, group=group, consumer=consumer,
                                    from_start=from_start)

    async def lag(self) -> dict[str, int]:
        """Events each consumer group still has to handle (for /metrics)."""
        return {}

    async def serve(self, service: str, handler: RequestHandler) -> Subscription:
        """Answer the requests other nodes address to `service` on this node.

        Request/reply is not an event: it goes to one named node and is not kept in
        the stream. Each request runs in its own task (a slow one — ringing a phone —
        does not hold up the next); the requester is told at once that the request
        arrived, then gets the handler's reply."""
        raise NotImplementedError(f"{type(self).__name__} does not serve requests")

    async def request(self, node_id: str, service: str, payload: dict[str, Any], *,
                      ack_timeout: float = 3.0, timeout: float = 60.0
                      ) -> dict[str, Any] | None:
        """Ask `service` on node `node_id`; its reply, or None when the node did not
        take the request within `ack_timeout` (down, frozen, not serving) or did not
        finish it within `timeout`."""
        raise NotImplementedError(f"{type(self).__name__} does not carry requests")

    async def publish_topic(self, topic: str, **payload: object) -> str:
        return await self.publish(Event(topic=topic, payload=dict(payload)))
