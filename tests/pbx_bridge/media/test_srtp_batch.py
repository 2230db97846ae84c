"""SRTP over many legs at once (media/srtp.py, the `_srtp_batch` C extension), on real
UDP sockets with pylibsrtp's public `Session` API as the independent other end.

- When the extension is built it is what runs: the legs' contexts hold its streams, a
  scheduler sub-tick protects every leg's packet in one `protect_batch` call and an
  event-loop pass's datagrams of several legs are opened in one `unprotect_batch`.
- Both paths (the C batches, libsrtp per packet from Python) give the same bytes on
  the wire and the same decoded audio, for several legs and for a bridge of an SRTP
  leg to a plain RTP leg (what the bridge relays is protected in the batch too).
- The C calls refuse bad input with a Python error, not a crash."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import struct

import pylibsrtp
import pytest

import pbx_bridge.media.srtp as srtp_module
from pbx_bridge.media.audio import EncodedAudio
from pbx_bridge.media.g711 import PCMU
from pbx_bridge.media.rtp import AudioSource, MediaEngine, RtpSession, bridge_sessions
from pbx_bridge.media.srtp import CryptoAttribute, SrtpContext
from tests.pbx_bridge.media.test_srtp import HEADER, Frames

LEGS = 3


class Spy:
    """Stands for the C module and records the batches it is given."""

    def __init__(self, module: object) -> None:
        self.module = module
        self.protected: list[int] = []
        self.opened: list[int] = []

    def protect_batch(self, outbox: list) -> list:
        self.protected.append(len(outbox))
        return self.module.protect_batch(outbox)  # type: ignore[attr-defined]

    def unprotect_batch(self, inbox: list) -> list:
        self.opened.append(len(inbox))
        return self.module.unprotect_batch(inbox)  # type: ignore[attr-defined]


def built() -> bool:
    return importlib.util.find_spec("pbx_bridge.media._srtp_batch") is not None


def peer_session(key: bytes, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind))


def rtp(seq: int, payload: bytes, ssrc: int) -> bytes:
    return HEADER.pack(0x80, PCMU, seq, seq * 160, ssrc) + payload


@pytest.fixture(params=["c-batch", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(srtp_module, "batch", None)
    elif srtp_module.batch is None:
        pytest.skip("the C extension pbx_bridge.media._srtp_batch is not built here")
    return request.param


@pytest.fixture
async def legs():
    """LEGS legs of one engine, each with an SRTP context, sending to one peer socket."""
    engine = MediaEngine("127.0.0.1", 30000, 60000)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    sessions: list[tuple[RtpSession, CryptoAttribute, CryptoAttribute]] = []
    for _ in range(LEGS):
        session = await engine.open_session()
        session.remote = peer.getsockname()
        session.latched = True
        session.sink = Frames()
        ours, theirs = CryptoAttribute.generate(), CryptoAttribute.generate()
        session.srtp = SrtpContext(ours, theirs, label=f"leg {session.local_port}")
        sessions.append((session, ours, theirs))
    yield engine, peer, sessions
    peer.close()
    await engine.stop()


async def receive(peer: socket.socket) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(peer, 2048), 5)


def test_the_extension_is_used_when_it_is_built():
    """A built extension that srtp.py failed to bind would silently cost twice the CPU:
    where the module exists, the contexts must hold its streams."""
    if not built():
        pytest.skip("the C extension pbx_bridge.media._srtp_batch is not built here")
    from pbx_bridge.media import _srtp_batch

    assert srtp_module.batch is _srtp_batch
    context = SrtpContext(CryptoAttribute.generate(), CryptoAttribute.generate())
    assert context.batched
    assert isinstance(context.protect, _srtp_batch.Stream)
    assert isinstance(context.unprotect, _srtp_batch.Stream)


async def test_a_sub_tick_protects_every_leg_in_one_call_and_each_decrypts(
        legs, monkeypatch: pytest.MonkeyPatch):
    if srtp_module.batch is None:
        pytest.skip("the C extension pbx_bridge.media._srtp_batch is not built here")
    engine, peer, sessions = legs
    spy = Spy(srtp_module.batch)
    monkeypatch.setattr(srtp_module, "batch", spy)
    audio = {}
    for i, (session, _ours, _theirs) in enumerate(sessions):
        audio[session.ssrc] = bytes([i + 1]) * 160
        session.source = AudioSource(EncodedAudio(pcmu=audio[session.ssrc],
                                                  pcma=audio[session.ssrc]))
    engine.send_phase({s for s, _, _ in sessions}, engine.loop.time())
    assert spy.protected == [LEGS]  # one C call for the sub-tick's packets of all legs
    keys = {session.ssrc: ours.key for session, ours, _ in sessions}
    for _ in range(LEGS):
        wire = await receive(peer)
        ssrc = struct.unpack_from("!I", wire, 8)[0]
        assert audio[ssrc] not in wire
        assert peer_session(keys.pop(ssrc), outbound=False).unprotect(wire)[12:] == audio[ssrc]
    assert not keys


async def test_datagrams_of_one_loop_pass_are_opened_in_one_call(
        legs, monkeypatch: pytest.MonkeyPatch):
    if srtp_module.batch is None:
        pytest.skip("the C extension pbx_bridge.media._srtp_batch is not built here")
    _engine, peer, sessions = legs
    spy = Spy(srtp_module.batch)
    monkeypatch.setattr(srtp_module, "batch", spy)
    for i, (session, _ours, theirs) in enumerate(sessions):  # no await: one loop pass
        wire = peer_session(theirs.key, outbound=True).protect(rtp(1, bytes([i]) * 160, i))
        peer.sendto(wire, ("127.0.0.1", session.local_port))
    for i, (session, _ours, _theirs) in enumerate(sessions):
        await asyncio.wait_for(session.sink.arrived.wait(), 5)
        assert session.sink.frames == [bytes([i]) * 160]
    assert spy.opened == [LEGS]


async def test_several_legs_both_ways_and_refusals_alike_on_both_paths(path: str, legs):
    engine, peer, sessions = legs
    senders = [peer_session(theirs.key, outbound=True) for _, _, theirs in sessions]
    refused = [asyncio.Event() for _ in sessions]
    for (session, _ours, _theirs), event in zip(sessions, refused, strict=True):
        session.srtp.on_failure = lambda n, event=event: event.set() if n >= 3 else None
    wrong = peer_session(CryptoAttribute.generate().key, outbound=True)
    for seq in range(1, 4):
        for i, (session, _ours, _theirs) in enumerate(sessions):
            to_leg = ("127.0.0.1", session.local_port)
            peer.sendto(senders[i].protect(rtp(seq, bytes([16 * i + seq]) * 160, i)), to_leg)
            peer.sendto(wrong.protect(rtp(seq, bytes(160), 100 + i)), to_leg)  # refused
        await asyncio.sleep(0)
    for i, (session, _ours, _theirs) in enumerate(sessions):
        sink = session.sink
        while len(sink.frames) < 3:
            sink.arrived.clear()
            await asyncio.wait_for(sink.arrived.wait(), 5)
        await asyncio.wait_for(refused[i].wait(), 5)
        assert sink.frames == [bytes([16 * i + seq]) * 160 for seq in (1, 2, 3)]
        assert session.stats.packets_in == 3 and session.srtp.auth_failures == 3
    # and what they send decrypts with their own keys
    for session, _ours, _theirs in sessions:
        session.source = AudioSource(EncodedAudio(pcmu=b"\x42" * 160, pcma=b"\x42" * 160))
    engine.send_phase({s for s, _, _ in sessions}, engine.loop.time())
    keys = {session.ssrc: ours.key for session, ours, _ in sessions}
    for _ in range(LEGS):
        wire = await receive(peer)
        key = keys.pop(struct.unpack_from("!I", wire, 8)[0])
        assert peer_session(key, outbound=False).unprotect(wire)[12:] == b"\x42" * 160


async def test_an_srtp_leg_bridged_to_an_rtp_leg_relays_decrypted_and_back(path: str):
    """The relay runs inside the batch that opened the packet: what it sends on the
    plain leg goes out in clear, what comes back on the plain leg goes out protected
    with the SRTP leg's key."""
    engine = MediaEngine("127.0.0.1", 30000, 60000)
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the SRTP side's far end
    trunk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the plain side's far end
    for sock in (phone, trunk):
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
    try:
        secure, plain = await engine.open_session(), await engine.open_session()
        secure.remote, plain.remote = phone.getsockname(), trunk.getsockname()
        secure.latched = plain.latched = True
        ours, theirs = CryptoAttribute.generate(), CryptoAttribute.generate()
        secure.srtp = SrtpContext(ours, theirs)
        bridge_sessions(secure, plain)
        to_phone = peer_session(theirs.key, outbound=True)
        from_phone = peer_session(ours.key, outbound=False)
        phone.sendto(to_phone.protect(rtp(1, b"\x11" * 160, 7)), ("127.0.0.1", secure.local_port))
        relayed = await receive(trunk)
        assert len(relayed) == 172 and relayed[12:] == b"\x11" * 160  # in clear
        trunk.sendto(rtp(1, b"\x22" * 160, 8), ("127.0.0.1", plain.local_port))
        back = await receive(phone)
        assert b"\x22" * 160 not in back and len(back) == 182
        assert from_phone.unprotect(back)[12:] == b"\x22" * 160
        assert secure.srtp.auth_failures == 0
    finally:
        phone.close()
        trunk.close()
        await engine.stop()


def test_the_c_calls_refuse_bad_input_with_an_error_not_a_crash():
    batch = srtp_module.batch
    if batch is None:
        pytest.skip("the C extension pbx_bridge.media._srtp_batch is not built here")
    context = SrtpContext(CryptoAttribute.generate(), CryptoAttribute.generate())
    with pytest.raises(TypeError):
        context.protect("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        batch.protect_batch(("not", "a list"))
    with pytest.raises(TypeError):
        batch.unprotect_batch([("too short",)])
    with pytest.raises(ValueError):
        batch.Stream(0, None, False)  # a NULL libsrtp context
    leg = type("Leg", (), {"srtp": context})()
    # a packet with no room for the tag, and an oversized datagram: refused, counted
    assert batch.protect_batch([(leg, bytes(1490)), (leg, rtp(1, bytes(160), 5))])[0] is None
    assert batch.unprotect_batch([(context.unprotect, bytes(4000))]) == [None]
    assert context.auth_failures == 1


def test_without_the_extension_the_core_imports_and_runs_the_python_path():
    """A newcomer without a C compiler gets no `_srtp_batch`: importing it fails, and
    SRTP still works, per packet from Python (in a fresh interpreter where the module
    cannot be imported)."""
    import subprocess
    import sys

    script = """
import sys
sys.modules["pbx_bridge.media._srtp_batch"] = None  # import raises ImportError
import pbx_bridge.media.srtp as srtp
from pbx_bridge.media.rtp import MediaEngine
assert srtp.batch is None and srtp._srtp_batch is None
a, b = srtp.CryptoAttribute.generate(), srtp.CryptoAttribute.generate()
tx, rx = srtp.SrtpContext(a, b), srtp.SrtpContext(b, a)
assert not tx.batched
plain = bytes([0x80, 0, 0, 1]) + bytes(8) + bytes(range(160))
assert rx.unprotect(tx.protect(plain)) == plain
print("python path ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=str(__import__("pathlib").Path(__file__).parents[3]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "python path ok"


def test_the_flat_hmac_sha1_is_installed_and_matches_pythons_hmac():
    """The HMAC-SHA1 _srtp_batch installs in libsrtp (its state in one block) against
    Python's own hmac module: keys and messages of every length SRTP uses and more,
    tags of 4, 10 and 20 bytes (libsrtp also ran its RFC 2202 test before taking it)."""
    import hashlib
    import hmac
    import os

    batch = srtp_module.batch
    if batch is None:
        pytest.skip("the C extension pbx_bridge.media._srtp_batch is not built here")
    if os.environ.get("CENTRALE_SRTP_CRYPTO", "flat") != "flat":
        pytest.skip("CENTRALE_SRTP_CRYPTO keeps libsrtp's own crypto")
    assert set(batch.installed()) == {"HMAC-SHA1", "AES-CM"}  # AES-NI: every x86 we run on
    for length in [0, 1, 4, 55, 56, 63, 64, 65, 119, 172, 176, 1500]:
        for key_length in (20, 1, 64):
            key, message = os.urandom(key_length), os.urandom(length)
            for tag in (4, 10, 20):
                assert batch.hmac_sha1(key, message, tag) == \
                    hmac.new(key, message, hashlib.sha1).digest()[:tag]


def test_packets_cross_between_the_flat_crypto_and_libsrtps_own():
    """Another interpreter keeps libsrtp's own (OpenSSL EVP) HMAC-SHA1 and AES-CM: what
    it protects this one unprotects, and the other way round, for both SDES suites
    (payloads of whole and partial AES blocks)."""
    import subprocess
    import sys

    if srtp_module.batch is None:
        pytest.skip("the C extension pbx_bridge.media._srtp_batch is not built here")
    script = """
import sys
import pbx_bridge.media.srtp as srtp
a = srtp.CryptoAttribute(1, sys.argv[1], bytes.fromhex(sys.argv[2]))
b = srtp.CryptoAttribute(1, sys.argv[1], bytes.fromhex(sys.argv[3]))
context = srtp.SrtpContext(a, b)
wire = bytes.fromhex(sys.stdin.readline())
plain = context.unprotect(wire)
assert plain is not None and context.auth_failures == 0, "refused"
report = context._in.unprotect_rtcp(bytes.fromhex(sys.stdin.readline()))  # SRTCP too
print(plain.hex(), context.protect(plain).hex(), report.hex(),
      context._out.protect_rtcp(report).hex())
"""
    root = str(__import__("pathlib").Path(__file__).parents[3])
    for suite in ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"):
        ours = CryptoAttribute.generate(suite=suite)
        theirs = CryptoAttribute.generate(suite=suite)
        report = struct.pack("!BBHI", 0x80, 200, 6, 0x4242) + bytes(range(20))  # an RTCP SR
        for seq, size in enumerate((160, 1, 15, 16, 17, 1300), 5):
            here = SrtpContext(ours, theirs)
            plain = rtp(seq, (bytes(range(256)) * 6)[:size], 0x4242)
            env = {**__import__("os").environ, "CENTRALE_SRTP_CRYPTO": "libsrtp"}
            done = subprocess.run(
                [sys.executable, "-c", script, suite, theirs.key.hex(), ours.key.hex()],
                input=f"{here.protect(plain).hex()}\n{here._out.protect_rtcp(report).hex()}\n",
                capture_output=True, text=True, timeout=60, cwd=root, env=env)
            assert done.returncode == 0, done.stderr
            decoded, back, report_there, report_back = done.stdout.split()
            assert bytes.fromhex(decoded) == plain and bytes.fromhex(report_there) == report
            assert here._in.unprotect_rtcp(bytes.fromhex(report_back)) == report
            assert here.unprotect(bytes.fromhex(back)) == plain
            assert here.auth_failures == 0
