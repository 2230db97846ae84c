"""Real sipp callers against the SIP core running in the test process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sip_testkit import run_sipp, uac_scenario

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
