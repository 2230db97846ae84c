"""`flows:` — IVR call flows as a graph of named nodes.

A flow is `id`, `languages`, `start` and `nodes` (name -> node). Every node names the
node(s) it continues to; `ivr.validate` checks reachability, targets, prompts per
language and loops that never wait for the caller. Targets may name a node of another
flow as `flow_id.node`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from config.schema.base import Ident, Strict

NodeRef = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?$")]


class PlayNode(Strict):
    type: Literal["play"]
    prompts: list[str] = Field(min_length=1)
    barge_in: bool = False
    next: NodeRef | None = None  # None = hang up after playing
    digit_next: dict[str, NodeRef] = {}  # with barge_in: a digit pressed jumps here


class MenuNode(Strict):
    type: Literal["menu"]
    prompts: list[str] = Field(min_length=1)
    options: dict[str, NodeRef] = Field(min_length=1)  # "1" -> node
    timeout_seconds: float = Field(5, gt=0)
    retries: int = Field(3, ge=1, le=10)
    invalid_prompts: list[str] = ["invalid_option"]
    timeout_prompts: list[str] = ["no_input"]
    fallback: NodeRef  # after the retries


class CollectNode(Strict):
    type: Literal["collect"]
    prompts: list[str] = Field(min_length=1)
    variable: Ident
    max_digits: int = Field(ge=1, le=32)
    min_digits: int = Field(1, ge=1, le=32)
    terminator: str | None = Field("#", pattern=r"^[0-9*#]$")
    first_digit_timeout: float = Field(5, gt=0)
    inter_digit_timeout: float = Field(3, gt=0)
    pattern: str | None = None  # regex the digits must fully match
    retries: int = Field(3, ge=1, le=10)
    invalid_prompts: list[str] = ["invalid_entry"]
    lookup: Literal["customer_number", "order_number"] | None = None
    next: NodeRef
    fallback: NodeRef


class ScheduleNode(Strict):
    type: Literal["schedule"]
    schedule: Ident
    open: NodeRef
    closed: NodeRef
    holiday: NodeRef | None = None  # defaults to closed


class Branch(Strict):
    when: str  # expression, see docs/ivr.md
    next: NodeRef


class ConditionNode(Strict):
    type: Literal["condition"]
    branches: list[Branch] = Field(min_length=1)
    otherwise: NodeRef


class SetNode(Strict):
    type: Literal["set"]
    variables: dict[str, str] = {}
    language: str | None = None
    skills: dict[Ident, int] = {}
    priority: int | None = None
    next: NodeRef


class QueueNode(Strict):
    type: Literal["queue"]
    queue: Ident
    priority: int | None = None
    skills: dict[Ident, int] = {}
    music_on_hold: str | None = None
    announce_position: bool = True
    announce_wait: bool = True
    announce_interval_seconds: float | None = Field(None, ge=5)
    callback_key: str | None = Field(None, pattern=r"^[0-9*#]$")
    voicemail_key: str | None = Field(None, pattern=r"^[0-9*#]$")
    exit_keys: dict[str, NodeRef] = {}
    max_wait_seconds: float | None = Field(None, gt=0)
    timeout_next: NodeRef | None = None  # after max wait; default: queue's exit
    failed_next: NodeRef | None = None  # queue full / closed


_DIALABLE = r"^\+?[0-9*#]{2,32}$"


class TransferNode(Strict):
    """A blind transfer to `target`, or to the number held in `target_variable` (digits
    the caller entered, as Avaya's `route-to digits`). When the variable holds no
    dialable number, or the voice backend cannot transfer, the flow goes on at
    `failed_next` (default: hang up), as an Avaya vector goes on when a route-to fails."""

    type: Literal["transfer"]
    target: str | None = Field(None, pattern=_DIALABLE)
    target_variable: Ident | None = None
    failed_next: NodeRef | None = None
    prompts: list[str] = []

    @model_validator(mode="after")
    def _one_target(self) -> TransferNode:
        if (self.target is None) == (self.target_variable is None):
            raise ValueError("a transfer needs exactly one of target and target_variable")
        return self


class WaitNode(Strict):
    """Hold the caller for `seconds` hearing music, ringback or silence, then go on
    (Avaya's `wait-time N secs hearing ...`). The wait counts as waiting for the caller
    in the loop check: a loop with a wait in it is paced, not a busy loop."""

    type: Literal["wait"]
    seconds: float = Field(gt=0, le=3600)
    hearing: Literal["music", "ringback", "silence"] = "music"
    music_on_hold: str | None = None  # music class for `music`; default: "default"
    next: NodeRef


class VoicemailNode(Strict):
    type: Literal["voicemail"]
    prompts: list[str] = ["leave_message"]
    max_seconds: float = Field(120, gt=0, le=600)
    # The message ends at max_seconds, after this much silence (None: never), or on
    # end_key (None: no key ends it); docs/recording.md, "Voicemail".
    silence_stop_seconds: float | None = Field(5.0, gt=0, le=60)
    end_key: str | None = Field("#", pattern=r"^[0-9*#]$")
    queue: Ident | None = None  # the queue the callback task goes to (none: no task)
    retention_days: int | None = Field(None, ge=1, le=3650)  # default: server.recordings
    next: NodeRef | None = None


class HangupNode(Strict):
    type: Literal["hangup"]
    prompts: list[str] = []


class SurveyNode(Strict):
    """The survey after a call (docs/kpis.md, Surveys): CSAT is one key 1–5, NPS 0–10
    typed as one or two digits (`#` or a pause ends the entry). An invalid or missing
    answer is asked once more (`retry_prompts`, then the question), then recorded as no
    answer. The answer goes to the case timeline and the CSAT/NPS figures."""

    type: Literal["survey"]
    kind: Literal["csat", "nps"] = "csat"
    prompts: list[str] = Field(min_length=1)  # the question ("press 1 to 5")
    retry_prompts: list[str] = ["invalid_entry"]
    thanks_prompts: list[str] = []  # played after a valid answer
    timeout_seconds: float = Field(6, gt=0)  # after the question, for the first key
    inter_digit_timeout: float = Field(2.5, gt=0)  # NPS: for the second digit
    next: NodeRef | None = None  # None: hang up


Node = Annotated[
    PlayNode
    | MenuNode
    | CollectNode
    | ScheduleNode
    | ConditionNode
    | SetNode
    | QueueNode
    | TransferNode
    | WaitNode
    | VoicemailNode
    | HangupNode
    | SurveyNode,
    Field(discriminator="type"),
]


class Flow(Strict):
    id: Ident
    name: str | None = None
    languages: list[str] = Field(["en"], min_length=1)
    timezone: str | None = None  # defaults to server.timezone
    start: str
    nodes: dict[str, Node] = Field(min_length=1)
