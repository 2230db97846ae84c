"""baresip as a registering agent phone and as a caller (its INVITE carries an empty
`Supported:` header, which pyVoIP chokes on)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sip_testkit import PCAP_DIR, BaresipPhone, run_sipp, uac_scenario

from ivr.call_leg import CallerHangup
from pbx_bridge.sip.leg import SipCallLeg

pytestmark = pytest.mark.sipp


def registration_of(server, username: str) -> asyncio.Event:  # type: ignore[no-untyped-def]
    """Set when `username` has a binding: the registrar tells us, nobody polls."""
    registered = asyncio.Event()
    register = server.registrar.register

    def observed(user, req, peer):  # type: ignore[no-untyped-def]
        bindings = register(user, req, peer)
        if user == username and bindings:
            registered.set()
        return bindings

    server.registrar.register = observed
    return registered


async def test_sipp_caller_bridged_to_registered_baresip_phone(make_server, tmp_path: Path):
    outcome: dict[str, SipCallLeg | str] = {}

    async def wiring(leg: SipCallLeg) -> None:
        await leg.answer()
        await leg.start_music_on_hold()
        ring = await server.ring_agent("bob", caller_id=leg.caller.caller_id, timeout=10)
        outcome["ring"] = ring.status
        if ring.leg is not None:
            outcome["agent"] = ring.leg
            outcome["caller"] = leg
            await server.bridge(leg, ring.leg)

    server = await make_server(wiring)
    registered = registration_of(server, "bob")
    phone = BaresipPhone(tmp_path, server.port, "bob", "bob-secret")
    await phone.start()
    try:
        # baresip loads its modules and registers: slow on a loaded CI box, so the
        # limit is generous; the wait ends as soon as the REGISTER is accepted.
        await asyncio.wait_for(registered.wait(), 60)
        scenario = uac_scenario(codec=8, wait_before_dtmf_ms=0, hold_ms=0).replace(
            '<pause milliseconds="0"/>',
            '<pause milliseconds="1500"/>\n  <nop><action><exec play_pcap_audio="'
            f'{PCAP_DIR / "g711a.pcap"}"/></action></nop>\n  <pause milliseconds="3000"/>', 1)
        result = await run_sipp(scenario, tmp_path, server.port, timeout=30)
        assert result.returncode == 0, result.stderr + result.errors
        agent = outcome["agent"]
        assert isinstance(agent, SipCallLeg)
        await asyncio.wait_for(agent.call.ended.wait(), 15)
    finally:
        await phone.stop()
    assert outcome["ring"] == "answered"
    caller = outcome["caller"]
    assert isinstance(caller, SipCallLeg)
    # sipp -> bridge -> baresip, echoed by baresip -> bridge -> sipp
    assert caller.call.record.rtp_packets_in >= 100
    assert agent.call.record.rtp_packets_in >= 50
    assert caller.call.record.rtp_packets_out >= 50


async def test_baresip_calls_in_and_hears_the_prompt(make_server, tmp_path: Path):
    seen: dict[str, object] = {}

    async def ivr(leg: SipCallLeg) -> None:
        seen["caller"] = leg.caller
        try:
            await leg.answer()
            await leg.play(["menu"], "en")  # 3 s; baresip echoes it back to us
        except CallerHangup:
            pass
        assert leg.call.rtp is not None
        seen["echoed"] = leg.call.rtp.stats.packets_in

    done = asyncio.Event()

    async def ivr_then_done(leg: SipCallLeg) -> None:
        try:
            await ivr(leg)
        finally:
            done.set()

    server = await make_server(ivr_then_done)
    phone = BaresipPhone(tmp_path, server.port, "carol", "x", register=False,
                         commands=[f"/dial sip:0800999@127.0.0.1:{server.port}"])
    await phone.start()
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await phone.stop()
    caller = seen["caller"]
    assert caller.dialled == "0800999" and caller.caller_id == "carol"
    assert seen["echoed"] >= 50
