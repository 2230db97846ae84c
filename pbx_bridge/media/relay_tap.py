"""Recording a call that stays on the packet relay (the cheap path of a plain call).

A plain 2-party call relays packets between its two RTP legs; nothing decodes them.
To record it without moving it into a mixer (which decodes, mixes, encodes and sends
every frame on the scheduler), each leg also appends the frames it relays to a short
queue (`RtpSession.capture`), and one `RelayRecorder` per media engine takes, every
20 ms, one frame per side of every recorded relayed call, decodes all of them in one
array operation, and hands each recording its (160, 2) stereo frame — left the
customer's leg, right the agent's (in a 2-party call what the agent says is what
the customer hears). The relay itself is untouched: the caller hears the agent as
before, with no added latency.

When an operation moves the call into a mixer (hold, transfer, conference), the
recording moves with it (`detach`, then `Mixer.attach_tap`): the same file goes on.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from pbx_bridge.media import g711
from pbx_bridge.media.audio import FRAME_SAMPLES
from pbx_bridge.media.g711 import PCMA

log = logging.getLogger(__name__)

MAX_QUEUED = 4  # frames a side may be ahead of the recorder (80 ms of jitter)
_ULAW_DECODE = np.array(g711.ULAW_DECODE, dtype=np.int16)
_SILENCE = bytes([g711.ULAW_SILENCE]) * FRAME_SAMPLES


@dataclass(eq=False)
class RelayTap:
    recording: Any  # media.recorder.StereoRecording (on_stereo, stopped)
    customer: Any  # RtpSession
    agent: Any  # RtpSession
    customer_frames: collections.deque[tuple[bytes, int]]
    agent_frames: collections.deque[tuple[bytes, int]]


class RelayRecorder:
    """The engine's ticker for recorded relayed calls (one per `MediaEngine`)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.phase = engine.assign_phase()
        self.closed = False
        self.taps: list[RelayTap] = []

    @classmethod
    def of(cls, engine: Any) -> RelayRecorder:
        recorder: RelayRecorder | None = getattr(engine, "relay_recorder", None)
        if recorder is None:
            recorder = cls(engine)
            engine.relay_recorder = recorder  # the engine's own: it dies with it
        return recorder

    def attach(self, recording: Any, customer: Any, agent: Any) -> RelayTap:
        tap = RelayTap(recording, customer, agent,
                       collections.deque(maxlen=MAX_QUEUED), collections.deque(maxlen=MAX_QUEUED))
        customer.capture = tap.customer_frames
        agent.capture = tap.agent_frames
        self.taps.append(tap)
        self.engine.activate(self)
        return tap

    def detach(self, recording: Any) -> RelayTap | None:
        """Stop feeding `recording` from the relay (it moves to a mixer, or it ends)."""
        for tap in self.taps:
            if tap.recording is recording:
                self.taps.remove(tap)
                for leg, frames in ((tap.customer, tap.customer_frames),
                                    (tap.agent, tap.agent_frames)):
                    if leg.capture is frames:
                        leg.capture = None
                return tap
        return None

    def tick(self, now: float) -> bool:
        taps = self.taps
        if not taps:
            return False  # idle: the scheduler forgets us until a tap is attached
        frames: list[bytes] = []
        for tap in taps:
            for queue in (tap.customer_frames, tap.agent_frames):
                if queue:
                    payload, pt = queue.popleft()
                    if pt == PCMA:
                        payload = g711.alaw_to_ulaw(payload)
                    frames.append(payload[:FRAME_SAMPLES].ljust(FRAME_SAMPLES, b"\xff"))
                else:
                    frames.append(_SILENCE)
        codes = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(taps), 2,
                                                                         FRAME_SAMPLES)
        stereo = _ULAW_DECODE[codes].transpose(0, 2, 1)  # (calls, 160, 2)
        finished = []
        for j, tap in enumerate(taps):
            try:
                if tap.recording.stopped:
                    finished.append(tap)
                else:
                    tap.recording.on_stereo(stereo[j])
            except Exception:  # a failing recorder must not stop the others
                log.exception("relay recording failed; detached")
                finished.append(tap)
        for tap in finished:
            self.detach(tap.recording)
        return True
