"""Issue 18, defect 8: a SIP caller that is not a phone number is identified by its
whole URI, host included — `sip:alice@example.org` is not `sip:alice@other.example`.

Real INVITEs over UDP reach a real SipServer; its legs go through the voice service's
identification into a real CaseService (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

from sip_testkit import RawUa

from cases import CaseService
from config.schema import CentraleConfig
from core.bus import InMemoryBus
from core.clock import SystemClock
from pbx_bridge.voice import VoiceService


def invite(from_uri: str, call_id: str, port: int) -> str:
    return (f"INVITE sip:1000@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id};rport\r\n"
            f"From: \"Alice\" <{from_uri}>;tag=a{call_id}\r\nTo: <sip:1000@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:alice@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n")


async def test_sip_callers_on_two_hosts_are_two_customers(make_server, database) -> None:
    cases = CaseService(database, InMemoryBus(), SystemClock(), default_region="NL")
    voice = VoiceService(config=CentraleConfig(), cases=cases, acd=None,  # type: ignore[arg-type]
                         bus=InMemoryBus(), clock=SystemClock())
    identified: asyncio.Queue = asyncio.Queue()

    async def handler(leg) -> None:  # type: ignore[no-untyped-def]
        identified.put_nowait(await voice._identify(leg, "sip"))
        await leg.hangup()

    server = await make_server(handler)
    ua, port = await RawUa.open()
    try:
        calls = []
        for n, uri in enumerate(["sip:alice@example.org", "sip:alice@Other.Example:5070",
                                 "sip:alice@example.org;transport=udp"]):
            ua.send(invite(uri, f"host{n}", port), server.port)
            calls.append(await asyncio.wait_for(identified.get(), 10))
    finally:
        ua.close()
    first, other_host, same_again = calls
    assert first.customer_id != other_host.customer_id
    assert same_again.customer_id == first.customer_id
    values = {i.value for c in calls for i in await cases.identities(c.customer_id)}
    assert values == {"sip:alice@example.org", "sip:alice@other.example"}
