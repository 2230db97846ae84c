"""Hostile input: >= 200 malformed messages while a real call is in progress."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from pathlib import Path

import pytest
from sip_corpus import CorpusBuilder
from sip_testkit import run_sipp, uac_scenario

from pbx_bridge.sip.leg import SipCallLeg

pytestmark = pytest.mark.sipp


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.by_branch: dict[str, list[int]] = defaultdict(list)
        self.to_tags: dict[str, set[str]] = defaultdict(set)
        self.unmatched: list[bytes] = []  # e.g. a 400 to a request cut inside its branch

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        text = data.decode(errors="replace")
        status = re.match(r"SIP/2\.0 (\d{3})", text)
        branch = re.search(r"branch=(z9hG4bK[\w]+)", text)
        if not status or not branch:
            self.unmatched.append(data)
            return
        self.by_branch[branch.group(1)].append(int(status.group(1)))
        tag = re.search(r"(?im)^To:.*;tag=([\w]+)", text)
        if tag:
            self.to_tags[branch.group(1)].add(tag.group(1))


async def test_hostile_corpus_gets_rfc_answers_and_call_in_progress_survives(
        make_server, tmp_path: Path):
    digits: list[str] = []

    async def handler(leg: SipCallLeg) -> None:
        if leg.caller.dialled == "corpus":
            await leg.hangup()  # acceptable corpus INVITEs are refused with 480
            return
        await leg.answer()
        played = await leg.play(["menu"], "en", barge_in=True)  # 3 s, cut by the 1st digit
        first = played.interrupted_by or ""
        digits.append(first + await leg.collect_digits(2 - len(first), first_digit_timeout=6,
                                                       inter_digit_timeout=3))
        await leg.wait_ended()

    server = await make_server(handler)
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0))
    local_port = transport.get_extra_info("sockname")[1]

    call = asyncio.ensure_future(run_sipp(
        uac_scenario(digits="42", wait_before_dtmf_ms=1800, hold_ms=300), tmp_path,
        server.port, timeout=30))
    for _ in range(100):  # wait until the call is up and the prompt is playing
        if server.calls:
            break
        await asyncio.sleep(0.05)
    assert len(server.calls) == 1
    live = next(iter(server.calls.values()))
    cases = CorpusBuilder(server.port, local_port).all(
        live.call_id, live.remote_uri, live.local_tag)
    assert len(cases) >= 200
    for case in cases:
        transport.sendto(case.data, ("127.0.0.1", server.port))
        await asyncio.sleep(0.002)
    result = await call
    await asyncio.sleep(0.5)
    transport.close()

    assert result.returncode == 0, result.stderr + result.errors
    assert digits == ["42"]  # the call in progress kept working during the flood

    failures = []
    for case in cases:
        finals = [s for s in collector.by_branch.get(case.branch or "", []) if s >= 200]
        outcome = finals[0] if finals else None
        if outcome not in case.expected:
            failures.append(f"{case.family}/{case.name}: got {outcome}, "
                            f"want {sorted(case.expected, key=str)}")
    assert not failures, "\n".join(failures)
    # retransmissions were absorbed by one transaction: one To tag for the flood
    flood = [c for c in cases if c.family == "flood"]
    for branch in {c.branch for c in flood}:
        assert len(collector.to_tags[branch]) == 1
    assert all(d.startswith(b"SIP/2.0 400 ") for d in collector.unmatched)
    assert server.transport.parse_errors > 50
    assert server.calls == {}  # nothing left behind


async def test_tcp_framing_abuse_closes_the_connection_and_nothing_else(make_server):
    async def idle(leg: SipCallLeg) -> None:
        await leg.hangup()

    server = await make_server(idle)

    def options(branch: str, extra: str = "") -> bytes:
        return (f"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch={branch}"
                f"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: {branch}\r\n"
                f"CSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n").encode()

    # pipelined requests and a keep-alive on one connection are all answered
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"\r\n\r\n" + options("z9hG4bKt1") + options("z9hG4bKt2"))
    await writer.drain()
    seen = b""
    while seen.count(b"SIP/2.0 200") < 2:
        seen += await asyncio.wait_for(reader.read(4096), 3)
    writer.close()

    for abuse in (b"A" * 70_000,  # a header block that never ends
                  options("z9hG4bKt3").replace(b"Content-Length: 0", b"Content-Length: 999999")):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(abuse)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the server
        writer.close()

    # the server still answers on a fresh connection
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(options("z9hG4bKt4"))
    await writer.drain()
    assert (await asyncio.wait_for(reader.read(4096), 3)).startswith(b"SIP/2.0 200")
    writer.close()
