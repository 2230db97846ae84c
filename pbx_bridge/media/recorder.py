"""Call recordings on the embedded core: a `MixTap` that writes a stereo WAV file.

Layout (docs/recording.md): 8 kHz, 16-bit PCM, two channels — left is what the
customer said (their row of the mixer's `sent`), right is everything the customer
heard from the centre (their row of `heard`: the agent, a conference's other
parties). That is what speech-analytics and QA tools expect, and it follows the
customer: a transfer swaps the agent side of the mixer and the same file goes on.

Why WAV and not a compressed format: G.711 decoded to 16-bit PCM is 256 kbit/s stereo
(≈ 115 MB per hour); Opus or MP3 would need an encoder per call on the media thread or
the writer thread, and every QA tool and browser plays WAV. Sites that need less disk
transcode old files in their archive; the live path stays cheap (measured in
`bench/recording_bench.py`).

What runs where. The tap's `on_tick` runs on the media scheduler for every 20 ms
tick of the call, so it only copies two rows into a block buffer (or zeros, when the
recording is paused or the customer is on hold: the file keeps its clock, and the
paused stretch is silence, never the music). Every `FLUSH_TICKS` ticks the block goes
to the node's single `RecordingWriter` thread, which appends it to the file and
rewrites the RIFF sizes every `header_sync_seconds`. A crash (kill -9) therefore loses
what was still in the block (≤ 0.5 s) and leaves a header that covers all but the last
`header_sync_seconds`; the bytes after that are in the file too, for any reader that
trusts the file's length. A call recorded on the packet relay (`media.relay_tap`)
hands over µ-law blocks instead (`on_g711`), a second per recording, many
recordings' in one job every 0.1 s; the writer decodes a job in one table lookup.
On `stop()` the header is written with the final sizes and the file's SHA-256 is
computed.

A failing disk (full, read-only, gone) never stops the call: the writer marks the
recording failed, stops writing it and calls `on_failure` on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pbx_bridge.media import g711
from pbx_bridge.media.audio import FRAME_SAMPLES

log = logging.getLogger(__name__)

RATE = 8000
FLUSH_TICKS = 25  # 0.5 s per block handed to the writer thread
HEADER_BYTES = 44
# Late ticks still come (the scheduler catches up in a burst); only a lag beyond its
# resynchronisation threshold (5 ticks) is lost for good and filled with silence.
CATCH_UP_FRAMES = 6 * 160
_ULAW = np.array(g711.ULAW_DECODE, dtype=np.int16).view(np.uint16).astype(np.uint32)
# One stereo frame per (left code, right code) pair: index left | right << 8, value the
# two decoded int16 samples as a little-endian uint32 (left first, as WAV interleaves)
# on any host ("<": the byte order of the file, not of the machine)
_ULAW_PAIRS = (_ULAW[np.arange(65536) & 0xFF] | (_ULAW[np.arange(65536) >> 8] << 16)
               ).astype("<u4")
G711Item = tuple["StereoRecording", bytes | None, bytes]  # (recording, left or None, right)
# Samples decoded by one `take` in the writer thread (see `_write_g711`): 32 K samples
# measured 1.5-1.7x faster per sample than a whole job's 400 K, and no slower than 8 K
DECODE_SAMPLES = 32 * 1024


def wav_header(channels: int, data_bytes: int) -> bytes:
    """A canonical 44-byte PCM WAV header (16-bit, 8 kHz)."""
    block = channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, RATE, RATE * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


@dataclass
class RecordingResult:
    """What a finished recording is, for its database row."""

    path: Path
    seconds: float
    size_bytes: int
    checksum: str | None  # sha256:<hex>, None when the file could not be read back
    error: str | None = None


class WavFile:
    """A WAV file written incrementally (writer thread only).

    Unbuffered: every append is one write(2) straight into the page cache (a block is
    tens of kB, a buffer would only copy it once more), and the header's sizes are
    rewritten with one pwrite(2) of the 44 bytes — no seeks, no flushes: each system
    call is also a release of the GIL the event loop may be holding."""

    def __init__(self, path: Path, channels: int) -> None:
        self.path = path
        self.channels = channels
        self.data_bytes = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = open(path, "xb", buffering=0)
        self._fd = self._file.fileno()
        self._write_all(wav_header(channels, 0))

    def _write_all(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = os.write(self._fd, view)
        while done < len(view):  # a short write (a signal, a disk filling up)
            done += os.write(self._fd, view[done:])
        return done

    def append(self, data: Any) -> None:
        """`data`: bytes or any C-contiguous buffer (a numpy array: no copy)."""
        self.data_bytes += self._write_all(data)

    def sync_header(self) -> None:
        """Rewrite the sizes so a reader sees everything written so far."""
        header = wav_header(self.channels, self.data_bytes)
        if os.pwrite(self._fd, header, 0) != len(header):
            raise OSError(f"short header write on {self.path}")

    def close(self) -> None:
        try:
            self.sync_header()
            os.fsync(self._fd)
        finally:
            self._file.close()


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


class RecordingWriter:
    """The node's one writer thread: every recording's blocks go through it, so 500
    recorded calls cost one thread, not 500, and the media scheduler never waits on
    the disk."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, StereoRecording, Any] | None] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.blocks_written = 0
        self.failures = 0
        self._codes = np.empty(0, dtype=np.uint16)  # decoding the relay recorder's jobs
        self._frames = np.empty(0, dtype="<u4")  # (writer thread)

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="recording-writer",
                                                daemon=True)
                self._thread.start()

    def submit(self, op: str, recording: StereoRecording, arg: Any = None) -> None:
        self.start()
        self._queue.put((op, recording, arg))

    def drain(self, timeout: float = 60.0) -> None:
        """Wait until every block queued so far is written (benchmarks, tests)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.submit("barrier", None, done)  # type: ignore[arg-type]
        done.result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued and end the thread (node shutdown)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            op, recording, arg = item
            if op == "barrier":
                arg.set_result(None)
                continue
            if op == "g711":  # many recordings: each item fails on its own
                try:
                    self._write_g711(arg)
                except Exception as exc:  # the decode itself: a bug
                    log.exception("recording writer failed on a batch")
                    for rec, _, _ in arg:
                        self._fail(rec, exc)
                continue
            try:
                if op == "open":
                    recording._file = WavFile(recording.path, recording.channels)
                elif op == "write":
                    self._write(recording, arg)
                elif op == "close":
                    self._close(recording, arg)
            except OSError as exc:
                self._fail(recording, exc)
                if op == "close":
                    self._close(recording, arg)
            except Exception as exc:  # a bug must not kill every recording's thread
                log.exception("recording writer failed on %s", recording.path)
                self._fail(recording, exc)
                if op == "close":
                    self._close(recording, arg)

    def _write_g711(self, items: list[G711Item]) -> None:
        """The relay recorder's blocks of a few ticks, for many recordings (one job:
        one wake-up of this thread), decoded a group at a time into buffers this
        thread keeps and appended to their files. A failing file fails its own
        recording only.

        A group is up to `DECODE_SAMPLES` samples: `take` casts its indices to 8-byte
        integers first, and for a whole job (0.1 s of 500 calls: 400 000 samples) that
        temporary, the codes and the frames (~5 MB) no longer fit the core's cache —
        measured 1.5-1.7x the CPU per sample of a group that does. Each `take` is one
        release of the GIL, so not a group per recording either."""
        group: list[G711Item] = []
        samples = 0
        for item in items:
            n = len(item[2])
            if group and samples + n > DECODE_SAMPLES:
                self._decode_group(group, samples)
                group, samples = [], 0
            group.append(item)
            if item[1] is not None:
                samples += n
        if group:
            self._decode_group(group, samples)

    def _decode_group(self, items: list[G711Item], total: int) -> None:
        frames = self._frames
        if total:
            if len(self._frames) < total:  # kept: fresh buffers cost page faults
                self._codes = np.empty(total, dtype=np.uint16)
                self._frames = np.empty(total, dtype="<u4")
            # each side's blocks joined (one copy), then left | right << 8 in two
            # vector passes: interleaving the bytes with strided slice assignments
            # took as many instructions as the decode itself (callgrind)
            left = np.frombuffer(b"".join([b[1] for b in items if b[1] is not None]),
                                 dtype=np.uint8)
            right = np.frombuffer(b"".join([b[2] for b in items if b[1] is not None]),
                                  dtype=np.uint8)
            codes = np.left_shift(right, 8, out=self._codes[:total], dtype=np.uint16)
            np.bitwise_or(codes, left, out=codes)
            frames = np.take(_ULAW_PAIRS, codes, out=self._frames[:total])
        offset = 0
        for recording, left, right in items:
            n = len(right)
            try:
                if left is None:
                    self._write(recording, bytes(n * 2 * recording.channels))
                else:
                    self._write(recording, frames[offset:offset + n])
                    offset += n
            except Exception as exc:
                if not isinstance(exc, OSError):
                    log.exception("recording writer failed on %s", recording.path)
                self._fail(recording, exc)

    def _write(self, recording: StereoRecording, data: Any) -> None:
        wav = recording._file
        if wav is None or recording.error is not None:
            return
        before = wav.data_bytes
        wav.append(data)
        self.blocks_written += 1
        recording._unsynced += wav.data_bytes - before
        if recording._unsynced >= recording.header_sync_bytes:
            wav.sync_header()
            recording._unsynced = 0

    def _fail(self, recording: StereoRecording, exc: BaseException) -> None:
        if recording.error is not None:
            return
        self.failures += 1
        recording.error = f"{type(exc).__name__}: {exc}"[:300]
        log.error("recording %s failed (the call goes on unrecorded): %s",
                  recording.path, recording.error)
        wav, recording._file = recording._file, None
        if wav is not None:
            try:
                wav.close()  # keep what was written, with a valid header
            except OSError:
                pass
        recording._notify_failure()

    def _close(self, recording: StereoRecording, done: concurrent.futures.Future[Any]) -> None:
        wav, recording._file = recording._file, None
        size, checksum = 0, None
        if wav is not None:
            try:
                wav.close()
            except OSError as exc:
                self._fail(recording, exc)
        try:
            if recording.path.exists():
                size = recording.path.stat().st_size
                checksum = file_checksum(recording.path)
        except OSError as exc:
            log.warning("recording %s: cannot read it back: %s", recording.path, exc)
        frames = max(0, size - HEADER_BYTES) // (2 * recording.channels)
        if not done.done():
            done.set_result(RecordingResult(recording.path, frames / RATE, size, checksum,
                                            recording.error))


@dataclass
class Marker:
    at: float  # seconds from the start of the file
    type: str  # pause | resume | hold | unhold | handover | failure
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"at": round(self.at, 2), "type": self.type, **self.detail}


class StereoRecording:
    """One recorded call: the `MixTap` on its mixer (left customer, right the rest).

    `channels=1` records the customer alone (voicemail: fed by `feed`, no mixer)."""

    def __init__(self, path: Path, writer: RecordingWriter, *, customer: str = "customer",
                 channels: int = 2, header_sync_seconds: float = 2.0,
                 on_failure: Callable[[StereoRecording], None] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None,
                 keep_time: bool = True) -> None:
        self.path = path
        self.writer = writer
        self.customer = customer
        self.channels = channels
        self.header_sync_bytes = int(header_sync_seconds * RATE * 2 * channels)
        self.on_failure = on_failure
        self.loop = loop
        self.paused = False
        self.held = False
        self.markers: list[Marker] = []
        self.pauses: list[dict[str, Any]] = []
        self.frames = 0  # sample frames taken (written or queued)
        self.error: str | None = None  # set by the writer thread
        self.finished: concurrent.futures.Future[RecordingResult] = \
            concurrent.futures.Future()
        self._file: WavFile | None = None  # the writer thread's
        self._unsynced = 0
        self._block = np.zeros((FLUSH_TICKS * FRAME_SAMPLES, channels), dtype=np.int16)
        self._fill = 0
        self._stopped = False
        self._t0: float | None = None  # the first tick (monotonic)
        self.keep_time = keep_time  # False: ticks driven faster/slower than real time
        self.gap_frames = 0  # silence written for ticks the scheduler dropped
        # Set by a feeder that batches (media.relay_tap): writes what is due up to
        # now, so a state change lands on the right sample.
        self.sync: Callable[[], None] | None = None
        writer.submit("open", self)

    # -- state changes (event loop) -------------------------------------
    @property
    def seconds(self) -> float:
        return self.frames / RATE

    def _synced(self) -> None:
        if self.sync is not None and not self._stopped:
            self.sync()

    def mark(self, kind: str, **detail: Any) -> Marker:
        self._synced()
        marker = Marker(self.seconds, kind, detail)
        self.markers.append(marker)
        return marker

    def pause(self, by: str) -> None:
        if not self.paused:
            self._synced()
            self.paused = True
            self.pauses.append({"start": round(self.seconds, 2), "end": None, "by": by})
            self.mark("pause", by=by)

    def resume(self, by: str) -> float:
        """Back to recording; returns how long the pause lasted (file seconds)."""
        if not self.paused:
            return 0.0
        self._synced()
        self.paused = False
        stretch = self.pauses[-1]
        stretch["end"] = round(self.seconds, 2)
        stretch["resumed_by"] = by
        self.mark("resume", by=by)
        return float(stretch["end"] - stretch["start"])

    def set_held(self, held: bool) -> None:
        if held != self.held:
            self._synced()
            self.held = held
            self.mark("hold" if held else "unhold")

    # -- the media side (scheduler) ---------------------------------------
    def _keep_time(self) -> None:
        """Ticks the scheduler dropped (it resynchronises when it falls more than
        100 ms behind on a starved machine) become silence, so the file's clock stays
        the call's clock: markers, pauses and the length match the wall time."""
        if not self.keep_time:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
            return
        behind = int((now - self._t0) * RATE) - self.frames - CATCH_UP_FRAMES
        if behind >= FRAME_SAMPLES:
            self.mark("gap", seconds=round(behind // FRAME_SAMPLES * FRAME_SAMPLES / RATE, 2))
        while behind >= FRAME_SAMPLES and not self._stopped:
            self._block[self._fill:self._fill + FRAME_SAMPLES] = 0
            self._advance()
            behind -= FRAME_SAMPLES
            self.gap_frames += FRAME_SAMPLES

    def on_tick(self, party_ids: list[str], sent: np.ndarray, heard: np.ndarray) -> None:
        if self._stopped:
            return
        self._keep_time()
        rows = self._block[self._fill:self._fill + FRAME_SAMPLES]
        if self.paused or self.held or self.error is not None:
            rows[:] = 0
        else:
            try:
                i = party_ids.index(self.customer)
            except ValueError:
                rows[:] = 0  # between two legs of a hand-over: silence keeps the clock
            else:
                rows[:, 0] = sent[i]
                if self.channels == 2:
                    rows[:, 1] = heard[i]
        self._advance()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def on_stereo(self, frame: np.ndarray) -> None:
        """The mixer group's fast path: this tick's (160, 2) int16 customer/heard pair,
        gathered for every recorded call of the group in one array operation."""
        if self._stopped:
            return
        self._keep_time()
        rows = self._block[self._fill:self._fill + FRAME_SAMPLES]
        if self.paused or self.held or self.error is not None:
            rows[:] = 0
        else:
            rows[:] = frame
        self._advance()

    def on_g711(self, left: bytes, right: bytes, *, missing: int = 0,
                batch: list[G711Item] | None = None) -> None:
        """The relay recorder's block: the same number of µ-law bytes per side (left
        the customer), decoded and interleaved by the writer thread — appended to
        `batch` (one writer job for every recording taken in 0.1 s: one hand-over to
        the thread, one decode) or submitted alone. Paused or held: silence of the
        same length. `missing`: how many of them neither side sent (silence filled)."""
        if self._stopped:
            return
        n = len(left)
        if self.error is None:
            item = (self, None if self.paused or self.held else left, right)
            if batch is not None:
                batch.append(item)
            else:
                self.writer.submit("g711", None, [item])  # type: ignore[arg-type]
        self.frames += n
        self.gap_frames += missing

    def feed(self, samples: np.ndarray) -> None:
        """Mono input (voicemail): 160 int16 samples of the caller."""
        if self._stopped:
            return
        self._block[self._fill:self._fill + FRAME_SAMPLES, 0] = samples
        self._advance()

    def _advance(self) -> None:
        self._fill += FRAME_SAMPLES
        self.frames += FRAME_SAMPLES
        if self._fill == len(self._block):
            self._flush()

    def _flush(self) -> None:
        if self._fill and self.error is None:
            self.writer.submit("write", self, self._block[:self._fill].tobytes())
        self._fill = 0

    def closed(self) -> None:
        """The mixer stopped: finish the file (`finished` resolves when it is)."""
        self.stop()

    def stop(self) -> concurrent.futures.Future[RecordingResult]:
        if not self._stopped:
            self._synced()
            self._stopped = True
            if self.paused:
                self.resume("hang-up")
            self._flush()
            self.writer.submit("close", self, self.finished)
        return self.finished

    async def wait(self) -> RecordingResult:
        return await asyncio.wrap_future(self.stop())

    def _notify_failure(self) -> None:
        """Writer thread: hand the failure to the event loop."""
        if self.on_failure is None:
            return
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.on_failure, self)
        else:
            self.on_failure(self)
