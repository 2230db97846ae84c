"""Helpers for the ACD tests: a rig (engine + manual clock + collecting bus + in-memory
store) built from a small config dict, and a short way to write an agent."""

from __future__ import annotations

from typing import Any

from config.schema import CentraleConfig
from core.clock import ManualClock
from queues.engine import AcdEngine
from queues.ports import CollectingPublisher
from queues.store import InMemoryAcdStore


class Rig:
    """An engine with its clock, bus and store, plus helpers that keep tests short."""

    def __init__(self, config: dict[str, Any], store: Any = None) -> None:
        self.config = CentraleConfig.model_validate(config)
        self.clock = ManualClock()
        self.bus = CollectingPublisher()
        self.store = store if store is not None else InMemoryAcdStore()
        counter = iter(range(1, 10**9))
        self.engine = AcdEngine(
            self.config, self.clock, self.bus, self.store,
            id_factory=lambda: f"id{next(counter)}",
        )

    async def login(self, *agent_ids: str) -> None:
        for agent_id in agent_ids:
            await self.engine.agent_login(agent_id, f"session-{agent_id}")

    async def enqueue(self, queue_id: str = "q", channel: str = "voice", **kw: Any):
        kw.setdefault("case_id", "case-1")
        kw.setdefault("customer_id", "cust-1")
        return await self.engine.enqueue(queue_id=queue_id, channel=channel, **kw)

    def offered_to(self, task_id: str) -> list[str]:
        """Agents holding an open offer for the task."""
        return sorted(
            a.id for a in self.config.agents
            if any(o.task_id == task_id for o in self.engine.offers_for(a.id))
        )

    def offer_id(self, task_id: str, agent_id: str) -> str:
        return next(o.id for o in self.engine.offers_for(agent_id) if o.task_id == task_id)

    async def answer(self, task_id: str) -> str:
        """Accept the task's (single) open offer; returns the agent id."""
        (agent_id,) = self.offered_to(task_id)
        await self.engine.accept(self.offer_id(task_id, agent_id), agent_id)
        return agent_id

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.engine.tick()

    def topics(self) -> list[str]:
        return self.bus.topics()


def agent(agent_id: str, queues: list[str], skills: dict[str, int] | None = None,
          **capacity: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": agent_id, "name": agent_id.upper(), "queues": queues,
                           "skills": skills or {}}
    if capacity:
        out["capacity"] = capacity
    return out


