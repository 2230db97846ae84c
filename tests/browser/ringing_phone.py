"""An agent's desk phone that rings and is never picked up.

The browser scenario needs a voice offer that stays on the agent's screen: with no
phone registered at all, the voice bridge declines the offer at once ("unregistered")
and the screen-pop is gone before anyone could look at it. This phone registers with
digest auth (as a real phone does), answers an INVITE with 180 Ringing, and when the
server CANCELs it (the offer was rejected, withdrawn or missed) answers 200 to the
CANCEL and 487 to the INVITE, as RFC 3261 wants.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from pbx_bridge.sip.auth import authorization_header

_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
            "l": "content-length"}


def _parse(text: str) -> tuple[str, list[tuple[str, str]]]:
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers.append((_COMPACT.get(name, name), value.strip()))
    return lines[0], headers


def _get(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k == name), "")


class RingingPhone(asyncio.DatagramProtocol):
    def __init__(self, server_port: int, username: str, password: str) -> None:
        self.server = ("127.0.0.1", server_port)
        self.username, self.password = username, password
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.responses: asyncio.Queue[tuple[str, list[tuple[str, str]]]] = asyncio.Queue()
        self.invites: list[str] = []  # Call-IDs of the INVITEs that rang this phone
        self.ringing = asyncio.Event()
        self.cancelled = asyncio.Event()
        self._to_tag = secrets.token_hex(4)
        self._invite_headers: dict[str, list[tuple[str, str]]] = {}

    # ---- asyncio protocol ------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        start, headers = _parse(data.decode(errors="replace"))
        if start.startswith("SIP/2.0"):
            self.responses.put_nowait((start, headers))
            return
        method = start.split(" ", 1)[0]
        if method == "INVITE":
            self._invite_headers[_get(headers, "call-id")] = headers
            self.invites.append(_get(headers, "call-id"))
            self._reply(addr, headers, "180 Ringing", to_tag=True)
            self.ringing.set()
        elif method == "CANCEL":
            self._reply(addr, headers, "200 OK")
            invite = self._invite_headers.get(_get(headers, "call-id"))
            if invite is not None:
                self._reply(addr, invite, "487 Request Terminated", to_tag=True)
            self.cancelled.set()
        elif method != "ACK":
            self._reply(addr, headers, "200 OK")

    # ---- sending ---------------------------------------------------------------------

    def _send(self, text: str, addr: Any) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), addr)

    def _reply(self, addr: Any, headers: list[tuple[str, str]], status: str, *,
               to_tag: bool = False) -> None:
        lines = [f"SIP/2.0 {status}"]
        lines += [f"Via: {v}" for k, v in headers if k == "via"]
        to = _get(headers, "to")
        if to_tag and ";tag=" not in to:
            to += f";tag={self._to_tag}"
        lines += [f"From: {_get(headers, 'from')}", f"To: {to}",
                  f"Call-ID: {_get(headers, 'call-id')}", f"CSeq: {_get(headers, 'cseq')}"]
        if status.startswith("487"):  # the INVITE's CSeq, whatever the CANCEL said
            lines[-1] = "CSeq: " + _get(headers, "cseq").split()[0] + " INVITE"
        lines += [f"Contact: <sip:{self.username}@127.0.0.1:{self.port}>",
                  "Content-Length: 0", "", ""]
        self._send("\r\n".join(lines), addr)

    async def register(self) -> None:
        """REGISTER, answer the digest challenge, expect 200."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        assert self.transport is not None
        self.port = self.transport.get_extra_info("sockname")[1]
        uri = f"sip:127.0.0.1:{self.server[1]}"
        call_id = secrets.token_hex(8)
        auth = ""
        for cseq in (1, 2):
            self._send("\r\n".join([
                f"REGISTER {uri} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(6)}",
                f"From: <sip:{self.username}@127.0.0.1>;tag={secrets.token_hex(4)}",
                f"To: <sip:{self.username}@127.0.0.1>", f"Call-ID: {call_id}",
                f"CSeq: {cseq} REGISTER",
                f"Contact: <sip:{self.username}@127.0.0.1:{self.port}>",
                "Expires: 300", "Max-Forwards: 70", *([auth] if auth else []),
                "Content-Length: 0", "", ""]), self.server)
            while True:
                start, headers = await asyncio.wait_for(self.responses.get(), 5)
                if not start.startswith("SIP/2.0 1"):
                    break
            if start.startswith("SIP/2.0 200"):
                return
            assert start.startswith("SIP/2.0 401"), start
            challenge = _get(headers, "www-authenticate")
            auth = "Authorization: " + authorization_header(
                challenge, self.username, self.password,
                "REGISTER", uri)
        raise AssertionError(f"registration refused: {start}")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
