"""Domain-level voice events, mapped from raw AMI events.

AMI speaks in dozens of event types with channel-technology detail (`Newexten`,
`VarSet`, `RTCPSent`, ...). The rest of Centrale only needs a handful of facts about a
call: a channel appeared, the caller pressed a key, a channel entered or left a bridge,
a dial started or ended, a channel hung up (and why), and the one fact the ACD acts
on: a caller who was waiting for an agent hung up (an abandon). This module turns AMI
messages into those facts; everything else is dropped here, not downstream.

Every event can become a `core.events.Event` (`to_bus_event`) so that the wiring can
publish it on the bus as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from core.events import Event

#: Q.850 cause Asterisk reports when a channel hangs up normally.
CAUSE_NORMAL_CLEARING = 16


def _text(message: Mapping[str, Any], key: str) -> str:
    """One header as text; AMI repeats headers rarely, and we keep the last one."""
    value = message.get(key, "")
    if isinstance(value, list):
        value = value[-1] if value else ""
    return str(value)


def _opt(message: Mapping[str, Any], key: str) -> str | None:
    value = _text(message, key)
    return None if value in ("", "<unknown>") else value


@dataclass(frozen=True)
class VoiceEvent:
    """Base: which channel (by Asterisk `Uniqueid`) and which call (`Linkedid`)."""

    topic: ClassVar[str] = "voice.event"

    uniqueid: str
    channel: str
    linkedid: str

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["backend"] = "asterisk"
        return data

    def to_bus_event(self) -> Event:
        return Event(topic=self.topic, payload=self.payload())


@dataclass(frozen=True)
class ChannelCreated(VoiceEvent):
    topic: ClassVar[str] = "voice.channel_created"

    caller_id: str | None = None
    caller_name: str | None = None
    context: str = ""
    exten: str = ""


@dataclass(frozen=True)
class DtmfReceived(VoiceEvent):
    topic: ClassVar[str] = "voice.dtmf"

    digit: str = ""


@dataclass(frozen=True)
class BridgeEntered(VoiceEvent):
    topic: ClassVar[str] = "voice.bridge_entered"

    bridge_id: str = ""


@dataclass(frozen=True)
class BridgeLeft(VoiceEvent):
    topic: ClassVar[str] = "voice.bridge_left"

    bridge_id: str = ""


@dataclass(frozen=True)
class DialStarted(VoiceEvent):
    topic: ClassVar[str] = "voice.dial_started"

    dest_uniqueid: str = ""
    dest_channel: str = ""
    dial_string: str = ""


@dataclass(frozen=True)
class DialEnded(VoiceEvent):
    topic: ClassVar[str] = "voice.dial_ended"

    dest_uniqueid: str = ""
    dest_channel: str = ""
    dial_status: str = ""  # ANSWER, NOANSWER, BUSY, CANCEL, CONGESTION, CHANUNAVAIL


@dataclass(frozen=True)
class ChannelHungUp(VoiceEvent):
    """A channel is gone. `during_outage` is True when the resync after a reconnect
    found it missing (the Hangup event itself was lost with the connection)."""

    topic: ClassVar[str] = "voice.hangup"

    cause: int = CAUSE_NORMAL_CLEARING
    cause_text: str = ""
    call_id: str | None = None
    during_outage: bool = False
    # With `during_outage`: how long the AMI link had been down when the resync found
    # the channel gone. It hung up at some point in that span, so a talk time must
    # stop at the outage's start, not at its end.
    outage_seconds: float = 0.0


@dataclass(frozen=True)
class CallerAbandoned(VoiceEvent):
    """A caller Centrale was holding for an agent hung up before being connected."""

    topic: ClassVar[str] = "voice.abandoned"

    call_id: str = ""
    task_id: str = ""
    waited_seconds: float = 0.0
    cause: int = CAUSE_NORMAL_CLEARING
    during_outage: bool = False
    outage_seconds: float = 0.0


@dataclass(frozen=True)
class CallRecovered(VoiceEvent):
    """After a reconnect, a live channel that Centrale had marked (by its channel
    variables) but no longer had in memory: e.g. Centrale restarted mid-call."""

    topic: ClassVar[str] = "voice.call_recovered"

    call_id: str = ""
    task_id: str | None = None
    state: str = ""
    # Every Centrale variable read back from the channel (CENTRALE_CASE_ID, ...): what
    # a restarted Centrale needs to queue a waiting caller again.
    variables: dict[str, str] = field(default_factory=dict)


def _base(message: Mapping[str, Any]) -> dict[str, str]:
    uniqueid = _text(message, "Uniqueid")
    return {
        "uniqueid": uniqueid,
        "channel": _text(message, "Channel"),
        "linkedid": _text(message, "Linkedid") or uniqueid,
    }


def _parse_cause(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        return 0


def map_ami_event(message: Mapping[str, Any]) -> VoiceEvent | None:
    """The domain event an AMI event stands for, or None for events we do not use.

    Unknown or partial events (no Uniqueid) return None rather than raise: AMI grows
    new events with every Asterisk release and a truncated frame must not stop the
    stream.
    """
    name = _text(message, "Event")
    if not name or not _text(message, "Uniqueid"):
        return None
    base = _base(message)
    if name == "Newchannel":
        return ChannelCreated(
            **base,
            caller_id=_opt(message, "CallerIDNum"),
            caller_name=_opt(message, "CallerIDName"),
            context=_text(message, "Context"),
            exten=_text(message, "Exten"),
        )
    if name == "DTMFEnd":
        if _text(message, "Direction") != "Received":
            return None
        return DtmfReceived(**base, digit=_text(message, "Digit"))
    if name == "BridgeEnter":
        return BridgeEntered(**base, bridge_id=_text(message, "BridgeUniqueid"))
    if name == "BridgeLeave":
        return BridgeLeft(**base, bridge_id=_text(message, "BridgeUniqueid"))
    if name == "DialBegin":
        return DialStarted(
            **base,
            dest_uniqueid=_text(message, "DestUniqueid"),
            dest_channel=_text(message, "DestChannel"),
            dial_string=_text(message, "DialString"),
        )
    if name == "DialEnd":
        return DialEnded(
            **base,
            dest_uniqueid=_text(message, "DestUniqueid"),
            dest_channel=_text(message, "DestChannel"),
            dial_status=_text(message, "DialStatus"),
        )
    if name == "Hangup":
        return ChannelHungUp(
            **base,
            cause=_parse_cause(_text(message, "Cause")),
            cause_text=_text(message, "Cause-txt"),
        )
    return None


@dataclass
class EventCounters:
    """What the AMI stream carried, for logs, metrics and tests."""

    received: int = 0
    mapped: int = 0
    ignored: int = 0
    malformed: int = 0
    by_name: dict[str, int] = field(default_factory=dict)
