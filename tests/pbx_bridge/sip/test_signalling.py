"""Signalling behaviour against real sipp and hand-written requests: auth, trunks,
CANCEL, INFO, hold, identity, TCP."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sip_testkit import (
    BYE,
    INVITE,
    RawUa,
    register_scenario,
    rejected_invite_scenario,
    run_sipp,
    uac_scenario,
)

from pbx_bridge.sip.leg import SipCallLeg
from pbx_bridge.sip.ports import TrunkConfig

pytestmark = pytest.mark.sipp

SDP = ("v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
       "m=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n")


async def idle(leg: SipCallLeg) -> None:
    await leg.answer()
    await leg.wait_ended()


async def test_sipp_register_with_right_and_wrong_digest(make_server, tmp_path: Path):
    server = await make_server(idle)
    ok = await run_sipp(register_scenario("alice", "alice-secret", expect_final=200), tmp_path,
                        server.port, timeout=10)
    assert ok.returncode == 0, ok.stderr + ok.errors
    assert server.registrar.is_registered("alice")
    bad = await run_sipp(register_scenario("bob", "wrong", expect_final=403), tmp_path,
                         server.port, timeout=10)
    assert bad.returncode == 0, bad.stderr + bad.errors
    assert not server.registrar.is_registered("bob")
    assert server.stats.auth_failures == 1


async def test_invite_from_outside_the_allow_list_is_forbidden(make_server, tmp_path: Path):
    calls = []

    async def handler(leg: SipCallLeg) -> None:
        calls.append(leg)

    server = await make_server(handler, trunks=[
        TrunkConfig("carrier", allowed_ips=frozenset({"192.0.2.10"}))])
    result = await run_sipp(rejected_invite_scenario(403), tmp_path, server.port, timeout=10)
    assert result.returncode == 0, result.stderr + result.errors
    assert calls == []


async def test_digest_trunk_challenges_then_accepts_or_forbids(make_server, tmp_path: Path):
    calls: list[SipCallLeg] = []

    async def handler(leg: SipCallLeg) -> None:
        calls.append(leg)
        await leg.answer()
        await leg.wait_ended()

    trunks = [TrunkConfig("carrier", username="trunk1", password="s3cret")]
    server = await make_server(handler, trunks=trunks)
    good = await run_sipp(rejected_invite_scenario(401, authenticate=("trunk1", "s3cret")),
                          tmp_path, server.port, timeout=10)
    assert good.returncode == 0, good.stderr + good.errors
    assert len(calls) == 1 and calls[0].caller.channel_vars["sip_trunk"] == "carrier"
    bad = await run_sipp(rejected_invite_scenario(401, authenticate=("trunk1", "guess"),
                                                  then_status=403),
                         tmp_path, server.port, timeout=10)
    assert bad.returncode == 0, bad.stderr + bad.errors
    assert len(calls) == 1


def _register(port: int, local_port: int, n: int, auth: str = "") -> str:
    return (f"REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:{local_port};"
            f"branch=z9hG4bKbf{n}\nFrom: <sip:alice@127.0.0.1>;tag=t{n}\n"
            f"To: <sip:alice@127.0.0.1>\nCall-ID: bf-{n}\nCSeq: {n} REGISTER\n"
            f"Contact: <sip:alice@127.0.0.1:{local_port}>\n{auth}Content-Length: 0\n\n")


async def test_brute_force_is_rate_limited(make_server):
    from pbx_bridge.sip.auth import authorization_header

    server = await make_server(idle, auth_failure_limit=3)
    ua, local_port = await RawUa.open()
    try:
        statuses = []
        for n in range(1, 6):
            ua.send(_register(server.port, local_port, n), server.port)
            challenge = await ua.final()
            if challenge.startswith("SIP/2.0 401"):
                www = re.search(r"WWW-Authenticate: (.*)\r\n", challenge).group(1)
                auth = authorization_header(www, "alice", f"guess{n}", "REGISTER",
                                            "sip:127.0.0.1")
                ua.send(_register(server.port, local_port, 100 + n,
                                  f"Authorization: {auth}\n"), server.port)
                statuses.append((await ua.final()).split("\r\n")[0])
            else:
                statuses.append(challenge.split("\r\n")[0])
        assert statuses[:3] == ["SIP/2.0 403 Forbidden (bad credentials)"] * 3
        # blocked now: no challenge any more, even before trying a password
        assert statuses[3:] == ["SIP/2.0 403 Forbidden (too many failures)"] * 2
    finally:
        ua.close()


async def test_cancel_before_answer_gets_487_and_ends_the_leg(make_server, tmp_path: Path):
    seen: dict[str, object] = {}
    records = []

    async def handler(leg: SipCallLeg) -> None:
        await leg.ring()
        await leg.wait_ended()
        seen["gone"] = leg.caller_gone

    async def sink(record) -> None:
        records.append(record)

    server = await make_server(handler, call_record_sink=sink)
    invite = INVITE.split("  <recv")[0].format(
        from_hdr="<sip:+33111@[local_ip]:[local_port]>", extra="", codec=0, codec_name="PCMU")
    scenario = ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="cancel">\n'
                + invite + """
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send>
    <![CDATA[
      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:+33111@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:+33111@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
</scenario>
""")
    result = await run_sipp(scenario, tmp_path, server.port, timeout=10)
    assert result.returncode == 0, result.stderr + result.errors
    await asyncio.sleep(0.1)
    assert seen["gone"] is True
    assert records[0].ended_by == "caller" and records[0].cause == "cancel"
    assert records[0].answered_at is None


async def test_sip_info_dtmf_reinvite_hold_and_in_dialog_options(make_server, tmp_path: Path):
    seen: dict[str, object] = {}

    async def handler(leg: SipCallLeg) -> None:
        await leg.answer()
        seen["digits"] = await leg.collect_digits(2, first_digit_timeout=5,
                                                  inter_digit_timeout=2, terminator="#")
        for _ in range(100):
            if leg.on_hold:
                break
            await asyncio.sleep(0.02)
        seen["hold"] = leg.on_hold
        await leg.wait_ended()

    server = await make_server(handler)
    head = ("      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
            "      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            "      From: <sip:+33222@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n"
            "      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]\n"
            "      Call-ID: [call_id]\n      CSeq: {cseq} {method}\n"
            "      Contact: sip:sipp@[local_ip]:[local_port]\n      Max-Forwards: 70\n")

    def req(method: str, cseq: int, ctype: str = "", body: str = "") -> str:
        text = head.format(method=method, cseq=cseq)
        if ctype:
            text += f"      Content-Type: {ctype}\n"
        text += "      Content-Length: [len]\n\n" + body
        return f'  <send retrans="500">\n    <![CDATA[\n{text}\n    ]]>\n  </send>\n'

    hold_sdp = ("      v=0\n      o=user1 1 2 IN IP4 [local_ip]\n      s=-\n"
                "      c=IN IP4 [media_ip]\n      t=0 0\n"
                "      m=audio [media_port] RTP/AVP 0 101\n"
                "      a=rtpmap:101 telephone-event/8000\n"
                "      a=sendonly\n")
    invite = INVITE.format(from_hdr="<sip:+33222@[local_ip]:[local_port]>", extra="",
                           codec=0, codec_name="PCMU")
    body = invite
    body += req("INFO", 2, "application/dtmf-relay", "      Signal=4\n      Duration=160\n")
    body += '  <recv response="200"/>\n'
    body += req("INFO", 3, "application/dtmf", "      2\n")
    body += '  <recv response="200"/>\n'
    body += req("OPTIONS", 4)
    body += '  <recv response="200"/>\n'
    body += req("INVITE", 5, "application/sdp", hold_sdp)
    body += ('  <recv response="200">\n    <action>\n      <ereg regexp="a=recvonly" '
             'search_in="body" check_it="true" assign_to="dir"/>\n    </action>\n  </recv>\n'
             '  <Reference variables="dir"/>\n')
    body += req("ACK", 5).replace("Content-Length: [len]", "Content-Length: 0").replace(
        '<send retrans="500">', "<send>")
    body += '  <pause milliseconds="300"/>\n'
    body += BYE.format(from_hdr="<sip:+33222@[local_ip]:[local_port]>").replace(
        "CSeq: 2 BYE", "CSeq: 6 BYE")
    scenario = ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="info">\n'
                + body + "</scenario>\n")
    result = await run_sipp(scenario, tmp_path, server.port, timeout=10)
    assert result.returncode == 0, result.stdout[-3000:] + result.errors
    await asyncio.sleep(0.1)
    assert seen == {"digits": "42", "hold": True}


async def test_sipp_call_over_tcp_reads_rfc2833_digits(make_server, tmp_path: Path):
    got: list[str] = []

    async def handler(leg: SipCallLeg) -> None:
        await leg.answer()
        got.append(await leg.collect_digits(3, first_digit_timeout=5, inter_digit_timeout=2))
        await leg.wait_ended()

    server = await make_server(handler)
    result = await run_sipp(uac_scenario(digits="9*#", wait_before_dtmf_ms=200, hold_ms=200),
                            tmp_path, server.port, transport="t1", timeout=15)
    assert result.returncode == 0, result.stderr + result.errors
    assert got == ["9*"]  # '#' terminates collection and is not included


@pytest.mark.parametrize(
    ("from_hdr", "extra", "trusted", "caller_id", "withheld"),
    [
        ("<sip:+33100@127.0.0.1>", "", True, "+33100", False),
        ('"Anonymous" <sip:anonymous@anonymous.invalid>', "", True, None, True),
        ("<sip:+33100@127.0.0.1>", "Privacy: id\n", True, None, True),
        ("<sip:+33100@127.0.0.1>", "P-Asserted-Identity: <sip:+33777@carrier>\n", True,
         "+33777", False),
        ("<sip:+33100@127.0.0.1>", "P-Asserted-Identity: <sip:+33777@carrier>\n", False,
         "+33100", False),
        ("<sip:anonymous@127.0.0.1>", "P-Asserted-Identity: <tel:+33777>\nPrivacy: id\n",
         True, None, True),
    ],
)
async def test_caller_identity_pai_only_from_trusted_trunks_and_withheld(
        make_server, from_hdr, extra, trusted, caller_id, withheld):
    seen = []

    async def handler(leg: SipCallLeg) -> None:
        seen.append(leg.caller)

    server = await make_server(handler, trunks=[
        TrunkConfig("t", allowed_ips=frozenset({"127.0.0.1"}), trusted=trusted)])
    ua, local_port = await RawUa.open()
    try:
        invite = (f"INVITE sip:0800555@127.0.0.1:{server.port} SIP/2.0\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bKid1;rport\n"
                  f"From: {from_hdr};tag=abc\nTo: <sip:0800555@127.0.0.1>\nCall-ID: id-1\n"
                  f"CSeq: 1 INVITE\nContact: <sip:x@127.0.0.1:{local_port}>\n{extra}"
                  f"Content-Type: application/sdp\nContent-Length: {len(SDP) + SDP.count(chr(10))}"
                  f"\n\n{SDP}")
        ua.send(invite, server.port)
        final = await ua.final()
        assert final.startswith("SIP/2.0 480")  # the handler returned without answering
    finally:
        ua.close()
    assert seen[0].caller_id == caller_id and seen[0].withheld is withheld
    assert seen[0].dialled == "0800555"


async def test_silent_peer_is_hung_up_by_the_media_watchdog(make_server):
    ended = asyncio.Event()
    records = []

    async def sink(record) -> None:  # type: ignore[no-untyped-def]
        records.append(record)
        ended.set()

    server = await make_server(idle, media_timeout=0.4, call_record_sink=sink)
    ua, local_port = await RawUa.open()
    try:
        ua.send(f"INVITE sip:0800@127.0.0.1:{server.port} SIP/2.0\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bKwd1;rport\n"
                f"From: <sip:+33100@127.0.0.1>;tag=wd\nTo: <sip:0800@127.0.0.1>\n"
                f"Call-ID: watchdog-1\nCSeq: 1 INVITE\n"
                f"Contact: <sip:x@127.0.0.1:{local_port}>\n"
                f"Content-Type: application/sdp\n"
                f"Content-Length: {len(SDP) + SDP.count(chr(10))}\n\n{SDP}", server.port)
        ok = await ua.final()
        assert ok.startswith("SIP/2.0 200")
        to = re.search(r"(?m)^To: (.*)\r$", ok).group(1)
        ua.send(f"ACK sip:0800@127.0.0.1:{server.port} SIP/2.0\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bKwd2;rport\n"
                f"From: <sip:+33100@127.0.0.1>;tag=wd\nTo: {to}\nCall-ID: watchdog-1\n"
                f"CSeq: 1 ACK\nContent-Length: 0\n\n", server.port)
        bye = await asyncio.wait_for(ua.requests.get(), 5)  # no RTP from us: BYE
        assert bye.startswith("BYE ")
        await asyncio.wait_for(ended.wait(), 2)
    finally:
        ua.close()
    assert records[0].cause == "media timeout" and records[0].ended_by == "server"


async def test_2xx_is_retransmitted_until_ack_and_requests_until_answered(make_server):
    """Timer G-style 2xx retransmission (RFC 3261 13.3.1.4) stops at the ACK; a client
    INVITE to a silent phone is retransmitted (timer A) until the ring timeout."""
    server = await make_server(idle)
    ua, local_port = await RawUa.open()
    try:
        ua.send(f"INVITE sip:0800@127.0.0.1:{server.port} SIP/2.0\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bKrt1;rport\n"
                f"From: <sip:+33100@127.0.0.1>;tag=rt\nTo: <sip:0800@127.0.0.1>\n"
                f"Call-ID: retrans-1\nCSeq: 1 INVITE\n"
                f"Contact: <sip:x@127.0.0.1:{local_port}>\n"
                f"Content-Type: application/sdp\n"
                f"Content-Length: {len(SDP) + SDP.count(chr(10))}\n\n{SDP}", server.port)
        first = await ua.final()
        assert first.startswith("SIP/2.0 200")
        again = await asyncio.wait_for(ua.responses.get(), 1.5)  # T1 = 0.5 s later
        assert again == first
        to = re.search(r"(?m)^To: (.*)\r$", first).group(1)
        ua.send(f"ACK sip:0800@127.0.0.1:{server.port} SIP/2.0\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bKrt2;rport\n"
                f"From: <sip:+33100@127.0.0.1>;tag=rt\nTo: {to}\nCall-ID: retrans-1\n"
                f"CSeq: 1 ACK\nContent-Length: 0\n\n", server.port)
        await asyncio.sleep(0.1)
        while not ua.responses.empty():  # drop one that crossed the ACK
            ua.responses.get_nowait()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ua.responses.get(), 1.2)  # the next was due 1 s later
    finally:
        ua.close()

    silent, silent_port = await RawUa.open()  # a "phone" that never answers
    try:
        from pbx_bridge.sip.message import SipRequest
        from pbx_bridge.sip.transport import Peer

        register = SipRequest(method="REGISTER", uri="sip:centrale")
        for name, value in [("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKr"),
                            ("From", "<sip:bob@centrale>;tag=1"), ("To", "<sip:bob@centrale>"),
                            ("Call-ID", "rb"), ("CSeq", "1 REGISTER"),
                            ("Contact", f"<sip:bob@127.0.0.1:{silent_port}>")]:
            register.add(name, value)
        server.registrar.register("bob", register, Peer("UDP", "127.0.0.1", silent_port))
        result = await server.ring_agent("bob", timeout=1.7)
        assert result.status == "timeout"
        invites = []
        while not silent.requests.empty():
            invites.append(silent.requests.get_nowait())
        # sent at 0, 0.5 and 1.5 s (timer A doubles), one transaction; no CANCEL yet:
        # RFC 3261 9.1 allows it only after a provisional response
        assert [r.split(" ")[0] for r in invites] == ["INVITE"] * 3
        assert len({re.search(r"branch=(\S+?);", r).group(1) for r in invites}) == 1
        invite = invites[0]
        via, from_, to, call_id = (re.search(rf"(?m)^{h}: (.*)\r$", invite).group(1)
                                   for h in ("Via", "From", "To", "Call-ID"))
        silent.send(f"SIP/2.0 180 Ringing\nVia: {via}\nFrom: {from_}\nTo: {to};tag=late\n"
                    f"Call-ID: {call_id}\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
                    server.port)
        cancel = await asyncio.wait_for(silent.requests.get(), 2)
        while cancel.startswith("INVITE"):  # a retransmission that crossed the 180
            cancel = await asyncio.wait_for(silent.requests.get(), 2)
        assert cancel.startswith("CANCEL ")
    finally:
        silent.close()
