"""The simulator's phone: a small SIP caller (UAC) over loopback UDP.

Until the browser phone lands (WebRTC, its own issue), the simulator's page drives this
caller on the server: it INVITEs the demo's number at the node's embedded SIP core from
the customer's number (the demo trusts 127.0.0.1 as a trunk, so the From header is the
caller ID), sends a soft tone as the customer's voice (G.711 µ-law), sends the dial
pad's digits as RFC 2833 telephone events, records what it hears so the page can play
it back, and hangs up with BYE (or CANCEL while it still rings).

It is deliberately small: one dialog, UDP only, no authentication, no re-routing. It
is not a softphone and lives here only for the demo (see docs/demo.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import secrets
import struct
import time
import wave
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PCMU, TELEPHONE_EVENT = 0, 101
FRAME = 160  # 20 ms at 8 kHz
MAX_RECORDED_SECONDS = 120
DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}
T1 = 0.5


# ---- G.711 µ-law -------------------------------------------------------------------

def ulaw_encode(sample: int) -> int:
    """One 16-bit linear sample to µ-law (ITU-T G.711)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = min(7, max(0, (magnitude >> 7).bit_length() - 1))
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_decode(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if sign else sample


_ULAW_TO_LINEAR = [ulaw_decode(b) for b in range(256)]


def tone_frames(hz: float = 440.0, amplitude: int = 2500, frames: int = 50) -> list[bytes]:
    """A second of a soft tone, in 20 ms µ-law frames: the simulated customer's voice."""
    out = []
    for f in range(frames):
        samples = (int(amplitude * math.sin(2 * math.pi * hz * (f * FRAME + i) / 8000))
                   for i in range(FRAME))
        out.append(bytes(ulaw_encode(s) for s in samples))
    return out


_TONE = tone_frames()


# ---- SIP text -----------------------------------------------------------------------

def parse_sip(data: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    compact = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
               "l": "content-length", "c": "content-type"}
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.setdefault(compact.get(key, key), []).append(value.strip())
    return lines[0], headers, body


def first_header(headers: dict[str, list[str]], name: str) -> str:
    return (headers.get(name) or [""])[0]


def media_address(sdp: bytes) -> tuple[str, int] | None:
    host, port = "", 0
    for line in sdp.decode(errors="replace").splitlines():
        if line.startswith("c=IN IP4 "):
            host = line.split()[-1]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
    return (host, port) if host and port else None


@dataclass
class CallEvent:
    at: float
    text: str


@dataclass
class SimulatedCall:
    """One call from `caller` (the customer's number) to `dial` at the SIP core."""

    caller: str
    dial: str
    sip_port: int
    display_name: str = ""
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    state: str = "new"  # new, calling, ringing, answered, ended
    reason: str = ""
    events: list[CallEvent] = field(default_factory=list)
    digits_sent: str = ""
    packets_received: int = 0
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._sip_port_local = 0
        self._rtp_port_local = 0
        self._call_id = secrets.token_hex(10) + "@centrale-demo"
        self._from_tag = secrets.token_hex(4)
        self._to_header = ""
        self._invite_branch = ""
        self._cseq = 1
        self._remote_media: tuple[str, int] | None = None
        self._remote_target = ""
        self._pending: dict[str, asyncio.Future[tuple[str, dict[str, list[str]], bytes]]] = {}
        self._provisional = asyncio.Event()
        self._ended = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._retransmit: asyncio.Task[None] | None = None
        self._recorded = bytearray()
        self._seq = secrets.randbelow(1 << 15)
        self._timestamp = secrets.randbelow(1 << 30)
        self._ssrc = secrets.randbits(32)
        self._dtmf_lock = asyncio.Lock()
        self._sending_dtmf = False

    # ---- public ----------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.events.append(CallEvent(time.time(), text))
        del self.events[:-50]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sip, _ = await loop.create_datagram_endpoint(
            lambda: Receiver(self._on_sip), local_addr=("127.0.0.1", 0))
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: Receiver(self._on_rtp), local_addr=("127.0.0.1", 0))
        self._sip_port_local = self._sip.get_extra_info("sockname")[1]
        self._rtp_port_local = self._rtp.get_extra_info("sockname")[1]
        self._to_header = f"<sip:{self.dial}@127.0.0.1:{self.sip_port}>"
        self._invite_branch = self._branch()
        self.state = "calling"
        self.note(f"calling {self.dial} from {self.caller}")
        invite = self._request("INVITE", self._invite_branch, 1, body=self._sdp())
        self._retransmit = asyncio.create_task(self._retransmit_invite(invite))

    async def send_digit(self, digit: str) -> None:
        """One RFC 2833 event: ~100 ms of tone, three end packets, same timestamp."""
        if digit not in DTMF_EVENTS:
            raise ValueError(f"{digit!r} is not a dial pad key")
        if self.state != "answered" or self._remote_media is None:
            raise RuntimeError("the call is not connected")
        async with self._dtmf_lock:
            self._sending_dtmf = True
            try:
                event = DTMF_EVENTS[digit]
                ts = self._timestamp
                for n in range(1, 6):
                    self._send_rtp(TELEPHONE_EVENT, struct.pack("!BBH", event, 10, n * FRAME),
                                   marker=n == 1, timestamp=ts)
                    await asyncio.sleep(0.02)
                for _ in range(3):
                    self._send_rtp(TELEPHONE_EVENT, struct.pack("!BBH", event, 0x80 | 10,
                                                                6 * FRAME), timestamp=ts)
                self._timestamp += 6 * FRAME
            finally:
                self._sending_dtmf = False
        self.digits_sent += digit
        self.note(f"pressed {digit}")

    async def hang_up(self) -> None:
        if self.state == "answered":
            self._cseq += 1
            done = self._expect(f"{self._cseq} BYE")
            request = self._request("BYE", self._branch(), self._cseq)
            for attempt in range(4):
                self._send_sip(request)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(done), T1 * (2 ** attempt))
                    break
            self._end("you hung up")
        elif self.state in ("calling", "ringing"):
            if self._provisional.is_set():
                self._send_sip(self._request("CANCEL", self._invite_branch, 1))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), 4)
            self._end("you hung up before it was answered")
        await self.close()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    def recording_wav(self) -> bytes:
        """What the caller heard (prompts, music, the agent), as an 8 kHz WAV."""
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(bytes(self._recorded))
        return out.getvalue()

    @property
    def seconds_heard(self) -> float:
        return len(self._recorded) / 16000

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "reason": self.reason,
                "caller": self.caller, "dial": self.dial, "digits": self.digits_sent,
                "seconds_heard": round(self.seconds_heard, 1),
                "events": [{"at": e.at, "text": e.text} for e in self.events]}

    async def close(self) -> None:
        for task in (self._sender, self._retransmit):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for transport in (self._sip, self._rtp):
            if transport is not None:
                transport.close()
        if self.state != "ended":
            self._end("closed")

    # ---- SIP -------------------------------------------------------------------------

    def _branch(self) -> str:
        return "z9hG4bK" + secrets.token_hex(8)

    def _request(self, method: str, branch: str, cseq: int, *, body: bytes = b"") -> bytes:
        name = self.display_name.replace('"', "").replace("\r", "").replace("\n", "")[:40]
        # In-dialog requests (ACK of a 2xx, BYE) go to the remote target (RFC 3261 12.2).
        in_dialog = method == "BYE" or (method == "ACK" and branch != self._invite_branch)
        target = self._remote_target if in_dialog and self._remote_target else \
            f"sip:{self.dial}@127.0.0.1:{self.sip_port}"
        lines = [
            f"{method} {target} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self._sip_port_local};branch={branch};rport",
            "Max-Forwards: 70",
            f'From: "{name}" <sip:{self.caller}@127.0.0.1>;tag={self._from_tag}',
            f"To: {self._to_header}",
            f"Call-ID: {self._call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{self.caller}@127.0.0.1:{self._sip_port_local}>",
            "User-Agent: Centrale demo simulator",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _sdp(self) -> bytes:
        sid = int(time.time())
        return ("v=0\r\n"
                f"o=demo {sid} {sid} IN IP4 127.0.0.1\r\n"
                "s=Centrale demo caller\r\n"
                "c=IN IP4 127.0.0.1\r\n"
                "t=0 0\r\n"
                f"m=audio {self._rtp_port_local} RTP/AVP {PCMU} {TELEPHONE_EVENT}\r\n"
                f"a=rtpmap:{PCMU} PCMU/8000\r\n"
                f"a=rtpmap:{TELEPHONE_EVENT} telephone-event/8000\r\n"
                f"a=fmtp:{TELEPHONE_EVENT} 0-15\r\n"
                "a=ptime:20\r\n"
                "a=sendrecv\r\n").encode()

    def _send_sip(self, data: bytes) -> None:
        if self._sip is not None and not self._sip.is_closing():
            self._sip.sendto(data, ("127.0.0.1", self.sip_port))

    def _expect(self, cseq: str) -> asyncio.Future[tuple[str, dict[str, list[str]], bytes]]:
        future = asyncio.get_running_loop().create_future()
        self._pending[cseq] = future
        return future

    async def _retransmit_invite(self, invite: bytes) -> None:
        """RFC 3261 timer A over UDP, until anything answers; timer B gives up."""
        delay = T1
        deadline = time.monotonic() + 32 * T1
        while not self._provisional.is_set() and self.state == "calling":
            self._send_sip(invite)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._provisional.wait(), delay)
            delay = min(delay * 2, 4)
            if time.monotonic() > deadline and not self._provisional.is_set():
                self._end("no answer from the SIP core (is it running?)")
                await self.close()
                return

    def _on_sip(self, data: bytes, addr: Any) -> None:
        try:
            start, headers, body = parse_sip(data)
        except Exception:  # garbage on a demo socket is dropped
            return
        if start.startswith("SIP/2.0 "):
            self._on_response(start, headers, body)
        else:
            self._on_request(start, headers, body, addr)

    def _on_response(self, start: str, headers: dict[str, list[str]], body: bytes) -> None:
        code = int(start.split()[1])
        cseq = first_header(headers, "cseq")
        if cseq.endswith("INVITE"):
            self._provisional.set()
            if code < 200:
                if code in (180, 183) and self.state == "calling":
                    self.state = "ringing"
                    self.note("ringing")
                return
            to = first_header(headers, "to")
            if ";tag=" in to:
                self._to_header = to
            if code < 300:
                contact = first_header(headers, "contact")
                if "<" in contact:
                    self._remote_target = contact.split("<", 1)[1].split(">", 1)[0]
                self._send_sip(self._request("ACK", self._branch(), 1))
                if self.state in ("calling", "ringing"):
                    self._remote_media = media_address(body)
                    self.state = "answered"
                    self.note("answered")
                    self._sender = asyncio.get_running_loop().create_task(self._send_audio())
                return
            self._send_sip(self._request("ACK", self._invite_branch, 1))
            reason = start.split(" ", 2)[2] if start.count(" ") >= 2 else str(code)
            self._end(f"{code} {reason}")
            return
        future = self._pending.pop(cseq, None)
        if future is not None and not future.done() and code >= 200:
            future.set_result((start, headers, body))

    def _on_request(self, start: str, headers: dict[str, list[str]], body: bytes,
                    addr: Any) -> None:
        method = start.split(" ", 1)[0]
        if method == "ACK":
            return
        reply_body = self._sdp() if method == "INVITE" else b""
        if method == "INVITE":  # a re-INVITE moving the media
            self._remote_media = media_address(body) or self._remote_media
        lines = ["SIP/2.0 200 OK"]
        lines += [f"Via: {v}" for v in headers.get("via", [])]
        lines += [f"From: {first_header(headers, 'from')}", f"To: {first_header(headers, 'to')}",
                  f"Call-ID: {first_header(headers, 'call-id')}",
                  f"CSeq: {first_header(headers, 'cseq')}",
                  f"Contact: <sip:{self.caller}@127.0.0.1:{self._sip_port_local}>"]
        if reply_body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(reply_body)}")
        if self._sip is not None and not self._sip.is_closing():
            self._sip.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + reply_body, addr)
        if method == "BYE":
            self._end("Centrale hung up")
            asyncio.get_running_loop().create_task(self.close())

    def _end(self, reason: str) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.reason = reason
        self.note(f"ended: {reason}")
        self._ended.set()

    # ---- RTP -------------------------------------------------------------------------

    def _send_rtp(self, payload_type: int, payload: bytes, *, marker: bool = False,
                  timestamp: int | None = None) -> None:
        if self._rtp is None or self._rtp.is_closing() or self._remote_media is None:
            return
        self._seq = (self._seq + 1) & 0xFFFF
        ts = self._timestamp if timestamp is None else timestamp
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | payload_type,
                             self._seq, ts & 0xFFFFFFFF, self._ssrc)
        self._rtp.sendto(header + payload, self._remote_media)

    async def _send_audio(self) -> None:
        """20 ms frames of the tone, paced by the clock, paused while a digit is sent."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        n = 0
        while self.state == "answered":
            if not self._sending_dtmf:
                self._send_rtp(PCMU, _TONE[n % len(_TONE)])
                self._timestamp += FRAME
                n += 1
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def _on_rtp(self, data: bytes, addr: Any) -> None:
        if len(data) < 12:
            return
        self.packets_received += 1
        payload_type = data[1] & 0x7F
        if payload_type != PCMU:
            return
        if len(self._recorded) >= MAX_RECORDED_SECONDS * 16000:
            return
        header_len = 12 + 4 * (data[0] & 0x0F)
        self._recorded += struct.pack(f"<{len(data) - header_len}h",
                                      *(_ULAW_TO_LINEAR[b] for b in data[header_len:]))


class Receiver(asyncio.DatagramProtocol):
    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.handler(data, addr)
