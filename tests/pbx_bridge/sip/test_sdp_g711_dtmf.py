"""SDP negotiation, G.711 tables and the RFC 4733 receiver."""

from __future__ import annotations

import math
from array import array

import pytest

from pbx_bridge.media import g711
from pbx_bridge.media.rtp import DtmfReceiver, RtpPacket
from pbx_bridge.sip.sdp import PCMA, SdpError, build_sdp, choose_codec, parse_sdp

OFFER = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 18 8 0 96\r\na=rtpmap:18 G729/8000\r\n"
         b"a=rtpmap:96 telephone-event/8000\r\na=sendrecv\r\n")


def test_offer_answer_prefers_offerer_order_and_finds_event_pt():
    offer = parse_sdp(OFFER)
    assert (offer.address, offer.port) == ("10.0.0.2", 4000)
    assert choose_codec(offer) == PCMA
    assert offer.event_payload_type() == 96
    assert not offer.on_hold
    answer = parse_sdp(build_sdp("10.0.0.1", 5000, [PCMA], 96))
    assert answer.payload_types == [8, 96] and answer.event_payload_type() == 96


@pytest.mark.parametrize("body", [
    OFFER.replace(b"18 8 0 96", b"18 96"),  # no G.711
    OFFER.replace(b"m=audio 4000", b"m=video 4000"),
    OFFER.replace(b"c=IN IP4 10.0.0.2\r\n", b""),
    OFFER.replace(b"m=audio 4000", b"m=audio 99999"),
    b"garbage",
])
def test_unusable_offers_raise(body):
    with pytest.raises(SdpError):
        choose_codec(parse_sdp(body))


def test_hold_detection():
    assert parse_sdp(OFFER.replace(b"a=sendrecv", b"a=sendonly")).on_hold
    assert parse_sdp(OFFER.replace(b"c=IN IP4 10.0.0.2", b"c=IN IP4 0.0.0.0")).on_hold


def test_g711_round_trip_is_close_and_transcoding_tables_agree():
    samples = array("h", (int(12000 * math.sin(i / 5)) for i in range(800)))
    for enc, dec in ((g711.encode_ulaw, g711.decode_ulaw), (g711.encode_alaw, g711.decode_alaw)):
        back = dec(enc(samples))
        assert max(abs(a - b) for a, b in zip(samples, back, strict=True)) < 400
    ulaw = g711.encode_ulaw(samples)
    via_table = g711.ulaw_to_alaw(ulaw)
    via_linear = g711.encode_alaw(g711.decode_ulaw(ulaw))
    assert via_table == via_linear
    assert g711.ULAW_DECODE[g711.ULAW_SILENCE] == 0


def _event(digit_code: int, end: bool, duration: int) -> bytes:
    return bytes([digit_code, (0x80 if end else 0) | 10]) + duration.to_bytes(2, "big")


def test_rfc4733_digit_reported_once_per_timestamp_even_if_first_packet_lost():
    rx = DtmfReceiver()
    # first packet (duration 160) lost; later ones and 3 end packets arrive
    got = [rx.feed(_event(5, False, d), 1000) for d in (320, 480)]
    got += [rx.feed(_event(5, True, 640), 1000) for _ in range(3)]
    assert [g for g in got if g] == ["5"]
    # the same digit pressed again: new timestamp -> reported again
    assert rx.feed(_event(5, False, 160), 2000) == "5"
    assert rx.feed(_event(11, False, 160), 3000) == "#"
    assert rx.feed(_event(99, False, 160), 4000) is None
    assert rx.feed(b"\x01", 5000) is None


def test_rtp_packet_parsing_rejects_garbage():
    assert RtpPacket.parse(b"\x00" * 20) is None
    assert RtpPacket.parse(b"\x80") is None
    pkt = RtpPacket.parse(b"\x80\xe5\x00\x01" + (160).to_bytes(4, "big") + b"\x00\x00\x00\x07"
                          + b"\x05\x8a\x02\x80")
    assert pkt is not None and pkt.payload_type == 101 and pkt.marker and pkt.ssrc == 7
