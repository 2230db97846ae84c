"""Property tests: whatever bytes arrive, the parsers fail only with their own errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx_bridge.media.rtp import RtpPacket
from pbx_bridge.sip.auth import parse_auth_params
from pbx_bridge.sip.message import SipParseError, find_stream_message, parse_message
from pbx_bridge.sip.sdp import SdpError, choose_codec, parse_sdp

VALID = (b"INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bKa;rport\r\n"
         b"From: \"A\" <sip:a@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
         b"Contact: <sip:a@h:5060>\r\nContent-Type: application/sdp\r\nContent-Length: 58\r\n"
         b"\r\nv=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0 101\r\na=sendrecv\r\n")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        pos = draw(st.integers(0, len(data) - 1)) if data else 0
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            end = draw(st.integers(pos, min(len(data), pos + 40)))
            del data[pos:end]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=20))
        elif op == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(0, 60))]
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(st.one_of(mutated(), st.binary(max_size=600)))
def test_sip_parser_raises_only_sip_parse_error(data: bytes) -> None:
    for stream in (False, True):
        try:
            msg = parse_message(data, stream=stream)
        except SipParseError:
            continue
        msg.serialize()  # whatever parsed can be written back
    try:
        find_stream_message(data)
    except SipParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), mutated().map(lambda d: d.split(b"\r\n\r\n")[-1])))
def test_sdp_parser_raises_only_sdp_error(data: bytes) -> None:
    try:
        choose_codec(parse_sdp(data))
    except SdpError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_rtp_and_auth_parsers_never_raise(data: bytes) -> None:
    RtpPacket.parse(data)
    parse_auth_params("Digest " + data.decode("latin-1"))


async def test_server_survives_mutated_messages_without_logging_errors(make_server, caplog):
    """Mutations go through the whole stack (transport, transactions, dialogs,
    registrar, SDP): no handler may fail with an unexpected exception."""
    import asyncio
    import logging
    import random
    import socket

    from pbx_bridge.sip.transport import Peer

    async def refuse(leg) -> None:  # type: ignore[no-untyped-def]
        await leg.hangup()

    server = await make_server(refuse)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    peer = Peer("UDP", "127.0.0.1", sink.getsockname()[1])
    rng = random.Random(3261)
    templates = [VALID] + [VALID.replace(b"INVITE", m) for m in
                           (b"REGISTER", b"BYE", b"CANCEL", b"INFO", b"OPTIONS", b"UPDATE")]
    templates.append(VALID.replace(b"To: <sip:1@h>", b"To: <sip:1@h>;tag=x"))
    caplog.set_level(logging.ERROR)
    try:
        for _ in range(1500):
            data = bytearray(rng.choice(templates))
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(data))
                kind = rng.random()
                if kind < 0.4:
                    data[pos] = rng.randrange(32, 127)
                elif kind < 0.7:
                    del data[pos:pos + rng.randint(1, 12)]
                else:
                    data[pos:pos] = bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 8)))
            server.transport.received(bytes(data), peer)
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)
    finally:
        sink.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[0].getMessage() + str(errors[0].exc_info)
    assert 100 < server.transport.parse_errors < 1400  # many rejected, many processed
