"""`skills:`, `queues:`, `agents:`, `reason_codes:`, `wrap_up_codes:` — the ACD's config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from config.schema.base import Channel, Ident, Strict
from config.schema.recording import QueueRecording


class Skill(Strict):
    id: Ident
    name: str | None = None


class OverflowRule(Strict):
    """After `after_seconds` of waiting, widen or move the search (first match applies
    cumulatively in order: every rule whose time has come is in force)."""

    after_seconds: float = Field(ge=0)
    relax_skills: dict[Ident, int] | None = None  # skill -> new minimum level (higher = laxer)
    drop_skills: list[Ident] = []
    add_queues: list[Ident] = []  # also offer to those queues' agents
    move_to: Ident | None = None  # move the task to another queue (keeps enqueue time)
    priority_boost: int = 0


class QueueExit(Strict):
    """Where a task goes when the queue is full or the wait is over."""

    queue: Ident | None = None  # another queue
    flow_node: str | None = None  # voice: an IVR node (`flow.node`) ; digital: ignored
    voicemail: bool = False


Strategy = Literal["longest_idle", "least_occupied", "round_robin", "best_skill", "ring_all"]


class Queue(Strict):
    id: Ident
    name: str | None = None
    strategy: Strategy = "longest_idle"
    channels: list[Channel] = ["voice", "whatsapp", "webchat", "email", "sms"]
    skills: dict[Ident, int] = {}  # required skill -> maximum level number accepted (1 best)
    priority: int = 0
    max_length: int | None = Field(None, ge=1)
    max_wait_seconds: float | None = Field(None, gt=0)
    exit: QueueExit | None = None
    overflow: list[OverflowRule] = []
    wrap_up_seconds: float = Field(30, ge=0)
    # True: a wrap-up without a code does not end by its timer, and the agent cannot end
    # it without one (Genesys' "mandatory" after-call work). The timer still shows when
    # the expected wrap-up time is over.
    wrap_up_code_required: bool = False
    rona_seconds: float = Field(20, gt=0)
    rona_action: Literal["not_ready", "stay_available"] = "not_ready"
    sticky_agent_seconds: float = Field(0, ge=0)
    service_level_seconds: float = Field(20, gt=0)
    short_abandon_seconds: float = Field(5, ge=0)
    schedule: Ident | None = None
    music_on_hold: str = "default"
    announce_interval_seconds: float = Field(60, ge=0)
    cti_url: str | None = None  # e.g. https://crm.example/search?phone={caller}
    # After the agent hangs up, the caller is kept and taken to this flow (a `survey`
    # node); None: the caller is hung up with the agent. docs/kpis.md, Surveys.
    survey_flow: Ident | None = None
    recording: QueueRecording = QueueRecording()  # docs/recording.md

    @model_validator(mode="after")
    def _ring_all_is_voice(self) -> Queue:
        if self.strategy == "ring_all" and self.channels != ["voice"]:
            raise ValueError("strategy ring_all is for voice-only queues (channels: [voice])")
        return self


class Capacity(Strict):
    voice: int = Field(1, ge=0, le=1)
    whatsapp: int = Field(3, ge=0, le=50)
    webchat: int = Field(3, ge=0, le=50)
    email: int = Field(5, ge=0, le=200)
    sms: int = Field(3, ge=0, le=50)
    voice_exclusive: bool = True  # a voice task blocks every other channel


BROWSER_PHONE_PREFIX = "browser:"  # an agent's browser phone as call control names it


class AgentSip(Strict):
    username: str = Field(pattern=r"^[A-Za-z0-9_.\-+]{1,64}$")
    password: SecretStr
    # SRTP for this agent's phone (issue 26); None: server.sip.phone_srtp
    srtp: str | None = Field(None, pattern=r"^(off|optional|required)$")


class Agent(Strict):
    id: Ident
    name: str
    skills: dict[Ident, int] = {}  # skill -> level, 1 best
    capacity: Capacity = Capacity()
    queues: list[Ident] = []  # in the order the agent serves them
    languages: list[str] = []
    sip: AgentSip | None = None
    extension: str | None = None
    # Where a voice offer rings: the registered SIP phone, the desktop's browser phone,
    # or both — the browser first when a page of the agent is open, else the SIP
    # phone (docs/browser-phone.md).
    voice_device: Literal["sip", "browser", "both"] = "sip"

    def phone_address(self) -> str | None:
        """What call control rings to reach this agent (a transfer, a conference, a
        supervisor's monitoring phone): the SIP user name, or `browser:<id>` when the
        desktop's browser phone is the agent's only phone (no `sip:` account); None:
        no phone at all."""
        if self.sip is not None:
            return self.sip.username
        if self.voice_device != "sip":
            return BROWSER_PHONE_PREFIX + self.id
        return None


class ReasonCode(Strict):
    id: Ident
    name: str | None = None


class WrapUpCode(Strict):
    id: Ident
    name: str | None = None


class AcdSettings(Strict):
    """Engine-wide ACD defaults."""

    agent_queue_order: Literal["configured", "longest_waiting_task", "priority"] = "configured"
    missed_reason: Ident = "missed"
    # The not-ready reason the web puts an agent in when their desktop went away.
    disconnected_reason: Ident = "disconnected"
    # An agent whose phone cannot be reached (not registered, no such endpoint) this
    # many offers in a row is made not-ready with `unreachable_reason`, instead of
    # taking (and failing) a new offer every ring while callers wait. 0 turns it off.
    unreachable_after: int = Field(default=3, ge=0)
    unreachable_reason: Ident = "phone_unreachable"
