"""What digital/ needs from the ACD, as a Protocol that `queues.AcdEngine` satisfies.

The ACD is the one router for every channel. Digital only hands it a task and hears
back on the bus when an agent took it and when the agent finished it. Keeping that as a
small port keeps the dependency one-way and lets tests use a stand-in as well as the
real engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

# Bus topics the ACD publishes that digital/ listens to. Payloads carry `task_id`;
# `agent_id` on acceptance; `wrap_up_code` on completion and at the end of wrap-up.
TASK_ASSIGNED_TOPICS = ("task.accepted",)
TASK_ENDED_TOPICS = ("task.completed", "task.abandoned", "task.exited")
TASK_WRAP_UP_TOPICS = ("task.wrap_up_ended",)
# A live node took over a dead node's task; `status` and `agent_id` say where it stands,
# which restates the event the dead node may have confirmed in Redis and not published.
TASK_ADOPTED_TOPIC = "task.adopted"
TASK_ADOPTED_AS = {"assigned": "task.accepted", "wrap_up": "task.completed"}


class AcdPort(Protocol):
    async def enqueue(self, *, queue_id: str, channel: str, case_id: str, customer_id: str,
                      attributes: Mapping[str, Any] | None = None,
                      preferred_agent_id: str | None = None,
                      task_id: str | None = None) -> Any:
        """Queue the task (`queues.AcdEngine.enqueue`); returns its snapshot (with `.id`)
        or its id. Assignment and completion come back as bus events."""
        ...
