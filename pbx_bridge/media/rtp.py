"""RTP media engine: one datagram endpoint per leg, ONE 20 ms scheduler for all legs.

Why one scheduler: a thread (or a task) per call costs a wake-up per call every
20 ms; one task that wakes every 20 ms and sends one frame for every playing leg
keeps the cost per call to a `sendto`.  The scheduler keeps an absolute clock (next
tick = previous tick + 20 ms), so lateness does not accumulate.

Inbound packets are handled on arrival: RFC 4733 events go to the leg's DTMF
callback; audio is dropped unless the leg is bridged, in which case it is relayed
at once to the peer leg with that leg's SSRC, sequence and timestamp (and the G.711
law translated when the two legs negotiated different codecs).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core import metrics
from pbx_bridge.media import g711
from pbx_bridge.media import srtp as srtp_codec
from pbx_bridge.media.audio import FRAME_SAMPLES, EncodedAudio
from pbx_bridge.media.g711 import PCMA, PCMU
from pbx_bridge.media.leg import FrameSink
from pbx_bridge.media.srtp import SrtpContext

log = logging.getLogger(__name__)

TICK = 0.020
_LATE_TICK = 1.5 * TICK  # a frame later than this after the last one: a new talkspurt
PHASES = 4  # sub-ticks per 20 ms; each leg belongs to one
_HEADER = struct.Struct("!BBHII")
DTMF_EVENTS = "0123456789*#ABCD"
# What a leg's transport reads per datagram. asyncio's default (256 KB) makes every
# recvfrom allocate 256 KB and shrink it to the packet: with glibc that is an mmap,
# mremap and munmap per packet, or, once the heap serves it, a trim and a page fault
# per packet whenever the freed space sits at the top of the heap — which of the two
# depends on what else the process allocated (measured: 0.4 vs 1.6 ms CPU per
# call-second for the same SRTP legs; docs/performance.md, "SRTP media"). An RTP
# packet on a 1500-byte MTU fits; a longer datagram is cut (and SRTP refuses it).
RECV_BYTES = 2048


@dataclass
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket | None:
        """Parse an RTP packet, or None for anything that is not RTP v2."""
        if len(data) < 12:
            return None
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            return None
        offset = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:  # header extension
            if len(data) < offset + 4:
                return None
            (ext_len,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * ext_len
        end = len(data)
        if b0 & 0x20:  # padding
            if end <= offset:
                return None
            end -= data[-1]
        if end < offset:
            return None
        return cls(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, data[offset:end])


class DtmfReceiver:
    """RFC 4733 event decoder keyed on the event's RTP timestamp.

    All packets of one key press share the timestamp of its start, so the first
    packet seen with a new timestamp (whichever it is: the first may be lost) yields
    the digit, and the rest, including the three redundant end packets, are ignored.
    """

    def __init__(self) -> None:
        self._seen: collections.deque[int] = collections.deque(maxlen=32)

    def feed(self, payload: bytes, timestamp: int) -> str | None:
        if len(payload) < 4:
            return None
        event = payload[0]
        if event >= len(DTMF_EVENTS) or timestamp in self._seen:
            return None
        self._seen.append(timestamp)
        return DTMF_EVENTS[event]


class AudioSource:
    """Frames of a G.711 buffer; loops for music on hold; `done` resolves at the end."""

    def __init__(self, audio: EncodedAudio, *, loop: bool = False) -> None:
        self.audio = audio
        self.loop = loop
        self.position = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def next_frame(self, payload_type: int) -> bytes | None:
        audio = self.audio  # `for_codec`, inline: this runs for every packet of a prompt
        data = audio.pcma if payload_type == PCMA else audio.pcmu
        if not data:
            self.finish()
            return None
        if self.position >= len(data):
            if not self.loop:
                self.finish()
                return None
            self.position = 0
        frame = data[self.position : self.position + FRAME_SAMPLES]
        self.position += FRAME_SAMPLES
        if len(frame) < FRAME_SAMPLES:
            pad = g711.ALAW_SILENCE if payload_type == PCMA else g711.ULAW_SILENCE
            frame += bytes([pad]) * (FRAME_SAMPLES - len(frame))
        return frame

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


@dataclass
class _DtmfSend:
    event: int
    frames: int  # duration in 20 ms frames
    done: asyncio.Future[None]
    sent: int = 0
    end_sent: int = 0
    timestamp: int | None = None


@dataclass
class _Relay:
    """Timestamp/sequence mapping for packets relayed from one SSRC to a peer leg."""

    ssrc: int
    ts_offset: int


@dataclass
class RtpStats:
    packets_in: int = 0
    packets_out: int = 0
    relayed_out: int = 0
    dtmf_in: int = 0
    send_drops: int = 0
    packets_lost: int = 0  # gaps in the peer's sequence numbers


class RtpSession(asyncio.DatagramProtocol):
    """One call leg's media: a bound UDP port, a remote address, a codec."""

    def __init__(self, engine: MediaEngine, local_host: str, local_port: int) -> None:
        self.engine = engine
        self.phase = engine.assign_phase()
        self.local_host = local_host
        self.local_port = local_port
        self.transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        self.remote: tuple[str, int] | None = None
        self.payload_type = PCMU
        self.event_pt: int | None = 101
        self.remote_event_pt: int | None = None
        self.ssrc = random.getrandbits(32)
        self.sequence = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self.last_send: float | None = None
        self.source: AudioSource | None = None
        self.dtmf_queue: collections.deque[_DtmfSend] = collections.deque()
        self.on_dtmf: Callable[[str], None] | None = None
        self.peer: RtpSession | None = None
        self.muted = False  # on hold: send nothing
        self.latched = False
        self.stats = RtpStats()
        self.dtmf = DtmfReceiver()
        self.closed = False
        self.last_received = time.monotonic()  # media watchdog: last packet from the peer
        self._relay: _Relay | None = None
        self.leg_id = f"rtp:{local_port}"
        self.sink: FrameSink | None = None  # a mixer: received audio goes there
        # A recorded relayed call (media.relay_tap): the G.711 payloads it relays are
        # also appended here (µ-law) for the recorder's next flush.
        self.capture: list[bytes] | None = None
        self._next_seq: int | None = None
        self.srtp: SrtpContext | None = None  # SRTP keys of this leg (media/srtp.py)

    def _count_loss(self, seq: int) -> None:
        """Packets missing when a later one arrives (a late one stays counted lost)."""
        gap = 0 if self._next_seq is None else (seq - self._next_seq) & 0xFFFF
        if gap > 0xFFFF - 100:
            return  # late or duplicate: not a new position in the stream
        if 0 < gap < 3000:  # a jump of 3000+ is a new stream (re-INVITE), not a loss
            self.stats.packets_lost += gap
            metrics.rtp_packets_lost.labels("sip").inc(gap)
        self._next_seq = (seq + 1) & 0xFFFF

    # -- asyncio protocol ---------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int],
                          opened: bool = False) -> None:
        srtp = self.srtp
        if srtp is not None and not opened:  # the one step SRTP adds (media/srtp.py)
            if srtp.batched:  # decrypted with the loop pass's others (open_inbox)
                inbox = self.engine.inbox
                if not inbox:
                    self.engine.loop.call_soon(self.engine.open_inbox)
                inbox.append((srtp.unprotect, data, self, addr))
                return
            plain = srtp.unprotect(data)
            if plain is None:  # failed authentication or replay: counted there
                return
            data = plain
        packet = RtpPacket.parse(data)
        if packet is None or self.closed:
            return
        if not self.latched and self.engine.symmetric_rtp:
            self.remote = (addr[0], addr[1])  # symmetric RTP: answer where it comes from
            self.latched = True
        self.stats.packets_in += 1
        self.last_received = time.monotonic()
        self._count_loss(packet.sequence)
        if packet.payload_type == self.remote_event_pt or (
            self.remote_event_pt is None and packet.payload_type == self.event_pt
        ):
            digit = self.dtmf.feed(packet.payload, packet.timestamp)
            if digit is not None:
                self.stats.dtmf_in += 1
                if self.peer is not None:
                    self.peer.relay_dtmf(digit)
                elif self.sink is not None:
                    self.sink.digit_received(self, digit)
                    if self.on_dtmf is not None:
                        self.on_dtmf(digit)
                elif self.on_dtmf is not None:
                    self.on_dtmf(digit)
            return
        if packet.payload_type not in (PCMU, PCMA):
            return
        if self.sink is not None:
            self.sink.frame_received(self, packet.payload, packet.payload_type)
        elif self.peer is not None:
            capture = self.capture
            if capture is not None:
                capture.append(packet.payload if packet.payload_type == PCMU else
                               packet.payload.translate(g711.ALAW_TO_ULAW))
            self.peer.relay_audio(packet)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable etc.
        log.debug("RTP error on port %s: %s", self.local_port, exc)

    # -- sending ------------------------------------------------------
    def _send(self, payload_type: int, payload: bytes, timestamp: int, marker: bool) -> None:
        if self._sock is None or self.remote is None or self.closed:
            return
        self.sequence = (self.sequence + 1) & 0xFFFF
        header = _HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, self.sequence,
                              timestamp & 0xFFFFFFFF, self.ssrc)
        packet = header + payload
        outbox = self.engine.outbox
        if outbox is not None:  # in the scheduler's sub-tick: protected and sent with
            outbox.append((self, packet))  # the others at its end (`send_phase`)
            return
        if self.srtp is not None:  # the one step SRTP adds (media/srtp.py)
            self._transmit(self.srtp.protect(packet))
        else:
            self._transmit(packet)

    def _transmit(self, packet: bytes | None) -> None:
        """Send one finished (and, with SRTP, protected) packet; None: SRTP refused to
        protect it (too long, or the key is used up) and it is counted as dropped."""
        if packet is None:
            self.stats.send_drops += 1
            return
        if self._sock is None or self.remote is None or self.closed:
            return
        try:
            self._sock.sendto(packet, self.remote)
        except (BlockingIOError, InterruptedError):
            self.stats.send_drops += 1
            return
        except OSError as exc:  # e.g. ICMP unreachable reported on the next send
            log.debug("RTP send on port %s failed: %s", self.local_port, exc)
            return
        self.stats.packets_out += 1

    def _advance_clock(self, now: float) -> bool:
        """Move the RTP clock to `now`; True (marker) when resuming after silence."""
        if self.last_send is None or now - self.last_send > _LATE_TICK:
            gap = 0 if self.last_send is None else round((now - self.last_send) / TICK)
            self.timestamp = (self.timestamp + FRAME_SAMPLES * max(gap, 1)) & 0xFFFFFFFF
            self.last_send = now
            return True
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        self.last_send = now
        return False

    def tick(self, now: float) -> bool:
        """Send one frame; False when this leg has nothing left to play."""
        if self.closed:
            return False
        if self.dtmf_queue:
            self._tick_dtmf(now)
            return True
        if self.source is None or self.peer is not None:
            return False
        frame = self.source.next_frame(self.payload_type)
        if frame is None:
            self.source = None
            return bool(self.dtmf_queue)
        last = self.last_send
        if last is not None and now - last <= _LATE_TICK:  # `_advance_clock`'s usual
            self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF  # case, inline
            self.last_send = now
            marker = False
        else:
            marker = self._advance_clock(now)
        if not self.muted:
            self._send(self.payload_type, frame, self.timestamp, marker)
        return True

    def send_frame(self, payload: bytes) -> None:
        """One 20 ms frame from a mixer (`media.leg.MediaLeg`), on our own clock."""
        if self.dtmf_queue:  # a digit being sent owns the stream until it ends
            return
        marker = self._advance_clock(self.engine.loop.time())
        if not self.muted:
            self._send(self.payload_type, payload, self.timestamp, marker)

    def _tick_dtmf(self, now: float) -> None:
        job = self.dtmf_queue[0]
        pt = self.remote_event_pt if self.remote_event_pt is not None else self.event_pt
        if pt is None:
            self.dtmf_queue.popleft()
            job.done.set_result(None)
            return
        marker = False
        if job.timestamp is None:
            self._advance_clock(now)
            job.timestamp = self.timestamp
            marker = True
        else:
            self.last_send = now
        job.sent += 1
        end = job.sent >= job.frames
        duration = min(min(job.sent, job.frames) * FRAME_SAMPLES, 0xFFFF)
        payload = bytes([job.event, (0x80 if end else 0) | 10]) + struct.pack("!H", duration)
        self._send(pt, payload, job.timestamp, marker)
        if end:
            job.end_sent += 1
            if job.end_sent >= 3:  # the end packet is sent three times (RFC 4733 2.5.1.4)
                self.dtmf_queue.popleft()
                self.timestamp = (job.timestamp + duration) & 0xFFFFFFFF
                if not job.done.done():
                    job.done.set_result(None)

    def send_dtmf(self, digits: str, duration: float = 0.1) -> asyncio.Future[None]:
        """Queue RFC 4733 events; the future resolves after the last one is sent."""
        loop = self.engine.loop
        last: asyncio.Future[None] = loop.create_future()
        last.set_result(None)
        for digit in digits.upper():
            if digit not in DTMF_EVENTS:
                raise ValueError(f"not a DTMF digit: {digit!r}")
            last = loop.create_future()
            frames = max(2, round(duration / TICK))
            self.dtmf_queue.append(_DtmfSend(DTMF_EVENTS.index(digit), frames, last))
        self.engine.activate(self)
        return last

    def play(self, source: AudioSource) -> None:
        if self.source is not None and self.source is not source:
            self.source.finish()
        self.source = source
        self.engine.activate(self)

    def stop_playing(self) -> None:
        if self.source is not None:
            self.source.finish()
            self.source = None

    # -- bridge relay -------------------------------------------------
    def relay_audio(self, packet: RtpPacket) -> None:
        if self.muted:
            return
        relay = self._relay
        if relay is None or relay.ssrc != packet.ssrc:
            # new stream: continue our own timeline from where it is
            relay = self._relay = _Relay(packet.ssrc, (self.timestamp + FRAME_SAMPLES
                                                       - packet.timestamp) & 0xFFFFFFFF)
            marker = True
        else:
            marker = packet.marker
        payload = packet.payload
        if packet.payload_type != self.payload_type:
            payload = g711.ulaw_to_alaw(payload) if packet.payload_type == PCMU \
                else g711.alaw_to_ulaw(payload)
        ts = (packet.timestamp + relay.ts_offset) & 0xFFFFFFFF
        self.timestamp = ts
        self.last_send = self.engine.loop.time()
        self._send(self.payload_type, payload, ts, marker)
        self.stats.relayed_out += 1

    def relay_dtmf(self, digit: str) -> None:
        """Regenerate a digit heard on the peer leg (payload types may differ)."""
        self.send_dtmf(digit)

    def send_digit(self, digit: str) -> None:
        """`media.leg.MediaLeg`: a digit another party of a mixer pressed."""
        self.send_dtmf(digit)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop_playing()
        while self.dtmf_queue:
            job = self.dtmf_queue.popleft()
            if not job.done.done():
                job.done.set_result(None)
        if self.peer is not None:
            self.peer.peer = None
            self.peer = None
        if self.transport is not None:
            self.transport.close()
        self.engine.release(self)


def bridge_sessions(a: RtpSession, b: RtpSession) -> None:
    """Relay media between two legs; their own playback stops."""
    a.stop_playing()
    b.stop_playing()
    a.peer, b.peer = b, a


def unbridge_sessions(a: RtpSession) -> None:
    if a.peer is not None:
        a.peer.peer = None
        a.peer = None


class _RtpReader(asyncio.DatagramTransport):
    """A leg's socket read on the event loop: what asyncio's datagram transport did
    for a leg (read one datagram per readiness, `RECV_BYTES` at most; an OSError to
    `error_received`), without its set-up. `create_datagram_endpoint` took ~100 µs of
    CPU per leg with its close (a waiter future and a loop pass to await it, the
    peer-name probe, the deferred `connection_lost`); this ~30 (socket, bind and
    reader included). Legs send on the socket directly, never through this."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: RtpSession) -> None:
        super().__init__({"socket": sock})
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._closed = False
        self.max_size = RECV_BYTES
        loop.add_reader(self._fd, self._read_ready)

    def _read_ready(self) -> None:
        try:
            data, addr = self._sock.recvfrom(self.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # ICMP errors of earlier sends surface here
            self._protocol.error_received(exc)
            return
        self._protocol.datagram_received(data, addr)

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "sockname":
            return self._sock.getsockname()
        return super().get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop reading and close the socket now (nothing is queued to send)."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)
            self._sock.close()

    def abort(self) -> None:
        self.close()


@dataclass
class MediaEngine:
    """Allocates RTP ports and runs the single 20 ms send scheduler."""

    host: str
    port_min: int = 10000
    port_max: int = 20000
    sessions: set[RtpSession] = field(default_factory=set)
    _phases: list[set[RtpSession]] = field(
        default_factory=lambda: [set() for _ in range(PHASES)])
    _next_phase: int = 0
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    late_ticks: int = 0
    lateness_ms: list[int] = field(default_factory=lambda: [0] * 101)  # tick lateness histogram
    tick_cost_ms: list[int] = field(default_factory=lambda: [0] * 101)  # time to send a tick
    symmetric_rtp: bool = True  # send to where the peer's RTP comes from (NAT traversal)
    # (leg, packet) built during a sub-tick, protected and sent at its end; else None
    outbox: list[tuple[RtpSession, bytes]] | None = None
    # SRTP datagrams received in this event-loop pass, (unprotect, data, leg, addr):
    # decrypted in one batch by `open_inbox`, called soon after the first
    inbox: list[tuple[Callable[[bytes], bytes | None], bytes, RtpSession,
                      tuple[str, int]]] = field(default_factory=list)
    inbox_batches: int = 0  # batches opened, and the datagrams in them (bench/srtp_bench)
    inbox_packets: int = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = self.loop.create_task(self._run(), name="rtp-scheduler")

    async def stop(self) -> None:
        for session in list(self.sessions):
            session.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def open_session(self) -> RtpSession:
        """Bind an even port in the configured range (retrying on collisions)."""
        loop = self.loop
        span = max(1, (self.port_max - self.port_min) // 2)
        last_error: OSError | None = None
        for _ in range(50):
            port = self.port_min + 2 * random.randrange(span)
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            try:
                if self.host == "::":  # dual stack: IPv4 peers as ::ffff:a.b.c.d
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind((self.host, port))
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            sock.setblocking(False)
            protocol = RtpSession(self, self.host, port)
            protocol.connection_made(_RtpReader(loop, sock, protocol))
            # RTP is sent straight on the socket (the reader only reads): a frame
            # that does not fit the socket buffer is dropped, as the network would.
            protocol._sock = sock
            self.sessions.add(protocol)
            return protocol
        raise OSError(f"no free RTP port in {self.port_min}-{self.port_max}: {last_error}")

    def activate(self, session: RtpSession) -> None:
        if not session.closed:
            self._phases[session.phase].add(session)
            if self._wake is not None:
                self._wake.set()

    def release(self, session: RtpSession) -> None:
        self.sessions.discard(session)
        self._phases[session.phase].discard(session)

    def assign_phase(self) -> int:
        """Spread legs over the sub-ticks so each burst of sends stays short."""
        phase = self._next_phase
        self._next_phase = (phase + 1) % PHASES
        return phase

    @property
    def active_count(self) -> int:
        return sum(len(p) for p in self._phases)

    async def _run(self) -> None:
        """Every TICK/PHASES, send one frame for each playing leg of that phase: each
        leg still sends every 20 ms, but the work comes in four small bursts."""
        loop = self.loop
        assert self._wake is not None
        sub_tick = TICK / PHASES
        next_tick = loop.time()
        phase = 0
        while True:
            if not self.active_count:
                self._wake.clear()
                await self._wake.wait()
                next_tick = loop.time()
            now = loop.time()
            delay = next_tick - now
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -5 * TICK:  # far behind (loop stalled): resynchronise
                self.late_ticks += 1
                next_tick = now
            started = loop.time()
            late = int((started - next_tick) * 1000)
            self.lateness_ms[min(100, max(0, late))] += 1
            if late >= 20:
                metrics.rtp_late_sends.labels("sip").inc()
            now = next_tick
            next_tick += sub_tick
            active = self._phases[phase]
            phase = (phase + 1) % PHASES
            if not active:
                continue
            self.send_phase(active, now)
            cost = int((loop.time() - started) * 1000)
            self.tick_cost_ms[min(100, max(0, cost))] += 1

    def send_phase(self, active: set[RtpSession], now: float) -> None:
        """One sub-tick: a frame for every playing leg (and mixer group) in `active`;
        those with nothing left to play leave it.

        The legs' packets are built first, then the SRTP ones protected one after the
        other, then all sent. libsrtp run back to back keeps its code and OpenSSL's
        tables in the caches; between a leg's Python work and a sendto it finds them
        evicted: measured, SRTP legs cost ~5 % less CPU this way, plain RTP the same
        (docs/performance.md, "SRTP media"). The packets leave within the same
        sub-tick as before."""
        finished = []
        outbox: list[tuple[RtpSession, bytes]] = []
        self.outbox = outbox
        try:
            for session in active:
                try:
                    if not session.tick(now):
                        finished.append(session)
                except Exception:  # a bad leg must not stop everyone's audio
                    log.exception("RTP tick failed on port %s",
                                  getattr(session, "local_port", session))
                    finished.append(session)
        finally:
            self.outbox = None
            _seal_and_send(outbox)
        for session in finished:
            active.discard(session)

    def open_inbox(self) -> None:
        """Decrypt the SRTP datagrams the legs received in the last event-loop pass in
        one batch (the C extension runs libsrtp over all of them back to back; called
        per packet it ran with cold caches at twice the cost), then hand each leg its
        packet. What the legs relay on (a bridge) is protected and sent as a batch too.
        Called soon after the first datagram of a pass: the delay is that pass."""
        inbox, self.inbox = self.inbox, []
        self.inbox_batches += 1
        self.inbox_packets += len(inbox)
        outbox: list[tuple[RtpSession, bytes]] = []
        self.outbox = outbox
        try:
            for (_unprotect, _data, leg, addr), plain in zip(
                    inbox, srtp_codec.unprotect_all(inbox), strict=True):
                if plain is None:  # refused: counted by the leg's context
                    continue
                try:
                    leg.datagram_received(plain, addr, True)
                except Exception:  # a bad leg must not lose the others' packets
                    log.exception("RTP receive failed on port %s", leg.local_port)
        finally:
            self.outbox = None
            _seal_and_send(outbox)


def _seal_and_send(outbox: list[tuple[RtpSession, bytes]]) -> None:
    """Send the packets built in a sub-tick; the SRTP ones protected one after the
    other first (in one C call when the extension is built, media/srtp.py)."""
    if outbox:
        for (leg, _packet), sealed in zip(outbox, srtp_codec.protect_all(outbox),
                                          strict=True):
            # `leg._transmit(sealed)` inline for a leg that can send: ~95 packets a
            # call, and a Python call per packet was a tenth of the media's CPU
            sock, remote = leg._sock, leg.remote
            if sealed is None or sock is None or remote is None or leg.closed:
                leg._transmit(sealed)
                continue
            try:
                sock.sendto(sealed, remote)
            except (BlockingIOError, InterruptedError):
                leg.stats.send_drops += 1
            except OSError as exc:  # e.g. ICMP unreachable reported on the next send
                log.debug("RTP send on port %s failed: %s", leg.local_port, exc)
            else:
                leg.stats.packets_out += 1
