"""A browser phone's page without the browser: an aiortc peer that answers rings.

Used by the benchmark (hundreds of browser legs at once) and by tests that need a
real WebRTC peer (ICE, DTLS-SRTP) but no chromium. It speaks the same `phone.*`
frames as web/static/phone.js: on a ring it offers with an audio track (a sine tone,
or silence), sends `phone.offer`, takes `phone.answer`, and records what it hears
(8 kHz linear samples) so a test can check which tone came through.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from pbx_bridge.media import g711

RATE = 8000
FRAME = 160  # 20 ms


class ToneTrack(MediaStreamTrack):
    """A sine tone as 20 ms s16 frames in real time (what a microphone would give)."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: int = 8000, *,
                 encoded: bool = False) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self.encoded = encoded  # hand aiortc G.711 packets (µ-law) instead of PCM frames
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._n * FRAME / RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(FRAME) + self._n * FRAME) / RATE
        samples = (self.amplitude * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        if self.encoded:  # as cheap as a page can be: the benchmark measures the node
            packet = av.Packet(g711.encode_ulaw(array("h", samples.tobytes())))
            packet.pts = self._n * FRAME
            packet.time_base = fractions.Fraction(1, RATE)
            self._n += 1
            return packet
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += 1
        return frame


class PagePeer:
    """One agent's page: answers `phone.ring` frames handed to `on_frame`."""

    def __init__(self, agent_id: str, send: Callable[[str, dict[str, Any]], Awaitable[None]],
                 frequency: float = 1000.0, *, auto_answer: bool = True,
                 codecs: tuple[str, ...] | None = None, listen: bool = True,
                 encoded: bool = False) -> None:
        self.agent_id = agent_id
        self.send = send  # (agent_id, frame) -> the server's `BrowserPhone.handle`
        self.frequency = frequency
        self.auto_answer = auto_answer
        self.codecs = codecs  # offer only these (e.g. ("audio/opus",)); None: aiortc's own
        self.listen = listen  # False: count what arrives, decode nothing (benchmark)
        self.encoded = encoded
        self.packets_in = 0
        self.pc: RTCPeerConnection | None = None
        self.frames: list[dict[str, Any]] = []
        self.heard: list[np.ndarray] = []
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()
        self.call_id: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)

    async def on_frame(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        kind = frame.get("type")
        if kind == "phone.ring" and self.auto_answer:
            await self.answer(frame["offer_id"])
        elif kind == "phone.answer" and self.pc is not None:
            await self.pc.setRemoteDescription(RTCSessionDescription(frame["sdp"], "answer"))
        elif kind == "phone.connected":
            self.call_id = frame["call_id"]
            self.connected.set()
        elif kind == "phone.ended":
            self.ended.set()

    async def make_offer(self) -> str:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # LAN: no STUN
        transceiver = self.pc.addTransceiver(ToneTrack(self.frequency, encoded=self.encoded),
                                             direction="sendrecv")
        if not self.listen:
            async def count(packet: Any, arrival_time_ms: int) -> None:
                self.packets_in += 1

            transceiver.receiver._handle_rtp_packet = count
        if self.codecs is not None:
            from aiortc import RTCRtpSender

            caps = RTCRtpSender.getCapabilities("audio").codecs
            transceiver.setCodecPreferences([c for c in caps if c.mimeType in self.codecs])

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            if self.listen:
                self._reader = asyncio.ensure_future(self._read(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, offer_id: str) -> None:
        sdp = await self.make_offer()
        await self.send(self.agent_id, {"type": "phone.offer", "offer_id": offer_id,
                                        "sdp": sdp})

    async def _read(self, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                for out in self._resampler.resample(frame):
                    self.heard.append(np.frombuffer(bytes(out.planes[0]), dtype=np.int16)
                                      [: out.samples].copy())
        except (MediaStreamError, asyncio.CancelledError):
            return

    def heard_since(self, count: int) -> np.ndarray:
        chunks = self.heard[count:]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.pc is not None:
            await self.pc.close()
