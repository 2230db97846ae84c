"""The key voice test, end to end through the real wiring: sipp calls in → IVR menu
chosen by RFC 2833 DTMF → queue with music on hold → the registered agent phone
(pyVoIP) rings → answers (accepts the offer) → RTP both ways through the bridge →
hang-up → the case timeline holds the IVR path and the call, the agent is in wrap-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sip_testkit import PCAP_DIR, PyVoipAgentPhone, run_sipp, uac_scenario

from tests.waiting import wait_until

pytestmark = pytest.mark.sipp


async def voice_node(make_node, site_dir):  # type: ignore[no-untyped-def]
    """A node on the site, its ACD and SIP core, and the task events' topics as they
    are published."""
    node = await make_node(site_dir())
    events: list[str] = []

    async def grab(e) -> None:  # type: ignore[no-untyped-def]
        events.append(e.topic)

    await node.c.bus.subscribe("task.*", grab)
    return node, node.c.services["acd"], node.c.services["sip"], events


async def test_sipp_call_through_ivr_and_queue_to_agent_phone(site_dir, make_node,
                                                              tmp_path: Path) -> None:
    node, acd, sip, events = await voice_node(make_node, site_dir)
    c = node.c

    phone = PyVoipAgentPhone(sip.port, "1001", "anna-secret")
    await phone.start()
    try:
        assert sip.registrar.is_registered("1001")
        await acd.agent_login("anna", "desk-1")
        await acd.set_state("anna", "available")

        # Caller: menu prompt plays, caller presses 1 (sales), waits, then talks (PCMA
        # audio pcap) while bridged to the agent, then hangs up.
        scenario = uac_scenario(digits="1", wait_before_dtmf_ms=1500, hold_ms=0,
                                codec=8).replace(
            '<pause milliseconds="0"/>',
            '<pause milliseconds="3000"/>\n  <nop><action><exec play_pcap_audio="'
            f'{PCAP_DIR / "g711a.pcap"}"/></action></nop>\n'
            '  <pause milliseconds="5000"/>', 1)
        result = await run_sipp(scenario, tmp_path, sip.port, service="100", timeout=40)
        assert result.returncode == 0, result.stderr + result.errors
        try:
            await wait_until(lambda: "task.completed" in events)
        except AssertionError:
            from cases import IdentityRef
            res = await c.cases.resolve(IdentityRef("phone", "+33123456789"))
            for t in await c.cases.timeline(res.case.id):
                print("TL", t.kind, t.body, t.meta)
            print("EVENTS", events)
            raise
    finally:
        await phone.stop()

    assert events.index("task.offered") < events.index("task.accepted") < \
        events.index("task.completed")
    assert phone.packets_received >= 100, "caller audio reached the agent phone"
    assert phone.call_states() == ["ENDED"]
    assert acd.agent("anna").state == "wrap_up"

    # The customer record: one customer by the caller's number, one case, with the path.
    from cases import IdentityRef

    res = await c.cases.resolve(IdentityRef("phone", "+33123456789"))
    timeline = await c.cases.timeline(res.case.id)
    kinds = [(t.kind, t.meta.get("event") or t.meta.get("node") or "") for t in timeline]
    bodies = [t.body or "" for t in timeline]
    assert kinds[0] == ("call", "started")
    assert any("menu" in b.lower() and "1" in b for b in bodies), bodies
    assert any("Connected to agent anna" in b for b in bodies), bodies
    ended = [t for t in timeline if t.meta.get("event") == "ended"]
    assert len(ended) == 1 and ended[0].meta["agent_id"] == "anna"
    assert ended[0].meta["talk_seconds"] >= 3
    case = await c.cases.get_case(res.case.id)
    assert case.last_agent_id == "anna"


async def test_caller_hanging_up_while_the_agent_phone_rings_cancels_the_ringing(
        site_dir, make_node, tmp_path: Path) -> None:
    """Abandon during ringing: the ACD withdraws the offer and the agent's phone gets a
    SIP CANCEL right away (not a ring until RONA); the agent stays available."""
    import re

    from sip_testkit import RawUa

    from pbx_bridge.sip.message import SipRequest
    from pbx_bridge.sip.transport import Peer

    _node, acd, sip, events = await voice_node(make_node, site_dir)
    phone, phone_port = await RawUa.open()  # rings, never answers
    try:
        register = SipRequest(method="REGISTER", uri="sip:centrale")
        for name, value in [("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKr"),
                            ("From", "<sip:1001@centrale>;tag=1"),
                            ("To", "<sip:1001@centrale>"), ("Call-ID", "reg-1001"),
                            ("CSeq", "1 REGISTER"),
                            ("Contact", f"<sip:1001@127.0.0.1:{phone_port}>")]:
            register.add(name, value)
        sip.registrar.register("1001", register, Peer("UDP", "127.0.0.1", phone_port))
        await acd.agent_login("anna", "desk-1")
        await acd.set_state("anna", "available")

        async def answer_with_ringing() -> str:
            invite = await asyncio.wait_for(phone.requests.get(), 20)
            via, from_, to, call_id = (re.search(rf"(?m)^{h}: (.*)\r$", invite).group(1)
                                       for h in ("Via", "From", "To", "Call-ID"))
            phone.send(f"SIP/2.0 180 Ringing\nVia: {via}\nFrom: {from_}\nTo: {to};tag=ph\n"
                       f"Call-ID: {call_id}\nCSeq: 1 INVITE\nContent-Length: 0\n\n", sip.port)
            while True:
                request = await asyncio.wait_for(phone.requests.get(), 20)
                if not request.startswith("INVITE"):
                    return request

        ringing = asyncio.ensure_future(answer_with_ringing())
        scenario = uac_scenario(digits="1", wait_before_dtmf_ms=1500, hold_ms=3000)
        result = await run_sipp(scenario, tmp_path, sip.port, service="100", timeout=30)
        assert result.returncode == 0, result.stderr + result.errors
        cancel = await ringing
    finally:
        phone.close()
    assert cancel.startswith("CANCEL "), cancel
    assert "task.offered" in events and "task.abandoned" in events
    assert "task.missed" not in events
    assert acd.agent("anna").state == "available"
