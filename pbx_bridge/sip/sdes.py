"""SDES key negotiation (RFC 4568) per the endpoint's SRTP policy.

Policies (trunk `srtp`, phones `sip.phone_srtp`): **off** — plain RTP; an offer that
requires SRTP (RTP/SAVP) is refused. **optional** — SRTP when the peer offers or
accepts a key and the signalling is TLS, plain RTP otherwise. **required** — a call
without SRTP over TLS is refused (488 on an offer; an outbound call is not placed).

SDES keys travel in the SDP, so they are exactly as secret as the signalling: keys are
only ever put in SDP sent over TLS, and a key received over UDP/TCP is never used.
Errors are `SdpError`s, which the server answers with 488 and the reason.
"""

from __future__ import annotations

from pbx_bridge.media.srtp import SUITES, CryptoAttribute
from pbx_bridge.sip.sdp import SdpError, SdpOffer

SRTP_POLICIES = ("off", "optional", "required")


def answer_keys(policy: str, offer: SdpOffer, secure: bool
                ) -> tuple[CryptoAttribute, CryptoAttribute] | None:
    """(our key, the peer's key) when the answer uses SRTP, None for plain RTP."""
    requires = offer.proto == "RTP/SAVP"
    usable = [c for c in offer.crypto if c.supported]
    if policy == "off":
        if requires:
            raise SdpError("SRTP is not enabled for this endpoint")
        return None
    if requires and not offer.crypto:
        raise SdpError("RTP/SAVP without a=crypto (only SDES keying is supported)")
    if offer.crypto and not usable:
        if requires or policy == "required":
            raise SdpError(f"no supported a=crypto suite ({', '.join(SUITES)})")
        return None
    if usable and not secure:
        if requires or policy == "required":
            raise SdpError("SDES keys are only accepted over TLS")
        return None
    if not usable:
        if policy == "required":
            raise SdpError("SRTP is required")
        return None
    remote = usable[0]
    return CryptoAttribute.generate(remote.tag, remote.suite), remote


def offer_key(policy: str, secure: bool) -> CryptoAttribute | None:
    """Our key for an offer, or None (off, or not over TLS: never sent in clear)."""
    if policy == "off" or not secure:
        return None
    return CryptoAttribute.generate()


def answered_key(offered: CryptoAttribute | None, answer: SdpOffer, policy: str
                 ) -> CryptoAttribute | None:
    """The peer's key from its answer to our offer (same tag and suite), or None."""
    if offered is None:
        return None
    remote = next((c for c in answer.crypto if c.supported and c.tag == offered.tag
                   and c.suite == offered.suite), None)
    if remote is None and policy == "required":
        raise SdpError("the answer has no SRTP key")
    return remote


__all__ = ["SRTP_POLICIES", "answer_keys", "answered_key", "offer_key"]
