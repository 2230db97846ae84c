"""G.711 RTP on an aiortc peer connection without aiortc's per-packet coroutines.

Why: aiortc moves every RTP packet through asyncio machinery — inbound, the ICE
socket's datagram goes into an `asyncio.Queue`, a DTLS-transport task wakes to take
it, unprotects it, parses it into an `RtpPacket` (header extensions included) and
awaits the receiver's handler; outbound, the sender's task awaits the track's
`recv()` (another queue), builds an `RtpPacket`, serialises it and awaits two more
coroutines down to `sendto`. For a G.711 leg that only relays 160-byte payloads that
is most of the node's CPU per browser leg (see docs/browser-phone.md, "Figures").

Once the connection is up, `FastRtp` takes G.711 RTP off that path, both ways, with
the same SRTP sessions, SSRC and socket aiortc negotiated:

* inbound: the ICE connection's `data_received` (called synchronously from the
  socket's `datagram_received`, which RTP now reaches without aioice's STUN parse
  attempt) is wrapped; an SRTP packet whose clear header says
  PCMU or PCMA is unprotected with aiortc's own receive session and its payload goes
  straight to `on_payload`. Everything else (DTLS, SRTCP, STUN, any other payload
  type) goes on to aiortc as before — the check is made on the encrypted packet's
  clear header, so nothing is unprotected twice (libsrtp's replay check would drop
  it);
* outbound: `send()` fills a header template made once with aiortc's serialiser (so
  the negotiated MID header extension is in it), protects with aiortc's transmit
  session and writes to the nominated pair's socket, from the caller of `send` (the
  media engine's datagram handler) — no task switch.

aiortc keeps everything else: ICE consent, DTLS, RTCP reports, Opus legs (which never
get a `FastRtp`). It relies on aiortc 1.16/aioice 0.13 internals (the DTLS transport's
`_rx_srtp`/`_tx_srtp`, the ICE connection's nominated pair); `FastRtp.attach` returns
None when they are not there, and the caller keeps aiortc's own path.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

G711_TYPES = (0, 8)
_SEQ_TS = struct.Struct("!HI")
SKIP_STUN_PARSE = True  # see FastRtp._shortcut (a switch for the benchmark's A/B)
PayloadHandler = Callable[[bytes, int, bool], None]
"""(payload, payload_type, marker) for each inbound G.711 packet."""


def rtp_payload(packet: bytes) -> bytes | None:
    """The payload of a (decrypted) RTP packet: after the CSRCs and the header
    extension, before the padding; None when the packet is too short for its header."""
    if len(packet) < 12:
        return None
    first = packet[0]
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if len(packet) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(packet[offset + 2: offset + 4], "big")
    end = len(packet)
    if first & 0x20:
        end -= packet[-1]
    if end < offset:
        return None
    return packet[offset:end]


class FastRtp:
    """One peer connection's G.711 RTP, both ways, off aiortc's task path."""

    def __init__(self, dtls: Any, connection: Any, ssrc: int, mid: str | None,
                 payload_type: int, on_payload: PayloadHandler | None) -> None:
        self._dtls = dtls  # aiortc RTCDtlsTransport (its SRTP sessions)
        self._connection = connection  # aioice Connection (its nominated pair)
        self._ssrc = ssrc
        self._mid = mid  # the MID header extension the browser demultiplexes by
        self.payload_type = payload_type
        self.on_payload = on_payload
        self._original: Callable[[bytes, int], None] | None = None
        self._templates: dict[tuple[int, bool], bytearray] = {}
        self._seq = 0
        self._ts = 0
        self.packets_in = 0
        self.packets_out = 0
        self.errors = 0
        self.closed = False
        self._protocol: Any = None  # the socket handler `_shortcut` wraps

    @classmethod
    def attach(cls, transceiver: Any, payload_type: int,
               on_payload: PayloadHandler | None) -> FastRtp | None:
        """A `FastRtp` on `transceiver`'s connection (it must be up), or None when
        aiortc's internals are not as expected (then nothing is changed)."""
        try:
            dtls = transceiver.sender.transport
            connection = dtls.transport._connection
            if dtls._tx_srtp is None or dtls._rx_srtp is None or \
                    connection._nominated.get(1) is None:
                return None
            fast = cls(dtls, connection, transceiver.sender._ssrc, transceiver.mid,
                       payload_type, on_payload)
            fast._seq = transceiver.sender._ssrc & 0x7FFF  # any start; not aiortc's
            fast._templates[(payload_type, False)] = fast._template(payload_type, False)
        except AttributeError as exc:
            log.warning("aiortc internals differ (%s): G.711 takes aiortc's path", exc)
            return None
        if on_payload is not None:
            fast._original = connection.data_received
            connection.data_received = fast._data_received
            if SKIP_STUN_PARSE:
                fast._shortcut(connection._nominated[1].protocol)
        return fast

    def _shortcut(self, protocol: Any) -> None:
        """aioice tries to parse every datagram as STUN first and takes the ValueError
        as "data"; RTP and RTCP (first byte 128-191, RFC 7983) never are STUN, so the
        nominated socket hands them over without the attempt."""
        original = protocol.datagram_received
        component = protocol.local_candidate.component

        def datagram_received(data: bytes, addr: Any) -> None:
            if data and 127 < data[0] < 192:
                self._data_received(data, component)
            else:
                original(data, addr)

        protocol.datagram_received = datagram_received
        self._protocol = protocol

    def _template(self, payload_type: int, marker: bool) -> bytearray:
        from aiortc.rtp import RtpPacket

        packet = RtpPacket(payload_type=payload_type, marker=int(marker), ssrc=self._ssrc)
        packet.extensions.mid = self._mid
        return bytearray(packet.serialize(self._dtls._rtp_header_extensions_map))

    # -- inbound ------------------------------------------------------------
    def _data_received(self, data: bytes, component: int) -> None:
        # SRTP with a clear header: version 2, not RTCP (RFC 5761 types 192-223),
        # a G.711 payload type.
        if len(data) > 12 and 127 < data[0] < 192 and (data[1] & 0x7F) in G711_TYPES \
                and not self.closed:
            try:
                clear = self._dtls._rx_srtp.unprotect(data)
            except Exception:  # pylibsrtp.Error: auth failure, replay
                self.errors += 1
                return
            payload = rtp_payload(clear)
            if payload is not None and self.on_payload is not None:
                self.packets_in += 1
                self.on_payload(payload, clear[1] & 0x7F, bool(clear[1] & 0x80))
            return
        assert self._original is not None
        self._original(data, component)

    # -- outbound -----------------------------------------------------------
    def send(self, payload: bytes, marker: bool = False) -> None:
        """One G.711 frame to the peer, protected and written now."""
        if self.closed:
            return
        pair = self._connection._nominated.get(1)
        transport = getattr(pair.protocol, "transport", None) if pair is not None else None
        if transport is None:
            return  # ICE lost: the phone's grace period handles it
        key = (self.payload_type, marker)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = self._template(*key)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + len(payload)) & 0xFFFFFFFF
        _SEQ_TS.pack_into(template, 2, self._seq, self._ts)
        try:
            data = self._dtls._tx_srtp.protect(bytes(template) + payload)
        except Exception:
            self.errors += 1
            return
        transport.sendto(data, pair.remote_addr)
        self.packets_out += 1

    def close(self) -> None:
        """Back to aiortc's path (the connection may live on, e.g. closing)."""
        if self.closed:
            return
        self.closed = True
        if self._original is not None and \
                self._connection.data_received == self._data_received:
            self._connection.data_received = self._original
        if self._protocol is not None:
            self._protocol.__dict__.pop("datagram_received", None)
            self._protocol = None
