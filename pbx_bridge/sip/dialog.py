"""`Call`: one SIP dialog (early or confirmed) with its media and call record.

The bottom of the SIP core's call layers: a dialog knows its identifiers, its route,
its RTP session and its SDP offer/answer state; it imports nothing of the legs, the
dialer or the server above it. In-dialog requests are built here and sent by whoever
owns the transactions (the server), which passes in its Via and Contact.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ivr.call_leg import CallLeg
from pbx_bridge.media.rtp import RtpSession
from pbx_bridge.media.srtp import CryptoAttribute, SrtpContext
from pbx_bridge.sip.message import SipRequest
from pbx_bridge.sip.ports import CallRecord
from pbx_bridge.sip.sdes import answer_keys, answered_key
from pbx_bridge.sip.sdp import (
    ANSWER_DIRECTION,
    DEFAULT_EVENT_PT,
    PCMA,
    PCMU,
    SdpOffer,
    build_sdp,
    choose_codec,
)
from pbx_bridge.sip.transaction import ServerTransaction
from pbx_bridge.sip.transport import Peer

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER, REFER"
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
    leg: CallLeg | None = None  # the SipCallLeg on this dialog (set by the layer above)
    bridged_to: Call | None = None
    session_expires: str | None = None
    agent_username: str | None = None
    task: asyncio.Task[None] | None = None
    srtp_policy: str = "off"  # this endpoint's SRTP policy (sdes.py)
    local_crypto: CryptoAttribute | None = None  # our SDES key, offered or answered
    srtp_required_proto: bool = False  # the offer was RTP/SAVP: answer the same
    user_agent: str = "Centrale"

    @property
    def secure_signalling(self) -> bool:
        """SDES keys may be sent and accepted: the dialog's signalling is TLS."""
        return self.peer.transport == "TLS"

    def in_dialog_request(self, method: str, *, via: str, contact: str) -> SipRequest:
        """A request inside this dialog (BYE, re-INVITE, NOTIFY); the caller sends it."""
        req = SipRequest(method=method, uri=self.remote_target)
        req.add("Via", via)
        req.add("Max-Forwards", "70")
        for route in self.route_set:
            req.add("Route", route)
        req.add("From", f"<{self.local_uri}>;tag={self.local_tag}")
        req.add("To", self.remote_uri)
        req.add("Call-ID", self.call_id)
        self.local_cseq += 1
        req.add("CSeq", f"{self.local_cseq} {method}")
        req.add("Contact", contact)
        req.add("User-Agent", self.user_agent)
        return req

    def apply_offer(self, offer: SdpOffer | None) -> None:
        """Take the peer's SDP: codec, DTMF payload type, where to send, and hold."""
        rtp = self.rtp
        if rtp is None or offer is None:
            return
        rtp.payload_type = choose_codec(offer)
        rtp.remote_event_pt = offer.event_payload_type()
        if not offer.on_hold and not rtp.latched:
            rtp.remote = (offer.address, offer.port)
        elif offer.address not in ("0.0.0.0", "::") and offer.port:
            rtp.remote = (offer.address, offer.port)
            rtp.latched = False
        self.remote_on_hold = offer.on_hold
        rtp.muted = offer.on_hold  # sendonly/inactive/0.0.0.0: the peer wants no media
        if ":" in rtp.engine.host and rtp.remote is not None and ":" not in rtp.remote[0]:
            rtp.remote = ("::ffff:" + rtp.remote[0], rtp.remote[1])  # dual-stack socket

    def apply_remote_offer(self, offer: SdpOffer | None) -> None:
        """An offer from the peer (INVITE, re-INVITE, UPDATE): media, then SDES keys
        per our policy (raises `SdpError` -> 488 when SRTP cannot be agreed)."""
        if offer is not None and self.rtp is not None:
            keys = answer_keys(self.srtp_policy, offer, self.secure_signalling)
            self.srtp_required_proto = offer.proto == "RTP/SAVP"
            if keys is None:
                self.local_crypto = None
                self.rtp.srtp = None
            else:
                local, remote = keys
                current = self.rtp.srtp
                if current is None or current.remote != remote:
                    if self.local_crypto is not None and self.local_crypto.suite == local.suite:
                        local = CryptoAttribute(remote.tag, local.suite, self.local_crypto.key)
                    self.local_crypto = local
                    self.rtp.srtp = SrtpContext(local, remote, label=f"call {self.call_id}")
        self.apply_offer(offer)

    def apply_answer(self, answer: SdpOffer) -> None:
        """The peer's answer to our offer: media, and its key for the one we sent."""
        remote = answered_key(self.local_crypto, answer, self.srtp_policy)
        if self.rtp is not None:
            if remote is not None and self.local_crypto is not None:
                self.rtp.srtp = SrtpContext(self.local_crypto, remote,
                                            label=f"call {self.call_id}")
            else:
                self.local_crypto = None
                self.rtp.srtp = None
        self.apply_offer(answer)

    def local_sdp(self, host: str) -> bytes:
        """Our SDP: an offer (both laws) or the answer to the peer's offer."""
        assert self.rtp is not None
        # our key goes only into SDP sent over TLS (sdes.py sets it only then)
        crypto = self.local_crypto if self.secure_signalling else None
        proto = "RTP/SAVP" if crypto is not None and (
            self.srtp_required_proto or self.srtp_policy == "required") else "RTP/AVP"
        if self.offer is None:
            return build_sdp(host, self.rtp.local_port, [PCMU, PCMA], DEFAULT_EVENT_PT,
                             crypto=crypto, proto=proto)
        event_pt = self.offer.event_payload_type()
        direction = ANSWER_DIRECTION.get(self.offer.direction, "sendrecv")
        return build_sdp(host, self.rtp.local_port, [self.rtp.payload_type], event_pt,
                         direction, crypto=crypto, proto=proto)
