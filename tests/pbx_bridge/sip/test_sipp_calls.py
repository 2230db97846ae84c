"""Real sipp callers against the SIP core running in the test process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sip_testkit import PCAP_DIR, PyVoipAgentPhone, run_sipp, uac_scenario

from ivr.call_leg import CallerHangup
from pbx_bridge.sip.leg import SipCallLeg

pytestmark = pytest.mark.sipp


async def test_sipp_call_plays_prompt_and_reads_rfc2833_digit(make_server, tmp_path: Path):
    seen: dict[str, object] = {}

    async def ivr(leg: SipCallLeg) -> None:
        seen["caller"] = leg.caller
        await leg.answer()
        result = await leg.play(["welcome"], "en", barge_in=True)
        seen["barge"] = result.interrupted_by
        digits = result.interrupted_by or await leg.collect_digits(
            1, first_digit_timeout=5, inter_digit_timeout=2)
        seen["digits"] = digits
        seen["rtp_out"] = leg.call.rtp.stats.packets_out if leg.call.rtp else 0
        try:
            await leg.wait_ended()
        except CallerHangup:
            pass

    server = await make_server(ivr)
    result = await run_sipp(uac_scenario(digits="7", wait_before_dtmf_ms=900), tmp_path,
                            server.port, service="0800123")
    assert result.returncode == 0, result.stderr + result.errors
    await asyncio.sleep(0.1)
    caller = seen["caller"]
    assert caller.dialled == "0800123"
    assert caller.caller_id == "+33123456789"
    assert caller.withheld is False
    assert seen["digits"] == "7"
    assert seen["rtp_out"] >= 25  # the 0.6 s prompt went out as 20 ms frames


async def test_caller_is_bridged_to_registered_pyvoip_agent_phone(make_server, tmp_path: Path):
    """sipp (PCMA) -> IVR -> MOH -> agent phone (pyVoIP, PCMU) rings, answers -> bridge
    with transcoding; RTP counted on both sides; caller's BYE ends the agent leg too."""
    outcome: dict[str, object] = {}
    records = []

    async def record_sink(record) -> None:
        records.append(record)

    async def wiring(leg: SipCallLeg) -> None:
        await leg.answer()
        await leg.play(["welcome"], "en")
        await leg.start_music_on_hold()
        ring = await server.ring_agent("alice", caller_id=leg.caller.caller_id, timeout=10)
        outcome["ring"] = ring.status
        assert ring.leg is not None
        outcome["agent_leg"] = ring.leg
        outcome["caller_leg"] = leg
        await server.bridge(leg, ring.leg)
        outcome["agent_ended"] = ring.leg.ended

    server = await make_server(wiring, call_record_sink=record_sink)
    phone = PyVoipAgentPhone(server.port, "alice", "alice-secret")
    await phone.start()
    try:
        assert server.registrar.is_registered("alice")
        scenario = uac_scenario(codec=8, wait_before_dtmf_ms=0, hold_ms=0).replace(
            '<pause milliseconds="0"/>',
            '<pause milliseconds="2500"/>\n  <nop><action><exec play_pcap_audio="'
            f'{PCAP_DIR / "g711a.pcap"}"/></action></nop>\n  <pause milliseconds="3000"/>', 1)
        result = await run_sipp(scenario, tmp_path, server.port, timeout=30)
        assert result.returncode == 0, result.stderr + result.errors
        for _ in range(50):
            if "agent_ended" in outcome:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        await phone.stop()
    assert outcome["ring"] == "answered"
    assert outcome["agent_ended"] is True
    caller_leg, agent_leg = outcome["caller_leg"], outcome["agent_leg"]
    assert caller_leg.ended and agent_leg.ended
    # caller -> agent: the sipp pcap's PCMA packets were relayed (transcoded) to pyVoIP
    caller_stats = caller_leg.call.record
    assert caller_stats.rtp_packets_in >= 100
    assert phone.packets_received >= 100
    # agent -> caller: pyVoIP's stream was relayed to sipp
    assert agent_leg.call.record.rtp_packets_in >= 100
    assert caller_leg.call.record.rtp_packets_out >= 100
    assert phone.call_states() == ["ENDED"]
    assert len(records) == 1 and records[0].agent_username == "alice"
    assert records[0].ended_by == "caller" and records[0].bridged_at is not None
