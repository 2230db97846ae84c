"""The tolerant SIP parser: what real peers send is accepted, the rest is refused precisely."""

from __future__ import annotations

import pytest

from pbx_bridge.sip.message import (
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    find_stream_message,
    parse_message,
)

INVITE = (
    "INVITE sip:0800123@10.0.0.1 SIP/2.0\r\n"
    "v: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport\r\n"
    "Via: SIP/2.0/UDP proxy:5070;branch=z9hG4bK0, SIP/2.0/TCP edge;branch=z9hG4bKx\r\n"
    "f: \"Alice, A.\" <sip:+331@10.0.0.2>;tag=abc\r\n"
    "t: <sip:0800123@10.0.0.1>\r\n"
    "i: call-1@10.0.0.2\r\n"
    "cseq: 1 INVITE\r\n"
    "Subject: folded\r\n"
    "  across lines\r\n"
    "Supported:\r\n"
    "c: application/sdp\r\n"
    "l: 4\r\n"
    "\r\n"
    "v=0\r\n"
)


def test_compact_forms_folding_empty_header_and_several_vias():
    msg = parse_message(INVITE.encode())
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE" and msg.call_id == "call-1@10.0.0.2"
    assert [v.host for v in msg.vias] == ["10.0.0.2", "proxy", "edge"]
    assert msg.vias[0].params == {"branch": "z9hG4bK1", "rport": ""}
    assert msg.get("SUBJECT") == "folded across lines"
    assert msg.get("supported") == "" or msg.get_all("supported") == []
    assert msg.from_addr.display == "Alice, A." and msg.from_addr.tag == "abc"
    assert msg.cseq == (1, "INVITE")
    assert msg.body == b"v=0\r"  # Content-Length is authoritative


def test_bare_lf_line_ends_and_missing_content_length_over_udp():
    text = INVITE.replace("\r\n", "\n").replace("l: 4\n", "")
    msg = parse_message(text.encode())
    assert msg.body == b"v=0\n"
    assert parse_message(text.encode(), stream=True).body == b""


def test_serialize_round_trip_uses_canonical_names():
    msg = parse_message(INVITE.encode())
    again = parse_message(msg.serialize())
    assert again.headers == msg.headers and again.body == msg.body
    assert b"Call-ID: call-1@10.0.0.2" in msg.serialize()
    assert b"CSeq: 1 INVITE" in msg.serialize()


def test_response_parsing():
    text = ("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@h>;tag=1\r\n"
            "To: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(text.encode())
    assert isinstance(msg, SipResponse) and msg.status == 180 and msg.reason == "Ringing"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t.replace("l: 4", "l: 400"), "exceeds body"),
        (lambda t: t.replace("l: 4", "l: four"), "bad Content-Length"),
        (lambda t: t.replace("l: 4\r\n", "l: 4\r\nContent-Length: 5\r\n"), "conflicting"),
        (lambda t: t.replace("i: call-1@10.0.0.2\r\n", ""), "missing Call-ID"),
        (lambda t: t.replace("cseq: 1 INVITE\r\n", ""), "missing CSeq"),
        (lambda t: t.replace("cseq: 1 INVITE", "cseq: 1 BYE"), "does not match"),
        (lambda t: t.replace("cseq: 1 INVITE", "cseq: one INVITE"), "malformed CSeq"),
        (lambda t: t.replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1), "malformed request line"),
        (lambda t: t.replace("Subject: folded", "Sub ject: x"), "bad header name"),
        (lambda t: t.replace("Subject: folded", "Subject folded"), "without colon"),
        (lambda t: t.replace("t: <sip:0800123@10.0.0.1>", "t: <sip:0800123@10.0.0.1"),
         "unterminated"),
        (lambda t: "\x00" + t, "NUL"),
    ],
)
def test_precise_errors_keep_headers_for_a_400(mutate, reason):
    with pytest.raises(SipParseError) as info:
        parse_message(mutate(INVITE).encode())
    assert reason in info.value.reason
    if reason != "NUL":
        assert info.value.is_request


def test_size_limits():
    huge = INVITE.replace("Subject: folded", "Subject: " + "x" * 9000)
    with pytest.raises(SipParseError, match="too long"):
        parse_message(huge.encode())
    many = INVITE.replace("Subject: folded", "\r\n".join(f"X-H{i}: v" for i in range(200)))
    with pytest.raises(SipParseError, match="too many headers"):
        parse_message(many.encode())
    with pytest.raises(SipParseError, match="too large"):
        parse_message(b"x" * 70_000)


def test_stream_framing_waits_for_body_and_splits_pipelined_messages():
    data = INVITE.replace("l: 4", "l: 5").encode()  # body "v=0\r\n" is 5 bytes
    assert find_stream_message(data[:-2]) is None
    start, end = find_stream_message(b"\r\n" + data + data)
    assert start == 2 and end == 2 + len(data)


def test_uris_and_name_addrs():
    uri = SipUri.parse("sip:+331234@[2001:db8::1]:5070;transport=tcp")
    assert (uri.user, uri.host, uri.port, uri.params) == ("+331234", "[2001:db8::1]", 5070,
                                                          {"transport": "tcp"})
    assert SipUri.parse("tel:+33123;phone-context=x").user == "+33123"
    addr = NameAddr.parse("sip:bob@h;tag=9")
    assert addr.uri == "sip:bob@h" and addr.tag == "9"
    with pytest.raises(SipParseError):
        SipUri.parse("http://example.com")


def test_header_value_split_fast_paths_equal_the_scan() -> None:
    """Headers without a comma, or without quotes and brackets, skip the character
    scan: the split must be the scan's, on random headers of the characters that
    matter and on real ones."""
    import random

    from pbx_bridge.sip.message import (
        split_header_values,
        split_header_values_by_scanning,
    )

    rng = random.Random(21)
    alphabet = ' ,"<>\\;=a1:@\t'
    samples = ["INVITE, ACK, BYE, CANCEL, OPTIONS", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9",
               '"Doe, J" <sip:a@b>, <sip:c@d;x=1,2>', "<sip:a@b>", "", " , ,", "timer"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
                for _ in range(20_000)]
    for value in samples:
        assert split_header_values(value) == split_header_values_by_scanning(value), value


def test_header_name_table_equals_the_slow_path() -> None:
    """The table of known spellings gives the key lower-casing gives, and only
    holds names the token check accepts (the parser skips that check for them)."""
    from pbx_bridge.sip import message as m

    for spelling, key in m._KNOWN_NAMES.items():
        assert key == m._canonical_name(spelling), spelling
        assert m._TOKEN.match(spelling), spelling
        assert m.canonical_name(spelling) == key
        assert m.display_name_of(key) == m._title_name(key)
    for name in ("X-Custom-Thing", " Via ", "CALL-id", "l", "Content-LENGTH", "x"):
        assert m.canonical_name(name) == m._canonical_name(name)
        assert m.display_name_of(m.canonical_name(name)) == m._title_name(
            m.canonical_name(name))


def test_parsed_headers_are_reused_until_the_header_changes() -> None:
    msg = parse_message(INVITE.encode())
    assert msg.from_addr is msg.from_addr  # parsed once
    assert msg.cseq == (1, "INVITE")
    msg.set("From", "<sip:bob@example.com>;tag=new")
    assert msg.from_addr.tag == "new" and msg.from_addr.uri == "sip:bob@example.com"
    msg.headers = [(k, "2 INVITE" if k == "cseq" else v) for k, v in msg.headers]
    assert msg.cseq == (2, "INVITE")
    msg.headers.append(("via", "SIP/2.0/UDP late.example:5080;branch=z9hG4bKlate"))
    assert [v.host for v in msg.vias] == ["10.0.0.2", "proxy", "edge", "late.example"]
    msg.remove("to")
    with pytest.raises(SipParseError):
        msg.to_addr  # noqa: B018 - the header is gone, as before the cache
    msg.vias.clear()  # the list is the caller's: the message's vias stay
    assert len(msg.vias) == 4


@pytest.mark.parametrize("top", [
    "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport",
    "SIP/2.0/udp host;branch=z9hG4bK1;RPORT;x=\" a \"",
    "SIP/2.0/TCP [2001:db8::1]:5061;branch=\"z9hG4bK;odd\";received=1.2.3.4",
    "SIP / 2.0 / UDP h:05060 ;branch=z9hG4bK1; maddr = 10.0.0.9 ;ttl=1",
    "SIP/2.0/UDP h;=v;k=;flag;k2=\"\"",
])
def test_stamped_top_via_reads_as_its_text(top: str) -> None:
    """The transport keeps the stamped Via it built as the message's parse only when
    parsing its text again would give the same; either way a read equals a parse."""
    from pbx_bridge.sip.message import Via
    from pbx_bridge.sip.transport import Peer, TransportLayer

    data = INVITE.replace("v: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport", f"v: {top}")
    msg = parse_message(data.encode())
    assert isinstance(msg, SipRequest)
    msg.vias  # noqa: B018 - cached, as parse_message leaves it
    layer = TransportLayer.__new__(TransportLayer)
    layer._stamp_via(msg, Peer("UDP", "192.0.2.7", 4242))
    fresh = [Via.parse(v) for v in msg.get_all("via")]
    assert msg.vias == fresh
    assert msg.vias[0].params.get("received") == "192.0.2.7"
