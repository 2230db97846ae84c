"""What the customer record learns from the ACD, through bus events only: the case's
last agent (for sticky routing) and the wrap-up code and notes on the timeline.

A consumer group, so on several nodes each event is applied once.
"""

from __future__ import annotations

import logging
from typing import Any

from cases.service import CaseService, NotFound
from core.bus import EventBus
from core.events import Event

log = logging.getLogger(__name__)


class CaseFollowUp:
    def __init__(self, cases: CaseService, bus: EventBus) -> None:
        self.cases = cases
        self.bus = bus
        self._subscription: Any = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe("task.*", self.handle, group="cases")

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()

    async def handle(self, event: Event) -> None:
        p = event.payload
        case_id = p.get("case_id")
        if not case_id:
            return
        try:
            if event.topic == "task.accepted" and p.get("agent_id"):
                await self.cases.set_last_agent(case_id, p["agent_id"])
            elif event.topic == "task.wrap_up_ended":
                code, notes = p.get("wrap_up_code"), p.get("notes")
                await self.cases.add_timeline(
                    case_id, kind="wrap_up", channel=p.get("channel", "internal"),
                    direction="internal",
                    body=f"Wrap-up: {code or 'no code'}" + (f" — {notes}" if notes else ""),
                    meta={"task_id": p.get("task_id"), "agent_id": p.get("agent_id"),
                          "code": code, "notes": notes,
                          "handle_seconds": p.get("handle_seconds")},
                    dedup_key=f"wrapup:{p.get('task_id')}")
        except NotFound:
            log.warning("%s for unknown case %s", event.topic, case_id)
