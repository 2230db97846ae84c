"""Seeded histories for the report tests: the task events the ACD publishes for one
contact, at chosen instants, fed straight into the reports recorder."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from config.schema import CentraleConfig
from core.clock import ManualClock
from core.events import Event
from reports import ReportService

Q_CONFIG = {
    "server": {"timezone": "Europe/Amsterdam"},
    "queues": [{"id": "sales", "service_level_seconds": 20, "short_abandon_seconds": 5},
               {"id": "support", "service_level_seconds": 60, "short_abandon_seconds": 5}],
    "agents": [{"id": a, "name": a, "queues": ["sales", "support"]}
               for a in ("anna", "bram", "cleo")],
    "wrap_up_codes": [{"id": "sale"}, {"id": "info"}],
}


def config(**reports: Any) -> CentraleConfig:
    return CentraleConfig.model_validate({**Q_CONFIG, "reports": reports})


def service(db: Any, cfg: CentraleConfig, now: datetime) -> ReportService:
    holder = {"config": cfg}
    return ReportService(db, None, ManualClock(now), lambda: holder["config"])  # type: ignore[arg-type]


class History:
    """Writes contacts through the recorder, as the bus would deliver their events."""

    def __init__(self, svc: ReportService) -> None:
        self.svc = svc
        self.n = 0

    async def emit(self, topic: str, at: datetime, **payload: Any) -> None:
        await self.svc.recorder.handle(Event(topic, payload, occurred_at=at))

    async def contact(self, at: datetime, *, queue: str = "sales", channel: str = "voice",
                      case: str = "k1", customer: str = "c1", agent: str | None = "anna",
                      wait: float = 10.0, talk: float | None = 100.0, hold: float = 0.0,
                      wrap: float = 0.0, code: str | None = None, abandon: bool = False,
                      short: bool = False, transfer: bool = False) -> str:
        """One contact entering at `at`; answered after `wait` unless it abandons, then
        `talk` seconds (hold included) to completion and `wrap` seconds of wrap-up."""
        self.n += 1
        task = f"t{self.n}"
        base = {"task_id": task, "queue_id": queue, "channel": channel, "case_id": case,
                "customer_id": customer, "kind": "normal"}
        await self.emit("task.enqueued", at, **base, enqueued_at=at.isoformat())
        t = at + timedelta(seconds=wait)
        if abandon:
            await self.emit("task.abandoned", t, **base, wait_seconds=wait, short=short)
            return task
        await self.emit("task.accepted", t, **base, agent_id=agent, wait_seconds=wait)
        if transfer:
            await self.emit("task.moved", t + timedelta(seconds=5), **base, agent_id=agent,
                            reason="transfer", from_queue_id=queue, to_queue_id=queue)
        if talk is None:
            return task
        done = t + timedelta(seconds=talk)
        payload = {**base, "agent_id": agent, "talk_seconds": talk, "wrap_up_code": code}
        if hold:
            payload["hold_seconds"] = hold
        await self.emit("task.completed", done, **payload)
        await self.emit("task.wrap_up_ended", done + timedelta(seconds=wrap), **base,
                        agent_id=agent, wrap_up_code=code, handle_seconds=talk + wrap)
        return task
