"""What digital/ needs from the ACD, as a Protocol the composition root satisfies.

The ACD (`queues.AcdEngine`) is the one router for every channel. Digital only needs to
hand it a task and to hear back, on the bus, when an agent took it and when the agent
finished it (wrap-up). Keeping that as a small port lets digital/ be built and tested
while the engine is written, and keeps the dependency one-way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Bus topics the ACD publishes that digital/ listens to. Payloads carry `task_id` and,
# for assignment, `agent_id`; for completion optionally `wrap_up_code`.
TASK_ASSIGNED_TOPICS = ("task.accepted", "task.assigned")
TASK_ENDED_TOPICS = ("task.completed", "task.abandoned", "task.exited")


@dataclass(frozen=True)
class TaskRequest:
    """A conversation waiting for an agent, as the ACD should queue it."""

    channel: str  # whatsapp | sms | webchat | email
    queue_id: str
    case_id: str
    customer_id: str
    conversation_id: str
    preferred_agent_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class AcdPort(Protocol):
    async def enqueue(self, request: TaskRequest) -> str:
        """Queue the task; returns the ACD's task id. Assignment and completion come
        back as bus events (TASK_ASSIGNED_TOPICS / TASK_ENDED_TOPICS)."""
        ...
