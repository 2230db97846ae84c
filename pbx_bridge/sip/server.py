"""`SipServer`: the embedded SIP endpoint (UAS for trunks, registrar, UAC to phones).

Everything it needs comes through the constructor (settings, credentials, trunks,
the inbound call handler, prompt and music resolvers, the call-record sink), and it
runs between explicit `start()` and `stop()`; there is no module state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from config.schema.server import SipSettings
from core import metrics
from core.numbers import is_ascii_digits
from ivr.call_leg import CallerData
from pbx_bridge.media.audio import AudioCache, EncodedAudio, tone
from pbx_bridge.media.rtp import MediaEngine, bridge_sessions
from pbx_bridge.sip.auth import DigestAuthenticator, FailureLimiter
from pbx_bridge.sip.dialog import ALLOW, SUPPORTED, Call
from pbx_bridge.sip.directory import SharedRegistrations
from pbx_bridge.sip.identity import caller_data
from pbx_bridge.sip.leg import AgentRingResult, InboundCallHandler, SipCallLeg
from pbx_bridge.sip.message import (
    NameAddr,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
)
from pbx_bridge.sip.outbound import OutboundDialer
from pbx_bridge.sip.ports import (
    CallRecord,
    CallRecordSink,
    CredentialLookup,
    MusicResolver,
    PromptResolver,
    TrunkConfig,
)
from pbx_bridge.sip.refer import (
    ReferError,
    ReferTarget,
    Replaces,
    notify_headers,
    parse_refer,
    sipfrag,
)
from pbx_bridge.sip.registrar import Registrar, RegistrationError
from pbx_bridge.sip.sdes import answer_keys
from pbx_bridge.sip.sdp import (
    SdpError,
    SdpOffer,
    choose_codec,
    parse_sdp,
)
from pbx_bridge.sip.tls import TlsFiles, client_context, server_context
from pbx_bridge.sip.transaction import (
    HandlerErrorLog,
    ServerTransaction,
    TransactionLayer,
    answer_failed_request,
    build_response,
    new_branch,
    new_tag,
    server_key,
)
from pbx_bridge.sip.transport import Peer, TlsClientParams, TransportLayer, uri_host

log = logging.getLogger(__name__)


class ReferHandler(Protocol):
    """Carries out a REFER (call control implements it)."""

    def check_refer(self, call: Call, target: ReferTarget) -> None:
        """Raise `ReferError` to refuse (the call stays as it is)."""

    async def run_refer(self, call: Call, target: ReferTarget) -> None: ...


class ExtensionHandler(Protocol):
    """Runs a call a registered phone places to another phone's extension (call
    control implements it: the consult call of an attended transfer must be ours)."""

    async def run_extension_call(self, leg: SipCallLeg, from_user: str,
                                 to_user: str) -> None: ...

KNOWN_UNSUPPORTED = {"SUBSCRIBE", "NOTIFY", "MESSAGE", "PUBLISH", "PRACK"}


@dataclass
class SipServerStats:
    calls_in: int = 0
    calls_answered: int = 0
    calls_rejected: int = 0
    registrations: int = 0
    auth_failures: int = 0
    scans_dropped: int = 0


class SipServer:
    """The embedded SIP voice core.

    `credentials` maps an agent phone's SIP username to its password (a mapping or a
    lookup callable); `trunks` say who may send calls in; `inbound_handler` runs
    each accepted inbound call.
    """

    def __init__(
        self,
        settings: SipSettings,
        *,
        inbound_handler: InboundCallHandler,
        credentials: Mapping[str, str] | CredentialLookup,
        trunks: list[TrunkConfig] | tuple[TrunkConfig, ...] = (),
        prompts: PromptResolver | None = None,
        music: MusicResolver | None = None,
        call_record_sink: CallRecordSink | None = None,
        max_calls: int = 2000,
        max_calls_in_setup: int = 64,
        max_setup_wait: float = 2.0,
        auth_failure_limit: int = 10,
        auth_failure_window: float = 60.0,
        symmetric_rtp: bool = True,
        media_timeout: float = 120.0,
        shared_registrations: SharedRegistrations | None = None,
        phone_srtp: Callable[[str], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.inbound_handler = inbound_handler
        if isinstance(credentials, Mapping):
            creds = dict(credentials)
            self._credentials: CredentialLookup = creds.get
        else:
            self._credentials = credentials
        self.trunks = list(trunks)
        # an agent phone's own SRTP policy (AgentSip.srtp), else settings.phone_srtp
        self._phone_srtp = phone_srtp or (lambda username: None)
        self.prompts = prompts
        self.music = music
        self.call_record_sink = call_record_sink
        self.max_calls = max_calls
        # Admission: inbound calls between INVITE and answer (identity lookup, IVR
        # start). Beyond this, new INVITEs get 503 at once, so a flood from a trusted
        # trunk cannot queue work that every later call waits behind (docs/sip.md).
        self.max_calls_in_setup = max_calls_in_setup
        # ... and while the oldest call in setup has waited longer than this (the node
        # is slower than the calls arriving: a starved CPU, a slow database), so an
        # admitted call is answered well within a carrier's INVITE timeout.
        self.max_setup_wait = max_setup_wait
        self._in_setup: dict[str, float] = {}  # call id -> admitted at (monotonic), oldest first
        self.media_timeout = media_timeout
        self.advertised_host = settings.public_address or (
            "127.0.0.1" if settings.host in ("0.0.0.0", "") else
            "::1" if settings.host == "::" else settings.host)
        tls = settings.tls
        self.transport = TransportLayer(
            settings.host, settings.port, settings.transports, self._on_message,
            tcp_max_per_address=settings.tcp_max_connections_per_address,
            tls_port=tls.port if tls.enabled else None)
        self.transport.tls_handshake_seconds = tls.handshake_timeout_seconds
        self.transport.tcp_max_connections = settings.tcp_max_connections
        self.transport.tls_client = self._tls_client_params
        self.transport.label_for_host = self._trunk_label
        self._tls_client_context: ssl.SSLContext | None = None
        self.load_tls(settings)
        self.transactions = TransactionLayer(self.transport)
        # Hosts whose datagrams go before a flood's: trunks, and phones once registered
        self._known_hosts = {ip for t in self.trunks for ip in t.allowed_ips} | {
            t.outbound_host for t in self.trunks if t.outbound_host}
        self.transport.is_priority = self._known_hosts.__contains__
        self.media = MediaEngine(settings.host, settings.rtp_port_min, settings.rtp_port_max,
                                 symmetric_rtp=symmetric_rtp)
        self.registrar = Registrar()
        # Several nodes: phones registered at another node can be rung from this one.
        self.shared_registrations = shared_registrations
        self.auth = DigestAuthenticator(settings.realm)
        self.limiter = FailureLimiter(auth_failure_limit, auth_failure_window)
        # INVITE scanners (sipvicious, friendly-scanner): unauthorised INVITEs per
        # source; past the limit the source's INVITEs are dropped without an answer
        self.scan_limiter = FailureLimiter(settings.invite_scan_limit,
                                           settings.invite_scan_window_seconds)
        self.audio_cache = AudioCache()
        self.default_music: EncodedAudio = _default_music()
        # voicemail files (issue #20): set by the wiring to pbx_bridge.voicemail's target
        self.voicemail_target: Callable[[], tuple[str, Path, Any] | None] | None = None
        self.calls: dict[tuple[str, str], Call] = {}
        self._inbound_by_call_id: dict[str, Call] = {}
        self.stats = SipServerStats()
        self.handler_errors = HandlerErrorLog()
        self._tag_secret = secrets.token_bytes(16)
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self.trunk_status: dict[str, str] = {}  # outbound registration state per trunk
        self._prompt_paths: dict[tuple[str, str], Path] = {}
        self.dialer = OutboundDialer(self)
        # REFER from phones (call control sets it; without it REFER is 501)
        self.refer_handler: ReferHandler | None = None
        # A peer putting us on hold or taking us off (re-INVITE sendonly/inactive and
        # back): call control turns an agent phone's hold key into a hold with music.
        self.on_remote_hold: Callable[[Call], None] | None = None
        # Calls a registered phone places to another phone's user name (extension);
        # without a handler such an INVITE is taken as any other inbound call.
        self.extension_handler: ExtensionHandler | None = None

    # -- lifecycle ----------------------------------------------------
    @property
    def port(self) -> int:
        return self.transport.port

    async def start(self) -> None:
        if self._started:
            return
        await self.transport.start()
        self.media.start()
        self._started = True
        for trunk in self.trunks:
            if trunk.register and trunk.outbound_host and trunk.username:
                self._spawn(self.dialer.keep_trunk_registered(trunk))
        if self.media_timeout > 0:
            self._spawn(self._media_watchdog())
        log.info("SIP listening on %s:%s (%s)", self.settings.host, self.port,
                 ",".join(self.settings.transports))
        if self.transport.tls_server is not None:
            log.info("SIP over TLS listening on %s:%s", self.settings.host,
                     self.transport.tls_port)

    # -- TLS ----------------------------------------------------------
    def load_tls(self, settings: SipSettings) -> None:
        """(Re)build the TLS contexts from the PEM files. New connections use them;
        connections already up, and so live calls, keep the context they have.
        Raises `TlsConfigError` (the old contexts stay) when a file is unusable."""
        tls = settings.tls
        files = TlsFiles(cert_file=tls.cert_file, key_file=tls.key_file, ca_file=tls.ca_file,
                         client_ca_file=tls.client_ca_file, min_version=tls.min_version,
                         ciphers=tls.ciphers)
        server_ctx = server_context(files) if tls.enabled else None
        client_ctx = client_context(files) if tls.enabled or any(
            t.outbound_transport == "tls" for t in self.trunks) else None
        self.transport.tls_server_context = server_ctx
        self._tls_client_context = client_ctx

    async def apply_config(self, config) -> None:  # type: ignore[no-untyped-def]
        """`centrale reload`: certificates are read again (the rest of the SIP settings
        needs a restart). An unusable file is logged and the old certificate kept."""
        from pbx_bridge.sip.tls import TlsConfigError

        if not config.server.sip.tls.enabled:
            return  # turning TLS on or off needs a restart (the listener is bound once)
        try:
            self.load_tls(config.server.sip)
        except TlsConfigError as exc:
            log.error("SIP TLS reload refused, keeping the current certificate: %s", exc)
            return
        log.info("SIP TLS certificates reloaded")

    def phone_srtp_policy(self, username: str) -> str:
        """SRTP policy for ringing this agent's phone (off / optional / required)."""
        return self._phone_srtp(username) or self.settings.phone_srtp

    def _trunk_label(self, host: str) -> str:
        trunk = next((t for t in self.trunks if host in t.allowed_ips
                      or host == t.outbound_host), None)
        return f"trunk {trunk.name}" if trunk is not None else ""

    def _tls_client_params(self, peer: Peer) -> TlsClientParams | None:
        """Context, expected name and log label for a TLS connection we open: a trunk
        is verified against its `tls_server_name` (default its host name)."""
        if self._tls_client_context is None:
            return None
        trunk = next((t for t in self.trunks if t.outbound_host == peer.host
                      and t.outbound_port == peer.port), None)
        if trunk is None:
            return TlsClientParams(self._tls_client_context, peer.host,
                                   f"{peer.host}:{peer.port}")
        return TlsClientParams(self._tls_client_context,
                               trunk.tls_server_name or peer.host, f"trunk {trunk.name}")

    async def stop(self) -> None:
        if not self._started:
            return
        for call in list(self.calls.values()):
            await self.hangup_call(call, "shutdown", by="server")
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.media.stop()
        await self.transport.stop()
        if self.shared_registrations is not None:
            # The bindings stay in Redis: the phones are still where they registered,
            # and other nodes can ring them until they re-register elsewhere.
            await self.shared_registrations.close()
        self._started = False

    async def _media_watchdog(self) -> None:
        """Hang up answered calls whose peer sent no RTP for `media_timeout` seconds
        (a phone that crashed or lost its network never sends BYE). Calls on hold are
        spared: a held peer may legitimately send nothing."""
        interval = max(0.1, min(10.0, self.media_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for call in list(self.calls.values()):
                rtp = call.rtp
                if (rtp is not None and call.answered and not call.remote_on_hold
                        and now - rtp.last_received > self.media_timeout):
                    log.info("call %s: no RTP for %.0f s, hanging up", call.call_id,
                             now - rtp.last_received)
                    await self.hangup_call(call, "media timeout", by="server")

    def in_dialog_request(self, call: Call, method: str) -> SipRequest:
        """A request in `call`'s dialog with our Via and Contact (send it yourself)."""
        via = self.transport.via_for(call.peer.transport, new_branch(), self.advertised_host)
        return call.in_dialog_request(method, via=via,
                                      contact=self.contact_header(call.peer.transport))

    def spawn(self, coro) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
        """Run a background task the server owns (cancelled at `stop()`)."""
        return self._spawn(coro)

    def _spawn(self, coro) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SIP task failed", exc_info=task.exception())

    async def resolve_prompt(self, prompt: str, language: str) -> Path | None:
        """Prompt key -> file. The resolver may do file work or run TTS (the IVR's
        PromptLibrary does), so a first lookup runs in a thread; found paths are
        remembered (the audio cache still notices a changed file by its mtime)."""
        key = (prompt, language)
        path = self._prompt_paths.get(key)
        if path is not None or self.prompts is None:
            return path
        path = await asyncio.to_thread(self.prompts.resolve, prompt, language)
        if path is not None:
            self._prompt_paths[key] = path
        return path

    def contact_header(self, transport: str = "UDP") -> str:
        kind = transport.upper()
        suffix = f";transport={kind.lower()}" if kind in ("TCP", "TLS") else ""
        return (f"<sip:centrale@{uri_host(self.advertised_host)}:"
                f"{self.transport.port_for(kind)}{suffix}>")

    # -- dispatch -----------------------------------------------------
    def _on_message(self, msg: SipMessage, peer: Peer) -> None:
        """Every request ends in a response and a transaction that expires, even when
        its handler raises: 400 for a field that turned out malformed, 500 otherwise."""
        try:
            self._dispatch(msg, peer)
        except Exception as exc:
            self.handler_errors.record(exc, peer)
            if isinstance(msg, SipRequest) and msg.method != "ACK":
                answer_failed_request(self.transactions, msg, peer, exc)

    def _dispatch(self, msg: SipMessage, peer: Peer) -> None:
        if isinstance(msg, SipResponse):
            self.transactions.response_received(msg)
            return
        assert isinstance(msg, SipRequest)
        req = msg
        if req.method == "ACK":
            self._on_ack(req)
            return
        key = server_key(req)  # once: the lookup and the new transaction share it
        existing = self.transactions.server.get(key)
        if existing is not None:
            existing.retransmission_received()
            return
        tx = self.transactions.new_server(req, peer, key)
        handler = {
            "INVITE": self._on_invite,
            "CANCEL": self._on_cancel,
            "BYE": self._on_bye,
            "OPTIONS": self._on_options,
            "INFO": self._on_info,
            "UPDATE": self._on_update,
            "REGISTER": self._on_register,
            "REFER": self._on_refer,
        }.get(req.method)
        try:
            if handler is not None:
                handler(req, tx)
            elif req.method in KNOWN_UNSUPPORTED:
                resp = build_response(req, 405, to_tag=new_tag())
                resp.add("Allow", ALLOW)
                tx.respond(resp)
            else:
                resp = build_response(req, 501, to_tag=new_tag())
                resp.add("Allow", ALLOW)
                tx.respond(resp)
        except SipParseError as exc:
            tx.respond(build_response(req, 400, f"Bad Request ({exc.reason[:60]})",
                                      to_tag=new_tag()))

    def _reply(self, tx: ServerTransaction, status: int, reason: str | None = None,
               to_tag: str | None = None) -> SipResponse:
        resp = build_response(tx.request, status, reason, to_tag=to_tag or new_tag())
        tx.respond(resp)
        return resp

    def _dialog(self, req: SipRequest) -> Call | None:
        """The dialog of an in-dialog request: Call-ID, our tag (To) and theirs (From)."""
        tag = req.to_addr.tag
        if tag is None:
            return None
        call = self.calls.get((req.call_id, tag))
        if call is None or (call.remote_tag is not None
                            and req.from_addr.tag != call.remote_tag):
            return None
        return call

    # -- authorization ------------------------------------------------
    def _trunk_for(self, peer: Peer) -> TrunkConfig | None:
        """The trunk a request comes from: by the verified client certificate of its
        TLS connection (mutual TLS), else by source address."""
        names = peer.certificate_names
        if names:
            trunk = next((t for t in self.trunks if names & t.tls_client_names), None)
            if trunk is not None:
                return trunk
        return next((t for t in self.trunks if peer.host in t.allowed_ips), None)

    def _trunk_password(self, username: str) -> str | None:
        for trunk in self.trunks:
            if trunk.username == username and trunk.password is not None:
                return trunk.password
        return None

    def _authenticate(self, tx: ServerTransaction, lookup: CredentialLookup) -> str | None:
        """Digest-check a request; answers 401/403 itself and returns None on failure."""
        req, source = tx.request, tx.peer.host
        if self.limiter.blocked(source):
            self._reject_stateless(tx, 403, "Forbidden (too many failures)")
            return None
        outcome, username = self.auth.verify(req.get("authorization"), req.method, lookup)
        if outcome == "ok":
            return username
        if outcome == "bad":
            self.stats.auth_failures += 1
            self.limiter.record_failure(source)
            self._reject_stateless(tx, 403, "Forbidden (bad credentials)")
            return None
        self._reject_stateless(tx, 401, headers=[
            ("WWW-Authenticate", self.auth.challenge(stale=outcome == "stale"))])
        return None

    def _count_scan(self, host: str) -> None:
        self.scan_limiter.record_failure(host)
        if self.scan_limiter.blocked(host):
            log.warning("INVITE scanner %s: %d unauthorised INVITEs within %.0f s; its "
                        "INVITEs are dropped until the window passes", host,
                        self.scan_limiter.max_failures, self.scan_limiter.window)

    def _reject_stateless(self, tx: ServerTransaction, status: int, reason: str | None = None,
                          headers: list[tuple[str, str]] | None = None) -> None:
        """Answer a request from a source that has not authenticated, keeping nothing.

        A stateful final response to an INVITE is retransmitted until an ACK that a
        spoofed or flooding source never sends (about 10 times over 32 s), and every
        such transaction is held that long: 1,000 INVITEs/s became 10,000 responses/s
        and 32,000 entries. Like a stateless UAS (RFC 3261 8.2.7) the answer is sent
        once and the transaction dropped; a retransmitted request is answered again,
        with the same To tag (derived from the branch), so it looks the same."""
        resp = build_response(tx.request, status, reason,
                              to_tag=self._stateless_tag(tx.request))
        for name, value in headers or []:
            resp.add(name, value)
        tx.respond(resp)
        tx.terminate()

    def _stateless_tag(self, req: SipRequest) -> str:
        key = f"{req.call_id}|{req.get_all('via')[0]}".encode("utf-8", "surrogateescape")
        return hmac.new(self._tag_secret, key, hashlib.sha256).hexdigest()[:12]

    # -- REGISTER -----------------------------------------------------
    def _on_register(self, req: SipRequest, tx: ServerTransaction) -> None:
        if self.settings.phones_tls_only and tx.peer.transport != "TLS":
            self._reject_stateless(tx, 403, "Forbidden (register over TLS)")
            return
        username = self._authenticate(tx, self._credentials)
        if username is None:
            return
        to_user = req.to_addr.sip_uri().user
        if to_user != username:
            self.stats.auth_failures += 1
            self._reply(tx, 403, "Forbidden (To does not match credentials)")
            return
        try:
            bindings = self.registrar.register(username, req, tx.peer)
        except RegistrationError as exc:
            resp = build_response(req, exc.status, exc.reason, to_tag=new_tag())
            if exc.status == 423:
                resp.add("Min-Expires", "60")
            tx.respond(resp)
            return
        self.stats.registrations += 1
        self._known_hosts.add(tx.peer.host)
        on_connection = [b for b in bindings if b.peer.connection is tx.peer.connection]
        if tx.peer.connection is not None and on_connection:
            now = self.registrar.clock()
            tx.peer.connection.keep_for_registration(
                max(b.expires_at for b in on_connection) - now)
        if self.shared_registrations is not None:
            self._spawn(self.shared_registrations.publish(username, bindings))
        resp = build_response(req, 200, to_tag=new_tag())
        for contact in self.registrar.contact_header(bindings):
            resp.add("Contact", contact)
        resp.add("Date", datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"))
        tx.respond(resp)

    # -- INVITE (inbound) ---------------------------------------------
    def _on_invite(self, req: SipRequest, tx: ServerTransaction) -> None:
        if req.to_addr.tag is not None:
            self._on_reinvite(req, tx)
            return
        mf = req.get("max-forwards")
        if mf is not None and mf.strip() == "0":
            self._reply(tx, 483)
            return
        existing = self._inbound_by_call_id.get(req.call_id)
        if existing is not None and existing.remote_tag == req.from_addr.tag:
            # same Call-ID and From tag, new transaction: a merged request (8.2.2.2)
            self._reply(tx, 482, "Loop Detected (Call-ID in use)")
            return
        required = [r.strip().lower() for r in req.get_all("require")]
        unsupported = [r for r in required if r and r != "timer"]
        if unsupported:
            resp = build_response(req, 420, to_tag=new_tag())
            resp.add("Unsupported", ", ".join(unsupported))
            tx.respond(resp)
            return
        extension = self._extension_call(req)
        if extension is not None:
            self._on_phone_invite(req, tx, *extension)
            return
        trunk = self._trunk_for(tx.peer)
        auth_user = None
        if trunk is None:
            if self.scan_limiter.blocked(tx.peer.host):
                # a scanner: no answer at all (an answer confirms a SIP server here)
                self.stats.scans_dropped += 1
                tx.terminate()
                return
            if self.limiter.blocked(tx.peer.host):
                self._reject_stateless(tx, 403, "Forbidden (too many failures)")
                return
            has_digest_trunk = any(t.username for t in self.trunks)
            if not has_digest_trunk:
                self.stats.calls_rejected += 1
                self._count_scan(tx.peer.host)
                self._reject_stateless(tx, 403, "Forbidden (not an allowed trunk)")
                return
            auth_user = self._authenticate(tx, self._trunk_password)
            if auth_user is None:
                self.stats.calls_rejected += 1
                if tx.request.get("authorization"):  # a wrong guess, not a first try
                    self._count_scan(tx.peer.host)
                return
            trunk = next(t for t in self.trunks if t.username == auth_user)
        if len(self.calls) >= self.max_calls:
            metrics.calls_refused.labels("max_calls").inc()
            resp = build_response(req, 503, to_tag=new_tag())
            resp.add("Retry-After", "5")
            tx.respond(resp)
            return
        if self._in_setup and time.monotonic() - next(iter(self._in_setup.values())) > \
                self.max_setup_wait:
            metrics.calls_refused.labels("setup_slow").inc()
            self.stats.calls_rejected += 1
            resp = build_response(req, 503, "Service Unavailable (call setup is behind)",
                                  to_tag=new_tag())
            resp.add("Retry-After", "2")
            tx.respond(resp)
            return
        if len(self._in_setup) >= self.max_calls_in_setup:
            # Overload: refused before any work is queued for it (no RTP port, no task),
            # so a carrier can route the call elsewhere; an admitted call is never dropped
            # for load afterwards.
            metrics.calls_refused.labels("setup_backlog").inc()
            self.stats.calls_rejected += 1
            resp = build_response(req, 503, "Service Unavailable (too many calls in setup)",
                                  to_tag=new_tag())
            resp.add("Retry-After", "2")
            tx.respond(resp)
            return
        offer: SdpOffer | None = None
        if req.body:
            ctype = (req.get("content-type") or "").split(";")[0].strip().lower()
            if ctype != "application/sdp":
                resp = build_response(req, 415, to_tag=new_tag())
                resp.add("Accept", "application/sdp")
                tx.respond(resp)
                return
            try:
                offer = parse_sdp(req.body)
                choose_codec(offer)
                answer_keys(trunk.srtp, offer, tx.peer.transport == "TLS")  # SRTP policy
            except SdpError as exc:
                self._reply(tx, 488, f"Not Acceptable Here ({str(exc)[:60]})")
                return
        elif trunk.srtp == "required":
            self._reply(tx, 488, "Not Acceptable Here (SRTP is required: no late offer)")
            return
        caller = caller_data(req, trunk)
        tx.respond(build_response(req, 100))
        self.stats.calls_in += 1
        self._in_setup[req.call_id] = time.monotonic()
        task = self._spawn(self._start_inbound(req, tx, offer, caller, trunk.srtp,
                                               self.inbound_handler))
        task.add_done_callback(lambda _t, cid=req.call_id: self._in_setup.pop(cid, None))

    # -- INVITE from a registered phone to another phone's extension --
    def _extension_call(self, req: SipRequest) -> tuple[str, str] | None:
        """(from user, to user) when the INVITE is a phone calling another phone:
        both the From user and the Request-URI user are phones' user names. The phone
        must then prove itself with its own digest credentials (`_on_phone_invite`),
        so a trunk cannot place internal calls by writing a phone's name in From."""
        if self.extension_handler is None:
            return None
        try:
            to_user = req.request_uri().user
            from_user = req.from_addr.sip_uri().user
        except SipParseError:
            return None
        if not to_user or not from_user or to_user == from_user:
            return None
        if self._credentials(from_user) is None or self._credentials(to_user) is None:
            return None
        return from_user, to_user

    def _on_phone_invite(self, req: SipRequest, tx: ServerTransaction, from_user: str,
                         to_user: str) -> None:
        """A phone calls a colleague's extension (a consult before an attended
        transfer, or just a question): digest-checked with the phone's credentials,
        then handed to the extension handler, which rings the other phone."""
        username = self._authenticate(tx, self._credentials)
        if username is None:
            return
        if username != from_user:
            self.stats.auth_failures += 1
            self._reply(tx, 403, "Forbidden (From does not match credentials)")
            return
        if len(self.calls) >= self.max_calls:
            metrics.calls_refused.labels("max_calls").inc()
            self._reply(tx, 503)
            return
        policy = self.phone_srtp_policy(from_user)
        offer: SdpOffer | None = None
        if req.body:
            try:
                offer = parse_sdp(req.body)
                choose_codec(offer)
                answer_keys(policy, offer, tx.peer.transport == "TLS")
            except SdpError as exc:
                self._reply(tx, 488, f"Not Acceptable Here ({str(exc)[:60]})")
                return
        else:
            self._reply(tx, 488, "Not Acceptable Here (no SDP offer)")
            return
        caller = CallerData(call_id=req.call_id, caller_id=from_user, dialled=to_user,
                            withheld=False, display_name=req.from_addr.display,
                            channel_vars={"sip_phone": from_user})
        handler = self.extension_handler
        assert handler is not None
        tx.respond(build_response(req, 100))

        async def run(leg: SipCallLeg) -> None:
            leg.call.agent_username = from_user
            await handler.run_extension_call(leg, from_user, to_user)

        self._spawn(self._start_inbound(req, tx, offer, caller, policy, run))

    async def _start_inbound(self, req: SipRequest, tx: ServerTransaction,
                             offer: SdpOffer | None, caller: CallerData,
                             srtp_policy: str, handler: InboundCallHandler) -> None:
        try:
            rtp = await self.media.open_session()
        except OSError:
            log.exception("no RTP port for %s", req.call_id)
            metrics.calls_refused.labels("no_rtp_port").inc()
            self._reply(tx, 503)
            return
        contact = req.get("contact")
        remote_target = req.uri
        if contact:
            with contextlib.suppress(SipParseError):
                remote_target = NameAddr.parse(contact).uri
        local_tag = new_tag()
        record = CallRecord(call_id=req.call_id, direction="inbound",
                            caller_id=caller.caller_id, dialled=caller.dialled,
                            withheld=caller.withheld, started_at=datetime.now(UTC))
        call = Call(
            call_id=req.call_id, direction="inbound", local_tag=local_tag,
            local_uri=req.to_addr.uri, remote_uri=req.get("from") or "",
            remote_target=remote_target, peer=tx.peer, record=record,
            remote_tag=req.from_addr.tag, route_set=list(req.get_all("record-route")),
            remote_cseq=req.cseq[0], invite_tx=tx, invite_request=req, rtp=rtp, offer=offer,
            session_expires=req.get("session-expires"), srtp_policy=srtp_policy,
            user_agent=self.settings.user_agent,
        )
        tx.on_ack_timeout = lambda: self._spawn(self.hangup_call(call, "no ACK", by="server"))
        self._apply_offer(call, offer)
        call.leg = SipCallLeg(self, call, caller)
        rtp.on_dtmf = call.leg.dtmf_received
        self.calls[(call.call_id, local_tag)] = call
        self._inbound_by_call_id[call.call_id] = call
        tx.owner = call
        call.task = asyncio.current_task()  # type: ignore[assignment]
        try:
            await handler(call.leg)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("inbound handler failed for %s", call.call_id)
            await self.hangup_call(call, "handler error", by="server", status=500)
            return
        if not call.ended.is_set() and call.bridged_to is None:
            await self.hangup_call(call, "normal", by="server")

    def _apply_offer(self, call: Call, offer: SdpOffer | None) -> None:
        call.apply_remote_offer(offer)

    def _local_sdp(self, call: Call) -> bytes:
        return call.local_sdp(self.advertised_host)

    async def answer_call(self, call: Call) -> None:
        if call.answered or call.direction != "inbound":
            return
        tx = call.invite_tx
        assert tx is not None and call.invite_request is not None
        resp = build_response(call.invite_request, 200, to_tag=call.local_tag)
        resp.add("Contact", self.contact_header(tx.peer.transport))
        resp.add("Allow", ALLOW)
        resp.add("Supported", SUPPORTED)
        if call.session_expires:
            interval = call.session_expires.split(";")[0].strip()
            if is_ascii_digits(interval) and len(interval) <= 10:
                resp.add("Session-Expires", f"{interval};refresher=uac")
                resp.add("Require", "timer")
        resp.add("Content-Type", "application/sdp")
        resp.body = self._local_sdp(call)
        tx.respond(resp)
        call.answered = True
        self._in_setup.pop(call.call_id, None)
        if call.rtp is not None:
            call.rtp.last_received = time.monotonic()  # the media watchdog starts now
        call.record.answered_at = datetime.now(UTC)
        self.stats.calls_answered += 1

    def send_provisional(self, call: Call, status: int) -> None:
        if call.invite_tx is not None and not call.answered and call.invite_request:
            call.invite_tx.respond(build_response(call.invite_request, status,
                                                  to_tag=call.local_tag))

    def _on_reinvite(self, req: SipRequest, tx: ServerTransaction) -> None:
        call = self._dialog(req)
        if call is None:
            self._reply(tx, 481)
            return
        offer = None
        if req.body:
            was_on_hold = call.remote_on_hold
            try:
                offer = parse_sdp(req.body)
                choose_codec(offer)
                self._apply_offer(call, offer)
            except SdpError as exc:
                self._reply(tx, 488, f"Not Acceptable Here ({str(exc)[:60]})",
                            to_tag=call.local_tag)
                return
            call.offer = offer
            if self.on_remote_hold is not None and call.remote_on_hold != was_on_hold:
                self.on_remote_hold(call)  # the phone's own hold key (call control)
        call.remote_cseq = req.cseq[0]
        contact = req.get("contact")
        if contact:
            with contextlib.suppress(SipParseError):
                call.remote_target = NameAddr.parse(contact).uri
        resp = build_response(req, 200, to_tag=call.local_tag)
        resp.add("Contact", self.contact_header(tx.peer.transport))
        resp.add("Content-Type", "application/sdp")
        resp.body = self._local_sdp(call)
        tx.respond(resp)
        call.invite_tx = tx

    # -- ACK / CANCEL / BYE / INFO / OPTIONS / UPDATE -----------------
    def _on_ack(self, req: SipRequest) -> None:
        invite_tx = self.transactions.find_invite_for(req)
        if invite_tx is not None and (invite_tx.final_status or 0) >= 300:
            invite_tx.ack_received()
            return
        call = self._dialog(req)
        if call is None:
            return  # stray ACK: nothing to answer (RFC 3261 17.2.3)
        if call.invite_tx is not None:
            call.invite_tx.ack_received()
        if call.offer is None and req.body:
            with contextlib.suppress(SdpError):
                call.offer = parse_sdp(req.body)  # late offer answered in ACK
                self._apply_offer(call, call.offer)

    def _on_cancel(self, req: SipRequest, tx: ServerTransaction) -> None:
        invite_tx = self.transactions.find_invite_for(req)
        if invite_tx is None:
            self._reply(tx, 481)
            return
        self._reply(tx, 200, to_tag=None)
        if invite_tx.final_status is not None:
            return
        call = invite_tx.owner if isinstance(invite_tx.owner, Call) else None
        to_tag = call.local_tag if call else new_tag()
        invite_tx.respond(build_response(invite_tx.request, 487, to_tag=to_tag))
        if call is not None:
            self._spawn(self._end(call, "cancel", by="caller"))

    def _on_bye(self, req: SipRequest, tx: ServerTransaction) -> None:
        call = self._dialog(req)
        if call is None:
            self._reply(tx, 481)
            return
        self._reply(tx, 200, to_tag=call.local_tag)
        by = "caller" if call.direction == "inbound" else "agent"
        self._spawn(self._end(call, "normal", by=by))

    def _on_info(self, req: SipRequest, tx: ServerTransaction) -> None:
        call = self._dialog(req)
        if call is None:
            self._reply(tx, 481)
            return
        ctype = (req.get("content-type") or "").split(";")[0].strip().lower()
        digit = None
        text = req.body.decode("utf-8", "replace")
        if ctype == "application/dtmf-relay":
            for line in text.splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() == "signal":
                    digit = value.strip()[:1]
        elif ctype == "application/dtmf":
            digit = text.strip()[:1]
        self._reply(tx, 200, to_tag=call.local_tag)
        if digit:
            digit = {"10": "*", "11": "#"}.get(digit, digit).upper()
            if digit in "0123456789*#ABCD" and call.leg is not None:
                if call.bridged_to is not None and call.bridged_to.rtp is not None:
                    call.bridged_to.rtp.send_dtmf(digit)
                else:
                    call.leg.dtmf_received(digit)

    def _on_options(self, req: SipRequest, tx: ServerTransaction) -> None:
        call = self._dialog(req)
        resp = build_response(req, 200, to_tag=call.local_tag if call else new_tag())
        resp.add("Allow", ALLOW)
        resp.add("Accept", "application/sdp, application/dtmf-relay, application/dtmf")
        resp.add("Supported", SUPPORTED)
        tx.respond(resp)

    def _on_update(self, req: SipRequest, tx: ServerTransaction) -> None:
        call = self._dialog(req)
        if call is None:
            self._reply(tx, 481)
            return
        resp = build_response(req, 200, to_tag=call.local_tag)
        if req.body:
            try:
                call.offer = parse_sdp(req.body)
                self._apply_offer(call, call.offer)
            except SdpError:
                self._reply(tx, 488, to_tag=call.local_tag)
                return
            resp.add("Content-Type", "application/sdp")
            resp.body = self._local_sdp(call)
        if req.get("session-expires"):
            resp.add("Session-Expires", f"{req.get('session-expires')}")
        tx.respond(resp)

    # -- REFER (RFC 3515, Replaces RFC 3891) ---------------------------
    def _on_refer(self, req: SipRequest, tx: ServerTransaction) -> None:
        """Checks come first and refuse with the RFC's status (400 malformed Refer-To,
        481 unknown Replaces dialog, 403/404 from the handler) leaving the call as it
        was; an accepted REFER gets 202 and NOTIFYs with sipfrag progress."""
        if req.to_addr.tag is None:  # out-of-dialog REFER (RFC 3515 allows it): not here
            self._reply(tx, 403, "Forbidden (REFER only inside a call)")
            return
        call = self._dialog(req)
        if call is None:
            self._reply(tx, 481)
            return
        try:
            target = parse_refer(req)
            if target.replaces is not None and self.find_dialog(target.replaces) is None:
                raise ReferError(481, "Call/Transaction Does Not Exist (Replaces)")
            if self.refer_handler is None:
                raise ReferError(501, "Not Implemented (no call control)")
            self.refer_handler.check_refer(call, target)
        except ReferError as exc:
            self._reply(tx, exc.status, exc.reason, to_tag=call.local_tag)
            return
        self._reply(tx, 202, to_tag=call.local_tag)
        self.send_refer_notify(call, 100, "Trying", final=False)
        self._spawn(self.refer_handler.run_refer(call, target))

    def find_dialog(self, replaces: Replaces) -> Call | None:
        """The dialog a `Replaces` names (RFC 3891 3: Call-ID and both tags)."""
        for (call_id, local_tag), call in self.calls.items():
            if call_id == replaces.call_id and {local_tag, call.remote_tag} == \
                    {replaces.to_tag, replaces.from_tag}:
                return call
        return None

    def send_refer_notify(self, call: Call, status: int, reason: str, *, final: bool) -> None:
        """A NOTIFY of the refer subscription with `SIP/2.0 <status> <reason>`."""
        if call.ended.is_set():
            return
        notify = self.in_dialog_request(call, "NOTIFY")
        notify_headers(notify, final=final)
        notify.body = sipfrag(status, reason)
        self.transactions.request(notify, call.peer)

    # -- ending -------------------------------------------------------
    async def hangup_call(self, call: Call, cause: str = "normal", *, by: str = "server",
                          status: int = 480) -> None:
        """End a call from our side: final error before answer, BYE after."""
        if call.ended.is_set():
            return
        if call.direction == "inbound" and not call.answered:
            tx = call.invite_tx
            if tx is not None and tx.final_status is None and call.invite_request is not None:
                tx.respond(build_response(call.invite_request, status, to_tag=call.local_tag))
        elif call.answered:
            bye = self.in_dialog_request(call, "BYE")
            self.transactions.request(bye, call.peer)
        await self._end(call, cause, by=by)

    async def _end(self, call: Call, cause: str, *, by: str) -> None:
        if call.ended.is_set():
            return
        call.ended.set()
        self._in_setup.pop(call.call_id, None)
        self.calls.pop((call.call_id, call.local_tag), None)
        if self._inbound_by_call_id.get(call.call_id) is call:
            del self._inbound_by_call_id[call.call_id]
        rtp = call.rtp
        if rtp is not None:
            call.record.rtp_packets_in = rtp.stats.packets_in
            call.record.rtp_packets_out = rtp.stats.packets_out + rtp.stats.relayed_out
            if rtp.srtp is not None:
                call.record.srtp = True
                call.record.srtp_auth_failures = rtp.srtp.auth_failures
            rtp.close()
        other = call.bridged_to
        call.bridged_to = None
        if other is not None:
            other.bridged_to = None
            await self.hangup_call(other, cause, by=by)
        if call.direction == "inbound" or call.record.direction == "outbound":
            call.record.ended_at = datetime.now(UTC)
            call.record.ended_by = by
            call.record.cause = cause
            if self.call_record_sink is not None:
                try:
                    await self.call_record_sink(call.record)
                except Exception:
                    log.exception("call record sink failed for %s", call.call_id)

    # -- outbound: agent phones and callbacks (see outbound.py) -------
    async def ring_agent(self, username: str, *, caller_id: str | None = None,
                         display_name: str | None = None, timeout: float = 20.0,
                         stop: asyncio.Event | None = None) -> AgentRingResult:
        """Ring all the agent's registered phones; the first to answer is the accept.

        `status` "timeout" is ring-no-answer (RONA); "unregistered" means the agent
        has no phone registered; "cancelled" means `stop` was set first (the offer was
        withdrawn: the phones got CANCEL)."""
        return await self.dialer.ring_agent(username, caller_id=caller_id,
                                            display_name=display_name, timeout=timeout,
                                            stop=stop)

    async def place_outbound_call(self, number: str, *, trunk: str | None = None,
                                  caller_id: str | None = None, timeout: float = 30.0
                                  ) -> AgentRingResult:
        """Call a customer through a trunk with `outbound_host` (callbacks)."""
        return await self.dialer.place_outbound_call(number, trunk=trunk,
                                                     caller_id=caller_id, timeout=timeout)

    async def bridge(self, caller_leg: SipCallLeg, agent_leg: SipCallLeg) -> None:
        """Connect two legs' media; returns when the bridged call is over.

        Either side hanging up ends the other (BYE); the caller's call record gets
        the agent and the bridge time.
        """
        a, b = caller_leg.call, agent_leg.call
        if a.ended.is_set() or b.ended.is_set():
            await self.hangup_call(a, "bridge failed", by="server")
            await self.hangup_call(b, "bridge failed", by="server")
            return
        if not a.answered:
            await self.answer_call(a)
        assert a.rtp is not None and b.rtp is not None
        bridge_sessions(a.rtp, b.rtp)
        a.bridged_to, b.bridged_to = b, a
        a.record.bridged_at = datetime.now(UTC)
        a.record.agent_username = b.agent_username
        ended_a = asyncio.ensure_future(a.ended.wait())
        ended_b = asyncio.ensure_future(b.ended.wait())
        try:
            await asyncio.wait({ended_a, ended_b}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended_a.cancel()
            ended_b.cancel()
        # _end() hangs up the other leg; wait until both are down
        await a.ended.wait()
        await b.ended.wait()


def _default_music() -> EncodedAudio:
    """A soft beep pattern, used when no music file is configured."""
    a = tone(440, 0.4, 3000)
    b = tone(0, 0.6, 0)
    return EncodedAudio(a.pcmu + b.pcmu, a.pcma + b.pcma)


__all__ = ["Call", "SipServer"]
