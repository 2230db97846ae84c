"""The browser phone's signalling messages, checked before anything acts on them.

The page and the server exchange JSON frames over the desktop's authenticated
websocket (the web layer hands them over unread, see `ports.BrowserPhonePort`).
Every frame the page sends is parsed here into a `PageMessage`, or refused with a
`SignallingError` whose text goes back to the page: a malformed SDP or ICE candidate
never reaches aiortc, and never harms the call it names.

From the page:
- `phone.offer`     {offer_id, sdp}: answer a ringing call (the SDP offer of the page)
- `phone.resume`    {call_id, sdp}: a new media path for a call in its grace period
                    (the page was reloaded, or ICE dropped)
- `phone.candidate` {call_id | offer_id, candidate, sdp_mid?, sdp_mline_index?}
- `phone.reject`    {offer_id}
- `phone.hangup`    {call_id}
- `phone.dtmf`      {call_id, digits}: sent on the far leg as RFC 4733 events

To the page: `phone.ring`, `phone.answer` {sdp}, `phone.connected`, `phone.ended`,
`phone.active` (a call is waiting for this page after a reload), `phone.stop_ringing`,
`phone.error` {error, ref}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_SDP_BYTES = 16 * 1024
MAX_CANDIDATE_BYTES = 512
MAX_DIGITS = 32
_DIGITS = re.compile(rf"^[0-9*#A-Da-d]{{1,{MAX_DIGITS}}}$")
_REF = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")
# RFC 8839 section 5.1: foundation component-id transport priority address port typ type
_CANDIDATE = re.compile(
    r"^(?:a=)?candidate:(?P<foundation>[A-Za-z0-9+/]{1,32}) (?P<component>[0-9]{1,3}) "
    r"(?P<transport>[A-Za-z]+) (?P<priority>[0-9]{1,10}) (?P<address>[A-Za-z0-9.:\-]{1,255}) "
    r"(?P<port>[0-9]{1,5}) typ (?P<type>host|srflx|prflx|relay)(?: .*)?$")
_SDP_LINE = re.compile(r"^[a-z]=.*$")

PAGE_TYPES = ("phone.offer", "phone.resume", "phone.candidate", "phone.reject",
              "phone.hangup", "phone.dtmf")


class SignallingError(ValueError):
    """A frame from the page that cannot be acted on; the text is shown to the page."""

    def __init__(self, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.ref = ref


@dataclass(frozen=True)
class PageMessage:
    type: str
    offer_id: str | None = None
    call_id: str | None = None
    sdp: str | None = None
    candidate: str | None = None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    digits: str | None = None

    @property
    def ref(self) -> str | None:
        return self.call_id or self.offer_id


def check_sdp(sdp: Any) -> str:
    """An SDP offer a browser could have written: text, a size limit, `v=0` first,
    every line `x=...`, one audio section, ICE credentials and a DTLS fingerprint
    (WebRTC media is always DTLS-SRTP)."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignallingError("sdp: missing or not text")
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise SignallingError(f"sdp: longer than {MAX_SDP_BYTES} bytes")
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0":
        raise SignallingError("sdp: does not start with v=0")
    for number, line in enumerate(lines, start=1):
        if not _SDP_LINE.match(line):
            raise SignallingError(f"sdp: line {number} is not a type=value line: {line[:40]!r}")
    if not any(line.startswith("m=audio ") for line in lines):
        raise SignallingError("sdp: no audio section (m=audio)")
    if not any(line.startswith("a=ice-ufrag:") for line in lines):
        raise SignallingError("sdp: no ICE credentials (a=ice-ufrag)")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise SignallingError("sdp: no DTLS fingerprint (a=fingerprint)")
    return sdp if sdp.endswith("\n") else sdp + "\r\n"


def check_candidate(candidate: Any) -> str:
    """One ICE candidate line (RFC 8839); an empty string is end-of-candidates."""
    if not isinstance(candidate, str):
        raise SignallingError("candidate: not text")
    if candidate == "":
        return candidate
    if len(candidate) > MAX_CANDIDATE_BYTES:
        raise SignallingError(f"candidate: longer than {MAX_CANDIDATE_BYTES} characters")
    match = _CANDIDATE.match(candidate)
    if match is None:
        raise SignallingError("candidate: not an ICE candidate line "
                              "(candidate:foundation component transport priority "
                              "address port typ type)")
    if not 0 < int(match["port"]) < 65536:
        raise SignallingError("candidate: port out of range")
    if match["transport"].lower() not in ("udp", "tcp"):
        raise SignallingError("candidate: transport is neither UDP nor TCP")
    return candidate


def _ref(frame: dict[str, Any], key: str, kind: str) -> str:
    value = frame.get(key)
    if not isinstance(value, str) or not _REF.match(value):
        raise SignallingError(f"{kind}: {key} missing or malformed")
    return value


def parse_page_message(frame: Any) -> PageMessage:
    """Check one frame of the page; raises SignallingError with what is wrong."""
    if not isinstance(frame, dict):
        raise SignallingError("frame is not a JSON object")
    kind = frame.get("type")
    if kind not in PAGE_TYPES:
        raise SignallingError(f"unknown phone message {str(kind)[:40]!r}")
    ref = frame.get("call_id") or frame.get("offer_id")
    ref = ref if isinstance(ref, str) and _REF.match(ref) else None
    try:
        if kind == "phone.offer":
            return PageMessage(kind, offer_id=_ref(frame, "offer_id", kind),
                               sdp=check_sdp(frame.get("sdp")))
        if kind == "phone.resume":
            return PageMessage(kind, call_id=_ref(frame, "call_id", kind),
                               sdp=check_sdp(frame.get("sdp")))
        if kind == "phone.reject":
            return PageMessage(kind, offer_id=_ref(frame, "offer_id", kind))
        if kind == "phone.hangup":
            return PageMessage(kind, call_id=_ref(frame, "call_id", kind))
        if kind == "phone.dtmf":
            digits = frame.get("digits")
            if not isinstance(digits, str) or not _DIGITS.match(digits):
                raise SignallingError(f"{kind}: digits must be 1-{MAX_DIGITS} of 0-9 * # A-D")
            return PageMessage(kind, call_id=_ref(frame, "call_id", kind),
                               digits=digits.upper())
        # phone.candidate
        key = "call_id" if frame.get("call_id") is not None else "offer_id"
        index = frame.get("sdp_mline_index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)
                                  or not 0 <= index < 16):
            raise SignallingError("candidate: sdp_mline_index out of range")
        mid = frame.get("sdp_mid")
        if mid is not None and (not isinstance(mid, str) or len(mid) > 32):
            raise SignallingError("candidate: sdp_mid malformed")
        return PageMessage(kind, **{key: _ref(frame, key, kind)},
                           candidate=check_candidate(frame.get("candidate")),
                           sdp_mid=mid, sdp_mline_index=index)
    except SignallingError as exc:
        exc.ref = exc.ref or ref
        raise
