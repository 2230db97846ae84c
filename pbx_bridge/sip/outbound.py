"""Outbound INVITEs and REGISTERs: ringing agents' phones, callbacks through a
trunk, and keeping trunks registered to a provider.

Ringing is the ACD's offer: a 2xx is the agent accepting (we ACK and return the
answered leg); no answer within the timeout is RONA (we CANCEL); 486/600/603 are
busy/declined.  Every registered contact rings at once; the first answer wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

from config.schema.server import SipSettings
from core.numbers import ascii_int
from ivr.call_leg import CallerData
from pbx_bridge.media.rtp import MediaEngine
from pbx_bridge.sip.auth import authorization_header
from pbx_bridge.sip.dialog import ALLOW, Call
from pbx_bridge.sip.directory import SharedRegistrations
from pbx_bridge.sip.leg import AgentRingResult, LegHost, SipCallLeg
from pbx_bridge.sip.message import NameAddr, SipParseError, SipRequest, SipResponse
from pbx_bridge.sip.ports import CallRecord, TrunkConfig
from pbx_bridge.sip.registrar import Registrar
from pbx_bridge.sip.sdes import offer_key
from pbx_bridge.sip.sdp import SdpError, parse_sdp
from pbx_bridge.sip.transaction import ClientTransaction, TransactionLayer, new_branch, new_tag
from pbx_bridge.sip.transport import Peer, TransportLayer, uri_host

log = logging.getLogger(__name__)


class DialerHost(LegHost, Protocol):
    """What the dialer needs of the server that owns transport, transactions and media
    (`SipServer` satisfies it; the dialer does not import the server)."""

    transport: TransportLayer
    transactions: TransactionLayer
    media: MediaEngine
    registrar: Registrar
    shared_registrations: SharedRegistrations | None
    advertised_host: str
    settings: SipSettings
    trunks: list[TrunkConfig]
    calls: dict[tuple[str, str], Call]

    def contact_header(self, transport: str = "UDP") -> str: ...

    def phone_srtp_policy(self, username: str) -> str: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...


class OutboundDialer:
    """The UAC side of the SIP core (it reaches the server's transport, transaction
    layer, media engine and registrar through `DialerHost`)."""

    def __init__(self, server: DialerHost) -> None:
        self.server = server

    async def ring_agent(self, username: str, *, caller_id: str | None = None,
                         display_name: str | None = None, timeout: float = 20.0,
                         stop: asyncio.Event | None = None) -> AgentRingResult:
        """Ring every registered contact of the agent at once (desk phone and
        softphone); the first to answer wins and the others are cancelled.
        Answering means accepting the offer. Setting `stop` cancels every phone still
        ringing (the ACD withdrew the offer)."""
        bindings = self.server.registrar.contacts(username)
        shared = self.server.shared_registrations
        if not bindings and shared is not None:  # registered at another node
            try:
                bindings = await shared.lookup(username)
            except Exception:
                log.exception("could not read %s's registrations from other nodes", username)
        if not bindings:
            return AgentRingResult("unregistered")
        to_uri = f"sip:{username}@{uri_host(self.server.advertised_host)}"
        abandon = asyncio.Event()
        watcher = None
        if stop is not None:
            async def relay_stop() -> None:
                await stop.wait()
                abandon.set()

            watcher = asyncio.ensure_future(relay_stop())
        try:
            return await self._ring_all(bindings, to_uri, username, caller_id, display_name,
                                        timeout, abandon, stop)
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _ring_all(self, bindings: list, to_uri: str, username: str,  # type: ignore[type-arg]
                        caller_id: str | None, display_name: str | None, timeout: float,
                        abandon: asyncio.Event, stop: asyncio.Event | None
                        ) -> AgentRingResult:
        attempts = [asyncio.ensure_future(self._invite(
            b.contact, b.target(), to_uri=to_uri, from_user=caller_id or "centrale",
            display=display_name, timeout=timeout, agent_username=username, abandon=abandon))
            for b in bindings]
        winner: AgentRingResult | None = None
        outcomes: list[AgentRingResult] = []
        for next_done in asyncio.as_completed(attempts):
            result = await next_done
            if result.answered and winner is None:
                winner = result
                abandon.set()  # cancel the phones still ringing
            elif result.answered and result.leg is not None:
                await result.leg.hangup("answered elsewhere")  # lost the race
            else:
                outcomes.append(result)
        if winner is not None:
            if stop is not None and stop.is_set() and winner.leg is not None:
                await winner.leg.hangup("offer withdrawn")  # answered as it was withdrawn
                return AgentRingResult("cancelled")
            return winner
        if stop is not None and stop.is_set():
            return AgentRingResult("cancelled")
        for status in ("timeout", "busy", "rejected", "failed"):
            found = next((r for r in outcomes if r.status == status), None)
            if found is not None:
                return found
        return outcomes[0]

    async def place_outbound_call(self, number: str, *, trunk: str | None = None,
                                  caller_id: str | None = None, timeout: float = 30.0
                                  ) -> AgentRingResult:
        """Call a customer through a trunk (callbacks)."""
        chosen = next((t for t in self.server.trunks if t.outbound_host and
                       (trunk is None or t.name == trunk)), None)
        if chosen is None or chosen.outbound_host is None:
            return AgentRingResult("failed")
        suffix = ";transport=tls" if chosen.outbound_transport == "tls" else ""
        uri = f"sip:{number}@{uri_host(chosen.outbound_host)}:{chosen.outbound_port}{suffix}"
        peer = Peer(chosen.outbound_transport.upper(), chosen.outbound_host,
                    chosen.outbound_port)
        return await self._invite(uri, peer, to_uri=uri, from_user=caller_id or "centrale",
                                  display=None, timeout=timeout, trunk=chosen)

    async def _invite(self, request_uri: str, peer: Peer, *, to_uri: str, from_user: str,
                      display: str | None, timeout: float, agent_username: str | None = None,
                      trunk: TrunkConfig | None = None, abandon: asyncio.Event | None = None
                      ) -> AgentRingResult:
        rtp = await self.server.media.open_session()
        call_id = f"{secrets.token_hex(12)}@centrale"
        local_tag = new_tag()
        local_uri = f"sip:{from_user}@{uri_host(self.server.advertised_host)}"
        record = CallRecord(call_id=call_id, direction="outbound" if trunk else "agent",
                            caller_id=from_user, dialled=to_uri, withheld=False,
                            started_at=datetime.now(UTC), agent_username=agent_username)
        call = Call(call_id=call_id, direction="outbound", local_tag=local_tag,
                    local_uri=local_uri, remote_uri=f"<{to_uri}>", remote_target=request_uri,
                    peer=peer, record=record, rtp=rtp, agent_username=agent_username)
        call.local_cseq = 0
        call.user_agent = self.server.settings.user_agent
        call.srtp_policy = trunk.srtp if trunk is not None else \
            self.server.phone_srtp_policy(agent_username or "")
        call.local_crypto = offer_key(call.srtp_policy, call.secure_signalling)
        if call.srtp_policy == "required" and call.local_crypto is None:
            log.warning("not calling %s: SRTP is required and the signalling is not TLS",
                        request_uri)
            rtp.close()
            return AgentRingResult("failed")
        sdp = call.local_sdp(self.server.advertised_host)

        def make_invite(auth: str | None = None) -> SipRequest:
            req = SipRequest(method="INVITE", uri=request_uri)
            req.add("Via", self.server.transport.via_for(peer.transport, new_branch(),
                                                  self.server.advertised_host))
            req.add("Max-Forwards", "70")
            disp = f'"{display}" ' if display else ""
            req.add("From", f"{disp}<{local_uri}>;tag={local_tag}")
            req.add("To", f"<{to_uri}>")
            req.add("Call-ID", call_id)
            call.local_cseq += 1
            req.add("CSeq", f"{call.local_cseq} INVITE")
            req.add("Contact", self.server.contact_header(peer.transport))
            req.add("Allow", ALLOW)
            req.add("User-Agent", self.server.settings.user_agent)
            if auth:
                req.add("Authorization", auth)
            req.add("Content-Type", "application/sdp")
            req.body = sdp
            return req

        invite = make_invite()
        tx = self.server.transactions.request(invite, peer)
        deadline = asyncio.get_running_loop().time() + timeout
        resp = await self._wait_final(tx, deadline, abandon)
        if resp is not None and resp.status in (401, 407) and trunk is not None \
                and trunk.username:
            challenge = resp.get("www-authenticate") or resp.get("proxy-authenticate") or ""
            auth = authorization_header(challenge, trunk.username, trunk.password or "",
                                        "INVITE", request_uri)
            invite = make_invite(auth)
            tx = self.server.transactions.request(invite, peer)
            resp = await self._wait_final(tx, deadline, abandon)
        if resp is None:  # no answer in time, or answered on another phone
            await self._cancel_invite(invite, tx, peer)
            if tx.future.done() and tx.future.result().status < 300:
                # answered just as we gave up: confirm the dialog, then hang it up
                self._confirm_outbound(call, invite, tx.future.result(), tx)
                await self.server.hangup_call(call, "ring timeout", by="server")
            else:
                rtp.close()
                if not tx.future.done():
                    self._hang_up_late_answer(call, invite, tx)
            return AgentRingResult("timeout")
        if resp.status >= 300:
            rtp.close()
            status = {486: "busy", 600: "busy", 603: "rejected", 408: "timeout",
                      480: "timeout", 487: "timeout"}.get(resp.status, "failed")
            return AgentRingResult(status, sip_status=resp.status)
        if not self._confirm_outbound(call, invite, resp, tx):
            await self.server.hangup_call(call, "bad answer", by="server")
            return AgentRingResult("failed", sip_status=resp.status)
        caller = CallerData(call_id=call_id, caller_id=agent_username or to_uri,
                            dialled=from_user)
        call.leg = SipCallLeg(self.server, call, caller)
        rtp.on_dtmf = call.leg.dtmf_received
        return AgentRingResult("answered", call.leg, resp.status)

    @staticmethod
    async def _wait_final(tx: ClientTransaction, deadline: float,
                          abandon: asyncio.Event | None) -> SipResponse | None:
        """The final response, or None at the deadline or when told to abandon."""
        waiters: set[asyncio.Future] = {tx.future}
        abandoned = asyncio.ensure_future(abandon.wait()) if abandon is not None else None
        if abandoned is not None:
            waiters.add(abandoned)
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait(waiters, timeout=max(0.0, remaining),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            if abandoned is not None:
                abandoned.cancel()
        if tx.future.done() and not (abandon is not None and abandon.is_set()):
            return tx.future.result()
        return None

    def _confirm_outbound(self, call: Call, invite: SipRequest, resp: SipResponse,
                          tx: ClientTransaction) -> bool:
        """2xx to our INVITE: build the dialog, ACK, apply the SDP answer."""
        call.remote_tag = resp.to_addr.tag
        call.remote_uri = resp.get("to") or call.remote_uri
        contact = resp.get("contact")
        if contact:
            with contextlib.suppress(SipParseError):
                call.remote_target = NameAddr.parse(contact).uri
        call.route_set = list(reversed(resp.get_all("record-route")))
        call.answered = True
        if call.rtp is not None:
            call.rtp.last_received = time.monotonic()  # the media watchdog starts now
        call.record.answered_at = datetime.now(UTC)
        self.server.calls[(call.call_id, call.local_tag)] = call
        ack = SipRequest(method="ACK", uri=call.remote_target)
        ack.add("Via", self.server.transport.via_for(call.peer.transport, new_branch(),
                                              self.server.advertised_host))
        ack.add("Max-Forwards", "70")
        for route in call.route_set:
            ack.add("Route", route)
        ack.add("From", invite.get("from") or "")
        ack.add("To", call.remote_uri)
        ack.add("Call-ID", call.call_id)
        ack.add("CSeq", f"{invite.cseq[0]} ACK")
        data = ack.serialize()
        tx.ack_bytes = data
        self.server.transport.send(data, call.peer)
        if not resp.body:
            return False
        try:
            call.offer = parse_sdp(resp.body)
            call.apply_answer(call.offer)
        except SdpError:
            return False
        return True

    async def _cancel_invite(self, invite: SipRequest, tx: ClientTransaction,
                             peer: Peer) -> None:
        """Stop ringing. RFC 3261 9.1: CANCEL only once a provisional response came;
        before that, the CANCEL is sent when (if) one arrives."""
        if tx.future.done():
            return
        if tx.provisional is None:
            tx.on_provisional = lambda _resp: self._send_cancel(invite, peer)
            return
        self._send_cancel(invite, peer)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(tx.future), 4.0)

    def _send_cancel(self, invite: SipRequest, peer: Peer) -> None:
        cancel = SipRequest(method="CANCEL", uri=invite.uri)
        cancel.add("Via", invite.get_all("via")[0])
        cancel.add("Max-Forwards", "70")
        cancel.add("From", invite.get("from") or "")
        cancel.add("To", invite.get("to") or "")
        cancel.add("Call-ID", invite.call_id)
        cancel.add("CSeq", f"{invite.cseq[0]} CANCEL")
        self.server.transactions.request(cancel, peer)

    def _hang_up_late_answer(self, call: Call, invite: SipRequest,
                             tx: ClientTransaction) -> None:
        """A phone given up on may still answer (its 2xx crossing our CANCEL, or no
        provisional ever came): ACK it, then BYE, so it does not ring on forever."""
        def done(future: asyncio.Future[SipResponse]) -> None:
            if future.cancelled() or future.result().status >= 300:
                return
            self._confirm_outbound(call, invite, future.result(), tx)
            self.server.spawn(self.server.hangup_call(call, "ring timeout", by="server"))

        tx.future.add_done_callback(done)

    async def keep_trunk_registered(self, trunk: TrunkConfig) -> None:
        """Outbound REGISTER to a provider with digest auth, refreshed at half expiry."""
        assert trunk.outbound_host is not None and trunk.username is not None
        peer = Peer(trunk.outbound_transport.upper(), trunk.outbound_host, trunk.outbound_port)
        registrar_uri = f"sip:{trunk.outbound_host}:{trunk.outbound_port}"
        aor = f"sip:{trunk.username}@{trunk.outbound_host}"
        call_id = f"{secrets.token_hex(10)}@centrale"
        tag = new_tag()
        cseq = 0
        while True:
            auth: str | None = None
            delay = 30.0
            for _ in range(2):
                cseq += 1
                req = SipRequest(method="REGISTER", uri=registrar_uri)
                req.add("Via", self.server.transport.via_for(peer.transport, new_branch(),
                                                      self.server.advertised_host))
                req.add("Max-Forwards", "70")
                req.add("From", f"<{aor}>;tag={tag}")
                req.add("To", f"<{aor}>")
                req.add("Call-ID", call_id)
                req.add("CSeq", f"{cseq} REGISTER")
                req.add("Contact", self.server.contact_header(peer.transport))
                req.add("Expires", str(trunk.register_expires))
                if auth:
                    req.add("Authorization", auth)
                resp = await self.server.transactions.request(req, peer).future
                if resp.status in (401, 407) and auth is None:
                    challenge = (resp.get("www-authenticate")
                                 or resp.get("proxy-authenticate") or "")
                    auth = authorization_header(challenge, trunk.username,
                                                trunk.password or "", "REGISTER",
                                                registrar_uri)
                    continue
                if resp.status < 300:
                    expires = trunk.register_expires
                    header = resp.get("expires")
                    if header and ascii_int(header.strip()) is not None:
                        expires = ascii_int(header.strip()) or expires
                    for contact in resp.get_all("contact"):
                        with contextlib.suppress(SipParseError):
                            value = NameAddr.parse(contact).params.get("expires", "")
                            if ascii_int(value) is not None:
                                expires = ascii_int(value) or expires
                    self.server.trunk_status[trunk.name] = "registered"
                    delay = max(30.0, expires / 2)
                else:
                    self.server.trunk_status[trunk.name] = f"failed: {resp.status}"
                    log.warning("trunk %s registration failed: %s %s", trunk.name,
                                resp.status, resp.reason)
                break
            await asyncio.sleep(delay)
