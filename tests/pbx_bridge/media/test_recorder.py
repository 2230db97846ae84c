"""The stereo recording tap on a real `Mixer`: left = customer, right = what the
customer heard (FFT), pauses and hold are silence with markers, the header is valid
on stop and mostly valid without it (a crash), a failing disk never stops the mix."""

from __future__ import annotations

import os
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from pbx_bridge.media import g711
from pbx_bridge.media.audio import EncodedAudio
from pbx_bridge.media.mixer import Mixer
from pbx_bridge.media.recorder import RATE, RecordingWriter, StereoRecording
from pbx_bridge.media.rtp import AudioSource
from tests.pbx_bridge.media.test_mixer import FakeEngine, MemoryLeg, run
from tests.tones import hears, tone_linear


def read_stereo(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    return data[:, 0], data[:, 1]


@pytest.fixture
def writer():  # type: ignore[no-untyped-def]
    w = RecordingWriter()
    yield w
    w.stop()


def call(mixer: Mixer) -> tuple[MemoryLeg, MemoryLeg]:
    customer, agent = MemoryLeg("customer", 440), MemoryLeg("agent", 1000)
    mixer.add("customer", customer)
    mixer.add("agent", agent)
    return customer, agent


def test_left_is_the_customer_right_is_the_agent(tmp_path: Path, writer: RecordingWriter
                                                 ) -> None:
    mixer = Mixer(FakeEngine())
    customer, agent = call(mixer)
    rec = StereoRecording(tmp_path / "a" / "call.wav", writer)
    mixer.attach_tap(rec)
    run(mixer, [customer, agent], 90)  # 1.8 s
    mixer.close()  # the tap is told: the file is finished
    result = rec.finished.result(timeout=10)
    left, right = read_stereo(result.path)
    assert len(left) == 90 * 160 and result.seconds == pytest.approx(1.8)
    assert hears(left, 440) and not hears(left, 1000)
    assert hears(right, 1000) and not hears(right, 440)
    assert result.checksum and result.checksum.startswith("sha256:")
    assert result.size_bytes == os.path.getsize(result.path) == 44 + 90 * 160 * 4


async def test_pause_and_hold_are_silence_with_markers(tmp_path: Path,
                                                       writer: RecordingWriter) -> None:
    mixer = Mixer(FakeEngine())
    customer, agent = call(mixer)
    rec = StereoRecording(tmp_path / "p.wav", writer)
    mixer.attach_tap(rec)
    run(mixer, [customer, agent], 50)
    rec.pause("anna")
    run(mixer, [customer, agent], 50)
    assert rec.resume("anna") == pytest.approx(1.0)
    music = EncodedAudio(g711.encode_ulaw(__import__("array").array(
        "h", tone_linear(300, 1.0).tobytes())), b"")
    mixer.play_to("customer", AudioSource(music, loop=True))
    rec.set_held(True)
    run(mixer, [customer, agent], 50)
    mixer.play_to("customer", None)
    rec.set_held(False)
    customer.position = agent.position = 0  # their 2 s of tone start again
    run(mixer, [customer, agent], 50)
    mixer.close()
    left, right = read_stereo(rec.finished.result(timeout=10).path)
    second = RATE
    assert hears(left[:second], 440) and hears(right[:second], 1000)
    assert not np.any(left[second:2 * second]) and not np.any(right[second:2 * second])
    held = right[2 * second:3 * second]
    assert not np.any(held), "hold must not put the music in the file"
    assert hears(left[3 * second:], 440) and hears(right[3 * second:], 1000)
    assert rec.pauses == [{"start": 1.0, "end": 2.0, "by": "anna", "resumed_by": "anna"}]
    assert [m.type for m in rec.markers] == ["pause", "resume", "hold", "unhold"]


def test_a_crash_leaves_a_playable_file_up_to_the_last_seconds(
        tmp_path: Path, writer: RecordingWriter) -> None:
    rec = StereoRecording(tmp_path / "crash.wav", writer, header_sync_seconds=1.0)
    tone = tone_linear(440, 6.0)
    for i in range(0, len(tone), 160):  # 6 s fed, never stopped (the process "dies")
        rec.feed(tone[i:i + 160])
    writer.stop()  # the writer drained its queue; no close was ever asked
    copy = tmp_path / "after-crash.wav"
    shutil.copy(rec.path, copy)
    with wave.open(str(copy)) as w:
        seconds = w.getnframes() / RATE
    assert 4.5 <= seconds <= 6.0  # the header covers all but ≤ 1 s (sync) + 0.5 s (block)


def test_an_unwritable_directory_fails_the_recording_not_the_call(
        tmp_path: Path, writer: RecordingWriter) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    failures: list[StereoRecording] = []
    mixer = Mixer(FakeEngine())
    customer, agent = call(mixer)
    rec = StereoRecording(blocked / "x.wav", writer, on_failure=failures.append)
    mixer.attach_tap(rec)
    run(mixer, [customer, agent], 60)
    mixer.close()
    result = rec.finished.result(timeout=10)
    assert result.error and failures == [rec]
    assert hears(agent.heard(), 440), "the call's audio went on"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_a_failure_with_the_call_going_on(tmp_path: Path,
                                                          writer: RecordingWriter) -> None:
    """The open file's writes go to /dev/full from its second block on (ENOSPC)."""
    import threading

    failures: list[StereoRecording] = []
    failed = threading.Event()
    rec = StereoRecording(tmp_path / "full.wav", writer,
                          on_failure=lambda r: (failures.append(r), failed.set()))
    for _ in range(25):  # one block, written to the real file
        rec.on_tick(["customer"], np.ones((1, 160), np.int16), np.ones((1, 160), np.int16))
    writer.stop()  # drained: the file is open and holds one block
    assert rec._file is not None
    rec._file._file.close()
    rec._file._file = open("/dev/full", "wb", buffering=0)
    for _ in range(50):
        rec.on_tick(["customer"], np.ones((1, 160), np.int16), np.ones((1, 160), np.int16))
    result = rec.stop().result(timeout=10)
    assert failed.wait(5)
    assert result.error and "No space left" in result.error
    assert failures == [rec]
    with wave.open(str(tmp_path / "full.wav")) as w:  # what was written stays readable
        assert w.getnframes() == 0 or w.getnframes() == 25 * 160


def test_a_relayed_call_is_recorded_from_the_relays_copies(tmp_path: Path,
                                                          writer: RecordingWriter) -> None:
    """The relay recorder: each leg's relayed bytes (PCMU and PCMA, as the RTP
    session appends them) reach the file's own channel; a side that sent nothing is
    silence; the file follows the clock, not the packets; detaching stops the copies."""
    from array import array
    from types import SimpleNamespace

    from pbx_bridge.media.relay_tap import FLUSH_TICKS, LAG, RelayRecorder

    customer, agent = SimpleNamespace(capture=None), SimpleNamespace(capture=None)
    rec = StereoRecording(tmp_path / "relay.wav", writer)
    relay = RelayRecorder(FakeEngine())
    now = [1000.0]
    relay.clock = lambda: now[0]
    tap = relay.attach(rec, customer, agent)
    caller = g711.encode_ulaw(array("h", tone_linear(600, 2.0).tobytes()))
    agent_voice = g711.encode_alaw(array("h", tone_linear(1000, 2.0).tobytes()))
    # Each packet arrives at the start of its 20 ms (ahead of the clock), and the two
    # after a flush's tick 20 and 40 ms earlier still, before that flush (jitter)
    arrivals = {i: [i] for i in range(100)}
    for i in range(25, 100, 25):
        arrivals[i], arrivals[i + 1], arrivals[i + 2] = [i, i + 1, i + 2], [], []
    for i in range(100):
        for k in arrivals[i]:
            customer.capture.append(caller[k * 160:(k + 1) * 160])
            if k < 50:  # the agent falls silent after 1 s (no packets at all)
                agent.capture.append(agent_voice[k * 160:(k + 1) * 160].translate(
                    g711.ALAW_TO_ULAW))
        now[0] += 0.02
        relay.tick(now[0])
    # flushed in half-second batches, the newest LAG left for packets in flight
    assert 2.0 - LAG - 0.02 * FLUSH_TICKS <= rec.seconds <= 2.0 - LAG
    assert relay.detach(rec) is not None and customer.capture is None
    assert rec.seconds == pytest.approx(2.0, abs=1e-3)  # detaching wrote all that is due
    assert tap.dropped == 0  # steady audio, a packet ahead of the clock: nothing lost
    rec.stop()
    left, right = read_stereo(rec.finished.result(timeout=10).path)
    assert len(left) == 100 * 160
    assert hears(left, 600) and not hears(left, 1000)
    assert hears(right[:RATE], 1000) and not hears(right[:RATE], 600)
    assert np.abs(right[RATE + 160:]).max() <= 8  # G.711 silence decodes to ±8 at most


def test_a_relayed_pause_starts_on_the_sample_and_a_burst_is_bounded(
        tmp_path: Path, writer: RecordingWriter) -> None:
    """A pause between two flushes is written up to its start first (its stretch is
    silence, the rest is not); a side that sends more than the clock allows (a burst)
    keeps at most 80 ms ahead; a stalled scheduler loses nothing."""
    from types import SimpleNamespace

    from pbx_bridge.media.relay_tap import MAX_AHEAD, RelayRecorder

    customer, agent = SimpleNamespace(capture=None), SimpleNamespace(capture=None)
    rec = StereoRecording(tmp_path / "pause.wav", writer)
    relay = RelayRecorder(FakeEngine())
    now = [50.0]
    relay.clock = lambda: now[0]
    relay.attach(rec, customer, agent)
    voice = bytes([0x10]) * 160  # a loud constant µ-law code

    def talk(frames: int) -> None:
        for _ in range(frames):
            now[0] += 0.02
            customer.capture.append(voice)
            agent.capture.append(voice)

    talk(30)  # no tick at all: a stalled scheduler
    rec.pause("anna")
    assert rec.pauses[0]["start"] == pytest.approx(0.6, abs=1e-3)
    talk(20)
    relay.tick(now[0])
    assert rec.resume("anna") == pytest.approx(0.4, abs=1e-3)
    agent.capture.append(voice * 20)  # a burst: 400 ms at once
    talk(10)
    assert len(b"".join(agent.capture)) == 30 * 160
    rec.stop()  # ends what is due (the customer's 10 frames) and keeps 80 ms ahead
    assert len(b"".join(agent.capture)) == MAX_AHEAD < 20 * 160
    assert relay.detach(rec) is not None  # stopped: nothing more is written
    left, right = read_stereo(rec.finished.result(timeout=10).path)
    assert len(left) == 60 * 160
    spoken = g711.ULAW_DECODE[0x10]  # decoded exactly, left and right
    assert np.all(left[:30 * 160] == spoken) and np.all(right[:30 * 160] == spoken)
    assert not np.any(left[30 * 160:50 * 160]) and not np.any(right[30 * 160:50 * 160])
    assert np.all(left[50 * 160:] != 0) and np.all(right[50 * 160:] != 0)


def test_a_full_disk_fails_one_relayed_recording_not_the_others_in_its_batch(
        tmp_path: Path, writer: RecordingWriter) -> None:
    """The relay recorder hands many recordings' blocks to the writer as one job: a
    file that cannot be written fails its own recording (reported once), and the
    others in the same jobs are written whole."""
    import threading
    from types import SimpleNamespace

    from pbx_bridge.media.relay_tap import RelayRecorder

    relay = RelayRecorder(FakeEngine())
    now = [10.0]
    relay.clock = lambda: now[0]
    failed = threading.Event()
    legs = [(SimpleNamespace(capture=None), SimpleNamespace(capture=None)) for _ in range(2)]
    full = StereoRecording(tmp_path / "full.wav", writer, on_failure=lambda r: failed.set())
    fine = StereoRecording(tmp_path / "fine.wav", writer)
    for rec, (customer, agent) in zip((full, fine), legs, strict=True):
        relay.attach(rec, customer, agent)
    voice = bytes([0x10]) * 160

    def talk(frames: int) -> None:
        for _ in range(frames):
            now[0] += 0.02
            for customer, agent in legs:
                customer.capture.append(voice)
                agent.capture.append(voice)
            relay.tick(now[0])

    talk(30)
    writer.drain()
    assert full._file is not None
    full._file._file.close()
    full._file._file = open("/dev/full", "wb", buffering=0)
    talk(70)
    results = [rec.stop().result(timeout=10) for rec in (full, fine)]
    assert failed.wait(5)
    assert results[0].error and "No space left" in results[0].error
    assert results[1].error is None and results[1].seconds == pytest.approx(2.0)
    left, right = read_stereo(results[1].path)
    assert np.all(left != 0) and np.all(right != 0)


def test_the_writer_decodes_relayed_blocks_exactly_across_groups(tmp_path: Path,
                                                                writer: RecordingWriter
                                                                ) -> None:
    """A relay recorder's job (many recordings, blocks of different lengths, a paused
    one, more samples than one decode group) is written sample for sample: left the
    customer's µ-law decoded, right the agent's, silence while paused."""
    import os

    from pbx_bridge.media.recorder import DECODE_SAMPLES

    recs = [StereoRecording(tmp_path / f"{i}.wav", writer) for i in range(9)]
    sent = []
    for i, rec in enumerate(recs):
        n = 8000 if i % 3 else 4000
        left = None if i == 4 else os.urandom(n)
        sent.append((rec, left, os.urandom(n)))
    assert sum(len(r) for _, _, r in sent) > DECODE_SAMPLES  # more than one group
    writer.drain()  # the files are open; the thread idle while this one decodes
    writer._write_g711(sent)
    writer._write_g711(sent[::-1])  # a second job: the kept buffers are reused
    table = np.array(g711.ULAW_DECODE, dtype=np.int16)
    for rec, left, right in sent:
        result = rec.stop().result(timeout=10)
        pcm = np.frombuffer(result.path.read_bytes()[44:], dtype="<i2").reshape(-1, 2)
        n = len(right)
        assert len(pcm) == 2 * n
        for half in (pcm[:n], pcm[n:]):
            if left is None:
                assert not half.any()
            else:
                assert np.array_equal(half[:, 0], table[np.frombuffer(left, np.uint8)])
                assert np.array_equal(half[:, 1], table[np.frombuffer(right, np.uint8)])
