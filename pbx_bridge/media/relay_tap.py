"""Recording a call that stays on the packet relay (the cheap path of a plain call).

A plain 2-party call relays packets between its two RTP legs; nothing decodes them.
To record it without moving it into a mixer (which decodes, mixes, encodes and sends
every frame on the scheduler), each leg also appends the payload it relays to a list
(`RtpSession.capture`: one `append` per packet of the `bytes` the packet parse made
anyway, PCMA translated to µ-law by `bytes.translate`) — no copy, no new object, no
lock. (Not `bytearray +=`: a buffer emptied every second grows back by 1/8 at a
time, ~18 reallocations and copies per leg per second, measured 4-6× the cost of
the append.) The flush joins a side's payloads once.

Every second (`FLUSH_TICKS` ticks) each recording takes what its two legs
captured, as much as the wall clock says is due since the recording started (less
`LAG`, so packets still in flight are not cut off), pads a side that sent less with
silence and drops what a side sent 80 ms beyond that (`MAX_AHEAD`: a burst). Left is
the customer's leg, right the agent's (in a 2-party call what the agent says is what
the customer hears). The two µ-law blocks go to the writer thread as they are, which
decodes the blocks of all recordings taken in 0.1 s at once (`media.recorder`:
one numpy `take` in a 65 536-entry table of stereo pairs, the two codes of a sample
its index) — the event loop's share is two slices per call per second and one
hand-over to the writer per 0.1 s. The recordings are spread over the ticks of that
second, so the work comes in 50 small bursts, not one large one. (Blocks of a second,
not half a second: the per-block work — a slice, a job item, a write — is what
costs, not the bytes.) The relay itself is untouched: the caller hears the agent as
before, with no added latency.

The file keeps the call's clock without the scheduler's help: a tick the scheduler
dropped loses nothing (the legs keep capturing; the next flush takes it all). A
state change (pause, hold, a marker, the end) first flushes the recording up to now
(`StereoRecording.sync`), so a pause starts at the right sample.

When an operation moves the call into a mixer (hold, transfer, conference), the
recording moves with it (`detach`, then `Mixer.attach_tap`): the same file goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pbx_bridge.media.audio import FRAME_SAMPLES

log = logging.getLogger(__name__)

RATE = 8000
FLUSH_TICKS = 50  # a recording's captured audio is taken every second
# The taken blocks are handed to the writer thread every 5 ticks (0.1 s), as one job:
# each hand-over wakes the thread and moves the GIL, which costs more than the
# decoding itself when done every tick (measured with bench/recording_bench.py).
HANDOFF_TICKS = 5
LAG = 0.06  # seconds of the newest audio left for the next flush (packets in flight)
# Bytes a side may hold beyond what a flush takes before the oldest are dropped: the
# LAG left for the next flush, a packet's worth of phase (the first packet after the
# start carries audio from before it) and a frame of arrival jitter, plus 80 ms of a
# burst. Steady audio never reaches it.
MAX_AHEAD = round(LAG * RATE) + 2 * FRAME_SAMPLES + 4 * FRAME_SAMPLES
SILENCE = 0xFF  # µ-law silence


@dataclass(eq=False)
class RelayTap:
    recording: Any  # media.recorder.StereoRecording
    customer: Any  # RtpSession (anything with a `capture` attribute)
    agent: Any  # RtpSession
    customer_parts: list[bytes]  # what the customer's leg relayed, packet by packet
    agent_parts: list[bytes]
    slot: int  # which tick of the second flushes it
    dropped: int = 0  # bytes dropped from a side that was too far ahead (bursts)


def _take(parts: list[bytes], want: int) -> tuple[bytes, int, int]:
    """`want` bytes from the front of a leg's captured payloads (padded with silence
    when short; the rest stays in `parts`), how many were padding, and how many were
    dropped first (a backlog beyond `MAX_AHEAD`)."""
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    parts.clear()
    excess = len(data) - want - MAX_AHEAD
    if excess > 0:
        data = data[excess:]
    if len(data) > want:
        parts.append(data[want:])
        data = data[:want]
    short = want - len(data)
    if short > 0:
        data += bytes((SILENCE,)) * short
    return data, max(0, short), max(0, excess)


class RelayRecorder:
    """The engine's ticker for recorded relayed calls (one per `MediaEngine`)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.phase = engine.assign_phase()
        self.closed = False
        self.taps: list[RelayTap] = []
        self._slots: list[list[RelayTap]] = [[] for _ in range(FLUSH_TICKS)]
        self._tick = 0
        self._pending: dict[Any, list[Any]] = {}  # writer -> blocks not yet handed over
        # The recordings' clock: monotonic, as the mixer tap's (`StereoRecording`), so
        # a recording that moves into a mixer keeps one clock. A benchmark that ticks
        # by hand sets its own.
        self.clock: Callable[[], float] = time.monotonic

    @classmethod
    def of(cls, engine: Any) -> RelayRecorder:
        recorder: RelayRecorder | None = getattr(engine, "relay_recorder", None)
        if recorder is None:
            recorder = cls(engine)
            engine.relay_recorder = recorder  # the engine's own: it dies with it
        return recorder

    def attach(self, recording: Any, customer: Any, agent: Any) -> RelayTap:
        slot = min(range(FLUSH_TICKS), key=lambda s: len(self._slots[s]))
        tap = RelayTap(recording, customer, agent, [], [], slot)
        customer.capture = tap.customer_parts
        agent.capture = tap.agent_parts
        if recording._t0 is None:
            recording._t0 = self.clock()
        recording.sync = lambda: self._flush(tap, self.clock(), now=True)
        self.taps.append(tap)
        self._slots[slot].append(tap)
        self.engine.activate(self)
        return tap

    def detach(self, recording: Any) -> RelayTap | None:
        """Stop feeding `recording` from the relay (it moves to a mixer, or it ends);
        what the legs captured up to now is written first."""
        for tap in self.taps:
            if tap.recording is recording:
                if not recording.stopped:
                    self._flush(tap, self.clock(), now=True)
                self._forget(tap)
                return tap
        return None

    def _forget(self, tap: RelayTap) -> None:
        self.taps.remove(tap)
        self._slots[tap.slot].remove(tap)
        if getattr(tap.recording, "sync", None) is not None:
            tap.recording.sync = None
        for leg, captured in ((tap.customer, tap.customer_parts),
                              (tap.agent, tap.agent_parts)):
            if leg.capture is captured:
                leg.capture = None

    def _handoff(self) -> None:
        """The pending blocks to their writer thread, one job per writer, in order."""
        pending, self._pending = self._pending, {}
        for writer, batch in pending.items():
            if batch:
                writer.submit("g711", None, batch)

    def _flush(self, tap: RelayTap, upto: float, *, now: bool = False) -> None:
        """Take what is due for the recording up to `upto` (scheduler clock) into the
        pending job. `now`: a state change or the end: hand everything pending over
        at once, so nothing the recording submits next (a close) overtakes it."""
        recording = tap.recording
        if recording.stopped:
            if now:
                self._handoff()
            return
        # whole 20 ms frames: the file's positions (markers, pauses) stay on the
        # 0.01 s grid the metadata is rounded to
        due = round((upto - recording._t0) * RATE) - recording.frames
        want = due - due % FRAME_SAMPLES
        if want <= 0:
            return
        left, left_short, left_dropped = _take(tap.customer_parts, want)
        right, right_short, right_dropped = _take(tap.agent_parts, want)
        tap.dropped += left_dropped + right_dropped
        recording.on_g711(left, right, missing=min(left_short, right_short),
                          batch=self._pending.setdefault(recording.writer, []))
        if now:
            self._handoff()

    def tick(self, now: float) -> bool:
        if not self.taps:
            self._handoff()
            return False  # idle: the scheduler forgets us until a tap is attached
        slot = self._slots[self._tick]
        self._tick = (self._tick + 1) % FLUSH_TICKS
        finished = []
        upto = self.clock() - LAG
        for tap in slot:
            try:
                if tap.recording.stopped:
                    finished.append(tap)
                else:
                    self._flush(tap, upto)
            except Exception:  # a failing recorder must not stop the others
                log.exception("relay recording failed; detached")
                finished.append(tap)
        if self._tick % HANDOFF_TICKS == 0:
            self._handoff()
        for tap in finished:
            self._forget(tap)
        return True
