"""The ACD's domain model: tasks, offers, wrap-ups and agent states.

`Task`, `Offer` and `AgentView` are immutable snapshots handed to callers; the engine
keeps its own mutable records (`LiveTask`, `LiveAgent`) so that nobody outside can
change routing state behind its back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Channel = Literal["voice", "whatsapp", "webchat", "email", "sms"]
CHANNELS: tuple[str, ...] = ("voice", "whatsapp", "webchat", "email", "sms")

TaskKind = Literal["normal", "callback"]

# Life cycle of a task. `waiting` -> `offered` -> `assigned` -> `wrap_up` -> `completed`;
# a waiting/offered task may instead end `abandoned` or `exited`.
WAITING = "waiting"
OFFERED = "offered"
ASSIGNED = "assigned"
WRAP_UP = "wrap_up"
COMPLETED = "completed"
ABANDONED = "abandoned"
EXITED = "exited"
TaskStatus = Literal[
    "waiting", "offered", "assigned", "wrap_up", "completed", "abandoned", "exited"
]
FINAL_STATUSES = frozenset({COMPLETED, ABANDONED, EXITED})

# Agent states as supervisors see them (derived, see docs/acd.md):
AgentState = Literal["logged_out", "available", "not_ready", "busy", "wrap_up"]
AGENT_STATES: tuple[str, ...] = ("logged_out", "available", "not_ready", "busy", "wrap_up")
# What an agent may ask for with `set_state`; busy and wrap-up belong to the engine.
SETTABLE_STATES = ("available", "not_ready")

# Skill requirements in canonical form: sorted (skill, maximum level) pairs.
Requirements = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Task:
    """A snapshot of one task (a call, a conversation, an email, a callback)."""

    id: str
    channel: str
    queue_id: str
    case_id: str
    customer_id: str
    skills: dict[str, int]  # effective requirements now: skill -> maximum level (1 best)
    priority: int  # effective priority (base + overflow boosts); higher first
    enqueued_at: datetime  # first entry into the ACD; kept through moves and callbacks
    attributes: dict[str, Any]
    preferred_agent_id: str | None
    kind: str  # normal | callback
    status: str
    agent_id: str | None = None
    callback_number: str | None = None
    exit_reason: str | None = None  # full | max_wait when status is exited
    exit: dict[str, Any] | None = None  # the queue's exit destination when exited


@dataclass(frozen=True, slots=True)
class Offer:
    id: str
    task_id: str
    agent_id: str
    queue_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class WrapUp:
    task_id: str
    agent_id: str
    queue_id: str
    channel: str
    ends_at: datetime
    wrap_up_code: str | None
    notes: str | None


@dataclass(frozen=True, slots=True)
class AgentView:
    id: str
    state: str
    reason: str | None
    session_id: str | None
    load: dict[str, int]  # channel -> slots in use (offers + accepted tasks + wrap-ups)
    offers: tuple[str, ...]
    tasks: tuple[str, ...]  # accepted, not yet completed
    wrap_ups: tuple[WrapUp, ...]


@dataclass(slots=True)
class LiveTask:
    """The engine's mutable record of a task. Only the engine touches it."""

    id: str
    channel: str
    queue_id: str
    case_id: str
    customer_id: str
    own_skills: dict[str, int]
    base_priority: int
    enqueued_at: datetime
    enqueued_mono: float
    seq: int  # arrival order: FIFO tie-break, kept through moves and callbacks
    attributes: dict[str, Any]
    preferred_agent_id: str | None
    kind: str = "normal"
    callback_number: str | None = None
    status: str = WAITING
    agent_id: str | None = None
    queue_entered_mono: float = 0.0
    requirements: Requirements = ()
    priority: int = 0
    add_queues: tuple[str, ...] = ()
    rules_in_force: set[int] = field(default_factory=set)
    version: int = 0  # bumped whenever the task's index entries must be rebuilt
    offers: dict[str, str] = field(default_factory=dict)  # agent_id -> offer_id
    declined: dict[str, float] = field(default_factory=dict)  # agent_id -> cool-off end
    sticky_until: float = 0.0
    accepted_mono: float = 0.0
    hops: int = 0  # queue moves, to stop exit/overflow loops
    exit_reason: str | None = None
    exit: dict[str, Any] | None = None
    # A transfer to a named agent: the agents still to offer it to, in order (the
    # target, then the transferring agent); None = routed by its queue as usual.
    directed: list[str] | None = None

    def key(self) -> tuple[int, float, int]:
        """Routing order: higher priority first, then earlier enqueue, then arrival."""
        return (-self.priority, self.enqueued_mono, self.seq)


@dataclass(slots=True)
class LiveWrapUp:
    task_id: str
    queue_id: str
    channel: str
    ends_mono: float
    wrap_up_code: str | None
    notes: str | None


@dataclass(slots=True)
class LiveAgent:
    """The engine's mutable record of an agent."""

    id: str
    idx: int  # position in the config: the last tie-break of every strategy
    skills: dict[str, int]
    capacity: dict[str, int]
    voice_exclusive: bool
    queues: tuple[str, ...]  # configured serving order
    session_id: str | None = None
    presence: str = "logged_out"  # logged_out | available | not_ready
    reason: str | None = None
    load: dict[str, int] = field(default_factory=dict)
    total_load: int = 0
    offers: dict[str, str] = field(default_factory=dict)  # offer_id -> task_id
    active: dict[str, None] = field(default_factory=dict)  # accepted task ids (ordered set)
    wraps: dict[str, LiveWrapUp] = field(default_factory=dict)
    sticky: dict[str, None] = field(default_factory=dict)  # tasks held for this agent
    version: int = 0
    idle_since: float = 0.0
    rr_last: dict[str, int] = field(default_factory=dict)  # queue -> last round-robin turn
    skill_rank: dict[str, int] = field(default_factory=dict)  # queue -> sum of levels
    state: str = "logged_out"
    published_reason: str | None = None
    state_since: float = 0.0
    time_in: dict[str, float] = field(default_factory=dict)
    total_capacity: int = 0
    # Shared state only: slots the agent holds for other nodes' tasks (counted in
    # `load` too), and a counter of presence changes made on this node.
    remote_load: dict[str, int] = field(default_factory=dict)
    presence_version: int = 0

    def can_take(self, channel: str) -> bool:
        """Free capacity for one more task of `channel` right now."""
        if self.presence != "available":
            return False
        if self.load.get(channel, 0) >= self.capacity.get(channel, 0):
            return False
        if self.voice_exclusive:
            if channel == "voice":
                return self.total_load == 0
            return self.load.get("voice", 0) == 0
        return True

    def qualifies(self, requirements: Requirements) -> bool:
        """Agent level <= required maximum level for every required skill."""
        skills = self.skills
        for skill, max_level in requirements:
            level = skills.get(skill)
            if level is None or level > max_level:
                return False
        return True
