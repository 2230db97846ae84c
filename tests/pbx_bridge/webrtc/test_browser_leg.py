"""The browser phone's server side against a real WebRTC peer (aiortc: ICE, DTLS-SRTP),
bridged to a real RTP leg: both directions of audio by content (FFT), G.711 end to
end, the mixer taking a browser leg like an RTP one, the signalling refused when it is
not the agent's or malformed (the call unharmed), an ICE that never completes, and the
grace period after the page's media is lost."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from array import array
from typing import Any

import numpy as np
import pytest

from pbx_bridge.media import g711
from pbx_bridge.media.mixer import Mixer
from pbx_bridge.media.rtp import MediaEngine, RtpPacket, bridge_sessions
from pbx_bridge.webrtc.client import PagePeer
from pbx_bridge.webrtc.phone import BrowserPhone, PhoneSettings
from tests.tones import decode_g711, hears, tone_linear
from tests.waiting import wait_until

CALLER_TONE = 440.0
BROWSER_TONE = 1000.0


class Pages:
    """The web layer as the phone sees it: frames to an agent's page(s)."""

    def __init__(self) -> None:
        self.peers: dict[str, PagePeer] = {}
        self.frames: list[tuple[str, dict[str, Any]]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, agent_id: str, frame: dict[str, Any]) -> None:
        self.frames.append((agent_id, frame))
        peer = self.peers.get(agent_id)
        if peer is not None:
            task = asyncio.ensure_future(peer.on_frame(frame))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def errors(self, agent_id: str) -> list[str]:
        return [f["error"] for a, f in self.frames if a == agent_id and f["type"] == "phone.error"]


class Caller:
    """The far end of the RTP leg: sends a tone as PCMU every 20 ms, keeps what comes."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.received: list[RtpPacket] = []
        self._task: asyncio.Task[None] | None = None

    def start(self, target: tuple[str, int]) -> None:
        self._task = asyncio.ensure_future(self._run(target))

    async def _run(self, target: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        tone = g711.encode_ulaw(array("h", tone_linear(CALLER_TONE, 30).tobytes()))
        seq, ts, ssrc = random.getrandbits(16), random.getrandbits(32), random.getrandbits(32)
        start, n = loop.time(), 0
        while True:
            frame = tone[(n * 160) % len(tone):][:160]
            header = struct.pack("!BBHII", 0x80, 0, seq, ts, ssrc)
            self.sock.sendto(header + frame, target)
            seq, ts, n = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF, n + 1
            while True:
                try:
                    data = self.sock.recv(2048)
                except BlockingIOError:
                    break
                packet = RtpPacket.parse(data)
                if packet is not None:
                    self.received.append(packet)
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

    def audio_since(self, count: int) -> np.ndarray:
        packets = [p for p in self.received[count:] if p.payload_type in (0, 8)]
        if not packets:
            return np.zeros(0)
        return np.concatenate([decode_g711(p.payload, p.payload_type) for p in packets])

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sock.close()


@pytest.fixture
async def engine():
    media = MediaEngine("127.0.0.1", 30000, 40000)
    media.start()
    yield media
    await media.stop()


@pytest.fixture
async def phone(engine):
    pages = Pages()
    ph = BrowserPhone(engine, PhoneSettings(ice_timeout_seconds=8, grace_seconds=1.5))
    ph.attach_pages(pages.send, lambda agent_id: agent_id in pages.peers)
    ph.pages = pages  # type: ignore[attr-defined]
    yield ph
    await ph.stop()
    for peer in pages.peers.values():
        await peer.close()


def add_page(phone: BrowserPhone, agent_id: str, **kw: Any) -> PagePeer:
    peer = PagePeer(agent_id, phone.handle, BROWSER_TONE, **kw)
    phone.pages.peers[agent_id] = peer  # type: ignore[attr-defined]
    return peer


async def answered_leg(phone: BrowserPhone, agent_id: str = "anna", offer_id: str = "o1"):
    result = await phone.ring(agent_id, offer_id=offer_id, call_id="c1", caller_id="+31612345678",
                              timeout=15)
    assert result.status == "answered", result
    return result.leg


@pytest.mark.parametrize("fast", [True, False], ids=["fast-rtp", "aiortc-path"])
async def test_browser_leg_bridged_to_rtp_carries_both_tones_in_g711(phone, engine, fast,
                                                                     monkeypatch):
    """Both ways by content, on the fast path (`webrtc.fastpath`, the default) and on
    aiortc's own per-packet path (CENTRALE_WEBRTC_FAST_RTP=0)."""
    from pbx_bridge.webrtc import media as media_module

    monkeypatch.setattr(media_module, "FAST_RTP", fast)
    page = add_page(phone, "anna")
    leg = await answered_leg(phone)
    assert leg.media.codec_name == "PCMU"  # G.711 end to end, no transcoding
    assert (leg.media.fast is not None) is fast
    rtp = await engine.open_session()
    caller = Caller()
    rtp.remote = ("127.0.0.1", caller.port)
    bridge_sessions(rtp, leg.media)
    caller.start(("127.0.0.1", rtp.local_port))
    try:
        heard_at, got_at = len(page.heard), len(caller.received)

        async def both_ways() -> bool:
            return len(page.heard_since(heard_at)) >= 8000 and \
                len(caller.audio_since(got_at)) >= 8000

        await wait_until(both_ways, timeout=20)
        assert hears(page.heard_since(heard_at)[-8000:], CALLER_TONE)
        assert not hears(page.heard_since(heard_at)[-8000:], BROWSER_TONE)
        assert hears(caller.audio_since(got_at)[-8000:], BROWSER_TONE)
        assert not hears(caller.audio_since(got_at)[-8000:], CALLER_TONE)
        # the browser's packets reached the caller as PCMU, relayed (no mixer, no decode)
        assert {p.payload_type for p in caller.received[got_at:]} == {0}
        if fast:  # both directions went by the fast path, none failed SRTP
            assert leg.media.fast.packets_in >= 50 and leg.media.fast.packets_out >= 50
            assert leg.media.fast.errors == 0
    finally:
        caller.close()
        rtp.close()

    # The page hangs up: the leg ends, the page is told.
    await phone.handle("anna", {"type": "phone.hangup", "call_id": leg.call_id})
    assert leg.ended
    await asyncio.wait_for(page.ended.wait(), 5)


async def test_the_mixer_takes_a_browser_leg_like_an_rtp_leg(phone, engine):
    """Hold, conference and monitoring are mixer rules: a browser party mixes too."""
    page = add_page(phone, "anna")
    leg = await answered_leg(phone)
    rtp = await engine.open_session()
    caller = Caller()
    rtp.remote = ("127.0.0.1", caller.port)
    mixer = Mixer(engine, "browser-test")
    mixer.add("customer", rtp)
    mixer.add("agent", leg.media)
    caller.start(("127.0.0.1", rtp.local_port))
    try:
        heard_at, got_at = len(page.heard), len(caller.received)

        async def both_ways() -> bool:
            return len(page.heard_since(heard_at)) >= 8000 and \
                len(caller.audio_since(got_at)) >= 8000

        await wait_until(both_ways, timeout=20)
        assert hears(page.heard_since(heard_at)[-8000:], CALLER_TONE)
        assert hears(caller.audio_since(got_at)[-8000:], BROWSER_TONE)
    finally:
        mixer.close()
        caller.close()
        rtp.close()


async def test_opus_only_browser_is_transcoded_to_g711(phone, engine):
    page = add_page(phone, "anna", codecs=("audio/opus",))
    leg = await answered_leg(phone)
    assert leg.media.codec_name == "opus"
    rtp = await engine.open_session()
    caller = Caller()
    rtp.remote = ("127.0.0.1", caller.port)
    bridge_sessions(rtp, leg.media)
    caller.start(("127.0.0.1", rtp.local_port))
    try:
        heard_at, got_at = len(page.heard), len(caller.received)

        async def both_ways() -> bool:
            return len(page.heard_since(heard_at)) >= 8000 and \
                len(caller.audio_since(got_at)) >= 8000

        await wait_until(both_ways, timeout=20)
        assert hears(page.heard_since(heard_at)[-8000:], CALLER_TONE)
        assert hears(caller.audio_since(got_at)[-8000:], BROWSER_TONE)
    finally:
        caller.close()
        rtp.close()


async def test_signalling_of_another_agent_is_refused_and_logged(phone, caplog):
    anna = add_page(phone, "anna", auto_answer=False)
    add_page(phone, "bram", auto_answer=False)
    ring = asyncio.ensure_future(phone.ring("anna", offer_id="o-anna", call_id="c1",
                                            caller_id=None, timeout=15))
    await wait_until(lambda: any(f["type"] == "phone.ring" for f in anna.frames))
    sdp = await anna.make_offer()
    caplog.set_level(logging.WARNING)
    await phone.handle("bram", {"type": "phone.offer", "offer_id": "o-anna", "sdp": sdp})
    assert phone.pages.errors("bram") == ["phone.offer: no offer o-anna is ringing for you"]
    assert "bram sent phone.offer for offer o-anna of anna: refused" in caplog.text
    await phone.handle("bram", {"type": "phone.reject", "offer_id": "o-anna"})
    assert not ring.done()  # anna's offer still rings
    # anna's own answer still works
    await phone.handle("anna", {"type": "phone.offer", "offer_id": "o-anna", "sdp": sdp})
    answer = next(f for a, f in phone.pages.frames if f["type"] == "phone.answer")
    await anna.on_frame(answer)
    result = await asyncio.wait_for(ring, 15)
    assert result.status == "answered"
    # and bram cannot hang up anna's call
    await phone.handle("bram", {"type": "phone.hangup", "call_id": result.leg.call_id})
    assert not result.leg.ended
    assert len(phone.pages.errors("bram")) == 3
    await result.leg.hangup("test over")


@pytest.mark.parametrize(("frame", "error"), [
    ({"type": "phone.offer", "offer_id": "o1", "sdp": "hello"}, "does not start with v=0"),
    ({"type": "phone.offer", "offer_id": "o1", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"},
     "no audio section"),
    ({"type": "phone.offer", "offer_id": "o1", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
      "a=ice-ufrag:abcd\r\n"}, "no DTLS fingerprint"),
    ({"type": "phone.offer", "offer_id": "o1", "sdp": "v=0\r\n" + "a=x\r\n" * 5000},
     "longer than"),
    ({"type": "phone.offer", "offer_id": "o1", "sdp": 42}, "missing or not text"),
    ({"type": "phone.candidate", "offer_id": "o1", "candidate": "candidate:1 1 udp x"},
     "not an ICE candidate line"),
    ({"type": "phone.candidate", "offer_id": "o1",
      "candidate": "candidate:1 1 udp 2130706431 10.0.0.1 99999 typ host"}, "port out of range"),
    ({"type": "phone.dtmf", "call_id": "c1", "digits": "1;rm -rf"}, "digits must be"),
    ({"type": "phone.offer", "offer_id": "../../x", "sdp": "v=0"}, "offer_id missing"),
    ({"type": "phone.launch"}, "unknown phone message"),
])
async def test_malformed_signalling_is_an_error_to_the_page_and_the_ring_goes_on(
        phone, frame, error):
    page = add_page(phone, "anna", auto_answer=False)
    ring = asyncio.ensure_future(phone.ring("anna", offer_id="o1", call_id="c1",
                                            caller_id=None, timeout=15))
    await wait_until(lambda: any(f["type"] == "phone.ring" for f in page.frames))
    await phone.handle("anna", frame)
    errors = phone.pages.errors("anna")
    assert len(errors) == 1 and error in errors[0], errors
    assert not ring.done()
    await page.answer("o1")  # the good offer after the bad one is answered
    assert (await asyncio.wait_for(ring, 15)).status == "answered"


async def test_sdp_that_passes_the_checks_but_aiortc_refuses_is_an_error_too(phone):
    add_page(phone, "anna", auto_answer=False)
    ring = asyncio.ensure_future(phone.ring("anna", offer_id="o1", call_id="c1",
                                            caller_id=None, timeout=15))
    await wait_until(lambda: phone.ringing.get("o1") is not None)
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 18\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:18 G729/8000\r\n"
           "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\n"
           "a=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\n")
    await phone.handle("anna", {"type": "phone.offer", "offer_id": "o1", "sdp": sdp})
    errors = phone.pages.errors("anna")
    assert len(errors) == 1 and errors[0].startswith("sdp:"), errors
    assert not ring.done()
    ring.cancel()


async def test_a_browser_that_never_completes_ice_is_declined_after_the_timeout(engine):
    pages = Pages()
    phone = BrowserPhone(engine, PhoneSettings(ice_timeout_seconds=2))
    phone.attach_pages(pages.send, lambda agent_id: True)
    ring = asyncio.ensure_future(phone.ring("anna", offer_id="o1", call_id="c1",
                                            caller_id=None, timeout=30))
    await wait_until(lambda: phone.ringing.get("o1") is not None)
    peer = PagePeer("anna", phone.handle)
    sdp = await peer.make_offer()
    # The page's offer arrives, the answer goes out, but the page never applies it
    # (so it never checks connectivity): media never comes up.
    await phone.handle("anna", {"type": "phone.offer", "offer_id": "o1", "sdp": sdp})
    result = await asyncio.wait_for(ring, 15)
    assert result.status == "failed"
    assert any(f["type"] == "phone.stop_ringing" and f["reason"] == "no media connection"
               for _, f in pages.frames)
    await peer.close()
    await phone.stop()


async def test_lost_media_ends_the_leg_after_the_grace_period(phone):
    page = add_page(phone, "anna")
    leg = await answered_leg(phone)
    await page.pc.close()  # the page's connection is gone (tab killed, network down)
    phone.page_gone("anna")
    await asyncio.wait_for(leg.wait_ended(), 10)
    assert leg.cause == "browser lost"


async def test_a_page_that_comes_back_within_the_grace_keeps_the_call(phone, engine):
    page = add_page(phone, "anna")
    leg = await answered_leg(phone)
    old_pc = page.pc
    phone.page_gone("anna")
    await phone.page_back("anna")
    active = next(f for a, f in phone.pages.frames if f["type"] == "phone.active")
    assert active["call_id"] == leg.call_id
    sdp = await page.make_offer()  # the reloaded page: a new connection
    await phone.handle("anna", {"type": "phone.resume", "call_id": leg.call_id, "sdp": sdp})
    await asyncio.sleep(3)  # past the grace (1.5 s): the call is still up
    assert not leg.ended
    await old_pc.close()
    rtp = await engine.open_session()
    caller = Caller()
    rtp.remote = ("127.0.0.1", caller.port)
    bridge_sessions(rtp, leg.media)
    caller.start(("127.0.0.1", rtp.local_port))
    try:
        heard_at = len(page.heard)
        await wait_until(lambda: len(page.heard_since(heard_at)) >= 8000, timeout=20)
        assert hears(page.heard_since(heard_at)[-8000:], CALLER_TONE)
        # the new connection took the fast path too (its own SRTP sessions)
        assert leg.media.fast is not None and leg.media.fast.packets_out >= 50
        assert leg.media.fast.errors == 0
    finally:
        caller.close()
        rtp.close()
    await leg.hangup("test over")


async def test_ice_binds_its_ports_inside_the_rtp_range(phone):
    import aioice.ice

    from pbx_bridge.webrtc.ice_ports import bind_ice_in_range, ice_port_range

    before = aioice.ice.asyncio
    bind_ice_in_range(41000, 41999)
    try:
        assert ice_port_range() == (41000, 41999)
        add_page(phone, "anna")
        leg = await answered_leg(phone)
        answer = next(f for a, f in phone.pages.frames if f["type"] == "phone.answer")
        ports = [int(line.split()[5]) for line in answer["sdp"].splitlines()
                 if line.startswith("a=candidate:")]
        assert ports and all(41000 <= p <= 41999 for p in ports), ports
        await leg.hangup("test over")
    finally:
        aioice.ice.asyncio = before
    with pytest.raises(ValueError, match="not a port range"):
        bind_ice_in_range(5000, 4000)


def test_rtp_payload_skips_csrcs_the_header_extension_and_padding():
    from pbx_bridge.webrtc.fastpath import rtp_payload

    payload = bytes(range(160))
    plain = struct.pack("!BBHII", 0x80, 0, 1, 160, 7) + payload
    assert rtp_payload(plain) == payload
    # two CSRCs, a one-byte-header extension of one word, 3 bytes of padding
    full = (struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 1, 160, 7)
            + struct.pack("!II", 11, 12) + struct.pack("!HH", 0xBEDE, 1) + b"\x10\x30\0\0"
            + payload + b"\0\0\x03")
    assert rtp_payload(full) == payload
    assert rtp_payload(b"\x80\x00") is None  # shorter than a header
    assert rtp_payload(struct.pack("!BBHII", 0x90, 0, 1, 160, 7)) is None  # extension cut
