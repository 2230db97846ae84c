"""The abstract call leg the IVR interpreter drives.

One interpreter runs every flow on every voice backend: the embedded SIP core
(`pbx_bridge.sip`) and the Asterisk backend (`pbx_bridge.asterisk`) each provide a
`CallLeg`. The interface is deliberately small and media-level (play, collect, hold),
so that a flow behaves the same whichever backend carries the call.

A leg whose caller hangs up raises `CallerHangup` from whatever call is in progress;
the interpreter catches it once, records where the caller left and stops.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


class CallerHangup(Exception):
    """The caller hung up while the leg was in use."""


@dataclass(frozen=True)
class CallerData:
    """What the backend knows about the call before the IVR starts.

    `caller_id` is the raw presented number or URI user part (None when withheld);
    `withheld` is True for anonymous callers and `Privacy: id`, and such a caller is
    never matched to a customer. `dialled` is the number the caller dialled (DID),
    which selects the flow.
    """

    call_id: str
    caller_id: str | None
    dialled: str
    withheld: bool = False
    display_name: str | None = None
    channel_vars: dict[str, str] = field(default_factory=dict)
    # the host of the caller's SIP URI (`example.org` in sip:alice@example.org), so a
    # caller that is not a phone number is one identity per host, not per user name
    caller_host: str | None = None


@dataclass(frozen=True)
class PlayResult:
    """How a playback ended: `interrupted_by` is the DTMF digit that barged in, if any."""

    interrupted_by: str | None = None


class CallLeg(ABC):
    """One caller's leg of a call as the IVR sees it.

    Prompts are named by a prompt key (`welcome`, `menu_main`, `digits/3`) and resolved
    to playable media by the backend's prompt cache for the given language.
    """

    @property
    @abstractmethod
    def caller(self) -> CallerData: ...

    @property
    def caller_gone(self) -> bool:
        """True once the caller has hung up. Added after the first contract: backends that
        learn of the hangup early (BYE, AMI Hangup) may override it so the IVR stops at
        the node it is in, even a node that does not touch the media (condition, set,
        schedule). The default keeps older backends working: the hangup then surfaces
        as `CallerHangup` from the next media call."""
        return False

    @property
    def holds_caller_outside(self) -> bool:
        """True for backends that keep a queued caller outside the IVR session: Asterisk
        parks the caller in its holding context (music, announcements) and the ACD
        connects them from there. The IVR then ends its run at the queue node with
        outcome `held` instead of waiting on the leg."""
        return False

    @abstractmethod
    async def answer(self) -> None:
        """Answer the call (idempotent)."""

    @abstractmethod
    async def play(
        self, prompts: list[str], language: str, *, barge_in: bool = False
    ) -> PlayResult:
        """Play prompts in order; with barge_in, the first DTMF digit stops playback
        and is returned (and stays consumed: it is not seen again by collect)."""

    @abstractmethod
    async def collect_digits(
        self,
        max_digits: int,
        *,
        first_digit_timeout: float,
        inter_digit_timeout: float,
        terminator: str | None = "#",
    ) -> str:
        """Collect up to max_digits DTMF digits. Returns '' on first-digit timeout.
        The terminator is not included in the result."""

    def discard_typed_ahead(self) -> None:
        """Forget digits pressed before now (the survey after a call must not take a
        digit typed during the conversation as its answer). Backends that buffer
        digits override it."""
        return None

    @abstractmethod
    async def start_music_on_hold(self, music_class: str = "default") -> None: ...

    @abstractmethod
    async def stop_music_on_hold(self) -> None: ...

    @abstractmethod
    async def hangup(self, cause: str = "normal") -> None: ...

    async def record(self, max_seconds: float, *, beep: bool = True,
                     silence_seconds: float | None = None, end_key: str | None = "#"
                     ) -> str | None:
        """Record the caller (voicemail) until `max_seconds`, `silence_seconds` of
        silence, `end_key` or the caller hanging up (the message is kept then: that is
        how most messages end). Returns a media reference or None when the backend
        cannot record. Backends override this when they can."""
        return None

    async def transfer(self, target: str) -> None:
        """Blind transfer to an external number or extension."""
        raise NotImplementedError("this backend cannot transfer")
