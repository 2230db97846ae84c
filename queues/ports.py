"""What the engine needs from outside, as Protocols (the lead wires the real ones)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from core.events import Event
from queues.model import Task


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


class QueueingPort(Protocol):
    """What the IVR (and the digital adapters) use to put a contact in line and follow it.
    `queues.engine.AcdEngine` implements it; the outcome of a task arrives as bus events
    (task.offered / task.accepted / task.abandoned / task.exited / task.moved)."""

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
    ) -> Task: ...

    async def abandon(self, task_id: str) -> Task: ...

    async def request_callback(self, task_id: str, number: str) -> Task: ...

    async def position(self, task_id: str) -> int: ...

    async def estimated_wait(self, task_id: str) -> float | None: ...

    async def queue_estimated_wait(self, queue_id: str, channel: str) -> float | None: ...

    def task(self, task_id: str) -> Task: ...


class SharedStatePort(Protocol):
    """What the engine needs from shared ACD state (queues.shared.SharedAcdState) when
    several nodes route on one Redis. See queues.cluster."""

    node_id: str

    async def run_ops(self, ops: list[tuple[str, list[Any]]]) -> list[Any]: ...

    async def run_batch(self, ops: list[tuple[str, list[Any]]]
                        ) -> tuple[list[Any], list[tuple[str, int, int]]]: ...

    async def agent_states(self, agent_ids: list[str]) -> dict[str, dict[str, Any]]: ...

    async def agent_revisions(self) -> dict[str, int]: ...

    async def log_in(self, agent_id: str, session_id: str) -> Any: ...

    async def register_task(self, task_id: str, channel: str, data: Mapping[str, Any],
                            *, ring_all: bool = False) -> Any: ...

    async def task_owner(self, task_id: str) -> str | None: ...

    async def find_offer(self, offer_id: str, agent_id: str) -> tuple[str, str] | None: ...

    async def agent_tasks(self, agent_id: str) -> dict[str, tuple[str, str]]: ...

    async def call(self, node_id: str, method: str, kwargs: Mapping[str, Any], *,
                   timeout_s: float = 5.0) -> dict[str, Any] | None: ...
