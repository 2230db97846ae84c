"""Encrypted voice with real phones (issue 26): baresip registers over TLS with SRTP
(SDES), another baresip calls in over TLS/SRTP, hears the IVR prompt, is rung through
to the agent's phone and the two talk; what each side heard is checked by its
spectrum (each side's microphone is a tone of its own frequency)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import AGENTS, write_tone_wav
from tls_kit import TestCa, TlsBaresip, dominant_frequencies, heard_tone, tls_settings

from ivr.call_leg import CallerHangup
from pbx_bridge.media.audio import PromptDirectory
from pbx_bridge.sip.leg import SipCallLeg
from pbx_bridge.sip.ports import CallRecord, TrunkConfig
from pbx_bridge.sip.server import SipServer

pytestmark = pytest.mark.sipp

PROMPT_HZ, CALLER_HZ, AGENT_HZ = 440.0, 600.0, 1000.0


def registration_of(server: SipServer, username: str) -> asyncio.Event:
    registered = asyncio.Event()
    register = server.registrar.register

    def observed(user, req, peer):  # type: ignore[no-untyped-def]
        bindings = register(user, req, peer)
        if user == username and bindings:
            registered.set()
        return bindings

    server.registrar.register = observed  # type: ignore[method-assign]
    return registered


async def until(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Wait for a condition on live counters (RTP packets), checked every 50 ms."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)  # counters: no event to wait on


async def test_tls_srtp_phone_called_over_tls_srtp_through_ivr(tmp_path: Path):
    ca = TestCa(tmp_path / "pki")
    cert = ca.issue("centrale", dns=("localhost",), ips=("127.0.0.1",))
    prompts = tmp_path / "prompts"
    (prompts / "en").mkdir(parents=True)
    write_tone_wav(prompts / "en" / "welcome.wav", 1.5, freq=PROMPT_HZ)
    records: list[CallRecord] = []
    done = asyncio.Event()
    seen: dict[str, object] = {}

    async def sink(record: CallRecord) -> None:
        records.append(record)

    async def ivr_then_agent(leg: SipCallLeg) -> None:
        try:
            await leg.answer()
            await leg.play(["welcome"], "en")
            ring = await server.ring_agent("bob", caller_id=leg.caller.caller_id, timeout=20)
            seen["ring"] = ring.status
            if ring.leg is None:
                return
            bridged = asyncio.ensure_future(server.bridge(leg, ring.leg))
            a, b = leg.call.rtp, ring.leg.call.rtp
            assert a is not None and b is not None
            seen["srtp"] = (a.srtp is not None, b.srtp is not None)
            # four seconds of conversation each way, then the caller is hung up
            await until(lambda: a.stats.packets_in >= 200 + 75 and b.stats.packets_in >= 200,
                        30)
            await server.hangup_call(leg.call, "test over", by="server")
            await bridged
        except CallerHangup:
            seen["hangup"] = True
        finally:
            done.set()

    settings = tls_settings(cert, ca, phone_srtp="required", phones_tls_only=True)
    server = SipServer(settings, inbound_handler=ivr_then_agent, credentials=AGENTS,
                       trunks=[TrunkConfig("callers", allowed_ips=frozenset({"127.0.0.1"}),
                                           srtp="required")],
                       prompts=PromptDirectory(prompts), call_record_sink=sink)
    await server.start()
    port = server.transport.tls_port
    registered = registration_of(server, "bob")
    bob = TlsBaresip(tmp_path, "bob", ca=ca.path,
                     tone=write_tone_wav(tmp_path / "bob.wav", 40, freq=AGENT_HZ),
                     account=f"<sip:bob@127.0.0.1:{port};transport=tls>;auth_pass=bob-secret;"
                             "mediaenc=srtp-mand;answermode=auto;regint=300")
    carol = TlsBaresip(tmp_path, "carol", ca=ca.path,
                       tone=write_tone_wav(tmp_path / "carol.wav", 40, freq=CALLER_HZ),
                       account="<sip:carol@127.0.0.1;transport=tls>;mediaenc=srtp-mand;"
                               "regint=0",
                       commands=[f"/dial sip:0800@127.0.0.1:{port};transport=tls"])
    try:
        await bob.start()
        await asyncio.wait_for(registered.wait(), 60)
        binding = server.registrar.contacts("bob")[0]
        assert binding.peer.transport == "TLS" and binding.peer.connection is not None
        await carol.start()
        await asyncio.wait_for(done.wait(), 90)
    finally:
        await carol.stop()
        await bob.stop()
        await server.stop()
    assert seen.get("ring") == "answered", (seen, carol.log.read_text()[-3000:])
    assert seen["srtp"] == (True, True)
    caller = next(r for r in records if r.direction == "inbound")
    assert caller.srtp and caller.srtp_auth_failures == 0
    # the caller heard the IVR prompt, then the agent; the agent heard the caller
    carol_heard, bob_heard = carol.heard(), bob.heard()
    assert heard_tone(carol_heard, PROMPT_HZ, slices=1), dominant_frequencies(carol_heard)
    assert heard_tone(carol_heard, AGENT_HZ), dominant_frequencies(carol_heard)
    assert heard_tone(bob_heard, CALLER_HZ), dominant_frequencies(bob_heard)


async def test_srtp_caller_bridged_to_a_plain_rtp_phone(tmp_path: Path):
    """Each leg has its own keys: a caller on TLS/SRTP talks to an agent phone on
    UDP/plain RTP (the bridge decrypts one leg and sends the other in clear)."""
    from tls_kit import TlsBaresip as Phone

    ca = TestCa(tmp_path / "pki")
    cert = ca.issue("centrale", dns=("localhost",), ips=("127.0.0.1",))
    done = asyncio.Event()
    seen: dict[str, object] = {}

    async def to_agent(leg: SipCallLeg) -> None:
        try:
            await leg.answer()
            ring = await server.ring_agent("bob", caller_id=leg.caller.caller_id, timeout=20)
            seen["ring"] = ring.status
            if ring.leg is None:
                return
            bridged = asyncio.ensure_future(server.bridge(leg, ring.leg))
            a, b = leg.call.rtp, ring.leg.call.rtp
            assert a is not None and b is not None
            seen["srtp"] = (a.srtp is not None, b.srtp is not None)
            await until(lambda: a.stats.packets_in >= 200 and b.stats.packets_in >= 200, 30)
            await server.hangup_call(leg.call, "test over", by="server")
            await bridged
        finally:
            done.set()

    settings = tls_settings(cert, ca, phone_srtp="optional")
    server = SipServer(settings, inbound_handler=to_agent, credentials=AGENTS,
                       trunks=[TrunkConfig("callers", allowed_ips=frozenset({"127.0.0.1"}),
                                           srtp="required")])
    await server.start()
    registered = registration_of(server, "bob")
    bob = Phone(tmp_path, "bob", ca=ca.path,
                tone=write_tone_wav(tmp_path / "bob.wav", 40, freq=AGENT_HZ),
                account=f"<sip:bob@127.0.0.1:{server.port};transport=udp>;"
                        "auth_pass=bob-secret;answermode=auto;regint=300")
    carol = Phone(tmp_path, "carol", ca=ca.path,
                  tone=write_tone_wav(tmp_path / "carol.wav", 40, freq=CALLER_HZ),
                  account="<sip:carol@127.0.0.1;transport=tls>;mediaenc=srtp-mand;regint=0",
                  commands=[f"/dial sip:0800@127.0.0.1:{server.transport.tls_port};"
                            "transport=tls"])
    try:
        await bob.start()
        await asyncio.wait_for(registered.wait(), 60)
        await carol.start()
        await asyncio.wait_for(done.wait(), 90)
    finally:
        await carol.stop()
        await bob.stop()
        await server.stop()
    assert seen.get("ring") == "answered", seen
    assert seen["srtp"] == (True, False)  # SRTP towards the caller, clear to the UDP phone
    carol_heard, bob_heard = carol.heard(), bob.heard()
    assert heard_tone(carol_heard, AGENT_HZ), dominant_frequencies(carol_heard)
    assert heard_tone(bob_heard, CALLER_HZ), dominant_frequencies(bob_heard)
