"""`Call`: one SIP dialog (early or confirmed) with its media and call record."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pbx_bridge.sip.message import SipRequest
from pbx_bridge.sip.ports import CallRecord
from pbx_bridge.sip.rtp import RtpSession
from pbx_bridge.sip.sdp import SdpOffer
from pbx_bridge.sip.transaction import ServerTransaction, new_branch
from pbx_bridge.sip.transport import Peer

if TYPE_CHECKING:
    from pbx_bridge.sip.leg import SipCallLeg
    from pbx_bridge.sip.server import SipServer

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER"
SUPPORTED = "timer"  # session timers are tolerated (RFC 4028), never refreshed by us


@dataclass
class Call:
    """One SIP dialog (early or confirmed) and its media."""

    call_id: str
    direction: str  # "inbound" (we are UAS) | "outbound" (we are UAC)
    local_tag: str
    local_uri: str
    remote_uri: str  # From/To value of the far end (with its tag, once known)
    remote_target: str  # Request-URI for in-dialog requests
    peer: Peer  # where in-dialog requests are sent
    record: CallRecord
    remote_tag: str | None = None
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int = 0
    invite_tx: ServerTransaction | None = None
    invite_request: SipRequest | None = None
    rtp: RtpSession | None = None
    offer: SdpOffer | None = None
    answered: bool = False
    remote_on_hold: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    leg: SipCallLeg | None = None
    bridged_to: Call | None = None
    session_expires: str | None = None
    agent_username: str | None = None
    task: asyncio.Task[None] | None = None

    def in_dialog_request(self, method: str, server: SipServer) -> SipRequest:
        req = SipRequest(method=method, uri=self.remote_target)
        req.add("Via", server.transport.via_for(self.peer.transport, new_branch(),
                                                server.advertised_host))
        req.add("Max-Forwards", "70")
        for route in self.route_set:
            req.add("Route", route)
        req.add("From", f"<{self.local_uri}>;tag={self.local_tag}")
        req.add("To", self.remote_uri)
        req.add("Call-ID", self.call_id)
        self.local_cseq += 1
        req.add("CSeq", f"{self.local_cseq} {method}")
        req.add("Contact", server.contact_header(self.peer.transport))
        req.add("User-Agent", "Centrale")
        return req
