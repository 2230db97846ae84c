"""A virtual desk phone for a demo agent, so the walkthrough needs nothing but a browser.

Without a registered phone a voice offer cannot ring anyone: the voice bridge declines
it at once. The demo config names agents (`server.demo.desk_phones`) whose SIP account
this phone registers at the embedded SIP core with digest auth, as a real phone does.
An INVITE rings it (180) — the agent's screen pops — and the simulator page's Answer
button takes the call (200 with SDP; a soft tone as the agent's voice), Hang up ends it
(BYE); a CANCEL (offer withdrawn or rejected) stops the ringing (200, then 487).

Small on purpose: UDP, one call at a time (a second INVITE while busy gets 486).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import struct
import time
from typing import Any

from web.demo.sip_caller import (
    FRAME,
    PCMU,
    TELEPHONE_EVENT,
    Receiver,
    first_header,
    media_address,
    parse_sip,
    tone_frames,
)

log = logging.getLogger(__name__)

REGISTER_EXPIRES = 600
_AGENT_TONE = tone_frames(hz=330.0, amplitude=2000)


def _digest(challenge: str, username: str, password: str, method: str, uri: str) -> str:
    """RFC 2617 MD5 digest answer (qop=auth when offered)."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    ha1 = hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    header = f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = hashlib.md5(  # SIP digest is MD5 by definition (RFC 2617/3261)
            f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        header += f', response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        header += f', response="{response}", algorithm=MD5'
    if "opaque" in params:
        header += f', opaque="{params["opaque"]}"'
    return header


class DeskPhone:
    """The virtual desk phone of agent `agent_id`, SIP account `username`."""

    def __init__(self, agent_id: str, username: str, password: str, sip_port: int) -> None:
        self.agent_id, self.username, self._password = agent_id, username, password
        self.sip_port = sip_port
        self.state = "unregistered"  # unregistered, idle, ringing, connected
        self.caller = ""
        self.detail = ""
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._port = 0
        self._rtp_port = 0
        self._responses: asyncio.Queue[tuple[str, dict[str, list[str]]]] = asyncio.Queue()
        self._invite: dict[str, list[str]] | None = None
        self._invite_addr: Any = None
        self._to_tag = ""
        self._remote_media: tuple[str, int] | None = None
        self._cseq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sender: asyncio.Task[None] | None = None
        self.packets_received = 0

    # ---- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sip, _ = await loop.create_datagram_endpoint(
            lambda: Receiver(self._on_sip), local_addr=("127.0.0.1", 0))
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: Receiver(self._on_rtp), local_addr=("127.0.0.1", 0))
        self._port = self._sip.get_extra_info("sockname")[1]
        self._rtp_port = self._rtp.get_extra_info("sockname")[1]
        self._spawn(self._keep_registered())

    async def stop(self) -> None:
        for task in list(self._tasks) + ([self._sender] if self._sender else []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for transport in (self._sip, self._rtp):
            if transport is not None:
                transport.close()

    def summary(self) -> dict[str, Any]:
        return {"agent": self.agent_id, "username": self.username, "state": self.state,
                "caller": self.caller, "detail": self.detail}

    # ---- registration ----------------------------------------------------------------

    async def _keep_registered(self) -> None:
        while True:
            try:
                await self.register()
                await asyncio.sleep(REGISTER_EXPIRES * 0.8)
            except (TimeoutError, RuntimeError) as exc:
                self.state, self.detail = "unregistered", str(exc)
                log.warning("demo desk phone %s: %s", self.username, exc)
                await asyncio.sleep(10)

    async def register(self) -> None:
        uri = f"sip:127.0.0.1:{self.sip_port}"
        call_id, tag, auth = secrets.token_hex(8), secrets.token_hex(4), ""
        for _ in range(2):
            self._cseq += 1
            self._send("\r\n".join([
                f"REGISTER {uri} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{self._port};branch=z9hG4bK{secrets.token_hex(8)}",
                "Max-Forwards: 70",
                f"From: <sip:{self.username}@127.0.0.1>;tag={tag}",
                f"To: <sip:{self.username}@127.0.0.1>", f"Call-ID: {call_id}",
                f"CSeq: {self._cseq} REGISTER",
                f"Contact: <sip:{self.username}@127.0.0.1:{self._port}>",
                f"Expires: {REGISTER_EXPIRES}", "User-Agent: Centrale demo desk phone",
                *([auth] if auth else []), "Content-Length: 0", "", ""]).encode(),
                ("127.0.0.1", self.sip_port))
            while True:
                start, headers = await asyncio.wait_for(self._responses.get(), 5)
                if not start.startswith("SIP/2.0 1"):
                    break
            if start.startswith("SIP/2.0 200"):
                if self.state == "unregistered":
                    self.state, self.detail = "idle", ""
                return
            if not start.startswith("SIP/2.0 401"):
                break
            auth = "Authorization: " + _digest(first_header(headers, "www-authenticate"),
                                               self.username, self._password, "REGISTER", uri)
        raise RuntimeError(f"registration refused: {start}")

    # ---- calls -------------------------------------------------------------------------

    async def answer(self) -> None:
        if self.state != "ringing" or self._invite is None:
            raise RuntimeError("the desk phone is not ringing")
        self._reply(self._invite, "200 OK", body=self._sdp())
        self.state = "connected"
        loop = asyncio.get_running_loop()
        self._sender = loop.create_task(self._send_audio())

    async def hang_up(self) -> None:
        if self.state == "ringing" and self._invite is not None:
            self._reply(self._invite, "486 Busy Here")
        elif self.state == "connected" and self._invite is not None:
            inv = self._invite
            contact = first_header(inv, "contact")
            target = contact.split("<", 1)[1].split(">", 1)[0] if "<" in contact else \
                f"sip:127.0.0.1:{self.sip_port}"
            self._cseq += 1
            self._send("\r\n".join([
                f"BYE {target} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{self._port};branch=z9hG4bK{secrets.token_hex(8)}",
                "Max-Forwards: 70",
                f"From: {self._with_tag(first_header(inv, 'to'))}",
                f"To: {first_header(inv, 'from')}",
                f"Call-ID: {first_header(inv, 'call-id')}", f"CSeq: {self._cseq} BYE",
                "Content-Length: 0", "", ""]).encode(), self._invite_addr)
        self._idle()

    def _idle(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        self._invite, self._remote_media, self.caller = None, None, ""
        if self.state != "unregistered":
            self.state = "idle"

    def _on_sip(self, data: bytes, addr: Any) -> None:
        try:
            start, headers, body = parse_sip(data)
        except Exception:  # garbage on a demo socket is dropped
            return
        if start.startswith("SIP/2.0 "):
            self._responses.put_nowait((start, headers))
            return
        method = start.split(" ", 1)[0]
        if method == "INVITE":
            if self._invite is not None and first_header(headers, "call-id") != \
                    first_header(self._invite, "call-id"):
                self._reply(headers, "486 Busy Here", addr=addr)
                return
            if self._invite is None:
                self._invite, self._invite_addr = headers, addr
                self._to_tag = secrets.token_hex(4)
                self._remote_media = media_address(body)
                self.caller = first_header(headers, "from").split(";tag=")[0][:120]
                self.state = "ringing"
            self._reply(headers, "180 Ringing")
        elif method == "CANCEL":
            self._reply(headers, "200 OK", addr=addr)
            if self._invite is not None and self.state == "ringing":
                self._reply(self._invite, "487 Request Terminated")
                self._idle()
        elif method == "BYE":
            self._reply(headers, "200 OK", addr=addr)
            self._idle()
        elif method != "ACK":
            self._reply(headers, "200 OK", addr=addr)

    def _with_tag(self, to: str) -> str:
        return to if ";tag=" in to else f"{to};tag={self._to_tag}"

    def _reply(self, headers: dict[str, list[str]], status: str, *, body: bytes = b"",
               addr: Any = None) -> None:
        lines = [f"SIP/2.0 {status}"]
        lines += [f"Via: {v}" for v in headers.get("via", [])]
        lines += [f"From: {first_header(headers, 'from')}",
                  f"To: {self._with_tag(first_header(headers, 'to'))}",
                  f"Call-ID: {first_header(headers, 'call-id')}",
                  f"CSeq: {first_header(headers, 'cseq')}",
                  f"Contact: <sip:{self.username}@127.0.0.1:{self._port}>"]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode() + body,
                   addr or self._invite_addr)

    def _send(self, data: bytes, addr: Any) -> None:
        if self._sip is not None and not self._sip.is_closing() and addr is not None:
            self._sip.sendto(data, addr)

    def _sdp(self) -> bytes:
        sid = int(time.time())
        return ("v=0\r\n"
                f"o=desk {sid} {sid} IN IP4 127.0.0.1\r\n"
                "s=Centrale demo desk phone\r\n"
                "c=IN IP4 127.0.0.1\r\n"
                "t=0 0\r\n"
                f"m=audio {self._rtp_port} RTP/AVP {PCMU} {TELEPHONE_EVENT}\r\n"
                f"a=rtpmap:{PCMU} PCMU/8000\r\n"
                f"a=rtpmap:{TELEPHONE_EVENT} telephone-event/8000\r\n"
                "a=ptime:20\r\n"
                "a=sendrecv\r\n").encode()

    async def _send_audio(self) -> None:
        loop = asyncio.get_running_loop()
        seq, ts, ssrc = secrets.randbelow(1 << 15), secrets.randbelow(1 << 30), \
            secrets.randbits(32)
        next_at, n = loop.time(), 0
        while self.state == "connected":
            if self._rtp is not None and self._remote_media is not None:
                seq = (seq + 1) & 0xFFFF
                header = struct.pack("!BBHII", 0x80, PCMU, seq, ts & 0xFFFFFFFF, ssrc)
                self._rtp.sendto(header + _AGENT_TONE[n % len(_AGENT_TONE)],
                                 self._remote_media)
            ts += FRAME
            n += 1
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def _on_rtp(self, data: bytes, addr: Any) -> None:
        self.packets_received += 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
