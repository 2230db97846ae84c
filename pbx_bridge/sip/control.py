"""Call control on the embedded SIP core (`control.CallControlBackend`).

A connected call is run here from the moment the agent answers until the caller
hangs up (`run_connected`): the caller's leg stays the anchor, the agent side may
change (transfers), grow (consult, conference, a supervisor's phone) or go quiet
(hold, mute). A plain call is a packet relay between the two legs (the cheapest
path); the first operation that needs more moves it into a `media.Mixer`, where hold
(the caller hears the queue's music and is not heard), mute, conference and the
monitoring modes are all rules of who hears whom.

Rules (docs/voice.md, "Call control"):
- The caller hanging up ends everything (agents, third parties, monitors).
- The owning agent hanging up: during a consult, the consult is completed (the
  caller is connected to the consulted party, as Asterisk does); in a conference with
  another agent, that agent owns the call; otherwise the call ends.
- A blind transfer hands the caller over at once (the caller hears music while the
  target rings); no answer, busy or unregistered → the transferring agent's phone
  rings again; no answer there → the task goes back to its queue. Never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.numbers import is_ascii_digits
from pbx_bridge.control import (
    CallControlError,
    CallView,
    ControlledCall,
    MonitorMode,
    Reporter,
    Target,
    hand_task_over,
)
from pbx_bridge.media.audio import AudioFormatError
from pbx_bridge.media.mixer import Mixer
from pbx_bridge.media.rtp import AudioSource, bridge_sessions, unbridge_sessions
from pbx_bridge.sip.extensions import ExtensionCall, ExtensionCalls
from pbx_bridge.sip.leg import AgentRingResult, SipCallLeg
from pbx_bridge.sip.refer import ReferError, ReferTarget

log = logging.getLogger(__name__)

CUSTOMER = "customer"
AGENT = "agent"
MONITOR_RULES: dict[str, frozenset[str] | None] = {
    "listen": frozenset(), "whisper": frozenset({AGENT}), "barge": None}


@dataclass
class ExtraParty:
    party_id: str
    leg: SipCallLeg
    target: Target
    role: str  # "consult" | "conference" | "monitor"
    mode: str | None = None  # monitor mode
    agent_id: str | None = None


@dataclass
class SipSession:
    """One connected call under control."""

    active: Any  # pbx_bridge.voice.ActiveCall
    customer: SipCallLeg
    agent: SipCallLeg | None
    mixer: Mixer | None = None
    held: bool = False
    hold_started: float | None = None
    hold_total: float = 0.0
    muted: bool = False
    state: str = "talking"
    extras: dict[str, ExtraParty] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    work: asyncio.Task[None] | None = None  # a transfer being carried out
    on_handover: Callable[[], None] | None = None  # REFER: final NOTIFY before the BYE
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # the caller left
    # the agent hung up and the caller goes on to the queue's survey flow (the voice
    # service runs it once `run_connected` returns): the caller's leg is not hung up
    released: bool = False
    queued_task: str | None = None  # transferred to a queue, waiting for an agent
    note: str | None = None  # the reason of the transfer under way (screen-pop note)

    def hold_seconds(self) -> float:
        running = time.monotonic() - self.hold_started if self.hold_started else 0.0
        return self.hold_total + running


class SipCallControl:
    """The SIP core's side of call control (media through `pbx_bridge.media`)."""

    def __init__(self, server: Any, *, acd: Any = None,
                 agents: Callable[[], list[Any]] = list, report: Reporter | None = None
                 ) -> None:
        self.server = server  # pbx_bridge.sip.server.SipServer
        self.acd = acd
        self.agents = agents  # the configured agents now (config reloads included)
        self.service: Any = None  # control.CallControlService: REFERs go through it
        self.queues: Callable[[], list[Any]] = list
        self.report = report
        self.sessions: dict[str, SipSession] = {}
        self._extra_ids = 0
        # calls phones place to colleagues' extensions (the consults of attended
        # transfers from desk phones): `server.extension_handler`
        self.extensions = ExtensionCalls(server)
        # Recording (issue #20): `recorder` is the SIP RecordingBackend
        # (sip.recording.SipCallRecorder), told of hold, hand-overs and the end;
        # `on_connected(active)` applies the queue's recording policy at the answer.
        self.recorder: Any = None
        self.on_connected: Callable[[Any], Any] | None = None

    # -- the connected phase ------------------------------------------
    async def run_connected(self, active: Any, agent_leg: SipCallLeg) -> None:
        """Bridge the caller and the agent and keep the call up until the caller is
        gone (transfers and conferences happen meanwhile). Replaces `SipServer.bridge`
        for calls the voice service connects."""
        customer: SipCallLeg = active.leg
        a, b = customer.call, agent_leg.call
        if a.ended.is_set() or b.ended.is_set():
            await customer.hangup("bridge failed")
            await agent_leg.hangup("bridge failed")
            return
        if not a.answered:
            await self.server.answer_call(a)
        session = SipSession(active, customer, agent_leg)
        self.sessions[active.call_id] = session
        assert a.rtp is not None and b.rtp is not None
        bridge_sessions(a.rtp, b.rtp)
        a.record.bridged_at = datetime.now(UTC)
        a.record.agent_username = b.agent_username
        if self.on_connected is not None:
            self._spawn(self.on_connected(active))
        try:
            while not customer.ended:
                waits = [asyncio.ensure_future(customer.call.ended.wait()),
                         asyncio.ensure_future(session.wake.wait())]
                if session.agent is not None:
                    waits.append(asyncio.ensure_future(session.agent.call.ended.wait()))
                for extra in session.extras.values():
                    waits.append(asyncio.ensure_future(extra.leg.call.ended.wait()))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
                session.wake.clear()
                if customer.ended:
                    break
                self._drop_ended_extras(session)
                if session.agent is not None and session.agent.ended:
                    await self._agent_left(session)
                if session.released:
                    break
        finally:
            await self._tear_down(session)

    def _drop_ended_extras(self, session: SipSession) -> None:
        for party_id, extra in list(session.extras.items()):
            if extra.leg.ended:
                session.extras.pop(party_id)
                if session.mixer is not None:
                    session.mixer.remove(party_id)
                if extra.role == "consult":
                    # the consulted party hung up (or never answered): back to the caller
                    self._unhold(session)
                    session.state = "talking"
                elif extra.role == "conference" and not self._conference_parties(session):
                    session.state = "talking"

    @staticmethod
    def _conference_parties(session: SipSession) -> list[ExtraParty]:
        return [e for e in session.extras.values() if e.role == "conference"]

    async def _agent_left(self, session: SipSession) -> None:
        """The owning agent's leg ended (hung up, or left on purpose)."""
        session.agent = None
        if session.mixer is not None:
            session.mixer.remove(AGENT)
        if session.work is not None and not session.work.done():
            return  # a blind transfer is under way: it reconnects the caller
        consult = next((e for e in session.extras.values() if e.role == "consult"), None)
        if consult is not None:
            self._promote(session, consult)
            self._unhold(session)
            session.state = "talking"
            return
        other_agent = next((e for e in self._conference_parties(session)
                            if e.agent_id is not None), None)
        if other_agent is not None:
            self._promote(session, other_agent)
            session.state = "conference" if self._conference_parties(session) else "talking"
            return
        if getattr(session.active, "survey_flow", None) and not session.extras:
            session.released = True  # the caller stays for the survey after the call
            return
        await session.customer.hangup("agent hung up")

    def _promote(self, session: SipSession, extra: ExtraParty) -> None:
        """An extra party (consulted or conferenced) becomes the call's agent side."""
        session.extras.pop(extra.party_id, None)
        mixer = self._mixer(session)
        mixer.remove(extra.party_id)
        if session.agent is not None and not session.agent.ended:
            self._spawn(session.agent.hangup("transferred"))
        session.agent = extra.leg
        mixer.remove(AGENT)
        assert extra.leg.call.rtp is not None
        mixer.add(AGENT, extra.leg.call.rtp)
        session.muted = False  # the new agent side starts unmuted
        self._set_owner(session, extra.agent_id, extra.target)

    def _set_owner(self, session: SipSession, agent_id: str | None, target: Target) -> None:
        """The call changed hands: to another agent (`agent_id`) or out of the centre
        (a number). The transferring agent's part is over either way: wrap-up for them
        (notes say to whom); the call's end is then recorded under the new owner, or
        under nobody for a number (no agent of ours is on it)."""
        active = session.active
        old = active.agent_id
        if old == agent_id:
            return
        active.agent_id = agent_id
        if self.recorder is not None:
            self.recorder.agent_changed(active.call_id, agent_id)
        self._spawn(hand_task_over(self.acd, active, old, agent_id, target, session.note))

    async def _abandon_quietly(self, task_id: str) -> None:
        try:
            await self.acd.abandon(task_id)
        except Exception as exc:
            log.info("abandoning transferred task %s: %s", task_id, exc)

    async def _tear_down(self, session: SipSession) -> None:
        self.sessions.pop(session.active.call_id, None)
        # Phones still ringing for this call get CANCEL; a transfer under way sees the
        # caller gone and hangs up whatever answers (it is not cancelled mid-INVITE,
        # which would leave a phone ringing).
        session.gone.set()
        if session.queued_task and self.acd is not None:
            # The caller left while the transferred task waited in its new queue.
            self._spawn(self._abandon_quietly(session.queued_task))
        legs = [*(e.leg for e in session.extras.values())]
        if not session.released:
            legs.append(session.customer)
        if session.agent is not None:
            legs.append(session.agent)
        if session.mixer is not None:
            session.mixer.close()
        if self.recorder is not None:
            self.recorder.ended(session.active.call_id)
        if session.released and session.customer.call.rtp is not None:
            unbridge_sessions(session.customer.call.rtp)  # its own media again: prompts
        for leg in legs:
            if not leg.ended:
                await leg.hangup("call ended")
        if session.hold_started is not None:
            self._unhold(session)

    # -- helpers ------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        return self.server.spawn(coro)

    def _session(self, call: ControlledCall) -> SipSession:
        session = self.sessions.get(call.call_id)
        if session is None and call.active is not None and self.alive(call.active):
            raise CallControlError("invalid_state",
                                   f"call {call.call_id} is being connected; try again")
        if session is None or session.customer.ended:
            raise CallControlError("call_ended", f"call {call.call_id} has ended")
        return session

    def _mixer(self, session: SipSession) -> Mixer:
        """Move the call from the packet relay into a mixer (once)."""
        if session.mixer is None:
            customer_rtp = session.customer.call.rtp
            assert customer_rtp is not None
            unbridge_sessions(customer_rtp)
            customer_rtp.stop_playing()
            mixer = Mixer(self.server.media, name=session.active.call_id)
            mixer.add(CUSTOMER, customer_rtp)
            if session.agent is not None and session.agent.call.rtp is not None:
                session.agent.call.rtp.stop_playing()
                mixer.add(AGENT, session.agent.call.rtp)
            session.mixer = mixer
            if self.recorder is not None:  # a recording on the relay moves along
                self.recorder.moved_to_mixer(session.active.call_id, mixer)
        return session.mixer

    def _music(self, music_class: str) -> AudioSource:
        path = self.server.music(music_class) if self.server.music else None
        audio = None
        if path is not None:
            try:
                audio = self.server.audio_cache.load(path)
            except (AudioFormatError, OSError) as exc:
                log.warning("music class %r unplayable: %s", music_class, exc)
        return AudioSource(audio or self.server.default_music, loop=True)

    def _hold(self, session: SipSession, music_class: str) -> None:
        mixer = self._mixer(session)
        mixer.play_to(CUSTOMER, self._music(music_class))
        session.held = True
        if self.recorder is not None:  # hold is silence in the recording, never music
            self.recorder.held(session.active.call_id, True)
        if session.hold_started is None:
            session.hold_started = time.monotonic()

    def _unhold(self, session: SipSession) -> float:
        if session.mixer is not None:
            session.mixer.play_to(CUSTOMER, None)
        this_hold = time.monotonic() - session.hold_started if session.hold_started else 0.0
        session.hold_total += this_hold
        session.hold_started = None
        session.held = False
        if self.recorder is not None:
            self.recorder.held(session.active.call_id, False)
        return this_hold

    async def _ring(self, session: SipSession, target: Target, caller_id: str | None,
                    timeout: float = 20.0) -> AgentRingResult:
        """Ring a phone for this call; the caller hanging up CANCELs it (`gone`)."""
        if target.kind == "agent":
            assert target.phone is not None
            return await self.server.ring_agent(target.phone, caller_id=caller_id,
                                                timeout=timeout, stop=session.gone)
        return await self.server.place_outbound_call(target.value, caller_id=caller_id,
                                                     timeout=timeout)

    def _new_party_id(self, role: str) -> str:
        self._extra_ids += 1
        return f"{role}-{self._extra_ids}"

    # -- CallControlBackend -------------------------------------------
    def alive(self, active: Any) -> bool:
        return active.leg is not None and not active.leg.ended

    def view(self, call: ControlledCall) -> CallView:
        session = self.sessions.get(call.call_id)
        if session is None:
            alive = call.active is not None and self.alive(call.active)
            return CallView(call.call_id, call.task_id, call.case_id, call.agent_id, "sip",
                            "connecting" if alive else "ended")
        parties = [{"party": CUSTOMER, "who": session.active.caller_number}]
        if session.agent is not None:
            parties.append({"party": AGENT, "who": session.active.agent_id})
        monitors = []
        for extra in session.extras.values():
            row = {"party": extra.party_id, "who": extra.target.describe(), "role": extra.role}
            if extra.role == "monitor":
                row["mode"] = extra.mode
                monitors.append(row)
            else:
                parties.append(row)
        return CallView(call.call_id, session.active.task_id, call.case_id,
                        session.active.agent_id, "sip", "held" if session.held and
                        session.state == "talking" else session.state, held=session.held,
                        hold_seconds=session.hold_seconds(), muted=session.muted,
                        parties=parties, monitors=monitors)

    async def hold(self, call: ControlledCall, music_class: str) -> None:
        self._hold(self._session(call), music_class)

    async def resume(self, call: ControlledCall) -> float:
        return self._unhold(self._session(call))

    async def mute(self, call: ControlledCall, muted: bool) -> None:
        session = self._session(call)
        mixer = self._mixer(session)
        mixer.set_speaks_to(AGENT, frozenset() if muted else None)
        session.muted = muted

    async def hangup(self, call: ControlledCall) -> None:
        """The agent leaves (as if they hung up their phone); the rules above apply."""
        session = self._session(call)
        if session.agent is not None:
            await session.agent.hangup("hung up from the desktop")
        else:
            await session.customer.hangup("hung up from the desktop")
        session.wake.set()

    async def send_dtmf(self, call: ControlledCall, digits: str) -> None:
        session = self._session(call)
        rtp = session.customer.call.rtp
        assert rtp is not None
        rtp.send_dtmf(digits)

    async def blind_transfer(self, call: ControlledCall, target: Target,
                             music_class: str) -> str:
        session = self._session(call)
        session.note = call.note
        transferring = session.agent
        transferring_agent = session.active.agent_id
        self._hold(session, music_class)
        session.state = "transferring"
        session.work = self._spawn(self._carry_out_blind(
            session, call, target, music_class, transferring_agent))
        if session.on_handover is not None:
            session.on_handover()
            session.on_handover = None
        if transferring is not None:
            await transferring.hangup("blind transfer")  # handed over at once
        return "queued" if target.kind == "queue" else "ringing"

    async def _carry_out_blind(self, session: SipSession, call: ControlledCall,
                               target: Target, music_class: str,
                               transferring_agent: str | None) -> None:
        active = session.active
        try:
            if target.kind == "queue":
                await self._to_queue(session, call, target, transferring_agent)
                return
            if target.kind == "agent" and active.task_id and transferring_agent \
                    and self.acd is not None:
                # A task of its own for the target (screen-pop, busy, wrap-up); the
                # ACD offers it to them, then back to the giver, then the queue.
                await self._to_queue(session, call, target, transferring_agent)
                return
            result = await self._ring(session, target, active.caller_number)
            if result.answered and result.leg is not None and not session.customer.ended:
                self._connect_agent_side(session, result.leg)
                self._set_owner(session, target.value if target.kind == "agent" else None,
                                target)
                await self._report(call, "transfer_connected",
                                   f"Transfer to {target.describe()} answered",
                                   {"target": target.value, "target_kind": target.kind})
                return
            if result.leg is not None:
                await result.leg.hangup("caller gone")
            await self._report(call, "transfer_failed",
                               f"Transfer to {target.describe()} not answered "
                               f"({result.status}); back to {transferring_agent}",
                               {"target": target.value, "status": result.status})
            await self._back_to(session, call, transferring_agent)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("blind transfer of %s failed", call.call_id)
            await self._back_to(session, call, transferring_agent)
        finally:
            session.wake.set()

    async def _to_queue(self, session: SipSession, call: ControlledCall, target: Target,
                        transferring_agent: str | None) -> None:
        """The task goes back to the ACD in the target queue (it keeps its case,
        customer, priority and enqueue time); the caller hears the music meanwhile;
        the voice service rings the offered agent and hands us the answered leg."""
        active = session.active
        if not active.task_id or not transferring_agent or self.acd is None:
            raise CallControlError("invalid_state", "this call has no task to transfer")
        loop = asyncio.get_running_loop()
        active.outcome = loop.create_future()
        active.agent_leg = None
        if target.kind == "agent":
            await self.acd.transfer_to_agent(active.task_id, target.value,
                                             by=transferring_agent, reason=session.note)
        else:
            await self.acd.transfer(active.task_id, transferring_agent, target.value,
                                    reason=session.note)
        active.agent_id = None
        session.queued_task = active.task_id
        outcome = await asyncio.shield(active.outcome)
        session.queued_task = None
        if session.customer.ended:
            return
        if getattr(outcome.kind, "value", outcome.kind) == "connected" and \
                active.agent_leg is not None:
            self._connect_agent_side(session, active.agent_leg)
            if target.kind == "agent" and active.agent_id != target.value:
                # The named agent did not take it (unavailable, rejected, no answer):
                # the ACD gave it back to the giver, or to the queue.
                await self._report(call, "transfer_failed",
                                   f"Transfer to {target.describe()} not taken; "
                                   f"answered by {active.agent_id}",
                                   {"target": target.value, "status": "not_taken",
                                    "to_agent_id": active.agent_id})
                if active.agent_id == transferring_agent:
                    await self._report(call, "transfer_returned",
                                       f"The caller is back with {transferring_agent}",
                                       {"to_agent_id": transferring_agent})
                    return
            await self._report(call, "transfer_connected",
                               f"Transfer to {target.describe()} answered by "
                               f"{active.agent_id}", {"target": target.value,
                                                      "to_agent_id": active.agent_id})
        else:
            await session.customer.hangup("queue exit after transfer")

    async def _back_to(self, session: SipSession, call: ControlledCall,
                       agent_id: str | None) -> None:
        """The target did not answer: ring the transferring agent again; if they do
        not answer either, the task goes back to its queue."""
        if session.customer.ended:
            return
        username = None
        if agent_id is not None:
            agent = next((a for a in self.agents() if a.id == agent_id), None)
            username = agent.phone_address() if agent is not None else None
        if username is not None:
            result = await self.server.ring_agent(username,
                                                  caller_id=session.active.caller_number,
                                                  stop=session.gone)
            if result.answered and result.leg is not None and not session.customer.ended:
                self._connect_agent_side(session, result.leg)
                await self._report(call, "transfer_returned",
                                   f"The caller is back with {agent_id}",
                                   {"to_agent_id": agent_id})
                return
            if result.leg is not None:
                await result.leg.hangup("caller gone")
        if call.queue_id:
            await self._to_queue(session, call, Target("queue", call.queue_id), agent_id)
        else:
            await session.customer.hangup("transfer failed")

    def _connect_agent_side(self, session: SipSession, leg: SipCallLeg) -> None:
        """`leg` becomes the call's agent side; the caller hears it again."""
        mixer = self._mixer(session)
        mixer.remove(AGENT)
        session.agent = leg
        assert leg.call.rtp is not None
        leg.call.rtp.stop_playing()
        mixer.add(AGENT, leg.call.rtp)
        session.muted = False
        self._unhold(session)
        if self.recorder is not None:
            self.recorder.agent_changed(session.active.call_id, session.active.agent_id)
        session.state = "conference" if self._conference_parties(session) else "talking"
        session.wake.set()

    async def consult(self, call: ControlledCall, target: Target, music_class: str) -> str:
        session = self._session(call)
        self._hold(session, music_class)
        session.state = "consulting"
        result = await self._ring(session, target, session.active.caller_number)
        if not result.answered or result.leg is None or session.customer.ended:
            if result.leg is not None:
                await result.leg.hangup("caller gone")
            self._unhold(session)
            session.state = "talking"
            raise CallControlError("target_unavailable",
                                   f"{target.describe()} did not answer ({result.status}); "
                                   "the caller is back with you", target=target.value)
        party_id = self._new_party_id("consult")
        extra = ExtraParty(party_id, result.leg, target, "consult",
                           agent_id=target.value if target.kind == "agent" else None)
        session.extras[party_id] = extra
        assert result.leg.call.rtp is not None
        self._mixer(session).add(party_id, result.leg.call.rtp)
        session.wake.set()
        return "connected"

    def _consult_party(self, session: SipSession) -> ExtraParty:
        extra = next((e for e in session.extras.values() if e.role == "consult"), None)
        if extra is None:
            raise CallControlError("invalid_state", "there is no consult on this call")
        return extra

    async def complete_consult(self, call: ControlledCall) -> Target:
        session = self._session(call)
        session.note = call.note
        extra = self._consult_party(session)
        if session.on_handover is not None:  # REFER/Replaces: NOTIFY 200 before the BYE
            session.on_handover()
            session.on_handover = None
        self._promote(session, extra)  # hangs up the transferring agent's leg
        self._unhold(session)
        session.state = "talking"
        session.wake.set()
        return extra.target

    async def cancel_consult(self, call: ControlledCall) -> None:
        session = self._session(call)
        extra = self._consult_party(session)
        session.extras.pop(extra.party_id, None)
        self._mixer(session).remove(extra.party_id)
        await extra.leg.hangup("consult cancelled")
        self._unhold(session)
        session.state = "talking"
        session.wake.set()

    async def conference(self, call: ControlledCall, target: Target | None) -> str:
        session = self._session(call)
        if target is None:
            extra = self._consult_party(session)
            extra.role = "conference"
        else:
            result = await self._ring(session, target, session.active.caller_number)
            if not result.answered or result.leg is None or session.customer.ended:
                if result.leg is not None:
                    await result.leg.hangup("caller gone")
                raise CallControlError("target_unavailable",
                                       f"{target.describe()} did not answer "
                                       f"({result.status})", target=target.value)
            party_id = self._new_party_id("conference")
            extra = ExtraParty(party_id, result.leg, target, "conference",
                               agent_id=target.value if target.kind == "agent" else None)
            session.extras[party_id] = extra
            assert result.leg.call.rtp is not None
            self._mixer(session).add(party_id, result.leg.call.rtp)
        self._unhold(session)
        session.state = "conference"
        session.wake.set()
        return "connected"

    async def monitor(self, call: ControlledCall, mode: MonitorMode, phone: str) -> str:
        session = self._session(call)
        existing = next((e for e in session.extras.values()
                         if e.role == "monitor" and e.target.phone == phone), None)
        if existing is not None:  # switching modes on the same phone
            existing.mode = mode
            self._mixer(session).set_speaks_to(existing.party_id, MONITOR_RULES[mode])
            return "switched"
        result = await self.server.ring_agent(phone, caller_id="monitor", timeout=20.0,
                                              stop=session.gone)
        if not result.answered or result.leg is None or session.customer.ended:
            if result.leg is not None:
                await result.leg.hangup("call gone")
            raise CallControlError("target_unavailable",
                                   f"the supervisor's phone {phone} did not answer "
                                   f"({result.status})", target=phone)
        party_id = self._new_party_id("monitor")
        extra = ExtraParty(party_id, result.leg, Target("agent", phone, phone,
                                                        f"supervisor phone {phone}"),
                           "monitor", mode=mode)
        session.extras[party_id] = extra
        assert result.leg.call.rtp is not None
        self._mixer(session).add(party_id, result.leg.call.rtp,
                                 speaks_to=MONITOR_RULES[mode])
        session.wake.set()
        return "connected"

    # -- REFER from the agent's desk phone (server.ReferHandler) ------
    def _session_of_agent_dialog(self, dialog: Any) -> SipSession | None:
        return next((s for s in self.sessions.values()
                     if s.agent is not None and s.agent.call is dialog), None)

    def _refer_target(self, user: str) -> tuple[str, str]:
        """Refer-To's user part: an agent's phone, a queue id, or a number."""
        agent = next((a for a in self.agents()
                      if a.sip is not None and a.sip.username == user), None)
        if agent is not None:
            return "agent", agent.id
        if user in {q.id for q in self.queues()}:
            return "queue", user
        digits = user.lstrip("+")
        if is_ascii_digits(digits) and len(digits) >= 3:
            return "number", user
        raise ReferError(404, f"Not Found ({user[:40]})")

    def _attended_pair(self, dialog: Any, target: ReferTarget
                       ) -> tuple[SipSession, ExtensionCall]:
        """REFER with Replaces: one of the two dialogs is the agent leg of a customer
        call, the other the same phone's call to a colleague's extension (either may
        carry the REFER: RFC 5589 sends it to the transferee, some phones to the
        target). Anything else is refused, the calls untouched."""
        assert target.replaces is not None
        replaced = self.server.find_dialog(target.replaces)
        if replaced is None:  # the server checked; the dialog ended in between
            raise ReferError(481, "Call/Transaction Does Not Exist (Replaces)")
        session = self._session_of_agent_dialog(dialog)
        ext = self.extensions.by_caller_dialog(replaced)
        if session is None or ext is None:
            session = self._session_of_agent_dialog(replaced)
            ext = self.extensions.by_caller_dialog(dialog)
        if session is None or ext is None or self.service is None:
            raise ReferError(403, "Forbidden (Replaces must join a customer call and the "
                                  "same phone's call to a colleague)")
        assert session.agent is not None
        if session.agent.call.agent_username != ext.from_user:
            raise ReferError(403, "Forbidden (the two calls are not on the same phone)")
        if ext.callee is None or ext.taken.is_set():
            raise ReferError(403, "Forbidden (the colleague has not answered)")
        if session.state in ("consulting", "transferring"):
            raise ReferError(491, "Request Pending (a transfer is under way)")
        self._extension_agent(ext)
        return session, ext

    def _extension_agent(self, ext: ExtensionCall) -> Target:
        agent = next((a for a in self.agents()
                      if a.sip is not None and a.sip.username == ext.to_user), None)
        if agent is None:
            raise ReferError(404, f"Not Found (no agent has phone {ext.to_user[:40]})")
        return Target("agent", agent.id, ext.to_user, f"agent {agent.id}")

    def check_refer(self, dialog: Any, target: ReferTarget) -> None:
        if target.replaces is not None:
            self._attended_pair(dialog, target)
            return
        session = self._session_of_agent_dialog(dialog)
        if session is None or self.service is None:
            raise ReferError(403, "Forbidden (not an agent's leg of a connected call)")
        if session.state in ("consulting", "transferring"):
            raise ReferError(491, "Request Pending (a transfer is under way)")
        self._refer_target(target.user)

    async def run_extension_call(self, leg: SipCallLeg, from_user: str, to_user: str) -> None:
        """`server.extension_handler`: a phone calls a colleague's extension."""
        await self.extensions.run_extension_call(leg, from_user, to_user)

    async def _run_attended_refer(self, dialog: Any, target: ReferTarget) -> None:
        """REFER with Replaces from the agent's desk phone: the colleague the phone
        consulted on its own call is joined to the customer, and the transfer is
        completed with the desktop's bookkeeping (a `consult` and a consultative
        `transfer` on the timeline, the task to the colleague); NOTIFY 200 on the
        REFER's dialog, then BYE on both of the phone's dialogs."""
        from pbx_bridge.control import PhoneActor

        notify = self.server.send_refer_notify
        try:
            session, ext = self._attended_pair(dialog, target)
            agent = self._extension_agent(ext)
        except ReferError as exc:  # something ended between the 202 and now
            notify(dialog, exc.status, exc.reason, final=True)
            return
        call_id = session.active.call_id
        actor = PhoneActor(username=ext.from_user, agent_id=session.active.agent_id)
        try:
            await self.service.view(call_id, actor)  # still ours and alive: take the leg
        except CallControlError as exc:
            notify(dialog, 481 if exc.code in ("call_ended", "unknown_call") else 403,
                   str(exc)[:60].replace("\r", " ").replace("\n", " "), final=True)
            return
        callee = self.extensions.take(ext)
        try:
            party_id = self._new_party_id("consult")
            self._hold(session, self._music_class(session))
            session.extras[party_id] = ExtraParty(party_id, callee, agent, "consult",
                                                  agent_id=agent.value)
            assert callee.call.rtp is not None
            self._mixer(session).add(party_id, callee.call.rtp)
            session.state = "consulting"
            session.wake.set()
            session.on_handover = lambda: notify(dialog, 200, "OK", final=True)
            await self.service.consulted_from_phone(call_id, actor, agent)
            await self.service.complete_consult(call_id, actor,
                                                reason="attended transfer (REFER/Replaces) "
                                                       "from the desk phone")
        except Exception as exc:
            log.info("attended transfer from %s failed: %s", ext.from_user, exc)
            if session.on_handover is not None:
                session.on_handover = None
                notify(dialog, 500, "Server Internal Error", final=True)
                await callee.hangup("transfer failed")
        finally:
            ext.released.set()

    def _music_class(self, session: SipSession) -> str:
        task_id = session.active.task_id
        if task_id and self.acd is not None:
            with contextlib.suppress(Exception):
                queue_id = self.acd.task(task_id).queue_id
                queue = next((q for q in self.queues() if q.id == queue_id), None)
                if queue is not None:
                    return str(queue.music_on_hold)
        return "default"

    async def run_refer(self, dialog: Any, target: ReferTarget) -> None:
        """Blind transfer with the desktop's bookkeeping; the phone gets NOTIFY 200
        once the caller is handed over (then the BYE), or the failure's status.
        With Replaces: the attended transfer above."""
        from pbx_bridge.control import PhoneActor

        if target.replaces is not None:
            await self._run_attended_refer(dialog, target)
            return
        session = self._session_of_agent_dialog(dialog)
        if session is None:
            self.server.send_refer_notify(dialog, 481, "Call/Transaction Does Not Exist",
                                          final=True)
            return
        kind, value = self._refer_target(target.user)
        session.on_handover = lambda: self.server.send_refer_notify(dialog, 200, "OK",
                                                                     final=True)
        actor = PhoneActor(username=dialog.agent_username or "phone",
                           agent_id=session.active.agent_id)
        try:
            await self.service.blind_transfer(session.active.call_id, kind, value, actor,
                                              reason="REFER from the desk phone")
        except CallControlError as exc:
            session.on_handover = None
            status = {"unknown_target": 404, "not_your_call": 403}.get(exc.code, 500)
            self.server.send_refer_notify(dialog, status, str(exc)[:60].replace("\r", " ")
                                          .replace("\n", " "), final=True)

    # -- the agent phone's own hold key (server.on_remote_hold) ---------
    def remote_hold_changed(self, dialog: Any) -> None:
        """The agent's phone sent a re-INVITE putting us on hold (or back): the
        customer gets the queue's music and the hold is counted, as from the desktop."""
        session = self._session_of_agent_dialog(dialog)
        if session is None or self.service is None or session.state != "talking":
            return
        from pbx_bridge.control import PhoneActor

        actor = PhoneActor(username=dialog.agent_username or "phone",
                           agent_id=session.active.agent_id)
        operation = self.service.hold if dialog.remote_on_hold else self.service.resume
        if dialog.remote_on_hold == session.held:
            return
        self._spawn(self._quietly(operation(session.active.call_id, actor)))

    @staticmethod
    async def _quietly(operation: Any) -> None:
        with contextlib.suppress(CallControlError):
            await operation

    async def _report(self, call: ControlledCall, operation: str, body: str,
                      meta: dict[str, Any]) -> None:
        if self.report is not None:
            with contextlib.suppress(Exception):
                await self.report(call, operation, body, meta)
