"""Prompt conversion, the shared scheduler, DTMF send/receive and the relay bridge."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import time
from pathlib import Path

import pytest
from conftest import write_tone_wav

from pbx_bridge.media import g711
from pbx_bridge.media.audio import AudioCache, AudioFormatError, read_wav_as_8k_linear, tone
from pbx_bridge.media.rtp import AudioSource, MediaEngine, RtpPacket, bridge_sessions
from pbx_bridge.sip.sdp import PCMA, PCMU


@pytest.mark.parametrize(("rate", "width", "channels"),
                         [(8000, 2, 1), (16000, 2, 1), (8000, 1, 1), (16000, 1, 2), (8000, 2, 2)])
def test_wav_shapes_become_8khz_mono(tmp_path: Path, rate, width, channels):
    path = write_tone_wav(tmp_path / "p.wav", 0.5, rate=rate, width=width, channels=channels)
    samples = read_wav_as_8k_linear(path)
    assert abs(len(samples) - 4000) <= 1
    assert max(samples) > 4000  # the tone survived (not silence or garbage)


def test_unsupported_wav_is_a_clear_error(tmp_path: Path):
    write_tone_wav(tmp_path / "x.wav", 0.1, rate=44100)
    with pytest.raises(AudioFormatError, match="44100 Hz"):
        read_wav_as_8k_linear(tmp_path / "x.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFFnope")
    with pytest.raises(AudioFormatError):
        read_wav_as_8k_linear(tmp_path / "bad.wav")


def test_prompt_cache_converts_once(tmp_path: Path):
    path = write_tone_wav(tmp_path / "p.wav", 0.3)
    cache = AudioCache()
    first = cache.load(path)
    assert cache.load(path) is first
    assert len(first.pcmu) == len(first.pcma) == 2400
    # both laws carry the same audio
    mu, a = g711.decode_ulaw(first.pcmu), g711.decode_alaw(first.pcma)
    assert max(abs(x - y) for x, y in zip(mu, a, strict=True)) < 300


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[tuple[float, RtpPacket]] = []

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        pkt = RtpPacket.parse(data)
        if pkt is not None:
            self.packets.append((time.monotonic(), pkt))


async def _receiver() -> tuple[Receiver, int, asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Receiver,
                                                           local_addr=("127.0.0.1", 0))
    return proto, transport.get_extra_info("sockname")[1], transport


async def test_one_scheduler_plays_many_legs_in_20ms_frames():
    engine = MediaEngine("127.0.0.1", 40000, 44999)
    engine.start()
    receiver, port, transport = await _receiver()
    try:
        sessions = [await engine.open_session() for _ in range(20)]
        audio = tone(440, 0.4)
        sources = []
        for i, session in enumerate(sessions):
            session.remote = ("127.0.0.1", port)
            session.payload_type = PCMA if i % 2 else PCMU
            source = AudioSource(audio)
            sources.append(source)
            session.play(source)
        await asyncio.wait_for(asyncio.gather(*(s.done for s in sources)), 3)
        await asyncio.sleep(0.05)
        assert len([t for t in asyncio.all_tasks() if t.get_name() == "rtp-scheduler"]) == 1
        by_ssrc: dict[int, list[RtpPacket]] = {}
        for _, pkt in receiver.packets:
            by_ssrc.setdefault(pkt.ssrc, []).append(pkt)
        assert len(by_ssrc) == 20
        for packets in by_ssrc.values():
            assert len(packets) == 20  # 0.4 s = 20 frames of 160 samples
            assert all(len(p.payload) == 160 for p in packets)
            seqs = [p.sequence for p in packets]
            assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
            stamps = [p.timestamp for p in packets]
            assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(stamps))
        pcma = [p for p in receiver.packets if p[1].payload_type == PCMA]
        assert pcma and pcma[0][1].payload == audio.pcma[:160]
    finally:
        transport.close()
        await engine.stop()


async def test_dtmf_send_is_received_once_per_digit():
    engine = MediaEngine("127.0.0.1", 45000, 49999)
    engine.start()
    try:
        sender, listener = await engine.open_session(), await engine.open_session()
        sender.remote = ("127.0.0.1", listener.local_port)
        listener.remote = ("127.0.0.1", sender.local_port)
        got: list[str] = []
        listener.on_dtmf = got.append
        await asyncio.wait_for(sender.send_dtmf("1*9#"), 3)
        await asyncio.sleep(0.05)
        assert got == ["1", "*", "9", "#"]
        with pytest.raises(ValueError):
            sender.send_dtmf("x")
    finally:
        await engine.stop()


async def test_bridge_relays_with_own_ssrc_seq_timestamp_and_transcodes():
    engine = MediaEngine("127.0.0.1", 50000, 54999)
    engine.start()
    _caller_phone, caller_port, t1 = await _receiver()
    agent_phone, agent_port, t2 = await _receiver()
    try:
        caller, agent = await engine.open_session(), await engine.open_session()
        caller.remote, caller.payload_type = ("127.0.0.1", caller_port), PCMU
        agent.remote, agent.payload_type = ("127.0.0.1", agent_port), PCMA
        bridge_sessions(caller, agent)
        payload = tone(300, 0.02).pcmu
        for i in range(10):  # the caller's phone sends PCMU with its own numbering
            header = bytes([0x80, 0x00]) + (1000 + i).to_bytes(2, "big") + \
                (5000 + 160 * i).to_bytes(4, "big") + (0xABCDEF).to_bytes(4, "big")
            t1.sendto(header + payload, ("127.0.0.1", caller.local_port))
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        relayed = [p for _, p in agent_phone.packets]
        assert len(relayed) == 10
        assert {p.ssrc for p in relayed} == {agent.ssrc}  # rewritten
        assert all(p.payload_type == PCMA for p in relayed)
        assert relayed[0].payload == g711.ulaw_to_alaw(payload)  # transcoded
        seqs = [p.sequence for p in relayed]
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
        assert caller.stats.packets_in == 10 and agent.stats.relayed_out == 10
        caller.close()
        assert agent.peer is None  # unbridged when one side goes
    finally:
        t1.close()
        t2.close()
        await engine.stop()


async def test_a_leg_reads_its_socket_until_closed_then_frees_the_port():
    """A leg's socket is read without an asyncio transport (`_RtpReader`): datagrams
    reach the leg while it is open; closing stops the reading and releases the port
    at once (no deferred close)."""
    engine = MediaEngine("127.0.0.1", 45000, 45999)
    session = await engine.open_session()
    port = session.local_port
    assert session.transport is not None
    assert session.transport.get_extra_info("sockname")[1] == port
    packet = struct.pack("!BBHII", 0x80, PCMU, 1, 160, 7) + bytes(160)
    three = asyncio.Event()
    receive = session.datagram_received

    def counted(data: bytes, addr: tuple[str, int], opened: bool = False) -> None:
        receive(data, addr, opened)
        if session.stats.packets_in == 3:
            three.set()

    session.datagram_received = counted  # type: ignore[method-assign]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
        for _ in range(3):
            caller.sendto(packet, ("127.0.0.1", port))
        await asyncio.wait_for(three.wait(), 5)
        session.close()
        assert session.transport.is_closing()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", port))  # the port is free at once
        caller.sendto(packet, ("127.0.0.1", port))
        await asyncio.sleep(0)
    assert session.stats.packets_in == 3



async def test_the_schedulers_sends_count_sent_and_dropped_packets_as_the_leg_does():
    """The scheduler sends its sub-tick's packets itself (not through `_transmit`): a
    sent packet is counted out, a full send buffer is a counted drop and not resent,
    another socket error is neither."""
    engine = MediaEngine("127.0.0.1", 46000, 46999)
    session = await engine.open_session()

    class Socket:
        def __init__(self, outcome: BaseException | None) -> None:
            self.outcome = outcome
            self.sent: list[bytes] = []

        def sendto(self, data: bytes, remote: tuple[str, int]) -> int:
            self.sent.append(data)
            if self.outcome is not None:
                raise self.outcome
            return len(data)

    real = session._sock
    session.remote = ("127.0.0.1", 9)
    session.play(AudioSource(tone(440, 1.0)))
    try:
        for outcome, out, drops in ((None, 1, 0), (BlockingIOError(), 1, 1),
                                    (ConnectionRefusedError(), 1, 1), (None, 2, 1)):
            fake = Socket(outcome)
            session._sock = fake  # type: ignore[assignment]
            engine.send_phase({session}, asyncio.get_running_loop().time())
            assert len(fake.sent) == 1  # one attempt, whatever happened
            assert (session.stats.packets_out, session.stats.send_drops) == (out, drops)
    finally:
        session._sock = real
        session.close()
