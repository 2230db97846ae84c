"""SIP over UDP, TCP and TLS on asyncio (IPv4 and IPv6), with RFC 3581 rport and
Via-based response routing.

TLS is TCP's stream framing under `ssl`: the listener accepts the TCP connection,
counts it against the same per-address and total caps as TCP *before* the handshake
(so a client that opens thousands of connections and never handshakes is refused),
then runs the handshake with its own timeout; garbage or a stalled handshake closes
the connection. After the handshake a TLS connection is a TCP one with `Peer.transport
== "TLS"` and the names of a verified client certificate (`peer_names`).

The transport owns framing and parsing.  A message that fails to parse is answered
with 400 when it is a request whose Via, From, To, Call-ID and CSeq could be read
(so the answer can be routed and matched), and dropped silently otherwise: sending
anything to an unroutable or spoofed source only helps reflection attacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from core.numbers import ascii_int
from pbx_bridge.sip.message import (
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    Via,
    display_name_of,
    find_stream_message,
    parse_message,
)
from pbx_bridge.sip.tls import describe_failure, peer_names

log = logging.getLogger(__name__)

MAX_TCP_CONNECTIONS = 2_000
# One address may hold at most this many connections, so a single source cannot take
# every slot. A site whose phones all sit behind one NAT address and use TCP raises it
# (`sip.tcp_max_connections_per_address`).
MAX_TCP_PER_ADDRESS = 100
TCP_IDLE_SECONDS = 600.0
# A connection that never delivered a parseable message is closed much sooner: a
# phone or trunk speaks within a second of connecting.
TCP_SILENT_SECONDS = 10.0
# A message must be complete within this long of its first byte (slow-loris).
TCP_INCOMPLETE_SECONDS = 10.0
# Datagrams from unknown hosts waiting to be handled (about 2 s of a 1,000/s flood),
# and how long one turn of the loop may spend on them before I/O is read again.
UNTRUSTED_QUEUE = 2_000
UNTRUSTED_SLICE = 0.001
# A 4 MB socket buffer (capped by net.core.rmem_max). With the default ~200 kB a
# burst of ~400 INVITEs while the loop is busy fills it and the kernel drops what
# follows: a legitimate INVITE among them is only retried after 0.5, 1, 2, 4 s
# (timer A), which is what stretches call setup under a flood.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
TLS_HANDSHAKE_SECONDS = 10.0
# asyncio gives every TLS connection a zero-filled (so resident) read buffer of 256 KB:
# 2,000 phones registered over TLS held ~500 MB in those buffers alone. A TLS record
# is at most 16 KB, so 32 KB loses nothing; measured: 610 MB -> 190 MB for 2,000
# phones (bench/srtp_bench.py). It is a class attribute of asyncio's SSLProtocol, so
# it applies to the process's other TLS connections too (only their read chunk size).
TLS_READ_BUFFER = 32 * 1024
STREAM_TRANSPORTS = ("TCP", "TLS")


def bare_host(host: str) -> str:
    """`[::1]` -> `::1` (sockets take IPv6 addresses without brackets)."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def uri_host(host: str) -> str:
    """`::1` -> `[::1]` for URIs, Via and Host (RFC 3261 25.1)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def unmapped(host: str) -> str:
    """A dual-stack socket reports IPv4 peers as `::ffff:a.b.c.d`: use `a.b.c.d`, so
    trunk address lists and limits see one spelling of each address."""
    return host[7:] if host.startswith("::ffff:") and "." in host else host


@dataclass(frozen=True)
class Peer:
    """Where a message came from or goes to."""

    transport: str  # "UDP" | "TCP" | "TLS"
    host: str
    port: int
    connection: TcpConnection | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def is_stream(self) -> bool:
        return self.transport in STREAM_TRANSPORTS

    @property
    def certificate_names(self) -> frozenset[str]:
        """Names of the verified client certificate on this TLS connection (mutual
        TLS), empty otherwise."""
        return self.connection.peer_names if self.connection is not None else frozenset()


MessageHandler = Callable[[SipMessage, Peer], None]


class UdpEndpoint:
    """The SIP UDP socket, read in bursts.

    asyncio's datagram transport reads one datagram per loop iteration, so under a
    flood a legitimate INVITE waits behind everything queued in the kernel before it.
    This endpoint reads all that is waiting at each wake-up and hands it to the layer,
    which handles known hosts at once and queues the rest (TransportLayer.datagram).
    Sends are non-blocking; a datagram the kernel cannot take now is dropped, as UDP
    may (retransmission timers cover it)."""

    def __init__(self, layer: TransportLayer, host: str, port: int) -> None:
        self.layer = layer
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # "::" is dual stack: one IPv6 socket that also takes IPv4 (mapped addresses)
        self.dual_stack = family == socket.AF_INET6 and host == "::"
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            if family == socket.AF_INET6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                                     0 if self.dual_stack else 1)
            with contextlib.suppress(OSError):  # the kernel caps it at rmem_max
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self._read_burst)
        self.closed = False

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _read_burst(self) -> None:
        for _ in range(1024):
            try:
                data, addr = self.sock.recvfrom(65_535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors surface here; nothing to do
                log.debug("SIP UDP receive error: %s", exc)
                return
            self.layer.datagram(data, Peer("UDP", unmapped(addr[0]), addr[1]))

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if self.closed:
            return
        host = bare_host(address[0])
        if self.dual_stack and ":" not in host:
            host = "::ffff:" + host
        try:
            self.sock.sendto(data, (host, address[1]))
        except (BlockingIOError, InterruptedError):
            log.debug("SIP UDP send buffer full: dropped a datagram to %s", address)
        except OSError as exc:
            log.debug("SIP UDP send to %s failed: %s", address, exc)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class TcpConnection(asyncio.Protocol):
    """One SIP stream connection, TCP or TLS (`tls` is the server context of an
    accepted TLS connection; outbound TLS arrives here already wrapped)."""

    def __init__(self, layer: TransportLayer, *, outbound: bool = False,
                 tls: ssl.SSLContext | None = None, transport_name: str = "TCP") -> None:
        self.layer = layer
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.idle_handle: asyncio.TimerHandle | None = None
        self.incomplete_handle: asyncio.TimerHandle | None = None
        self.spoke = outbound  # a connection we opened is trusted to be used
        self.counted = False
        self.tls = tls
        self.transport_name = "TLS" if tls is not None else transport_name
        self.peer_names: frozenset[str] = frozenset()
        self.handshake: asyncio.Task[None] | None = None
        # bytes decrypted before start_tls() handed us the TLS transport: read after
        self.early: list[bytes] = []
        # a phone registered over this connection: it may stay quiet (apart from
        # keep-alives) until its registration expires, and is rung over it
        self.registered_for: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        host = unmapped(host)
        self.peer = Peer(self.transport_name, host, port, self)
        if not self.layer.admit_tcp(host):
            log.debug("refusing %s from %s: connection limit", self.transport_name, host)
            self.layer.stream_refused[self.transport_name] += 1
            transport.abort()
            return
        self.counted = True
        if self.tls is not None:
            # counted before the handshake; nothing is read as SIP until it is done
            transport.pause_reading()
            self.handshake = asyncio.get_running_loop().create_task(
                self._server_handshake(transport, self.tls))
            return
        if self.transport_name == "TLS":  # outbound TLS: already verified by asyncio
            self.peer_names = peer_names(transport.get_extra_info("peercert"))
        self.layer.connections[(host, port)] = self
        self._touch()

    async def _server_handshake(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        assert self.peer is not None
        try:
            wrapped = await loop.start_tls(raw, self, context, server_side=True,
                                           ssl_handshake_timeout=self.layer.tls_handshake_seconds)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.layer.tls_handshake_failures += 1
            label = self.layer.label_for_host(self.peer.host)
            if label:  # a trunk's failure is the administrator's business
                log.warning("TLS from %s (%s) closed: %s", label, self.peer.host,
                            describe_failure(exc))
            else:  # anyone else: scanners and garbage, not worth a warning each
                log.info("TLS from %s closed: %s", self.peer.host, describe_failure(exc))
            raw.abort()
            self._release()
            return
        except asyncio.CancelledError:
            raw.abort()
            self._release()
            raise
        finally:
            self.handshake = None
        if wrapped is None:  # closed during the handshake
            self._release()
            return
        self.transport = wrapped
        self.peer_names = peer_names(wrapped.get_extra_info("peercert"))
        self.layer.connections[self.peer.address] = self
        self._touch()
        early, self.early = self.early, []
        for data in early:
            self.data_received(data)

    def _touch(self) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        loop = asyncio.get_running_loop()
        timeout = self.layer.tcp_idle_seconds if self.spoke else self.layer.tcp_silent_seconds
        if self.registered_for is not None:
            timeout = max(timeout, self.registered_for + 32)
        self.idle_handle = loop.call_later(timeout, self.close)

    def keep_for_registration(self, expires: float) -> None:
        """RFC 5626: a registration's connection is kept as long as the binding (not
        the 600 s idle limit), so the phone can be rung over it."""
        self.registered_for = expires
        self._touch()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        if not self.counted:
            return
        if self.handshake is not None:  # decrypted, but our TLS transport is not set yet
            self.early.append(data)
            return
        self._receive(data)
        if self.buffer and self.incomplete_handle is None:
            self.incomplete_handle = asyncio.get_running_loop().call_later(
                self.layer.tcp_incomplete_seconds, self._incomplete_timeout)
        elif not self.buffer and self.incomplete_handle is not None:
            self.incomplete_handle.cancel()
            self.incomplete_handle = None
        self._touch()

    def _incomplete_timeout(self) -> None:
        self.incomplete_handle = None
        if self.buffer:
            log.info("closing SIP stream %s: message incomplete after %.0f s",
                     self.peer.address if self.peer else "?", self.layer.tcp_incomplete_seconds)
            self.close()

    def _receive(self, data: bytes) -> None:
        assert self.peer is not None
        self.buffer += data
        while self.buffer:
            if self.buffer.startswith(b"\r\n\r\n"):  # RFC 5626 keep-alive ping
                self.buffer = self.buffer[4:]
                self.send(b"\r\n")
                continue
            try:
                found = find_stream_message(self.buffer)
            except SipParseError as exc:
                log.info("closing %s %s: %s", self.transport_name, self.peer.address,
                         exc.reason)
                self.close()
                return
            if found is None:
                return
            start, end = found
            chunk, self.buffer = self.buffer[start:end], self.buffer[end:]
            if self.incomplete_handle is not None:  # a message completed: restart the clock
                self.incomplete_handle.cancel()
                self.incomplete_handle = None
            if chunk.strip() and self.layer.received(chunk, self.peer, stream=True):
                self.spoke = True

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handshake is not None:
            return  # the handshake task releases the slot
        self._release()

    def _release(self) -> None:
        for handle in (self.idle_handle, self.incomplete_handle):
            if handle is not None:
                handle.cancel()
        if self.peer is not None and self.layer.connections.get(self.peer.address) is self:
            del self.layer.connections[self.peer.address]
        if self.counted and self.peer is not None:
            self.counted = False
            self.layer.release_tcp(self.peer.host)


class TransportLayer:
    """Owns the UDP socket and TCP listener; routes parsed messages to `handler`."""

    def __init__(self, host: str, port: int, transports: list[str],
                 handler: MessageHandler, *, tcp_max_per_address: int = MAX_TCP_PER_ADDRESS,
                 tls_port: int | None = None) -> None:
        self.host = host
        self.port = port
        self.transports = [t.lower() for t in transports]
        self.handler = handler
        self.udp: UdpEndpoint | None = None
        self.tcp_server: asyncio.Server | None = None
        self.connections: dict[tuple[str, int], TcpConnection] = {}
        self.tcp_max_connections = MAX_TCP_CONNECTIONS
        self.tcp_max_per_address = tcp_max_per_address
        self.tcp_idle_seconds = TCP_IDLE_SECONDS
        self.tcp_silent_seconds = TCP_SILENT_SECONDS
        self.tcp_incomplete_seconds = TCP_INCOMPLETE_SECONDS
        self.tcp_per_address: dict[str, int] = {}
        self.tcp_refused = 0
        # Under a flood, datagrams from known hosts (trunks, registered phones) are
        # handled first and the rest wait in a bounded queue (oldest shed when full).
        self.is_priority: Callable[[str], bool] = lambda host: True
        self.untrusted: deque[tuple[bytes, Peer]] = deque()
        self.untrusted_limit = UNTRUSTED_QUEUE
        self.untrusted_shed = 0
        self._draining = False
        self.parse_errors = 0
        self.bad_requests_answered = 0
        # TLS: the listener's context (swapped on reload: new connections take the
        # new one), and for connections we open, a lookup of (context, server name,
        # label for logs) by destination — the server maps destinations to trunks.
        self.tls_port = tls_port
        self.tls_server: asyncio.Server | None = None
        self.tls_server_context: ssl.SSLContext | None = None
        self.tls_client: Callable[[Peer], TlsClientParams | None] = lambda peer: None
        self.tls_handshake_seconds = TLS_HANDSHAKE_SECONDS
        self.tls_handshake_failures = 0
        self.tls_connect_failures: dict[str, str] = {}  # label -> last reason
        self.stream_refused = {"TCP": 0, "TLS": 0}
        self._connecting: dict[tuple[str, str, int], asyncio.Future[TcpConnection | None]] = {}
        # connections we opened, by the destination as named (a trunk's host name)
        self._outbound: dict[tuple[str, str, int], TcpConnection] = {}
        # told when a connection we needed could not be opened (transactions -> 503)
        self.on_connect_failed: Callable[[Peer, str], None] = lambda peer, reason: None
        # "trunk NAME" for an address that belongs to a trunk ("" otherwise), for logs
        self.label_for_host: Callable[[str], str] = lambda host: ""

    def admit_tcp(self, host: str) -> bool:
        """Count a new TCP connection from `host`, or refuse it (total or per-address cap)."""
        held = self.tcp_per_address.get(host, 0)
        if held >= self.tcp_max_per_address or len(self.connections) >= self.tcp_max_connections:
            self.tcp_refused += 1
            return False
        self.tcp_per_address[host] = held + 1
        return True

    def release_tcp(self, host: str) -> None:
        held = self.tcp_per_address.get(host, 0) - 1
        if held > 0:
            self.tcp_per_address[host] = held
        else:
            self.tcp_per_address.pop(host, None)

    async def start(self) -> None:
        """Bind UDP and TCP on the same port; with port 0, retry until both are free.
        Then the TLS listener on its own port (5061 by default)."""
        wanted = self.port
        for attempt in range(20):
            try:
                await self._bind(wanted)
                break
            except OSError:
                await self.stop()
                if wanted != 0 or attempt == 19:
                    raise
        if self.tls_server_context is not None and self.tls_port is not None:
            _shrink_tls_read_buffer()
            loop = asyncio.get_running_loop()
            self.tls_server = await loop.create_server(
                lambda: TcpConnection(self, tls=self.tls_server_context),
                self._listen_hosts(), self.tls_port)
            self.tls_port = self.tls_server.sockets[0].getsockname()[1]

    def _listen_hosts(self) -> str | list[str]:
        """"::" listens on both families (asyncio makes IPv6 sockets v6-only)."""
        return ["0.0.0.0", "::"] if self.host == "::" else self.host

    async def _bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.port = port
        if "udp" in self.transports:
            self.udp = UdpEndpoint(self, self.host, self.port)
            self.port = self.udp.port  # resolve port 0
        if "tcp" in self.transports:
            self.tcp_server = await loop.create_server(
                lambda: TcpConnection(self), self._listen_hosts(), self.port
            )
            if self.port == 0:
                self.port = self.tcp_server.sockets[0].getsockname()[1]

    def datagram(self, data: bytes, peer: Peer) -> None:
        """One UDP datagram: known hosts now, the others through the bounded queue."""
        if self.is_priority(peer.host):
            self.received(data, peer)
            return
        if len(self.untrusted) >= self.untrusted_limit:
            self.untrusted.popleft()  # shed the oldest: its sender retransmits
            self.untrusted_shed += 1
        self.untrusted.append((data, peer))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().call_soon(self._drain_untrusted)

    def _drain_untrusted(self) -> None:
        """Handle queued datagrams for at most UNTRUSTED_SLICE seconds, then yield to
        the loop (I/O first), and continue on the next iteration."""
        deadline = time.monotonic() + UNTRUSTED_SLICE
        while self.untrusted and time.monotonic() < deadline:
            data, peer = self.untrusted.popleft()
            try:
                self.received(data, peer)
            except Exception:  # never leave the queue undrained
                log.exception("error handling SIP datagram from %s", peer.address)
        if self.untrusted:
            asyncio.get_running_loop().call_soon(self._drain_untrusted)
        else:
            self._draining = False

    async def stop(self) -> None:
        self.untrusted.clear()
        if self.udp is not None:
            self.udp.close()
            self.udp = None
        if self.tcp_server is not None:
            self.tcp_server.close()
            for conn in list(self.connections.values()):
                conn.close()
            await self.tcp_server.wait_closed()
            self.tcp_server = None
        if self.tls_server is not None:
            self.tls_server.close()
            for conn in list(self.connections.values()):
                conn.close()
            await self.tls_server.wait_closed()
            self.tls_server = None

    # -- inbound ------------------------------------------------------
    def received(self, data: bytes, peer: Peer, *, stream: bool = False) -> bool:
        """Parse and hand on one message; True when it was a well-formed SIP message."""
        if not data.strip(b"\r\n \t"):
            return False  # keep-alive
        try:
            msg = parse_message(data, stream=stream)
        except SipParseError as exc:
            self.parse_errors += 1
            self._answer_parse_error(exc, peer)
            return False
        try:
            if isinstance(msg, SipRequest):
                self._stamp_via(msg, peer)
            self.handler(msg, peer)
        except Exception:  # one bad message must never take the server down
            log.exception("error handling SIP message from %s", peer.address)
        return True

    def _stamp_via(self, req: SipRequest, peer: Peer) -> None:
        """RFC 3261 18.2.1 received= and RFC 3581 rport= on the top Via."""
        parsed = req.top_via()  # parsed (and cached) by parse_message's validation
        # a copy: the message's parsed Via stays what its header said
        top = Via(parsed.transport, parsed.host, parsed.port, dict(parsed.params))
        if bare_host(top.host) != peer.host:
            top.params["received"] = peer.host
        if "rport" in top.params:
            top.params["rport"] = str(peer.port)
            top.params["received"] = peer.host
        req.replace_top_via(top.serialize(), top)

    def _answer_parse_error(self, exc: SipParseError, peer: Peer) -> None:
        log.debug("unparseable SIP from %s: %s", peer.address, exc.reason)
        if not exc.is_request or exc.method == "ACK":
            return
        vias = [v for k, v in exc.headers if k == "via"]
        if not vias:
            return  # no Via: a response cannot be routed, drop silently
        try:
            via = Via.parse(vias[0])
        except SipParseError:
            return
        response = SipResponse(status=400, reason=_safe_reason(exc.reason))
        response.headers.extend(("via", v) for v in vias)
        for key in ("from", "to", "call-id", "cseq"):
            value = next((v for k, v in exc.headers if k == key), None)
            if value is not None:
                if key == "to" and ";tag=" not in value.replace(" ", "").lower():
                    value += ";tag=" + secrets.token_hex(6)
                response.headers.append((key, value))
        req = SipRequest(headers=list(exc.headers))
        self._stamp_via_headers(response, via, peer)
        self.bad_requests_answered += 1
        self.send(response.serialize(), self.response_destination(req, peer, via))

    def _stamp_via_headers(self, response: SipResponse, via: Via, peer: Peer) -> None:
        if bare_host(via.host) != peer.host or "rport" in via.params:
            via.params["received"] = peer.host
        if "rport" in via.params:
            via.params["rport"] = str(peer.port)
        for i, (k, _) in enumerate(response.headers):
            if k == "via":
                response.headers[i] = ("via", via.serialize())
                break

    # -- outbound -----------------------------------------------------
    def response_destination(self, req: SipMessage, peer: Peer, via: Via | None = None) -> Peer:
        """RFC 3261 18.2.2 + RFC 3581: where a response to `req` goes."""
        if peer.is_stream and peer.connection is not None:
            return peer
        via = via or req.top_via()  # read only: the message's cached parse
        host = via.params.get("received") or via.host
        rport = via.params.get("rport")
        port = ascii_int(rport, max_digits=5) if rport else None
        if port is None or not 0 < port < 65536:
            port = via.port or 5060
        return Peer(peer.transport, bare_host(host), port)

    def send(self, data: bytes, dest: Peer) -> None:
        if dest.is_stream:
            conn = dest.connection
            if conn is None or conn.transport is None or conn.transport.is_closing():
                key = (dest.transport, bare_host(dest.host), dest.port)
                conn = self._outbound.get(key) or self.connections.get(key[1:])
                if conn is not None and (conn.transport_name != dest.transport
                                         or conn.transport is None
                                         or conn.transport.is_closing()):
                    self._outbound.pop(key, None)
                    conn = None
            if conn is not None:
                conn.send(data)
            else:
                asyncio.get_running_loop().create_task(self._connect_and_send(data, dest))
            return
        if self.udp is not None:
            self.udp.sendto(data, dest.address)

    async def _connect_and_send(self, data: bytes, dest: Peer) -> None:
        conn = await self.connect(dest)
        if conn is not None:
            conn.send(data)

    async def connect(self, dest: Peer) -> TcpConnection | None:
        """Open (or join the opening of) a TCP/TLS connection to `dest`. TLS verifies
        the server certificate with the context and name `tls_client` gives; a failure
        is logged once per reason, naming the trunk."""
        key = (dest.transport, bare_host(dest.host), dest.port)
        pending = self._connecting.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TcpConnection | None] = \
            asyncio.get_running_loop().create_future()
        self._connecting[key] = future
        try:
            conn = await self._open(dest)
        finally:
            del self._connecting[key]
        if conn is not None:
            self._outbound[key] = conn
        future.set_result(conn)
        return conn

    async def _open(self, dest: Peer) -> TcpConnection | None:
        loop = asyncio.get_running_loop()
        host = bare_host(dest.host)
        kwargs: dict[str, object] = {}
        label = f"{host}:{dest.port}"
        if dest.transport == "TLS":
            params = self.tls_client(dest)
            if params is None:
                log.warning("no TLS client settings for %s: not sending", label)
                return None
            label = params.label
            kwargs = {"ssl": params.context, "server_hostname": params.server_name,
                      "ssl_handshake_timeout": self.tls_handshake_seconds}
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: TcpConnection(self, outbound=True, transport_name=dest.transport),
                    host, dest.port, **kwargs),  # type: ignore[arg-type]
                self.tls_handshake_seconds + 5)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            reason = describe_failure(exc) if dest.transport == "TLS" else str(exc)
            if dest.transport == "TLS":
                self.tls_connect_failures[label] = reason
                log.warning("TLS to %s (%s:%s) refused: %s", label, host, dest.port, reason)
            else:
                log.info("cannot reach %s over %s: %s", label, dest.transport, reason)
            asyncio.get_running_loop().call_soon(self.on_connect_failed, dest, reason)
            return None
        assert isinstance(conn, TcpConnection)
        if dest.transport == "TLS":
            self.tls_connect_failures.pop(label, None)
        return conn

    def port_for(self, transport: str) -> int:
        if transport.upper() == "TLS" and self.tls_port is not None:
            return self.tls_port
        return self.port

    def via_for(self, transport: str, branch: str, advertised_host: str) -> str:
        return (f"SIP/2.0/{transport.upper()} {uri_host(advertised_host)}:"
                f"{self.port_for(transport)};branch={branch};rport")


@dataclass(frozen=True)
class TlsClientParams:
    """How to open a TLS connection to one destination (a trunk)."""

    context: ssl.SSLContext
    server_name: str
    label: str  # e.g. "trunk carrier", for log lines


def _shrink_tls_read_buffer() -> None:
    """See TLS_READ_BUFFER. Never grows it (another part may have set it lower)."""
    import asyncio.sslproto as sslproto

    current = getattr(sslproto.SSLProtocol, "max_size", None)
    if isinstance(current, int) and current > TLS_READ_BUFFER:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def _safe_reason(reason: str) -> str:
    text = "".join(ch for ch in reason if 32 <= ord(ch) < 127)
    return f"Bad Request ({text[:80]})"


__all__ = ["Peer", "TcpConnection", "TlsClientParams", "TransportLayer", "bare_host",
           "display_name_of", "uri_host"]
