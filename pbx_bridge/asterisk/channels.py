"""What Centrale knows about the channels Asterisk holds: one entry per Uniqueid.

The registry is the memory that must survive an AMI reconnect. It is fed by AMI
events while the connection is up, and reconciled against `CoreShowChannels` (plus
the channel variables Centrale set) after every reconnect, so that:

- a channel that hung up while the connection was down is reported once as hung up
  (and as abandoned when its caller was waiting for an agent);
- a channel that is still up is kept as it is and never reported twice;
- a live channel that carries Centrale's variables but is not in memory (Centrale
  restarted) is adopted back.

It does no I/O: the AMI client feeds it and reads what to ask Asterisk.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pbx_bridge.asterisk.events import (
    CAUSE_NORMAL_CLEARING,
    BridgeEntered,
    BridgeLeft,
    CallerAbandoned,
    CallRecovered,
    ChannelCreated,
    ChannelHungUp,
    VoiceEvent,
)

log = logging.getLogger(__name__)

# Channel variables Centrale sets on the channels it handles. They live on the
# Asterisk channel, so a restarted or reconnected Centrale can read them back.
VAR_CALL_ID = "CENTRALE_CALL_ID"
VAR_TASK_ID = "CENTRALE_TASK_ID"
VAR_STATE = "CENTRALE_STATE"
VAR_OFFER_ID = "CENTRALE_OFFER_ID"
VAR_ROLE = "CENTRALE_ROLE"
# What a restarted Centrale needs to queue a waiting caller again (set when the caller
# is sent to holding): the case, the customer, the queue, the caller's IVR language and
# when the caller joined the queue (ISO 8601, so the caller keeps their place).
VAR_CASE_ID = "CENTRALE_CASE_ID"
VAR_CUSTOMER_ID = "CENTRALE_CUSTOMER_ID"
VAR_QUEUE_ID = "CENTRALE_QUEUE_ID"
VAR_LANGUAGE = "CENTRALE_LANGUAGE"
VAR_ENQUEUED_AT = "CENTRALE_ENQUEUED_AT"
CENTRALE_VARS = (
    VAR_CALL_ID, VAR_TASK_ID, VAR_STATE, VAR_OFFER_ID, VAR_ROLE,
    VAR_CASE_ID, VAR_CUSTOMER_ID, VAR_QUEUE_ID, VAR_LANGUAGE, VAR_ENQUEUED_AT,
)

STATE_IVR = "ivr"
STATE_WAITING = "waiting"
STATE_RINGING = "ringing"
STATE_CONNECTED = "connected"


@dataclass
class TrackedChannel:
    uniqueid: str
    channel: str
    linkedid: str
    caller_id: str | None = None
    caller_name: str | None = None
    created_at: float = 0.0
    announced: bool = False  # its ChannelCreated event went out
    waiting_since: float | None = None
    bridge_id: str | None = None
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def call_id(self) -> str | None:
        return self.variables.get(VAR_CALL_ID) or None

    @property
    def task_id(self) -> str | None:
        return self.variables.get(VAR_TASK_ID) or None

    @property
    def offer_id(self) -> str | None:
        return self.variables.get(VAR_OFFER_ID) or None

    @property
    def state(self) -> str:
        return self.variables.get(VAR_STATE, "")

    @property
    def is_centrale(self) -> bool:
        return bool(self.call_id or self.offer_id)


@dataclass(frozen=True)
class LiveChannel:
    """One `CoreShowChannel` entry of a resync snapshot."""

    uniqueid: str
    channel: str
    linkedid: str
    caller_id: str | None = None
    bridge_id: str | None = None

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> LiveChannel | None:
        uniqueid = str(message.get("Uniqueid", "") or "")
        if not uniqueid:
            return None
        caller = str(message.get("CallerIDNum", "") or "")
        return cls(
            uniqueid=uniqueid,
            channel=str(message.get("Channel", "") or ""),
            linkedid=str(message.get("Linkedid", "") or uniqueid),
            caller_id=None if caller in ("", "<unknown>") else caller,
            bridge_id=str(message.get("BridgeId", "") or "") or None,
        )


class ChannelRegistry:
    """Channels by Uniqueid, fed by events, reconciled by snapshots."""

    def __init__(self, clock: Any = None) -> None:
        import time

        self._monotonic = clock.monotonic if clock is not None else time.monotonic
        self._channels: dict[str, TrackedChannel] = {}
        self._by_name: dict[str, str] = {}
        # Uniqueids that hung up lately: a snapshot taken just before their Hangup
        # event must not bring them back.
        self._gone: deque[str] = deque(maxlen=4096)
        self._gone_set: set[str] = set()

    # --- queries -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._channels)

    def __contains__(self, uniqueid: object) -> bool:
        return uniqueid in self._channels

    def get(self, uniqueid: str) -> TrackedChannel | None:
        return self._channels.get(uniqueid)

    def by_name(self, channel: str) -> TrackedChannel | None:
        uniqueid = self._by_name.get(channel)
        return self._channels.get(uniqueid) if uniqueid else None

    def by_call_id(self, call_id: str) -> TrackedChannel | None:
        """The customer-side channel of a Centrale call (never an agent leg)."""
        for tracked in self._channels.values():
            if tracked.call_id == call_id and tracked.variables.get(VAR_ROLE) != "agent":
                return tracked
        return None

    def by_offer_id(self, offer_id: str) -> TrackedChannel | None:
        for tracked in self._channels.values():
            if tracked.offer_id == offer_id:
                return tracked
        return None

    def centrale_channels(self) -> list[TrackedChannel]:
        return [c for c in self._channels.values() if c.is_centrale]

    def all(self) -> list[TrackedChannel]:
        return list(self._channels.values())

    # --- updates from Centrale itself ---------------------------------------------
    def ensure(
        self, uniqueid: str, channel: str, linkedid: str | None = None, caller_id: str | None = None
    ) -> TrackedChannel:
        """The entry for a channel Centrale learnt about first-hand (a FastAGI session
        arrives before or after its Newchannel event; either order gives one entry)."""
        tracked = self._channels.get(uniqueid)
        if tracked is None:
            tracked = TrackedChannel(
                uniqueid=uniqueid,
                channel=channel,
                linkedid=linkedid or uniqueid,
                caller_id=caller_id,
                created_at=self._monotonic(),
            )
            self._channels[uniqueid] = tracked
            self._by_name[channel] = uniqueid
        return tracked

    def set_variable(self, uniqueid: str, name: str, value: str) -> None:
        tracked = self._channels.get(uniqueid)
        if tracked is None:
            return
        if value:
            tracked.variables[name] = value
        else:
            tracked.variables.pop(name, None)
        if name == VAR_STATE:
            if value == STATE_WAITING and tracked.waiting_since is None:
                tracked.waiting_since = self._monotonic()
            elif value != STATE_WAITING:
                tracked.waiting_since = None

    # --- updates from AMI events --------------------------------------------------
    def apply_varset(self, message: Mapping[str, Any]) -> None:
        name = str(message.get("Variable", "") or "")
        if name not in CENTRALE_VARS:
            return
        uniqueid = str(message.get("Uniqueid", "") or "")
        if uniqueid not in self._channels:
            channel = str(message.get("Channel", "") or "")
            linkedid = str(message.get("Linkedid", "") or "") or None
            self.ensure(uniqueid, channel, linkedid)
        self.set_variable(uniqueid, name, str(message.get("Value", "") or ""))

    def apply(self, event: VoiceEvent) -> list[VoiceEvent]:
        """Update from a mapped event. Returns the events to emit: the event itself,
        plus derived ones (abandon); nothing for a duplicate Newchannel."""
        if isinstance(event, ChannelCreated):
            if event.uniqueid in self._gone_set:
                return []
            tracked = self._channels.get(event.uniqueid)
            if tracked is None:
                tracked = self.ensure(
                    event.uniqueid, event.channel, event.linkedid, event.caller_id
                )
            tracked.caller_id = tracked.caller_id or event.caller_id
            tracked.caller_name = tracked.caller_name or event.caller_name
            tracked.linkedid = event.linkedid or tracked.linkedid
            if tracked.announced:
                return []  # a duplicate: never report a channel twice
            tracked.announced = True
            return [event]
        if isinstance(event, ChannelHungUp):
            tracked = self._channels.get(event.uniqueid)
            if tracked is None:
                if event.uniqueid in self._gone_set:
                    return []  # already reported (by a resync)
                self._remember_gone(event.uniqueid)
                return [event]
            return self._forget(tracked, event.cause, event.cause_text, during_outage=False)
        tracked = self._channels.get(event.uniqueid)
        if tracked is not None:
            if isinstance(event, BridgeEntered):
                tracked.bridge_id = event.bridge_id
            elif isinstance(event, BridgeLeft) and tracked.bridge_id == event.bridge_id:
                tracked.bridge_id = None
        return [event]

    def _forget(
        self, tracked: TrackedChannel, cause: int, cause_text: str, *, during_outage: bool,
        outage_seconds: float = 0.0,
    ) -> list[VoiceEvent]:
        self._channels.pop(tracked.uniqueid, None)
        self._remember_gone(tracked.uniqueid)
        if self._by_name.get(tracked.channel) == tracked.uniqueid:
            del self._by_name[tracked.channel]
        out: list[VoiceEvent] = [
            ChannelHungUp(
                uniqueid=tracked.uniqueid,
                channel=tracked.channel,
                linkedid=tracked.linkedid,
                cause=cause,
                cause_text=cause_text,
                call_id=tracked.call_id,
                during_outage=during_outage,
                outage_seconds=outage_seconds,
            )
        ]
        if tracked.state == STATE_WAITING and tracked.call_id:
            waited = 0.0
            if tracked.waiting_since is not None:
                waited = max(0.0, self._monotonic() - tracked.waiting_since - outage_seconds)
            out.append(
                CallerAbandoned(
                    uniqueid=tracked.uniqueid,
                    channel=tracked.channel,
                    linkedid=tracked.linkedid,
                    call_id=tracked.call_id,
                    task_id=tracked.task_id or "",
                    waited_seconds=round(waited, 3),
                    cause=cause,
                    during_outage=during_outage,
                    outage_seconds=outage_seconds,
                )
            )
        return out

    def _remember_gone(self, uniqueid: str) -> None:
        if uniqueid in self._gone_set:
            return
        if len(self._gone) == self._gone.maxlen:
            self._gone_set.discard(self._gone[0])
        self._gone.append(uniqueid)
        self._gone_set.add(uniqueid)

    # --- reconcile after a reconnect ----------------------------------------------
    def missing_from(self, live: Iterable[LiveChannel]) -> list[TrackedChannel]:
        present = {c.uniqueid for c in live}
        return [c for c in self._channels.values() if c.uniqueid not in present]

    def unknown_in(self, live: Iterable[LiveChannel]) -> list[LiveChannel]:
        return [
            c for c in live if c.uniqueid not in self._channels and c.uniqueid not in self._gone_set
        ]

    def reconcile(
        self,
        live: list[LiveChannel],
        variables: Mapping[str, Mapping[str, str]],
        *,
        known_before: set[str] | None = None,
        outage_seconds: float = 0.0,
    ) -> list[VoiceEvent]:
        """Bring memory in line with a snapshot of live channels.

        `variables` holds, for channels unknown to memory, the Centrale variables read
        from Asterisk (Getvar). `known_before` is the set of tracked Uniqueids when the
        snapshot was asked for: a channel that appeared after that is not "missing".
        `outage_seconds` is how long the link was down (carried by the hang-ups found).
        Returns the events to emit.
        """
        out: list[VoiceEvent] = []
        for tracked in self.missing_from(live):
            if known_before is not None and tracked.uniqueid not in known_before:
                continue
            out.extend(
                self._forget(
                    tracked, CAUSE_NORMAL_CLEARING, "gone during AMI outage", during_outage=True,
                    outage_seconds=outage_seconds,
                )
            )
        for entry in live:
            if entry.uniqueid in self._gone_set:
                continue  # its Hangup event arrived after the snapshot was taken
            tracked = self._channels.get(entry.uniqueid)
            if tracked is not None:
                tracked.bridge_id = entry.bridge_id
                if tracked.channel != entry.channel:  # renamed (masquerade)
                    self._by_name.pop(tracked.channel, None)
                    tracked.channel = entry.channel
                    self._by_name[entry.channel] = entry.uniqueid
                continue
            tracked = self.ensure(entry.uniqueid, entry.channel, entry.linkedid, entry.caller_id)
            tracked.announced = True  # it predates this session: no ChannelCreated for it
            tracked.bridge_id = entry.bridge_id
            for name, value in variables.get(entry.uniqueid, {}).items():
                self.set_variable(entry.uniqueid, name, value)
            if tracked.call_id:
                log.info("adopted live Centrale call %s on %s", tracked.call_id, tracked.channel)
                out.append(
                    CallRecovered(
                        uniqueid=tracked.uniqueid,
                        channel=tracked.channel,
                        linkedid=tracked.linkedid,
                        call_id=tracked.call_id,
                        task_id=tracked.task_id,
                        state=tracked.state,
                        variables=dict(tracked.variables),
                    )
                )
        return out
