"""Defaults for a node facing the internet (issue 26, docs/security.md): INVITE
scanners are blocked after a few refusals and then get no answer at all, phones may be
held to TLS for REGISTER, and our User-Agent carries no version."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import AGENTS
from sip_testkit import RawUa

from config.schema.server import SipSettings
from pbx_bridge.sip.ports import TrunkConfig
from pbx_bridge.sip.server import SipServer


def request(method: str, port: int, ua_port: int, *, auth: str = "") -> str:
    return (f"{method} sip:0800@127.0.0.1:{port} SIP/2.0\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{ua_port};branch=z9hG4bK{os.urandom(6).hex()};rport\n"
            "From: <sip:100@127.0.0.1>;tag=scan\nTo: <sip:0800@127.0.0.1>\n"
            f"Call-ID: {os.urandom(8).hex()}\nCSeq: 1 {method}\n"
            f"Contact: <sip:100@127.0.0.1:{ua_port}>\nMax-Forwards: 70\n{auth}"
            "User-Agent: friendly-scanner\nContent-Length: 0\n\n")


async def start(**settings: object) -> SipServer:
    async def never(leg):  # type: ignore[no-untyped-def]
        raise AssertionError("no call may get through")

    server = SipServer(
        SipSettings(enabled=True, host="127.0.0.1", port=0, transports=["udp"],
                    rtp_port_min=30000, rtp_port_max=39999, **settings),  # type: ignore[arg-type]
        inbound_handler=never, credentials=AGENTS,
        trunks=[TrunkConfig("carrier", allowed_ips=frozenset({"192.0.2.10"}))])
    await server.start()
    return server


async def test_invite_scanner_is_refused_then_ignored(tmp_path: Path):
    server = await start(invite_scan_limit=5)
    ua, ua_port = await RawUa.open()
    try:
        for _ in range(8):
            ua.send(request("INVITE", server.port, ua_port), server.port)
        # UDP on loopback keeps order: once OPTIONS is answered, all 8 INVITEs were handled
        ua.send(request("OPTIONS", server.port, ua_port), server.port)
        answers = []
        while True:
            answer = await ua.final(10)
            if "CSeq: 1 OPTIONS" in answer:
                break
            answers.append(answer.split("\r\n", 1)[0])
    finally:
        ua.close()
        await server.stop()
    assert answers == ["SIP/2.0 403 Forbidden (not an allowed trunk)"] * 5
    assert server.stats.scans_dropped == 3


async def test_register_only_over_tls_when_configured():
    server = await start(phones_tls_only=True)
    ua, ua_port = await RawUa.open()
    try:
        ua.send(request("REGISTER", server.port, ua_port).replace(
            "sip:0800@", "sip:bob@"), server.port)
        answer = await ua.final(10)
    finally:
        ua.close()
        await server.stop()
    assert answer.startswith("SIP/2.0 403 Forbidden (register over TLS)"), answer


async def user_agent_sent(**settings: object) -> str:
    """The User-Agent of an INVITE the server sends out through a trunk."""
    import asyncio

    ua, ua_port = await RawUa.open()

    async def never(leg):  # type: ignore[no-untyped-def]
        raise AssertionError

    server = SipServer(
        SipSettings(enabled=True, host="127.0.0.1", port=0, transports=["udp"],
                    rtp_port_min=30000, rtp_port_max=39999, **settings),  # type: ignore[arg-type]
        inbound_handler=never, credentials=AGENTS,
        trunks=[TrunkConfig("out", outbound_host="127.0.0.1", outbound_port=ua_port)])
    await server.start()
    call = asyncio.ensure_future(server.place_outbound_call("0612345678", timeout=2))
    try:
        invite = await asyncio.wait_for(ua.requests.get(), 10)
    finally:
        await call
        ua.close()
        await server.stop()
    return next(line for line in invite.split("\r\n") if line.startswith("User-Agent:"))


async def test_user_agent_without_version_unless_configured():
    assert await user_agent_sent() == "User-Agent: Centrale"
    assert await user_agent_sent(user_agent="Centrale 4.2") == "User-Agent: Centrale 4.2"


async def test_an_agents_own_srtp_policy_overrides_the_site_default():
    """`AgentSip.srtp` (here: bob required) beats `sip.phone_srtp` (off): bob's phone,
    registered over UDP, is not rung at all (keys never go out in clear); alice's is
    rung with plain RTP."""
    import asyncio

    from pbx_bridge.sip.message import SipRequest
    from pbx_bridge.sip.transport import Peer

    async def never(leg):  # type: ignore[no-untyped-def]
        raise AssertionError

    server = SipServer(
        SipSettings(enabled=True, host="127.0.0.1", port=0, transports=["udp"],
                    rtp_port_min=30000, rtp_port_max=39999),
        inbound_handler=never, credentials=AGENTS, phone_srtp={"bob": "required"}.get)
    await server.start()
    ua, ua_port = await RawUa.open()
    try:
        for user in ("alice", "bob"):
            register = SipRequest(method="REGISTER", uri="sip:centrale")
            for name, value in [("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKr"),
                                ("From", f"<sip:{user}@centrale>;tag=1"),
                                ("To", f"<sip:{user}@centrale>"), ("Call-ID", f"reg-{user}"),
                                ("CSeq", "1 REGISTER"),
                                ("Contact", f"<sip:{user}@127.0.0.1:{ua_port}>")]:
                register.add(name, value)
            server.registrar.register(user, register, Peer("UDP", "127.0.0.1", ua_port))
        assert server.phone_srtp_policy("bob") == "required"
        assert server.phone_srtp_policy("alice") == "off"
        bob = await server.ring_agent("bob", timeout=2)
        assert bob.status == "failed" and ua.requests.empty()
        alice = asyncio.ensure_future(server.ring_agent("alice", timeout=2))
        invite = await asyncio.wait_for(ua.requests.get(), 10)
        await alice
    finally:
        ua.close()
        await server.stop()
    assert invite.startswith("INVITE sip:alice@") and "a=crypto" not in invite
    assert "RTP/AVP" in invite
