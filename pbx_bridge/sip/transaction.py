"""SIP transactions (RFC 3261 section 17) with T1/T2 retransmission timers.

Server side: a retransmitted request is absorbed and the last response re-sent;
INVITE final responses are retransmitted over UDP until the ACK arrives (timer G,
capped at T2, given up after 64*T1 = timer H); a 2xx is retransmitted the same way
until the dialog's ACK (RFC 3261 13.3.1.4).  Client side: requests are retransmitted
over UDP (timers A/E) until a response, and fail after 64*T1 (timers B/F) with a
synthesized 408.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.ids import random_hex
from pbx_bridge.sip.message import SipRequest, SipResponse, Via
from pbx_bridge.sip.transport import Peer, TransportLayer

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0
T4 = 5.0
MAGIC = "z9hG4bK"
# A server transaction whose TU never gives a final response is answered 500 and
# removed after this long (RFC 3261 leaves it to the TU; without a bound a handler bug
# or a hostile request would hold the entry forever). An INVITE that created a call
# is bounded by the call instead (it is answered, rejected or hung up).
SERVER_TU_TIMEOUT = 64 * T1


def new_branch() -> str:
    """A branch as unguessable as `secrets.token_hex(8)`, from the ids' random pool (no
    syscall per branch)."""
    return MAGIC + random_hex(16)


def new_tag() -> str:
    return random_hex(12)


REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 202: "Accepted",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 415: "Unsupported Media Type",
    420: "Bad Extension", 423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 603: "Decline",
}


def build_response(req: SipRequest, status: int, reason: str | None = None,
                   to_tag: str | None = None) -> SipResponse:
    """A response copying Via, From, To (tagged), Call-ID, CSeq (RFC 3261 8.2.6.2)."""
    resp = SipResponse(status=status, reason=reason or REASONS.get(status, "Unknown"))
    for k, v in req.headers:
        if k in ("via", "from", "call-id", "cseq", "record-route"):
            resp.headers.append((k, v))
        elif k == "to":
            if to_tag and ";tag=" not in v.replace(" ", "").lower() and status != 100:
                v = f"{v};tag={to_tag}"
            resp.headers.append((k, v))
    resp.add("Server", "Centrale")
    return resp


def server_key(req: SipRequest) -> tuple[str, ...]:
    """RFC 3261 17.2.3: branch + sent-by + method, with ACK matching its INVITE."""
    method = "INVITE" if req.method == "ACK" else req.method
    top = req.top_via()
    if top.branch.startswith(MAGIC):
        return (top.branch, f"{top.host}:{top.port}", method)
    # RFC 2543 peers: match on dialog-ish fields
    number, _ = req.cseq
    return (req.call_id, req.from_addr.tag or "", str(number), method)


@dataclass
class ServerTransaction:
    layer: TransactionLayer
    request: SipRequest
    peer: Peer
    key: tuple[str, ...]
    last_response: bytes | None = None
    final_status: int | None = None
    acked: bool = False
    _retransmit: asyncio.TimerHandle | None = None
    _expire: asyncio.TimerHandle | None = None
    on_ack_timeout: Callable[[], None] | None = None
    destination: Peer | None = None
    owner: object | None = None  # the dialog (Call) this INVITE created, for CANCEL
    _lifetime: asyncio.TimerHandle | None = None

    def start_lifetime(self, timeout: float | None = None) -> None:
        """Arm the guard that ends a transaction left without a final response."""
        timeout = SERVER_TU_TIMEOUT if timeout is None else timeout
        self._lifetime = asyncio.get_running_loop().call_later(
            timeout, self._lifetime_expired, timeout)

    def _lifetime_expired(self, timeout: float) -> None:
        self._lifetime = None
        if self.final_status is not None:
            return  # the response timers own the rest of its life
        if self.owner is not None and self.layer.server.get(self.key) is self:
            self.start_lifetime(timeout)  # a call in progress: the call bounds it
            return
        log.warning("SIP %s from %s got no final response in %.0f s: answering 500",
                    self.request.method, self.peer.host, timeout)
        try:
            self.respond(build_response(self.request, 500, to_tag=new_tag()))
        finally:
            self.terminate()

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"

    def respond(self, response: SipResponse) -> None:
        if self.final_status is not None:
            return  # only one final response per transaction
        data = response.serialize()
        self.last_response = data
        if self.destination is None:
            self.destination = self.layer.transport.response_destination(self.request, self.peer)
        self.layer.transport.send(data, self.destination)
        if response.status < 200:
            return
        self.final_status = response.status
        loop = asyncio.get_running_loop()
        if self.is_invite:
            if self.peer.transport == "UDP":
                self._schedule_retransmit(T1)
            self._expire = loop.call_later(64 * T1, self._ack_timeout)
        else:
            linger = 64 * T1 if self.peer.transport == "UDP" else T4
            self._expire = loop.call_later(linger, self.terminate)

    def _schedule_retransmit(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        self._retransmit = loop.call_later(interval, self._resend, interval)

    def _resend(self, interval: float) -> None:
        if self.acked or self.last_response is None or self.destination is None:
            return
        self.layer.transport.send(self.last_response, self.destination)
        self._schedule_retransmit(min(2 * interval, T2))

    def retransmission_received(self) -> None:
        if self.last_response is not None and self.destination is not None:
            self.layer.transport.send(self.last_response, self.destination)

    def ack_received(self) -> None:
        if self.acked:
            return
        self.acked = True
        if self._retransmit is not None:
            self._retransmit.cancel()
        if self._expire is not None:
            self._expire.cancel()
        # keep absorbing retransmitted INVITEs for a while (RFC 6026 Accepted state)
        self._expire = asyncio.get_running_loop().call_later(
            64 * T1 if self.final_status and self.final_status < 300 else T4, self.terminate)

    def _ack_timeout(self) -> None:
        if not self.acked:
            if self._retransmit is not None:
                self._retransmit.cancel()
            if self.on_ack_timeout is not None and self.final_status and self.final_status < 300:
                self.on_ack_timeout()
        self.terminate()

    def terminate(self) -> None:
        for handle in (self._retransmit, self._expire, self._lifetime):
            if handle is not None:
                handle.cancel()
        if self.layer.server.get(self.key) is self:
            del self.layer.server[self.key]


@dataclass
class ClientTransaction:
    layer: TransactionLayer
    request: SipRequest
    destination: Peer
    key: tuple[str, str]
    future: asyncio.Future[SipResponse]
    on_provisional: Callable[[SipResponse], None] | None = None
    provisional: SipResponse | None = None
    ack_bytes: bytes | None = None
    _retransmit: asyncio.TimerHandle | None = None
    _timeout: asyncio.TimerHandle | None = None
    data: bytes = b""
    handlers: list[Callable[[SipResponse], None]] = field(default_factory=list)

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"

    def start(self) -> None:
        self.data = self.request.serialize()
        self.layer.transport.send(self.data, self.destination)
        loop = asyncio.get_running_loop()
        if self.destination.transport == "UDP":
            self._retransmit = loop.call_later(T1, self._resend, T1)
        self._timeout = loop.call_later(64 * T1, self._timed_out)

    def _resend(self, interval: float) -> None:
        if self.future.done():
            return
        if self.is_invite and self.provisional is not None:
            return  # timer A stops in Proceeding
        self.layer.transport.send(self.data, self.destination)
        nxt = 2 * interval if self.is_invite else min(2 * interval, T2)
        if not self.is_invite and self.provisional is not None:
            nxt = T2
        self._retransmit = asyncio.get_running_loop().call_later(nxt, self._resend, nxt)

    def _timed_out(self) -> None:
        if not self.future.done():
            self.future.set_result(build_response(self.request, 408))
        self.terminate()

    def response_received(self, resp: SipResponse) -> None:
        if resp.status < 200:
            self.provisional = resp
            if self.on_provisional is not None and not self.future.done():
                self.on_provisional(resp)
            return
        if self.is_invite and resp.status >= 300:
            self._send_non2xx_ack(resp)
        if self.future.done():
            if self.is_invite and resp.status < 300 and self.ack_bytes is not None:
                self.layer.transport.send(self.ack_bytes, self.destination)  # re-ACK 2xx
            return
        self.future.set_result(resp)
        if self._retransmit is not None:
            self._retransmit.cancel()
        if self._timeout is not None:
            self._timeout.cancel()
        # linger to absorb retransmitted final responses
        linger = 64 * T1 if self.destination.transport == "UDP" else T4
        self._timeout = asyncio.get_running_loop().call_later(linger, self.terminate)

    def _send_non2xx_ack(self, resp: SipResponse) -> None:
        ack = SipRequest(method="ACK", uri=self.request.uri)
        ack.add("Via", self.request.get_all("via")[0])
        ack.add("Max-Forwards", "70")
        ack.add("From", self.request.get("from") or "")
        ack.add("To", resp.get("to") or "")
        ack.add("Call-ID", self.request.call_id)
        ack.add("CSeq", f"{self.request.cseq[0]} ACK")
        for route in self.request.get_all("route"):
            ack.add("Route", route)
        self.layer.transport.send(ack.serialize(), self.destination)

    def terminate(self) -> None:
        for handle in (self._retransmit, self._timeout):
            if handle is not None:
                handle.cancel()
        if self.layer.client.get(self.key) is self:
            del self.layer.client[self.key]


class TransactionLayer:
    """Matches requests and responses to transactions."""

    def __init__(self, transport: TransportLayer) -> None:
        self.transport = transport
        self.server: dict[tuple[str, ...], ServerTransaction] = {}
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        transport.on_connect_failed = self._connect_failed

    def _connect_failed(self, dest: Peer, reason: str) -> None:
        """RFC 3261 8.1.3.1: a transport failure is a 503 to the transactions that
        were waiting on it (a trunk whose certificate is refused fails at once)."""
        for tx in list(self.client.values()):
            d = tx.destination
            if (d.transport, d.host, d.port) == (dest.transport, dest.host, dest.port) \
                    and not tx.future.done():
                tx.future.set_result(build_response(
                    tx.request, 503, f"Service Unavailable ({reason[:80]})"))
                tx.terminate()

    # -- server side --------------------------------------------------
    def find_server(self, req: SipRequest) -> ServerTransaction | None:
        return self.server.get(server_key(req))

    def find_invite_for(self, req: SipRequest) -> ServerTransaction | None:
        """The INVITE transaction an ACK (non-2xx) or CANCEL refers to."""
        key = server_key(req)
        return self.server.get((*key[:-1], "INVITE"))

    def new_server(self, req: SipRequest, peer: Peer,
                   key: tuple[str, ...] | None = None) -> ServerTransaction:
        """`key`: the request's `server_key`, when the caller computed it already."""
        if key is None:
            key = server_key(req)
        tx = ServerTransaction(self, req, peer, key)
        self.server[key] = tx
        tx.start_lifetime()
        return tx

    # -- client side --------------------------------------------------
    def request(self, req: SipRequest, destination: Peer,
                on_provisional: Callable[[SipResponse], None] | None = None
                ) -> ClientTransaction:
        branch = Via.parse(req.get_all("via")[0]).branch
        key = (branch, req.method)
        future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        tx = ClientTransaction(self, req, destination, key, future, on_provisional)
        self.client[key] = tx
        tx.start()
        return tx

    def response_received(self, resp: SipResponse) -> bool:
        vias = resp.vias
        if not vias:
            return False
        _, method = resp.cseq
        tx = self.client.get((vias[0].branch, method))
        if tx is None:
            return False
        tx.response_received(resp)
        return True


class HandlerErrorLog:
    """Counts handler failures; logs a traceback at most once per `interval` seconds.

    A failure is a bug to fix, so the first one is logged in full; a peer that can
    trigger it with every datagram must not also be able to fill the log."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self.count = 0
        self._last_logged = -interval

    def record(self, exc: BaseException, peer: Peer) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last_logged >= self.interval:
            self._last_logged = now
            log.error("SIP request from %s failed in its handler (%d so far)", peer.host,
                      self.count, exc_info=exc)
        else:
            log.debug("SIP request from %s failed: %r", peer.host, exc)


def answer_failed_request(layer: TransactionLayer, req: SipRequest, peer: Peer,
                          exc: BaseException) -> None:
    """Final response for a request whose handler raised, and a transaction that ends.

    A value that could not be read (ValueError, SipParseError) is the peer's fault: 400.
    Anything else is ours: 500 (RFC 3261 21.5.1)."""
    status = 400 if isinstance(exc, ValueError) else 500
    try:
        tx = layer.find_server(req) or layer.new_server(req, peer)
    except Exception:  # no usable Via/CSeq: nothing can be routed back
        return
    if tx.final_status is None:
        reason = "Bad Request" if status == 400 else "Server Internal Error"
        try:
            tx.respond(build_response(req, status, reason, to_tag=new_tag()))
        except Exception:
            log.debug("could not answer failed SIP request", exc_info=True)
    if tx.final_status is None:
        tx.terminate()
