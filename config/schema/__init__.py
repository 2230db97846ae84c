"""The config schema: one pydantic model per section of Centrale's YAML files."""

from __future__ import annotations

from pydantic import Field

from config.schema.acd import (
    AcdSettings,
    Agent,
    Capacity,
    OverflowRule,
    Queue,
    QueueExit,
    ReasonCode,
    Skill,
    WrapUpCode,
)
from config.schema.assist import AssistModel, AssistSettings
from config.schema.base import CHANNELS, Strict
from config.schema.channels import Channels
from config.schema.ivr import Flow, Node
from config.schema.schedules import Holiday, HolidayCalendar, Schedule
from config.schema.server import ServerSettings
from config.schema.users import NumberRoute, User

SECTIONS = (
    "server",
    "acd",
    "skills",
    "queues",
    "agents",
    "reason_codes",
    "wrap_up_codes",
    "users",
    "schedules",
    "holiday_calendars",
    "flows",
    "channels",
    "numbers",
    "assist",
)


class CentraleConfig(Strict):
    """The whole configuration, merged from every YAML file of a config directory."""

    server: ServerSettings = ServerSettings()
    acd: AcdSettings = AcdSettings()
    skills: list[Skill] = []
    queues: list[Queue] = []
    agents: list[Agent] = []
    reason_codes: list[ReasonCode] = Field(
        default_factory=lambda: [ReasonCode(id=r) for r in ("break", "lunch", "meeting", "missed")]
    )
    wrap_up_codes: list[WrapUpCode] = []
    users: list[User] = []
    schedules: list[Schedule] = []
    holiday_calendars: list[HolidayCalendar] = []
    flows: list[Flow] = []
    channels: Channels = Channels()
    numbers: list[NumberRoute] = []
    assist: AssistSettings = AssistSettings()

    def queue(self, queue_id: str) -> Queue:
        return next(q for q in self.queues if q.id == queue_id)

    def agent(self, agent_id: str) -> Agent:
        return next(a for a in self.agents if a.id == agent_id)

    def flow(self, flow_id: str) -> Flow:
        return next(f for f in self.flows if f.id == flow_id)


__all__ = [
    "CHANNELS",
    "SECTIONS",
    "AcdSettings",
    "Agent",
    "AssistModel",
    "AssistSettings",
    "Capacity",
    "CentraleConfig",
    "Channels",
    "Flow",
    "Holiday",
    "HolidayCalendar",
    "Node",
    "NumberRoute",
    "OverflowRule",
    "Queue",
    "QueueExit",
    "ReasonCode",
    "Schedule",
    "ServerSettings",
    "Skill",
    "Strict",
    "User",
    "WrapUpCode",
]
