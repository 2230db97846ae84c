"""`BrowserPhone`: agents' pages as phones — ringing, answering, media, grace, hang-up.

One per node, beside the SIP core's dialer: `VoiceService` rings an agent whose
voice device is the browser through `ring()`, which returns the same kind of result
as ringing a SIP phone (`sip.leg.AgentRingResult`: answered with a leg, or why not),
so the ACD's rules (answering accepts; reject and busy decline; no answer is RONA)
hold unchanged.

The page's side of the conversation arrives through `handle()` (the desktop's
websocket hands every `phone.*` frame over with the authenticated agent id, see
`ports.BrowserPhonePort`); frames to the page leave through the `PageSender` the web
layer attaches. The page makes the SDP offer when the agent answers (it owns the
microphone); the server answers, and the call counts as answered when ICE and DTLS
are up (`connectionState == "connected"`) within `ice_timeout_seconds`, else the
offer is declined and goes to the next agent.

During a call, a dropped websocket or ICE connection starts a grace period
(`grace_seconds`): a page that comes back sends `phone.resume` with a new offer and
the call continues on a new peer connection (same leg, same bridge); otherwise the
leg ends ("browser lost"), which ends the agent side as a hang-up would: call control
tears the call down and the voice service completes the task (wrap-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from core.ids import new_id
from pbx_bridge.sip.leg import AgentRingResult
from pbx_bridge.webrtc.leg import BrowserLeg
from pbx_bridge.webrtc.media import BrowserMedia
from pbx_bridge.webrtc.signalling import PageMessage, SignallingError, parse_page_message

log = logging.getLogger(__name__)

PageSender = Callable[[str, dict[str, Any]], Awaitable[None]]
"""(agent_id, frame) -> sends the frame to every page of the agent on this node."""
PREFERRED_CODECS = ("audio/PCMU", "audio/PCMA", "audio/opus")


@dataclass
class PhoneSettings:
    ice_servers: list[dict[str, Any]] = field(default_factory=list)  # urls, username, credential
    ice_timeout_seconds: float = 10.0
    grace_seconds: float = 10.0

    @classmethod
    def from_config(cls, webrtc: Any) -> PhoneSettings:
        """From `server.webrtc` (config.schema.server.WebRtcSettings). A STUN entry
        has no username or credential: the keys are left out rather than sent as null,
        which a browser would take as the text "null"."""
        servers = []
        for s in webrtc.ice_servers:
            server: dict[str, Any] = {"urls": list(s.urls)}
            if s.username:
                server["username"] = s.username
            if s.credential is not None:
                server["credential"] = s.credential.get_secret_value()
            servers.append(server)
        return cls(ice_servers=servers, ice_timeout_seconds=webrtc.ice_timeout_seconds,
                   grace_seconds=webrtc.grace_seconds)


@dataclass
class Ringing:
    """An offer ringing on an agent's page."""

    offer_id: str
    agent_id: str
    call_id: str
    result: asyncio.Future[AgentRingResult]
    pc: RTCPeerConnection | None = None
    media: BrowserMedia | None = None


@dataclass
class Connected:
    """A call whose agent side is the page."""

    leg: BrowserLeg
    pc: RTCPeerConnection | None
    grace: asyncio.TimerHandle | None = None
    generation: int = 0  # peer connections the call has had (a resume adds one)


class BrowserPhone:
    def __init__(self, engine: Any, settings: PhoneSettings | None = None,
                 has_page: Callable[[str], bool] | None = None) -> None:
        self.engine = engine  # media.rtp.MediaEngine: the scheduler shared with RTP legs
        self.settings = settings or PhoneSettings()
        self.send: PageSender | None = None
        self.has_page: Callable[[str], bool] = has_page or (lambda agent_id: False)
        self.ringing: dict[str, Ringing] = {}  # offer id ->
        self.calls: dict[str, Connected] = {}  # call id ->
        self.refused = 0  # signalling frames refused (not the agent's, malformed)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- wiring ---------------------------------------------------------
    def attach_pages(self, send: PageSender, has_page: Callable[[str], bool]) -> None:
        """The web layer's way to reach the pages (it owns the websockets)."""
        self.send = send
        self.has_page = has_page

    def reachable(self, agent_id: str) -> bool:
        """A page of the agent is connected to this node (it can ring)."""
        return self.send is not None and self.has_page(agent_id)

    async def _tell(self, agent_id: str, frame: dict[str, Any]) -> None:
        if self.send is not None:
            try:
                await self.send(agent_id, frame)
            except Exception:
                log.exception("phone frame to %s's page failed", agent_id)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _configuration(self) -> RTCConfiguration:
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"),
                                credential=s.get("credential"))
                   for s in self.settings.ice_servers]
        return RTCConfiguration(iceServers=servers)

    def page_configuration(self) -> list[dict[str, Any]]:
        """The ICE servers the page's RTCPeerConnection uses (TURN credentials are the
        page's to use: they are sent to the agent's own authenticated page only)."""
        return [dict(s) for s in self.settings.ice_servers]

    # -- ringing --------------------------------------------------------
    async def ring(self, agent_id: str, *, offer_id: str, call_id: str,
                   caller_id: str | None, timeout: float, task_id: str | None = None,
                   stop: asyncio.Event | None = None) -> AgentRingResult:
        """Ring the agent's page; "answered" with a `BrowserLeg` once media is up.

        `call_id` is the caller's call; the browser leg gets an id of its own (one call
        may ring several pages in turn: RONA, transfers)."""
        if not self.reachable(agent_id):
            return AgentRingResult("unregistered")
        result: asyncio.Future[AgentRingResult] = asyncio.get_running_loop().create_future()
        ring = Ringing(offer_id, agent_id, f"bp-{new_id()}", result)
        self.ringing[offer_id] = ring
        log.info("ringing %s's browser phone for call %s (offer %s)", agent_id, call_id,
                 offer_id)
        await self._tell(agent_id, {"type": "phone.ring", "offer_id": offer_id,
                                    "call_id": ring.call_id, "task_id": task_id,
                                    "caller": caller_id,
                                    "ice_servers": self.page_configuration()})
        waits: set[asyncio.Future[Any]] = {result}
        stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
        if stopped is not None:
            waits.add(stopped)
        try:
            # The ring timeout is the ACD's (RONA); answering then has ICE's own limit.
            done, _ = await asyncio.wait(waits, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if result in done:
                return result.result()
            if ring.pc is not None and stopped not in done:  # answering: ICE under way
                return await asyncio.shield(result)
            outcome = "cancelled" if stopped in done else "timeout"
            await self._end_ringing(ring, outcome)
            return AgentRingResult(outcome)
        finally:
            if stopped is not None:
                stopped.cancel()
            self.ringing.pop(offer_id, None)

    async def _end_ringing(self, ring: Ringing, why: str) -> None:
        self.ringing.pop(ring.offer_id, None)
        if ring.media is not None:
            ring.media.close()
        if ring.pc is not None:
            pc, ring.pc = ring.pc, None
            self._spawn(pc.close())
        await self._tell(ring.agent_id, {"type": "phone.stop_ringing",
                                         "offer_id": ring.offer_id, "reason": why})

    # -- frames from the page ----------------------------------------------
    async def handle(self, agent_id: str, frame: Any) -> None:
        """One `phone.*` frame of `agent_id`'s page (authenticated by the web layer)."""
        try:
            message = parse_page_message(frame)
            await self._dispatch(agent_id, message)
        except SignallingError as exc:
            self.refused += 1
            log.warning("phone frame of %s refused: %s", agent_id, exc)
            await self._tell(agent_id, {"type": "phone.error", "error": str(exc),
                                        "ref": exc.ref})

    async def _dispatch(self, agent_id: str, m: PageMessage) -> None:
        if m.type == "phone.offer":
            await self._answer(self._own_ring(agent_id, m), m)
        elif m.type == "phone.reject":
            ring = self._own_ring(agent_id, m)
            if not ring.result.done():
                ring.result.set_result(AgentRingResult("rejected"))
            await self._end_ringing(ring, "rejected")
        elif m.type == "phone.hangup":
            conn = self._own_call(agent_id, m)
            await conn.leg.hangup("hung up in the browser")
        elif m.type == "phone.resume":
            await self._resume(self._own_call(agent_id, m), m)
        elif m.type == "phone.dtmf":
            conn = self._own_call(agent_id, m)
            assert m.digits is not None
            for digit in m.digits:
                conn.leg.media.digit_pressed(digit)
        elif m.type == "phone.candidate":
            await self._candidate(agent_id, m)

    def _own_ring(self, agent_id: str, m: PageMessage) -> Ringing:
        ring = self.ringing.get(m.offer_id or "")
        if ring is None or ring.agent_id != agent_id:
            # Another agent's offer, or one that is over: the same answer for both, so
            # a page cannot probe which offers exist.
            if ring is not None:
                log.warning("agent %s sent %s for offer %s of %s: refused", agent_id,
                            m.type, m.offer_id, ring.agent_id)
            raise SignallingError(f"{m.type}: no offer {m.offer_id} is ringing for you",
                                  m.offer_id)
        return ring

    def _own_call(self, agent_id: str, m: PageMessage) -> Connected:
        conn = self.calls.get(m.call_id or "")
        if conn is None or conn.leg.agent_id != agent_id:
            if conn is not None:
                log.warning("agent %s sent %s for call %s of %s: refused", agent_id,
                            m.type, m.call_id, conn.leg.agent_id)
            raise SignallingError(f"{m.type}: no call {m.call_id} of yours is connected",
                                  m.call_id)
        return conn

    async def _candidate(self, agent_id: str, m: PageMessage) -> None:
        if m.offer_id is not None:
            pc = self._own_ring(agent_id, m).pc
        else:
            pc = self._own_call(agent_id, m).pc
        if pc is None:
            raise SignallingError("phone.candidate: no answer under way yet", m.ref)
        if not m.candidate:
            return  # end of candidates
        try:
            candidate = candidate_from_sdp(m.candidate.removeprefix("a=")
                                           .removeprefix("candidate:"))
        except (ValueError, IndexError) as exc:
            raise SignallingError(f"candidate: {exc}", m.ref) from None
        candidate.sdpMid = m.sdp_mid
        candidate.sdpMLineIndex = m.sdp_mline_index
        await pc.addIceCandidate(candidate)

    # -- answering and media --------------------------------------------------
    async def _open(self, sdp: str, media: BrowserMedia, ref: str
                    ) -> tuple[RTCPeerConnection, str]:
        """A peer connection answering the page's offer; G.711 preferred."""
        pc = RTCPeerConnection(self._configuration())
        try:
            transceiver = pc.addTransceiver(media.new_track(), direction="sendrecv")
            capabilities = RTCRtpSender.getCapabilities("audio").codecs
            preferred = [c for name in PREFERRED_CODECS for c in capabilities
                         if c.mimeType == name]
            transceiver.setCodecPreferences(preferred)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            codecs = transceiver._codecs  # the negotiated list, preferred first
            if not codecs:
                raise SignallingError("sdp: no codec in common (G.711 or Opus)", ref)
            media.use_codec(codecs[0].mimeType)
            media.transceiver = transceiver
            media.attach_receiver(transceiver.receiver)
            if not codecs[0].mimeType.endswith(("PCMU", "PCMA")):
                media.consume_track(transceiver.receiver.track)
            await pc.setLocalDescription(await pc.createAnswer())
        except SignallingError:
            await pc.close()
            raise
        except Exception as exc:  # aiortc refusing an offer that passed our checks
            await pc.close()
            log.info("offer for %s refused by the WebRTC stack: %s", ref, exc)
            raise SignallingError(f"sdp: not usable ({exc})", ref) from None
        return pc, pc.localDescription.sdp

    async def _answer(self, ring: Ringing, m: PageMessage) -> None:
        if ring.pc is not None:
            raise SignallingError("phone.offer: this offer is being answered already",
                                  ring.offer_id)
        media = BrowserMedia(self.engine, f"browser:{ring.call_id}")
        assert m.sdp is not None
        try:
            pc, answer = await self._open(m.sdp, media, ring.offer_id)
        except SignallingError:
            media.close()
            raise
        if ring.result.done():  # withdrawn while we were answering
            media.close()
            await pc.close()
            return
        ring.pc, ring.media = pc, media
        await self._tell(ring.agent_id, {"type": "phone.answer", "offer_id": ring.offer_id,
                                         "call_id": ring.call_id, "sdp": answer})
        self._spawn(self._await_media(ring, pc, media))

    async def _await_media(self, ring: Ringing, pc: RTCPeerConnection,
                           media: BrowserMedia) -> None:
        up = await self._connected(pc, self.settings.ice_timeout_seconds)
        if ring.result.done():
            return
        if not up:
            log.warning("agent %s: the browser did not complete ICE/DTLS within %.0f s; "
                        "offer %s declined", ring.agent_id, self.settings.ice_timeout_seconds,
                        ring.offer_id)
            ring.result.set_result(AgentRingResult("failed"))
            await self._end_ringing(ring, "no media connection")
            return
        media.connected()
        leg = BrowserLeg(ring.call_id, ring.agent_id, media, self._leg_hung_up)
        conn = Connected(leg, pc)
        self.calls[ring.call_id] = conn
        ring.pc = None  # the call owns it now
        self._watch(conn, pc)
        ring.result.set_result(AgentRingResult("answered", leg=leg))  # type: ignore[arg-type]
        await self._tell(ring.agent_id, {"type": "phone.connected", "call_id": ring.call_id,
                                         "offer_id": ring.offer_id,
                                         "codec": media.codec_name})

    @staticmethod
    async def _connected(pc: RTCPeerConnection, timeout: float) -> bool:
        """Wait until the peer connection is up; False on failure or timeout."""
        changed = asyncio.Event()
        pc.on("connectionstatechange", changed.set)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while pc.connectionState not in ("connected", "failed", "closed"):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return pc.connectionState == "connected"

    def _watch(self, conn: Connected, pc: RTCPeerConnection) -> None:
        generation = conn.generation

        def changed() -> None:
            if conn.generation != generation or conn.leg.ended:
                return  # an older peer connection, replaced by a resume
            if pc.connectionState in ("disconnected", "failed", "closed"):
                self._start_grace(conn, f"media {pc.connectionState}")

        pc.on("connectionstatechange", changed)

    # -- grace and resume ------------------------------------------------------
    def _start_grace(self, conn: Connected, why: str) -> None:
        if conn.grace is not None or conn.leg.ended:
            return
        log.info("call %s: %s's browser phone lost (%s); %.0f s to come back",
                 conn.leg.call_id, conn.leg.agent_id, why, self.settings.grace_seconds)
        conn.grace = asyncio.get_running_loop().call_later(
            self.settings.grace_seconds, lambda: self._spawn(
                self._grace_over(conn)))

    async def _grace_over(self, conn: Connected) -> None:
        conn.grace = None
        if not conn.leg.ended:
            await conn.leg.hangup("browser lost")

    def page_gone(self, agent_id: str) -> None:
        """The agent's last websocket on this node closed: its calls enter grace."""
        for conn in list(self.calls.values()):
            if conn.leg.agent_id == agent_id:
                self._start_grace(conn, "page disconnected")

    async def page_back(self, agent_id: str) -> None:
        """A page of the agent connected: it is told of the calls waiting for it."""
        for conn in list(self.calls.values()):
            if conn.leg.agent_id == agent_id and not conn.leg.ended:
                await self._tell(agent_id, {"type": "phone.active",
                                            "call_id": conn.leg.call_id,
                                            "ice_servers": self.page_configuration()})

    async def _resume(self, conn: Connected, m: PageMessage) -> None:
        assert m.sdp is not None
        pc, answer = await self._open(m.sdp, conn.leg.media, conn.leg.call_id)
        old, conn.pc = conn.pc, pc
        conn.generation += 1
        self._watch(conn, pc)
        if old is not None:
            self._spawn(old.close())
        await self._tell(conn.leg.agent_id, {"type": "phone.answer",
                                             "call_id": conn.leg.call_id, "sdp": answer})
        if await self._connected(pc, self.settings.ice_timeout_seconds) and conn.pc is pc:
            conn.leg.media.connected()
            if conn.grace is not None:
                conn.grace.cancel()
                conn.grace = None
            log.info("call %s: %s's browser phone is back", conn.leg.call_id,
                     conn.leg.agent_id)
            await self._tell(conn.leg.agent_id, {"type": "phone.connected",
                                                 "call_id": conn.leg.call_id,
                                                 "codec": conn.leg.media.codec_name})

    # -- the end -------------------------------------------------------------
    async def _leg_hung_up(self, leg: BrowserLeg, cause: str) -> None:
        conn = self.calls.pop(leg.call_id, None)
        if conn is None:
            return
        if conn.grace is not None:
            conn.grace.cancel()
        if conn.pc is not None:
            self._spawn(conn.pc.close())
        await self._tell(leg.agent_id, {"type": "phone.ended", "call_id": leg.call_id,
                                        "cause": cause})

    async def stop(self) -> None:
        for conn in list(self.calls.values()):
            await conn.leg.hangup("server stopping")
        for ring in list(self.ringing.values()):
            if not ring.result.done():
                ring.result.set_result(AgentRingResult("failed"))
            await self._end_ringing(ring, "server stopping")
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 2)
