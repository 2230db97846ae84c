"""What the Asterisk backend needs from the rest of Centrale, and what it offers.

The backend does not import `queues`, `ivr` (beyond the CallLeg contract) or `cases`:
the composition root (`centrale/`) passes in callables that satisfy these ports.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pbx_bridge.asterisk.events import VoiceEvent

if TYPE_CHECKING:
    from pbx_bridge.asterisk.call_leg import AgiCallLeg


class InboundCallHandler(Protocol):
    """Runs one inbound call: resolve the customer from `leg.caller`, run the IVR on
    the leg, and enqueue. To wait for an agent, call `await leg.send_to_holding(
    task_id=...)` and return: the caller then waits in the holding context with
    music on hold until `AsteriskBackend.ring_agent` connects them. Returning without
    that ends the call (the dialplan hangs up), unless the handler transferred it.
    Raising `CallerHangup` is fine: the caller left."""

    def __call__(self, leg: AgiCallLeg) -> Awaitable[None]: ...


#: One announcement for a waiting caller: prompt keys (str) and numbers (int) in
#: the order to say them, e.g. ["queue/you_are_number", 3, "queue/in_line"].
Announcement = list[str | int]


class HoldAnnouncer(Protocol):
    """Position/EWT announcements while waiting: called every time the holding
    dialplan asks (`centrale-hold`, every `CENTRALE_ANNOUNCE_EVERY` seconds) with
    the task id and the caller's language. Return [] to stay silent."""

    def __call__(self, task_id: str, language: str) -> Awaitable[Announcement]: ...


#: Prompt key + language -> Asterisk sound file name (no extension).
PromptResolver = Callable[[str, str], str]


def default_prompt_resolver(prompt: str, language: str) -> str:
    """`welcome` in `nl` -> `centrale/nl/welcome` under Asterisk's sounds directory
    (docker/asterisk mounts Centrale's prompts there). Keys that already name an
    Asterisk sound (`digits/3`, `beep`) with a leading `asterisk:` are passed as is."""
    if prompt.startswith("asterisk:"):
        return prompt.removeprefix("asterisk:")
    return f"centrale/{language}/{prompt}"


VoiceEventListener = Callable[[VoiceEvent], Awaitable[None] | None]


class RingOutcome(enum.Enum):
    """How ringing an agent for an offer ended (what the ACD needs to know)."""

    ANSWERED = "answered"  # the agent picked up: the offer is accepted
    NO_ANSWER = "no_answer"  # ring timeout or rejected: RONA
    BUSY = "busy"
    FAILED = "failed"  # endpoint unreachable / not registered / AMI down
    CALLER_GONE = "caller_gone"  # the caller hung up first (an abandon is emitted)


@dataclass(frozen=True)
class AgentOffer:
    """Ring `endpoint` (e.g. `PJSIP/alice`) for the waiting caller of `call_id`."""

    offer_id: str
    call_id: str
    endpoint: str
    ring_timeout: float = 20.0
    task_id: str = ""
    agent_id: str = ""
    # the queue's survey flow when the caller is to be surveyed after the agent hangs
    # up: set on the agent leg as CENTRALE_SURVEY, whose dialplan then bridges with
    # F(centrale-survey^s^1) instead of x (docs/asterisk.md, "Survey after the call")
    survey_flow: str = ""


@dataclass(frozen=True)
class RingResult:
    outcome: RingOutcome
    agent_channel: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class CallbackRequest:
    """Call the agent first, then (on answer) the customer's `number` via the trunk."""

    callback_id: str
    number: str
    endpoint: str
    ring_timeout: float = 20.0
    task_id: str = ""
    caller_id: str = ""  # the number the customer sees (site's main number)
    variables: dict[str, str] = field(default_factory=dict)
