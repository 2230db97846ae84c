"""`BrowserMedia`: a browser's audio as a `media.leg.MediaLeg`, shaped like an RTP session.

The SIP core's bridge, mixer and call control hold an agent's media as an
`RtpSession`: they relay packets to it (`relay_audio`, `relay_dtmf`), make it a
mixer party (`sink`, `send_frame`, `send_digit`), stop its playback, and read
`payload_type`. `BrowserMedia` answers all of that, so a browser leg takes an agent
phone's place with no change above it; under it is one aiortc `RTCPeerConnection`
(ICE, DTLS-SRTP, RTP/RTCP) that can be replaced while the call lives (a reloaded
page brings a new one, see `phone.BrowserPhone`).

G.711 end to end, no transcoding: the server's answer offers only PCMU and PCMA
first (Chromium and Firefox offer both), and
- outbound, every 20 ms frame is handed to aiortc as an encoded `av.Packet`, which
  its PCM encoder packs as it is (`Encoder.pack`): no decode, no resampling, no
  encoder thread per frame;
- inbound, the receiver's packet handler is wrapped so G.711 payloads come straight
  here (re-framed to 20 ms when the browser's ptime differs) instead of through
  aiortc's decoder thread and jitter buffer. Relayed to a caller, they are re-clocked:
  a small adaptive jitter buffer (60 ms, growing on underruns) plays them out on the
  media engine's 20 ms scheduler, so the caller's RTP keeps a phone's cadence whatever
  the browser's network did (a mixer has its own queue and takes them as they come).
  Once the connection is up, both directions leave aiortc's per-packet tasks
  altogether (`fastpath.FastRtp`: SRTP and the socket straight from the media
  engine's handlers), which is most of a browser leg's CPU.
  Other payloads (Opus, when a browser
  refuses G.711) take aiortc's own path: decoded frames, resampled to 8 kHz and
  encoded to the leg's law here; outbound then sends decoded frames that aiortc
  encodes to Opus.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import os
import time
from array import array
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from pbx_bridge.media import g711
from pbx_bridge.media.audio import FRAME_SAMPLES
from pbx_bridge.media.g711 import PCMA, PCMU
from pbx_bridge.media.leg import FrameSink
from pbx_bridge.media.rtp import AudioSource, RtpPacket, RtpStats
from pbx_bridge.webrtc.fastpath import FastRtp

log = logging.getLogger(__name__)

TIME_BASE = fractions.Fraction(1, 8000)
MAX_QUEUED = 5  # frames waiting for aiortc's sender (100 ms); older ones are dropped
PREFETCH = 3  # frames the jitter buffer holds before it plays out (60 ms)
MAX_PREFETCH = 8  # grows by one per underrun up to this (160 ms)
G711_MIME = {"audio/PCMU": PCMU, "audio/PCMA": PCMA}
# "0" keeps G.711 on aiortc's own per-packet path (the benchmark's before/after, and a
# way out should an aiortc upgrade break the fast path's assumptions).
FAST_RTP = os.environ.get("CENTRALE_WEBRTC_FAST_RTP", "1") != "0"


class OutboundTrack(MediaStreamTrack):
    """The audio track the browser hears: G.711 frames queued by `BrowserMedia`,
    released to aiortc's sender as they come (the caller's RTP sets the pace)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.encoded = True  # False: the codec is not G.711 (hand decoded frames)
        self.payload_type = PCMU
        self._pts = 0
        # Held: aiortc's sender gets nothing (G.711 goes by `FastRtp`, whose RTP
        # sequence must be the only one on the SSRC — libsrtp refuses indices it has
        # seen pass); released when the fast path cannot be had.
        self.released = asyncio.Event()
        self.released.set()

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def push(self, payload: bytes) -> None:
        if self.queue.qsize() >= MAX_QUEUED:
            self.queue.get_nowait()  # the sender fell behind: keep the newest audio
        self.queue.put_nowait(payload)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.released.is_set():
            await self.released.wait()
        payload = await self.queue.get()
        pts = self._pts
        self._pts += len(payload)
        if self.encoded:
            packet = av.Packet(payload)
            packet.pts = pts
            packet.time_base = TIME_BASE
            return packet
        samples = (g711.decode_ulaw(payload) if self.payload_type == PCMU
                   else g711.decode_alaw(payload))
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(samples))
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = 8000
        frame.pts = pts
        frame.time_base = TIME_BASE
        return frame


class BrowserMedia:
    """The media of one browser leg (see the module's docstring)."""

    def __init__(self, engine: Any, leg_id: str) -> None:
        self.engine = engine  # media.rtp.MediaEngine: its scheduler plays prompts to us
        self.phase = engine.assign_phase()
        self.leg_id = leg_id
        self.payload_type = PCMU
        self.sink: FrameSink | None = None
        self.peer: Any = None  # an RtpSession relaying to us (a plain 2-party bridge)
        self.muted = False
        self.closed = False
        self.source: AudioSource | None = None
        self.stats = RtpStats()
        self.last_received = time.monotonic()
        self.track = OutboundTrack()
        self.transceiver: Any = None  # the current peer connection's audio transceiver
        self.fast: FastRtp | None = None  # G.711 off aiortc's task path, once connected
        self.codec_name = "PCMU"
        self.dtmf_queue: list[str] = []  # RtpSession shape; digits go to the far leg
        # A recorded relayed call (media.relay_tap), as on an RtpSession: the page's
        # audio is also appended here (µ-law payloads) for the recorder's next flush.
        self.capture: list[bytes] | None = None
        self._pending = b""  # inbound bytes not yet a whole 20 ms frame
        self._seq = 0
        self._ts = 0
        self._ssrc = 0x5EB0_0000 | (id(self) & 0xFFFF)
        self._resampler: Any = None
        self._consumer: asyncio.Task[None] | None = None
        self._inbox: collections.deque[bytes] = collections.deque()  # the jitter buffer
        self._prefetch = PREFETCH
        self._playing = False  # primed: the buffer plays out one frame per tick
        self.underruns = 0

    # -- wiring to a peer connection ---------------------------------
    def new_track(self) -> OutboundTrack:
        """The track for a new peer connection (aiortc stops a sender's track with the
        sender: a resumed call gets a fresh one, fed from here like the last)."""
        self.track = OutboundTrack()
        if self.fast is not None:  # it belongs to the connection being replaced
            self.fast.close()
            self.fast = None
        return self.track

    def connected(self) -> None:
        """The current connection is up: G.711 takes the fast path from now on."""
        if not FAST_RTP or not self.track.encoded or self.transceiver is None \
                or self.closed:
            self.track.release()
            return
        if self.fast is not None:
            self.fast.close()
        self.fast = FastRtp.attach(self.transceiver, self.payload_type,
                                   self.payload_received)
        if self.fast is None:
            self.track.release()  # aiortc's own path after all
        else:
            while not self.track.queue.empty():  # audio from before the answer: stale
                self.track.queue.get_nowait()

    def use_codec(self, mime_type: str) -> None:
        """The codec the answer settled on (G.711 normally; Opus as a fallback)."""
        self.codec_name = mime_type.split("/")[-1]
        law = G711_MIME.get(mime_type)
        self.track.encoded = law is not None
        if law is not None:
            self.payload_type = law
            if FAST_RTP:
                self.track.hold()
        self.track.payload_type = self.payload_type

    def attach_receiver(self, receiver: Any) -> None:
        """Take the browser's RTP from `receiver` (an aiortc RTCRtpReceiver): G.711
        payloads straight to us, anything else through aiortc's decoder."""
        original = receiver._handle_rtp_packet

        async def handle(packet: Any, arrival_time_ms: int) -> None:
            if packet.payload_type in (PCMU, PCMA) and not self.closed:
                self.payload_received(packet.payload, packet.payload_type, packet.marker)
                return
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle

    def consume_track(self, track: Any) -> None:
        """Decoded frames of a non-G.711 codec (Opus) from the browser's track."""
        if self._consumer is not None:
            self._consumer.cancel()
        self._consumer = asyncio.ensure_future(self._consume(track))

    async def _consume(self, track: Any) -> None:
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=8000,
                                                frame_size=FRAME_SAMPLES)
        try:
            while not self.closed:
                frame = await track.recv()
                for out in self._resampler.resample(frame):
                    samples = array("h", bytes(out.planes[0])[: 2 * out.samples])
                    payload = (g711.encode_ulaw(samples) if self.payload_type == PCMU
                               else g711.encode_alaw(samples))
                    self.payload_received(payload, self.payload_type, False)
        except (MediaStreamError, asyncio.CancelledError):
            return

    # -- from the browser ---------------------------------------------
    def payload_received(self, payload: bytes, payload_type: int, marker: bool) -> None:
        """Audio from the browser: 20 ms frames to the sink (a mixer) or the peer."""
        self.stats.packets_in += 1
        self.last_received = time.monotonic()
        if payload_type != self.payload_type:
            payload = g711.ulaw_to_alaw(payload) if payload_type == PCMU \
                else g711.alaw_to_ulaw(payload)
        if self._pending or len(payload) != FRAME_SAMPLES:
            data = self._pending + payload
            frames = [data[i: i + FRAME_SAMPLES]
                      for i in range(0, len(data) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
            self._pending = data[len(frames) * FRAME_SAMPLES:]
        else:
            frames = [payload]
        for frame in frames:
            self._deliver(frame, marker)
            marker = False

    def _deliver(self, frame: bytes, marker: bool) -> None:
        capture = self.capture
        if capture is not None:
            capture.append(frame if self.payload_type == PCMU
                           else frame.translate(g711.ALAW_TO_ULAW))
        if self.sink is not None:
            self.sink.frame_received(self, frame, self.payload_type)  # type: ignore[arg-type]
        elif self.peer is not None:
            if len(self._inbox) >= self._prefetch + MAX_PREFETCH:
                self._inbox.popleft()  # far behind: keep the latency bounded
            self._inbox.append(frame)
            if not self._playing and len(self._inbox) >= self._prefetch:
                self._playing = True
                self.engine.activate(self)

    def _play_out(self) -> bool:
        """One frame of the jitter buffer to the peer (on the engine's tick)."""
        if not self._playing:
            return False
        if not self._inbox:
            self._playing = False
            self.underruns += 1
            self._prefetch = min(MAX_PREFETCH, self._prefetch + 1)
            return False
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + FRAME_SAMPLES) & 0xFFFFFFFF
        self.peer.relay_audio(RtpPacket(self.payload_type, False, self._seq, self._ts,
                                        self._ssrc, self._inbox.popleft()))
        return True

    def digit_pressed(self, digit: str) -> None:
        """A key of the page's dial pad, for whoever this leg is connected to."""
        if self.sink is not None:
            self.sink.digit_received(self, digit)  # type: ignore[arg-type]
        elif self.peer is not None:
            self.peer.relay_dtmf(digit)

    # -- to the browser (MediaLeg, and RtpSession's relay shape) ------
    def send_frame(self, payload: bytes) -> None:
        if not self.muted and not self.closed:
            if self.fast is not None:
                self.fast.send(payload)
            else:
                self.track.push(payload)
            self.stats.packets_out += 1

    def relay_audio(self, packet: RtpPacket) -> None:
        if self.muted or self.closed:
            return
        payload = packet.payload
        if packet.payload_type != self.payload_type:
            payload = g711.ulaw_to_alaw(payload) if packet.payload_type == PCMU \
                else g711.alaw_to_ulaw(payload)
        if self.fast is not None:
            self.fast.send(payload)
        else:
            self.track.push(payload)
        self.stats.relayed_out += 1

    def relay_dtmf(self, digit: str) -> None:
        """A digit the caller pressed: the agent's page needs no tone for it."""
        self.stats.dtmf_in += 1

    def send_digit(self, digit: str) -> None:
        self.relay_dtmf(digit)

    def send_dtmf(self, digits: str, duration: float = 0.1) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    # -- prompts and music played to the agent (on the engine's scheduler) ---
    def play(self, source: AudioSource) -> None:
        if self.source is not None and self.source is not source:
            self.source.finish()
        self.source = source
        self.engine.activate(self)

    def stop_playing(self) -> None:
        if self.source is not None:
            self.source.finish()
            self.source = None

    def tick(self, now: float) -> bool:
        if self.closed:
            return False
        if self.peer is not None:
            return self._play_out()
        if self.source is None:
            return False
        frame = self.source.next_frame(self.payload_type)
        if frame is None:
            self.source = None
            return False
        self.send_frame(frame)
        return True

    @property
    def local_port(self) -> str:  # the scheduler's log line names the leg by it
        return self.leg_id

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop_playing()
        if self.peer is not None:
            self.peer.peer = None
            self.peer = None
        if self._consumer is not None:
            self._consumer.cancel()
        if self.fast is not None:
            self.fast.close()
            self.fast = None
        self.track.stop()
        self.engine.release(self)
