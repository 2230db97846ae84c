"""What the engine needs from outside, as Protocols (the lead wires the real ones)."""

from __future__ import annotations

from typing import Protocol

from core.events import Event


class EventPublisher(Protocol):
    """The part of core.bus.EventBus the engine uses: publish one event."""

    async def publish(self, event: Event) -> str: ...


class CollectingPublisher:
    """A publisher that keeps events in a list: tests, benchmarks, and a bus-less setup."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.events: list[Event] = []

    async def publish(self, event: Event) -> str:
        if self.keep:
            self.events.append(event)
        return str(len(self.events))

    def topics(self) -> list[str]:
        return [e.topic for e in self.events]

    def of(self, topic: str) -> list[Event]:
        return [e for e in self.events if e.topic == topic]
