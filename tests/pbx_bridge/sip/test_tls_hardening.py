"""Hostile TLS clients and bad SDES offers (issue 26): a client that never finishes
the handshake, one that sends garbage, one that opens more connections than its
address may hold — all closed, and the listener still serves a real client; malformed
or misplaced `a=crypto` lines get 488 with the reason."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from pathlib import Path

import pytest
from conftest import AGENTS
from tls_kit import TestCa, tls_settings

from pbx_bridge.sip.leg import SipCallLeg
from pbx_bridge.sip.ports import TrunkConfig
from pbx_bridge.sip.server import SipServer


async def answer(leg: SipCallLeg) -> None:
    await leg.answer()
    await leg.call.ended.wait()


@pytest.fixture
async def tls_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    ca = TestCa(tmp_path / "pki")
    cert = ca.issue("centrale", dns=("localhost",), ips=("127.0.0.1",))
    settings = tls_settings(cert, ca, tcp_max_connections_per_address=3)
    settings = settings.model_copy(update={"tls": settings.tls.model_copy(
        update={"handshake_timeout_seconds": 1.0})})
    server = SipServer(settings, inbound_handler=answer, credentials=AGENTS, trunks=[
        TrunkConfig("tls-required", allowed_ips=frozenset({"127.0.0.1"}), srtp="required")])
    await server.start()
    server.test_ca = ca  # type: ignore[attr-defined]
    yield server
    await server.stop()


def client_context(ca: TestCa) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.path))
    return ctx


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes the connection within `timeout` seconds."""
    try:
        while await asyncio.wait_for(reader.read(4096), timeout):
            pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True
    return True


def invite(port: int, transport: str, sdp: str) -> bytes:
    body = sdp.replace("\n", "\r\n").encode()
    head = (f"INVITE sip:0800@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} 127.0.0.1:5099;branch=z9hG4bK{os.urandom(6).hex()}\r\n"
            "From: <sip:caller@127.0.0.1>;tag=abc\r\nTo: <sip:0800@127.0.0.1>\r\n"
            f"Call-ID: {os.urandom(8).hex()}\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:caller@127.0.0.1:5099>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def sdp(proto: str = "RTP/SAVP", crypto: str | None = None) -> str:
    key = base64.b64encode(os.urandom(30)).decode()
    line = crypto if crypto is not None else f"1 AES_CM_128_HMAC_SHA1_80 inline:{key}"
    return ("v=0\no=c 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
            f"m=audio 40000 {proto} 0 101\na=rtpmap:0 PCMU/8000\n"
            "a=rtpmap:101 telephone-event/8000\n" + (f"a=crypto:{line}\n" if line else ""))


async def final_status(reader: asyncio.StreamReader) -> str:
    """The status line of the first final response."""
    while True:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        first = head.split(b"\r\n", 1)[0].decode()
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")), 0)
        if length:
            await reader.readexactly(length)
        if not first.startswith("SIP/2.0 1"):
            return first


async def test_stalled_handshake_and_garbage_are_closed(tls_server: SipServer):
    port = tls_server.transport.tls_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # says nothing
    assert await closed_by_server(reader, 10)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"OPTIONS sip:x SIP/2.0\r\n\r\n" + os.urandom(2000))  # not TLS
    await writer.drain()
    assert await closed_by_server(reader, 10)
    writer.close()
    assert tls_server.transport.tls_handshake_failures >= 2
    assert not tls_server.transport.connections and not tls_server.transport.tcp_per_address


async def test_connections_over_the_per_address_cap_are_refused(tls_server: SipServer):
    port = tls_server.transport.tls_port
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await closed_by_server(reader, 0.9)  # at once, not at the handshake timeout
    assert tls_server.transport.stream_refused["TLS"] >= 1
    writer.close()
    for r, w in held:  # and the held ones go at the handshake timeout
        assert await closed_by_server(r, 10)
        w.close()
    # the listener still serves a real client
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(tls_server.test_ca),  # type: ignore[attr-defined]
        server_hostname="localhost")
    writer.write(invite(port, "TLS", sdp()).replace(b"INVITE", b"OPTIONS"))
    await writer.drain()
    status = await final_status(reader)
    writer.close()
    assert status.startswith("SIP/2.0 200"), status


@pytest.mark.parametrize(("crypto", "reason"), [
    ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64!", "a=crypto key is not base64"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(b"short").decode(),
     "a=crypto key is 5 bytes"),
    ("x AES_CM_128_HMAC_SHA1_80 inline:abcd", "a=crypto tag"),
    ("1 AES_CM_128_HMAC_SHA1_80", "malformed a=crypto"),
    ("1 F8_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(range(30))).decode(),
     "no supported a=crypto suite"),
])
async def test_malformed_crypto_gets_488_with_the_reason(tls_server: SipServer, crypto: str,
                                                         reason: str):
    port = tls_server.transport.tls_port
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(tls_server.test_ca),  # type: ignore[attr-defined]
        server_hostname="localhost")
    writer.write(invite(port, "TLS", sdp(crypto=crypto)))
    await writer.drain()
    status = await final_status(reader)
    writer.close()
    assert status.startswith("SIP/2.0 488") and reason in status, status


async def test_sdes_over_plain_tcp_and_no_srtp_are_refused(tls_server: SipServer):
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server.port)
    writer.write(invite(tls_server.port, "TCP", sdp()))
    await writer.drain()
    status = await final_status(reader)
    assert status.startswith("SIP/2.0 488") and "only accepted over TLS" in status, status
    writer.close()
    port = tls_server.transport.tls_port
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(tls_server.test_ca),  # type: ignore[attr-defined]
        server_hostname="localhost")
    writer.write(invite(port, "TLS", sdp(proto="RTP/AVP", crypto="")))
    await writer.drain()
    status = await final_status(reader)
    writer.close()
    assert status.startswith("SIP/2.0 488") and "SRTP is required" in status, status


async def test_tls_registration_keeps_its_connection_and_is_rung_over_it(tls_server: SipServer):
    """RFC 5626: the connection outlives the idle limit while the binding lives, CRLF
    pings are answered, and the INVITE to the phone comes down the same connection."""
    from pbx_bridge.sip.auth import authorization_header

    port = tls_server.transport.tls_port
    tls_server.transport.tcp_idle_seconds = 5.0  # far below the registration's 120 s
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(tls_server.test_ca),  # type: ignore[attr-defined]
        server_hostname="localhost")
    lport = writer.get_extra_info("sockname")[1]
    uri = f"sip:127.0.0.1:{port};transport=tls"

    def register(cseq: int, auth: str = "") -> bytes:
        return (f"REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{lport};"
                f"branch=z9hG4bKreg{cseq};rport\r\nMax-Forwards: 70\r\n"
                "From: <sip:bob@127.0.0.1>;tag=r1\r\nTo: <sip:bob@127.0.0.1>\r\n"
                f"Call-ID: reg-tls\r\nCSeq: {cseq} REGISTER\r\n"
                f"Contact: <sip:bob@127.0.0.1:{lport};transport=tls>\r\nExpires: 120\r\n"
                f"{auth}Content-Length: 0\r\n\r\n").encode()

    writer.write(register(1))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    challenge = next(line.split(":", 1)[1].strip() for line in head.decode().split("\r\n")
                     if line.lower().startswith("www-authenticate"))
    auth = authorization_header(challenge, "bob", AGENTS["bob"], "REGISTER", uri)
    writer.write(register(2, f"Authorization: {auth}\r\n"))
    assert await final_status(reader) == "SIP/2.0 200 OK"
    conn = next(iter(tls_server.transport.connections.values()))
    assert conn.idle_handle is not None
    assert conn.idle_handle.when() - asyncio.get_running_loop().time() > 100
    writer.write(b"\r\n\r\n")  # keep-alive ping, answered with a pong
    assert await asyncio.wait_for(reader.readexactly(2), 10) == b"\r\n"
    ring = asyncio.ensure_future(tls_server.ring_agent("bob", timeout=3))
    invite = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert invite.startswith(b"INVITE sip:bob@127.0.0.1:") and b"SIP/2.0/TLS" in invite
    result = await ring
    assert result.status in ("timeout", "failed")
    writer.close()
