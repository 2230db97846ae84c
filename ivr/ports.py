"""What the IVR needs from the rest of Centrale, as small Protocols ("ports").

The interpreter codes against these; the composition root (`centrale/`) wires the real
ACD (`queues/`), the case timeline (`cases/`) and the customer lookup behind them.
Test doubles live in `ivr.testing`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class QueueUnavailable(Exception):
    """The queue refused the task (full, closed, unknown): the flow takes `failed_next`."""


@dataclass(frozen=True)
class VoiceTaskRequest:
    """A voice task the IVR asks the ACD to route."""

    queue_id: str
    call_id: str
    skills: Mapping[str, int] = field(default_factory=dict)
    priority: int | None = None  # None: the queue's own priority
    case_id: str | None = None
    customer_id: str | None = None
    language: str | None = None
    caller_number: str | None = None
    ivr_path: tuple[str, ...] = ()  # the nodes the caller went through, for the screen-pop
    recording_declined: bool = False  # the caller pressed the queue's decline key


class QueueOutcomeKind(StrEnum):
    CONNECTED = "connected"  # an agent took the call: the bridge takes over the leg
    EXIT = "exit"  # the queue sends the caller away (its max wait, overflow, closed)


@dataclass(frozen=True)
class QueueOutcome:
    kind: QueueOutcomeKind
    agent_id: str | None = None
    # for EXIT: where to go (`flow.node` or `node`), or to voicemail; both None: hang up
    flow_node: str | None = None
    voicemail: bool = False
    reason: str | None = None


class QueuePort(Protocol):
    """The ACD as the IVR sees it."""

    async def enqueue(self, request: VoiceTaskRequest) -> str:
        """Put a voice task in the queue; returns its task id. Raises QueueUnavailable."""

    async def position(self, task_id: str) -> int | None:
        """1-based position in line, None when unknown."""

    async def estimated_wait(self, task_id: str) -> float | None:
        """Estimated seconds until an agent answers, None when unknown."""

    async def abandon(self, task_id: str) -> None:
        """The caller left the queue (hung up, pressed an exit key, max wait)."""

    async def request_callback(self, task_id: str, number: str) -> None:
        """Turn the waiting task into a callback request to `number` (keeps its place)."""

    async def wait_outcome(self, task_id: str) -> QueueOutcome:
        """Resolves when the task is connected to an agent or the queue sends it away.
        The IVR cancels this await when the caller leaves first."""


@dataclass(frozen=True)
class QueueStatistics:
    """A queue's live figures, as conditions read them (`queue_stats.<queue>.<name>`)."""

    available_agents: int = 0  # logged in and free to take a call now
    staffed_agents: int = 0  # logged in (available, busy, wrap-up or not ready)
    calls_queued: int = 0  # contacts waiting in the queue
    oldest_wait: float = 0.0  # seconds the longest-waiting contact has waited
    expected_wait: float | None = None  # for a new call; None = nobody staffed

    def as_scope(self) -> dict[str, float | int | None]:
        return {"available_agents": self.available_agents,
                "staffed_agents": self.staffed_agents, "calls_queued": self.calls_queued,
                "oldest_wait": self.oldest_wait, "expected_wait": self.expected_wait}


class QueueStatisticsPort(Protocol):
    """Live queue figures for conditions. Optional: without it, every figure is none
    (so a comparison on it is false), as an unknown name is."""

    async def statistics(self, queue_id: str) -> QueueStatistics | None: ...


class TimelinePort(Protocol):
    """The case timeline: every IVR step lands there (the path the agent sees)."""

    async def record(
        self, case_id: str, kind: str, body: str, metadata: Mapping[str, Any]
    ) -> None: ...


@dataclass(frozen=True)
class SurveyAnswer:
    """What a `survey` node got from the caller: `score` None is "no answer" (two
    invalid or missing answers, or the caller hung up)."""

    call_id: str
    case_id: str | None
    customer_id: str | None
    kind: str  # "csat" | "nps"
    score: int | None
    tries: tuple[str, ...] = ()  # what was typed, "timeout" for nothing


class SurveyPort(Protocol):
    """Where a survey's answer goes: the voice service writes it on the case timeline
    and publishes `survey.answered`, which `reports/` turns into CSAT and NPS."""

    async def asked(self, call_id: str, case_id: str | None, kind: str) -> None: ...

    async def answered(self, answer: SurveyAnswer) -> None: ...


@dataclass(frozen=True)
class VoicemailMessage:
    """A message the caller left at a voicemail node (`media`: the leg's reference)."""

    case_id: str
    customer_id: str | None
    call_id: str
    media: str
    seconds: float
    caller: str | None  # None: withheld (no callback task can be made)
    queue_id: str | None  # the queue the callback task goes to
    retention_days: int | None
    flow: str
    node: str


class VoicemailPort(Protocol):
    """Stores a voicemail as a recording on the case and queues the callback task.
    Optional: without it the IVR only notes the message on the timeline."""

    async def store(self, message: VoicemailMessage) -> dict[str, Any]:
        """Returns what it did: `recording_id`, `task_id` (either may be None)."""


@dataclass(frozen=True)
class LookupMatch:
    """What a looked-up customer/order number turned out to be."""

    found: bool
    customer_id: str | None = None
    case_id: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)


class NumberLookup(Protocol):
    """Looks up a number the caller typed (`customer_number` or `order_number`)."""

    async def __call__(self, kind: str, value: str) -> LookupMatch: ...


@dataclass(frozen=True)
class CustomerContext:
    """What Centrale knows about the caller when the IVR starts (from `cases.resolve`)."""

    customer_id: str | None = None
    case_id: str | None = None
    case_open: bool = False
    name: str | None = None
    language: str | None = None
    tags: frozenset[str] = frozenset()
    lookup: NumberLookup | None = None

    @property
    def known(self) -> bool:
        return self.customer_id is not None

    @property
    def vip(self) -> bool:
        return any(t.lower() == "vip" for t in self.tags)
