"""Encrypted voice through the real wiring (issue 26): a node whose config turns on
SIP over TLS with SRTP required for phones and the trunk; the agent's baresip phone
registers over TLS (REGISTER over UDP is refused: `phones_tls_only`), a baresip caller
calls in over TLS/SRTP, hears the IVR menu, falls through to the queue, the ACD offers
the call to the agent whose phone rings over its TLS connection and answers; the two
talk (each side's tone checked by FFT in what the other side decoded) and the case
timeline has the call."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.waiting import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pbx_bridge" / "sip"))
from conftest import write_tone_wav
from tls_kit import TestCa, TlsBaresip, dominant_frequencies, heard_tone

pytestmark = pytest.mark.sipp

CALLER_HZ, AGENT_HZ = 600.0, 1000.0


def encrypted_site(site_dir, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    ca = TestCa(tmp_path / "pki")
    cert = ca.issue("centrale", dns=("localhost",), ips=("127.0.0.1",))
    cfg = site_dir()
    site = cfg / "site.yaml"
    text = site.read_text()
    text = text.replace(
        "    transports: [udp]\n",
        "    transports: [udp]\n"
        f"    tls: {{enabled: true, port: 0, cert_file: {cert.cert}, key_file: {cert.key},"
        f" ca_file: {ca.path}}}\n"
        "    phone_srtp: required\n    phones_tls_only: true\n")
    text = text.replace("trusted: true, outbound_host", "trusted: true, srtp: required, "
                        "outbound_host")
    # no DTMF from baresip: the menu falls through to the support queue at once
    text = text.replace("timeout_seconds: 6\n        retries: 2",
                        "timeout_seconds: 1\n        retries: 1")
    site.write_text(text)
    (cfg / "ca.pem").write_bytes(ca.path.read_bytes())
    return cfg


async def test_tls_srtp_call_through_ivr_and_queue_to_agent(site_dir, make_node,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    cfg = encrypted_site(site_dir, tmp_path)
    node = await make_node(cfg)
    c = node.c
    acd, sip = c.services["acd"], c.services["sip"]
    tls_port = sip.transport.tls_port
    assert tls_port
    events: list[str] = []

    async def grab(e) -> None:  # type: ignore[no-untyped-def]
        events.append(e.topic)

    await c.bus.subscribe("task.*", grab)
    anna = TlsBaresip(tmp_path, "anna", ca=cfg / "ca.pem",
                      tone=write_tone_wav(tmp_path / "anna.wav", 60, freq=AGENT_HZ),
                      account=f"<sip:1001@127.0.0.1:{tls_port};transport=tls>;"
                              "auth_pass=anna-secret;mediaenc=srtp-mand;answermode=auto;"
                              "regint=300")
    caller = TlsBaresip(tmp_path, "caller", ca=cfg / "ca.pem",
                        tone=write_tone_wav(tmp_path / "caller.wav", 60, freq=CALLER_HZ),
                        account="<sip:+31201234567@127.0.0.1;transport=tls>;"
                                "mediaenc=srtp-mand;regint=0",
                        commands=[f"/dial sip:100@127.0.0.1:{tls_port};transport=tls"])
    try:
        await anna.start()
        await wait_until(lambda: sip.registrar.is_registered("1001"), 60)
        assert sip.registrar.contacts("1001")[0].peer.transport == "TLS"
        await acd.agent_login("anna", "desk-1")
        await acd.set_state("anna", "available")
        await caller.start()
        await wait_until(lambda: "task.accepted" in events, 90)
        def connected() -> list:  # type: ignore[type-arg]
            return [call for call in sip.calls.values() if call.rtp is not None
                    and (call.rtp.peer is not None or call.rtp.sink is not None)]

        await wait_until(lambda: len(connected()) == 2, 30)
        bridged = connected()
        assert all(call.rtp is not None and call.rtp.srtp is not None for call in bridged)
        # four seconds of conversation, then the caller's leg is hung up by the server
        await wait_until(lambda: all(call.rtp.stats.packets_in >= 200 for call in bridged
                                     if call.rtp is not None), 30)
        inbound = next(call for call in bridged if call.direction == "inbound")
        await sip.hangup_call(inbound, "test over", by="caller")
        await wait_until(lambda: "task.completed" in events, 30)
    finally:
        await caller.stop()
        await anna.stop()
    caller_heard, anna_heard = caller.heard(), anna.heard()
    assert heard_tone(caller_heard, AGENT_HZ), dominant_frequencies(caller_heard)
    assert heard_tone(anna_heard, CALLER_HZ), dominant_frequencies(anna_heard)
    # the IVR menu (speech) was heard before the agent: loud audio in the first seconds
    first = caller_heard[: 8000 * 2]
    assert np.sqrt(np.mean(first ** 2)) > 100
    from cases import IdentityRef

    res = await c.cases.resolve(IdentityRef("phone", "+31201234567"))
    timeline = await c.cases.timeline(res.case.id)
    assert any("Connected to agent anna" in (t.body or "") for t in timeline)
