"""Asterisk backend: Asterisk does the media, Centrale the logic (AMI + FastAGI).

Public API (what `centrale/` wires):

- `AsteriskBackend(settings.server.asterisk, inbound=..., hold_announcer=...)`:
  `start()` / `stop()`, `add_listener(fn)` for domain voice events,
  `ring_agent(AgentOffer)` -> `RingResult`, `place_callback(CallbackRequest)`,
  `agent_endpoint(sip_username)`, `hangup_call(call_id)`.
- `AgiCallLeg`: the `ivr.call_leg.CallLeg` the inbound handler receives; plus
  `send_to_holding(task_id=...)` to park the caller for the ACD.
- Ports: `InboundCallHandler`, `HoldAnnouncer`, `PromptResolver`.
- Events: `VoiceEvent` subclasses, each with `to_bus_event()`.
"""

from pbx_bridge.asterisk.ami import (
    AmiClient,
    AmiConnectionLost,
    AmiError,
    AmiLoginError,
    AmiNotConnected,
    AmiTimeout,
    Backoff,
)
from pbx_bridge.asterisk.backend import AsteriskBackend
from pbx_bridge.asterisk.call_leg import AgiCallLeg
from pbx_bridge.asterisk.events import (
    BridgeEntered,
    BridgeLeft,
    CallerAbandoned,
    CallRecovered,
    ChannelCreated,
    ChannelHungUp,
    DialEnded,
    DialStarted,
    DtmfReceived,
    VoiceEvent,
)
from pbx_bridge.asterisk.ports import (
    AgentOffer,
    Announcement,
    CallbackRequest,
    HoldAnnouncer,
    InboundCallHandler,
    PromptResolver,
    RingOutcome,
    RingResult,
    default_prompt_resolver,
)

__all__ = [
    "AgentOffer",
    "AgiCallLeg",
    "AmiClient",
    "AmiConnectionLost",
    "AmiError",
    "AmiLoginError",
    "AmiNotConnected",
    "AmiTimeout",
    "Announcement",
    "AsteriskBackend",
    "Backoff",
    "BridgeEntered",
    "BridgeLeft",
    "CallRecovered",
    "CallbackRequest",
    "CallerAbandoned",
    "ChannelCreated",
    "ChannelHungUp",
    "DialEnded",
    "DialStarted",
    "DtmfReceived",
    "HoldAnnouncer",
    "InboundCallHandler",
    "PromptResolver",
    "RingOutcome",
    "RingResult",
    "VoiceEvent",
    "default_prompt_resolver",
]
