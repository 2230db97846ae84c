"""SRTP on a real RTP leg (real UDP sockets, the event loop's own receive path), checked
against pylibsrtp's public `Session` API as the independent other end: what the leg
sends is encrypted and decrypts to the frames it played; what the peer encrypts is
decoded to the same bytes; a wrong key, a replay or an oversized datagram is refused
and counted without raising out of the receive path (the fast path in media/srtp.py
calls libsrtp directly, so these are the cases it must still get right).

Every test runs on both paths of media/srtp.py: the C extension's batches
(`_srtp_batch`, built by `pip install -e .`; its variants skip, reported as skipped,
where it could not be built) and libsrtp called per packet from Python."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pylibsrtp
import pytest

from pbx_bridge.media.audio import EncodedAudio
from pbx_bridge.media.g711 import PCMU
from pbx_bridge.media.rtp import AudioSource, MediaEngine, RtpSession
from pbx_bridge.media.srtp import CryptoAttribute, SrtpContext

HEADER = struct.Struct("!BBHII")


@pytest.fixture(params=["c-batch", "python"], autouse=True)
def srtp_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The way SrtpContexts made in the test call libsrtp."""
    import pbx_bridge.media.srtp as srtp_module

    if request.param == "python":
        monkeypatch.setattr(srtp_module, "batch", None)
    elif srtp_module.batch is None:
        pytest.skip("the C extension pbx_bridge.media._srtp_batch is not built here")
    return request.param


class Frames:
    """A leg's sink: the audio frames it decoded, and an event per frame."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.arrived = asyncio.Event()

    def frame_received(self, leg: object, payload: bytes, payload_type: int) -> None:
        self.frames.append(payload)
        self.arrived.set()

    def digit_received(self, leg: object, digit: str) -> None:
        pass


def peer_session(key: bytes, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind))


@pytest.fixture
async def leg():
    engine = MediaEngine("127.0.0.1", 30000, 60000)
    engine.start()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    session = await engine.open_session()
    session.remote = peer.getsockname()
    session.latched = True
    session.sink = Frames()
    yield session, peer
    peer.close()
    await engine.stop()


def rtp(seq: int, payload: bytes, ssrc: int = 0x1234) -> bytes:
    return HEADER.pack(0x80, PCMU, seq, seq * 160, ssrc) + payload


async def receive(peer: socket.socket) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(peer, 2048), 5)


async def test_what_the_leg_sends_is_encrypted_and_decrypts_to_what_it_played(leg):
    session, peer = leg
    ours, theirs = CryptoAttribute.generate(), CryptoAttribute.generate()
    session.srtp = SrtpContext(ours, theirs)
    audio = bytes(range(256)) * 5  # 1280 bytes: 8 distinct frames
    session.play(AudioSource(EncodedAudio(pcmu=audio, pcma=audio)))
    decrypt = peer_session(ours.key, outbound=False)
    frames = []
    for _ in range(8):
        wire = await receive(peer)
        assert len(wire) == 12 + 160 + 10  # AES_CM_128_HMAC_SHA1_80: a 10-byte tag
        assert audio[160 * len(frames):160 * (len(frames) + 1)] not in wire
        frames.append(decrypt.unprotect(wire)[12:])
    assert b"".join(frames) == audio
    assert session.stats.packets_out == 8 and session.srtp.auth_failures == 0


async def test_what_the_peer_encrypts_is_decoded_by_the_leg(leg):
    session, peer = leg
    ours, theirs = CryptoAttribute.generate(), CryptoAttribute.generate()
    session.srtp = SrtpContext(ours, theirs)
    encrypt = peer_session(theirs.key, outbound=True)
    sent = [bytes([seq]) * 160 for seq in range(1, 6)]
    for seq, payload in enumerate(sent, 1):
        peer.sendto(encrypt.protect(rtp(seq, payload)), ("127.0.0.1", session.local_port))
    sink = session.sink
    while len(sink.frames) < len(sent):
        sink.arrived.clear()
        await asyncio.wait_for(sink.arrived.wait(), 5)
    assert sink.frames == sent
    assert session.stats.packets_in == 5 and session.srtp.auth_failures == 0


async def refused_until(session: RtpSession, count: int) -> None:
    reported = asyncio.Event()
    assert session.srtp is not None
    session.srtp.on_failure = lambda n: reported.set() if n >= count else None
    await asyncio.wait_for(reported.wait(), 5)


async def test_wrong_key_replay_and_oversized_datagrams_are_refused_and_counted(
        leg, caplog: pytest.LogCaptureFixture):
    session, peer = leg
    ours, theirs = CryptoAttribute.generate(), CryptoAttribute.generate()
    session.srtp = SrtpContext(ours, theirs, label="call x")
    caplog.set_level(logging.WARNING, logger="pbx_bridge.media.srtp")
    to_leg = ("127.0.0.1", session.local_port)
    wrong = peer_session(CryptoAttribute.generate().key, outbound=True)
    for seq in range(1, 4):
        peer.sendto(wrong.protect(rtp(seq, bytes(160))), to_leg)
    good = peer_session(theirs.key, outbound=True).protect(rtp(10, b"\x55" * 160))
    peer.sendto(good, to_leg)
    peer.sendto(good, to_leg)  # a replay
    peer.sendto(bytes(1600), to_leg)  # longer than any RTP packet: not decrypted
    await refused_until(session, 5)
    assert session.sink.frames == [b"\x55" * 160]  # only the one good packet
    assert session.stats.packets_in == 1 and session.srtp.auth_failures == 5
    refusals = [r.getMessage() for r in caplog.records if "packet refused" in r.getMessage()]
    assert len(refusals) == 1 and "call x" in refusals[0] and "authentication" in refusals[0]


async def test_a_payload_too_long_to_protect_is_dropped_not_raised(leg):
    session, peer = leg
    session.srtp = SrtpContext(CryptoAttribute.generate(), CryptoAttribute.generate())
    session._send(PCMU, bytes(1480), 0, False)  # with the tag it would pass 1500 bytes
    assert session.stats.send_drops == 1 and session.stats.packets_out == 0
    session._send(PCMU, bytes(160), 160, False)
    assert len(await receive(peer)) == 182 and session.stats.packets_out == 1


def test_a_dropped_context_is_freed_at_once_not_at_the_next_garbage_collection():
    """The per-packet closures hold no reference back to their context: a re-INVITE
    that replaces a leg's keys frees the old libsrtp sessions there and then."""
    import gc
    import weakref

    context = SrtpContext(CryptoAttribute.generate(), CryptoAttribute.generate())
    context.on_failure = lambda n: None
    assert context.unprotect(bytes(40)) is None and context.auth_failures == 1
    dead = weakref.ref(context)
    session = weakref.ref(context.protect.session)  # type: ignore[attr-defined]
    gc.disable()
    try:
        del context
        assert dead() is None and session() is None
    finally:
        gc.enable()


async def test_a_leg_reads_a_full_mtu_packet_through_a_small_read_buffer(leg):
    """Legs read with a 2 KB buffer, not asyncio's 256 KB (an allocation, mremap and
    free per packet): a packet near a 1500-byte MTU still arrives whole, plain or
    SRTP."""
    from pbx_bridge.media.rtp import RECV_BYTES

    session, peer = leg
    assert session.transport.max_size == RECV_BYTES  # the default event loop's transport
    big = bytes(range(256)) * 5 + bytes(60)  # 1340: as much as pylibsrtp's API protects
    peer.sendto(rtp(1, big), ("127.0.0.1", session.local_port))
    ours, theirs = CryptoAttribute.generate(), CryptoAttribute.generate()
    sink = session.sink
    await asyncio.wait_for(sink.arrived.wait(), 5)
    session.srtp = SrtpContext(ours, theirs)
    sink.arrived.clear()
    peer.sendto(peer_session(theirs.key, outbound=True).protect(rtp(2, big)),
                ("127.0.0.1", session.local_port))
    await asyncio.wait_for(sink.arrived.wait(), 5)
    assert sink.frames == [big, big] and session.srtp.auth_failures == 0


@pytest.mark.parametrize("direct", [True, False], ids=["libsrtp-call", "pylibsrtp-api"])
def test_both_ways_of_calling_libsrtp_protect_refuse_and_count_alike(
        direct: bool, monkeypatch: pytest.MonkeyPatch):
    """The fast path calls libsrtp's C functions through pylibsrtp's binding; should a
    pylibsrtp release lay that out otherwise, the public API is used, with the same
    results: round trip, a wrong key and an oversized datagram refused and counted."""
    import pbx_bridge.media.srtp as srtp_module

    if not direct:
        monkeypatch.setattr(srtp_module, "lib", None)
    a, b = CryptoAttribute.generate(), CryptoAttribute.generate()
    sender, receiver = SrtpContext(a, b), SrtpContext(b, a)
    plain = rtp(7, bytes(range(160)))
    wire = sender.protect(plain)
    assert wire is not None and len(wire) == len(plain) + 10 and wire != plain
    assert receiver.unprotect(wire) == plain
    stranger = SrtpContext(CryptoAttribute.generate(), CryptoAttribute.generate())
    assert stranger.unprotect(wire) is None
    assert stranger.unprotect(bytes(1600)) is None and stranger.auth_failures == 2
    assert sender.protect(rtp(8, bytes(1490))) is None  # no room for the tag
    assert receiver.auth_failures == 0
