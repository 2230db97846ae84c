"""SDP offer/answer (RFC 4566, RFC 3264) for audio with G.711 and RFC 4733 events.

Only what a G.711 contact centre needs: one audio stream, PCMU (0) or PCMA (8), and
telephone-event on whatever dynamic payload type the peer chose.  Hold is read from
the direction attribute or the RFC 2543 `c=0.0.0.0` convention.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from core.numbers import ascii_int
from pbx_bridge.media.g711 import PCMA as PCMA
from pbx_bridge.media.g711 import PCMU as PCMU
from pbx_bridge.media.srtp import CryptoAttribute, CryptoError

CODEC_NAMES = {PCMU: "PCMU", PCMA: "PCMA"}
DEFAULT_EVENT_PT = 101

_session_ids = itertools.count(int(time.time()))


class SdpError(ValueError):
    """An SDP body that cannot be negotiated (answered with 488 or 400)."""


@dataclass
class SdpOffer:
    address: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)
    direction: str = "sendrecv"
    ptime: int | None = None
    proto: str = "RTP/AVP"  # RTP/SAVP: the offerer requires SRTP
    crypto: list[CryptoAttribute] = field(default_factory=list)  # SDES (RFC 4568)

    @property
    def on_hold(self) -> bool:
        return self.direction in ("sendonly", "inactive") or self.address in ("0.0.0.0", "::")

    def event_payload_type(self) -> int | None:
        for pt, name in self.rtpmap.items():
            if name.lower().startswith("telephone-event/8000"):
                return pt
        return None

    def codec_name(self, pt: int) -> str:
        if pt in self.rtpmap:
            return self.rtpmap[pt].split("/")[0].upper()
        return CODEC_NAMES.get(pt, "")


def parse_sdp(body: bytes) -> SdpOffer:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    session_addr: str | None = None
    media_addr: str | None = None
    port: int | None = None
    pts: list[int] = []
    rtpmap: dict[int, str] = {}
    direction = "sendrecv"
    ptime = None
    proto = "RTP/AVP"
    crypto: list[CryptoAttribute] = []
    in_audio = False
    seen_audio = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"malformed SDP line {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            in_audio = bool(parts) and parts[0] == "audio" and not seen_audio
            if in_audio:
                port = ascii_int(parts[1].split("/")[0], max_digits=5) \
                    if len(parts) >= 4 else None
                if port is None:
                    raise SdpError(f"malformed m= line {value[:60]!r}")
                if port > 65535:
                    raise SdpError("media port out of range")
                numbers = [ascii_int(p, max_digits=3) for p in parts[3:]]
                if any(p is None for p in numbers):
                    raise SdpError("non-numeric payload type")
                pts = [p for p in numbers if p is not None]
                proto = parts[2].upper()
                if any(not 0 <= p <= 127 for p in pts):
                    raise SdpError("payload type out of range")
                seen_audio = True
        elif kind == "c":
            parts = value.split()
            if len(parts) != 3 or parts[0] != "IN":
                raise SdpError(f"malformed c= line {value[:60]!r}")
            addr = parts[2].split("/")[0]
            if in_audio:
                media_addr = addr
            elif not seen_audio:
                session_addr = addr
        elif kind == "a" and (in_audio or not seen_audio):
            name, _, arg = value.partition(":")
            if name == "rtpmap" and in_audio:
                pt_text, _, enc = arg.partition(" ")
                pt = ascii_int(pt_text, max_digits=3)
                if pt is not None:
                    rtpmap[pt] = enc.strip()
            elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = name
            elif name == "crypto" and in_audio:
                try:
                    crypto.append(CryptoAttribute.parse(arg))
                except CryptoError as exc:
                    raise SdpError(str(exc)) from None
            elif name == "ptime" and ascii_int(arg.strip(), max_digits=4) is not None:
                ptime = ascii_int(arg.strip(), max_digits=4)
    if port is None:
        raise SdpError("no audio stream in SDP")
    address = media_addr or session_addr
    if not address:
        raise SdpError("no connection address in SDP")
    return SdpOffer(address, port, pts, rtpmap, direction, ptime, proto, crypto)


def choose_codec(offer: SdpOffer, preferred: tuple[int, ...] = (PCMU, PCMA)) -> int:
    """The first payload type of the offer we support (the offerer's preference)."""
    for pt in offer.payload_types:
        name = offer.codec_name(pt)
        if (pt == PCMU and name in ("PCMU", "")) or (pt == PCMA and name in ("PCMA", "")):
            if pt in preferred:
                return pt
        elif name == "PCMU" and PCMU in preferred:
            return pt  # dynamic PT mapped to PCMU: unusual, accept as PCMU
    raise SdpError("no common codec (PCMU/PCMA required)")


def build_sdp(
    address: str,
    port: int,
    payload_types: list[int],
    event_pt: int | None,
    direction: str = "sendrecv",
    session_id: int | None = None,
    *,
    crypto: CryptoAttribute | None = None,
    proto: str = "RTP/AVP",
) -> bytes:
    """`crypto` adds our SDES key (only ever put in SDP sent over TLS: the caller
    checks); `proto` RTP/SAVP says SRTP is required."""
    sid = session_id if session_id is not None else next(_session_ids)
    fmts = [*payload_types, *([event_pt] if event_pt is not None else [])]
    family = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=centrale {sid} {sid} IN {family} {address}",
        "s=centrale",
        f"c=IN {family} {address}",
        "t=0 0",
        f"m=audio {port} {proto} {' '.join(str(p) for p in fmts)}",
    ]
    if crypto is not None:
        lines.append(f"a=crypto:{crypto.serialize()}")
    for pt in payload_types:
        lines.append(f"a=rtpmap:{pt} {CODEC_NAMES.get(pt, 'PCMU')}/8000")
    if event_pt is not None:
        lines.append(f"a=rtpmap:{event_pt} telephone-event/8000")
        lines.append(f"a=fmtp:{event_pt} 0-16")
    lines.append("a=ptime:20")
    lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
