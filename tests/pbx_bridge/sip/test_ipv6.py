"""IPv6 (issue 26): sipp calls the server on ::1 — Via, Contact and SDP (`c=IN IP6`)
carry IPv6 addresses and the call's RTP flows both ways over IPv6."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest
from conftest import AGENTS
from sip_testkit import SIPP, uac_scenario

from config.schema.server import SipSettings
from pbx_bridge.media.audio import PromptDirectory
from pbx_bridge.sip.leg import SipCallLeg
from pbx_bridge.sip.ports import CallRecord, TrunkConfig
from pbx_bridge.sip.server import SipServer

pytestmark = pytest.mark.sipp


def has_ipv6_loopback() -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return True
    return False


def free_udp6_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


async def run_sipp6(scenario: str, workdir: Path, server_port: int) -> tuple[int, str]:
    path = workdir / "scenario6.xml"
    path.write_text(scenario)
    for _ in range(8):
        args = [SIPP, "-sf", str(path), "-m", "1", "-i", "::1", "-p", str(free_udp6_port()),
                "-mp", str(free_udp6_port() & ~1), "-s", "0800", "-nostdin",
                "-timeout", "30s", "-timeout_error", "-trace_msg",
                "-message_file", str(workdir / "messages.log"), f"[::1]:{server_port}"]
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode and b"bind" in err.lower():
            continue
        messages = (workdir / "messages.log").read_text(errors="replace") \
            if (workdir / "messages.log").exists() else ""
        return proc.returncode or 0, err.decode(errors="replace") + messages
    raise AssertionError("sipp could not bind")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this host")
async def test_sipp_calls_over_ipv6(tmp_path: Path, prompt_dir: Path):
    records: list[CallRecord] = []

    async def sink(record: CallRecord) -> None:
        records.append(record)

    async def ivr(leg: SipCallLeg) -> None:
        await leg.answer()
        with contextlib.suppress(Exception):
            await leg.play(["menu"], "en")

    settings = SipSettings(enabled=True, host="::1", port=0, transports=["udp", "tcp"],
                           rtp_port_min=30000, rtp_port_max=39999)
    server = SipServer(settings, inbound_handler=ivr, credentials=AGENTS,
                       trunks=[TrunkConfig("v6", allowed_ips=frozenset({"::1"}))],
                       prompts=PromptDirectory(prompt_dir), call_record_sink=sink)
    await server.start()
    try:
        scenario = uac_scenario(hold_ms=2000)
        code, log = await run_sipp6(scenario, tmp_path, server.port)
    finally:
        await server.stop()
    assert code == 0, log[-3000:]
    # our 200 OK: Via/Contact bracketed, SDP on IPv6
    assert "c=IN IP6 ::1" in log and "Contact: <sip:centrale@[::1]:" in log, log[-3000:]
    record = next(r for r in records if r.direction == "inbound")
    assert record.rtp_packets_out >= 50  # the prompt reached sipp over IPv6


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this host")
async def test_dual_stack_takes_ipv4_and_ipv6_callers(tmp_path: Path, prompt_dir: Path):
    """host "::": one listener for both families; an IPv4 caller is seen as 127.0.0.1
    (not ::ffff:127.0.0.1), so the trunk's IPv4 address list still matches it."""
    from sip_testkit import run_sipp

    records: list[CallRecord] = []

    async def sink(record: CallRecord) -> None:
        records.append(record)

    async def ivr(leg: SipCallLeg) -> None:
        await leg.answer()
        with contextlib.suppress(Exception):
            await leg.play(["menu"], "en")

    settings = SipSettings(enabled=True, host="::", port=0, transports=["udp", "tcp"],
                           rtp_port_min=30000, rtp_port_max=39999, public_address="::1")
    server = SipServer(settings, inbound_handler=ivr, credentials=AGENTS,
                       trunks=[TrunkConfig("v4", allowed_ips=frozenset({"127.0.0.1"})),
                               TrunkConfig("v6", allowed_ips=frozenset({"::1"}))],
                       prompts=PromptDirectory(prompt_dir), call_record_sink=sink)
    await server.start()
    try:
        (tmp_path / "v4").mkdir()
        (tmp_path / "v6").mkdir()
        v4 = await run_sipp(uac_scenario(hold_ms=1000), tmp_path / "v4", server.port)
        code6, log6 = await run_sipp6(uac_scenario(hold_ms=1000), tmp_path / "v6", server.port)
    finally:
        await server.stop()
    assert v4.returncode == 0, v4.stderr + v4.errors
    assert code6 == 0, log6[-3000:]
    assert len([r for r in records if r.direction == "inbound"]) == 2
