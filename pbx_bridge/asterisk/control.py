"""Call control on the Asterisk backend (`control.CallControlBackend`) over AMI.

Asterisk does the media; this module moves channels with AMI actions written from
Asterisk 20's documented actions (see docs/asterisk.md, "Call control"):

- The first operation on a connected call moves the customer and the agent out of
  the `centrale-dial` Bridge() into a ConfBridge room named after the call id
  (`Redirect` with `ExtraChannel` to `centrale-control,conf`). The agent joins with
  the marked `centrale_agent` profile, the customer with `centrale_customer`
  (`end_marked`): the last agent leaving ends the call, as on the embedded core.
- hold: `Setvar CENTRALE_MOH` + `Redirect` of the customer to `centrale-control,hold`
  (MusicOnHold with the queue's class); resume: `Redirect` back into the room.
- mute / unmute: `ConfbridgeMute` / `ConfbridgeUnmute` of the agent's channel.
- hang-up: `Hangup` of the agent's channel. DTMF: `PlayDTMF` on the customer's channel.
- blind transfer to an agent or a number: `Setvar` target / return endpoints, then
  `Redirect` of the customer to `centrale-control,blind` (Dial with music; no answer
  → Dial the transferring agent; no answer → back to the holding context); to a
  queue: `AcdEngine.transfer`, then the customer back to `centrale-hold` waiting.
- consult: customer on hold, `Originate` of the target into the room; complete:
  customer back into the room and `Hangup` of the agent; cancel: `Hangup` of the
  target and the customer back; conference: the customer back with the target there,
  or a new party originated into the room.
- listen / whisper / barge: `Originate` of the supervisor's endpoint with
  `Application: ChanSpy`, `Data: <agent channel>,qE` plus `w` (whisper) or `B`
  (barge) — ChanSpy's own option letters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pbx_bridge.asterisk.ami import AmiError
from pbx_bridge.asterisk.channels import (
    STATE_WAITING,
    VAR_CALL_ID,
    VAR_ROLE,
    VAR_STATE,
    VAR_TASK_ID,
    TrackedChannel,
)
from pbx_bridge.asterisk.rooms import RoomWatch
from pbx_bridge.control import (
    CallControlError,
    CallView,
    ControlledCall,
    MonitorMode,
    Target,
    hand_task_over,
)

log = logging.getLogger(__name__)

CONTROL_CONTEXT = "centrale-control"
OUTBOUND_CONTEXT = "centrale-outbound"
EXTEN_CONF, EXTEN_HOLD, EXTEN_BLIND = "conf", "hold", "blind"
VAR_MOH = "CENTRALE_MOH"
VAR_TARGET = "CENTRALE_TRANSFER_TARGET"
VAR_RETURN = "CENTRALE_RETURN_TO"
CHANSPY_OPTIONS = {"listen": "qE", "whisper": "qEw", "barge": "qEB"}
RING_SECONDS = 20
REDIRECT_RETRIES = 20  # x 50 ms: how long a Redirect waits out a pending one
REDIRECT_RETRY_SECONDS = 0.05
JOIN_TIMEOUT_SECONDS = 5.0  # how long a move into the room waits for ConfbridgeJoin


@dataclass
class AstSession:
    in_room: bool = False
    held: bool = False
    hold_started: float | None = None
    hold_total: float = 0.0
    muted: bool = False
    state: str = "talking"
    agent_channel: str | None = None
    extras: dict[str, tuple[str, Target, str]] = field(default_factory=dict)  # ch -> (...)

    def hold_seconds(self) -> float:
        running = time.monotonic() - self.hold_started if self.hold_started else 0.0
        return self.hold_total + running


class AsteriskCallControl:
    """The Asterisk side of call control (AMI through `AsteriskBackend.ami`)."""

    def __init__(self, backend: Any, *, acd: Any = None,
                 agents: Callable[[], list[Any]] = list,
                 join_timeout: float = JOIN_TIMEOUT_SECONDS) -> None:
        self.backend = backend  # pbx_bridge.asterisk.backend.AsteriskBackend
        self.acd = acd
        self.agents = agents  # the configured agents now (config reloads included)
        self.sessions: dict[str, AstSession] = {}
        self.rooms = RoomWatch()
        self.join_timeout = join_timeout
        if hasattr(backend.ami, "add_raw_listener"):
            backend.ami.add_raw_listener(self.rooms)
        self.recorder: Any = None  # asterisk.recording.AsteriskCallRecorder (issue #20)

    # -- helpers ------------------------------------------------------
    def alive(self, active: Any) -> bool:
        return self.backend.registry.by_call_id(active.call_id) is not None

    def _customer(self, call: ControlledCall) -> TrackedChannel:
        tracked = self.backend.registry.by_call_id(call.call_id)
        if tracked is None:
            raise CallControlError("call_ended", f"call {call.call_id} has ended")
        return tracked

    def _session(self, call: ControlledCall) -> AstSession:
        session = self.sessions.setdefault(call.call_id, AstSession())
        if session.agent_channel is None:
            session.agent_channel = self._agent_channel(call)
        return session

    def _agent_channel(self, call: ControlledCall) -> str | None:
        """The agent leg Centrale originated for this call's task (role agent)."""
        for tracked in reversed(self.backend.registry.all()):
            if tracked.variables.get(VAR_ROLE) == "agent" and call.task_id and \
                    tracked.variables.get(VAR_TASK_ID) == call.task_id:
                return tracked.channel
        return None

    async def _action(self, name: str, **headers: Any) -> Any:
        for attempt in range(REDIRECT_RETRIES + 1):
            try:
                return await self.backend.ami.action(name, **headers)
            except AmiError as exc:
                # A Redirect right after another Redirect of the same channel (into the
                # room, then to hold) finds the first one's async goto still pending:
                # Asterisk's `ast_check_hangup` counts that soft-hangup flag and answers
                # "Redirect failed, channel not up." until the channel has moved (seen
                # against the live Asterisk 20.20.1). The channel is alive: ask again.
                if name == "Redirect" and "not up" in str(exc) \
                        and attempt < REDIRECT_RETRIES:
                    await asyncio.sleep(REDIRECT_RETRY_SECONDS)
                    continue
                raise CallControlError("invalid_state",
                                       f"Asterisk refused {name}: {exc}") from None
        raise AssertionError("unreachable")

    def _endpoint(self, target: Target) -> str:
        if target.kind == "agent":
            assert target.phone is not None
            return self.backend.agent_endpoint(target.phone)
        # a Local channel into the dialplan, which knows the trunk (${CENTRALE_TRUNK})
        return f"Local/{target.value}@{OUTBOUND_CONTEXT}"

    async def _to_room(self, call: ControlledCall, session: AstSession) -> None:
        """Customer and agent into the call's ConfBridge room (once)."""
        if session.in_room:
            return
        customer = self._customer(call)
        headers: dict[str, Any] = {"Channel": customer.channel, "Context": CONTROL_CONTEXT,
                                   "Exten": EXTEN_CONF, "Priority": "1"}
        if session.agent_channel:
            await self._action("Setvar", Channel=session.agent_channel, Variable=VAR_CALL_ID,
                               Value=call.call_id)
            headers.update(ExtraChannel=session.agent_channel, ExtraContext=CONTROL_CONTEXT,
                           ExtraExten=EXTEN_CONF, ExtraPriority="1")
        moved = [customer.channel] + ([session.agent_channel] if session.agent_channel else [])
        for channel in moved:
            self.rooms.leaving(channel)
        await self._action("Redirect", **headers)
        session.in_room = True
        await self._wait_joined(call, moved)

    async def _customer_to(self, call: ControlledCall, exten: str) -> None:
        channel = self._customer(call).channel
        self.rooms.leaving(channel)
        await self._action("Redirect", Channel=channel,
                           Context=CONTROL_CONTEXT, Exten=exten, Priority="1")
        if exten == EXTEN_CONF:
            await self._wait_joined(call, [channel])

    async def _wait_joined(self, call: ControlledCall, channels: list[str]) -> None:
        """The next Redirect of these channels only once they are in the room (see
        pbx_bridge/asterisk/rooms.py for the race this closes)."""
        if not await self.rooms.joined(channels, call.call_id, self.join_timeout):
            log.warning("call %s: no ConfbridgeJoin from Asterisk for %s within %.1f s",
                        call.call_id, ", ".join(channels), self.join_timeout)

    async def _hold(self, call: ControlledCall, session: AstSession, music_class: str) -> None:
        await self._to_room(call, session)
        await self._action("Setvar", Channel=self._customer(call).channel, Variable=VAR_MOH,
                           Value=music_class)
        await self._customer_to(call, EXTEN_HOLD)
        session.held = True
        if self.recorder is not None:  # hold is silence in the recording
            await self.recorder.held(call.call_id, True)
        if session.hold_started is None:
            session.hold_started = time.monotonic()

    async def _unhold(self, call: ControlledCall, session: AstSession) -> float:
        await self._customer_to(call, EXTEN_CONF)
        if self.recorder is not None:
            await self.recorder.held(call.call_id, False)
        this_hold = time.monotonic() - session.hold_started if session.hold_started else 0.0
        session.hold_total += this_hold
        session.hold_started = None
        session.held = False
        return this_hold

    async def _originate_into_room(self, call: ControlledCall, target: Target,
                                   role: str) -> str:
        from pbx_bridge.asterisk.backend import _ring_result
        from pbx_bridge.asterisk.ports import RingOutcome

        reply = await self._action(
            "Originate", reply_timeout=RING_SECONDS + 15, Channel=self._endpoint(target),
            Context=CONTROL_CONTEXT, Exten=EXTEN_CONF, Priority="1",
            Timeout=str(RING_SECONDS * 1000), CallerID=f'"Centrale" <{call.call_id[:20]}>',
            Async="true", Variable=[f"{VAR_CALL_ID}={call.call_id}", f"{VAR_ROLE}={role}"])
        result = _ring_result(reply)
        if result.outcome is not RingOutcome.ANSWERED or not result.agent_channel:
            raise CallControlError("target_unavailable",
                                   f"{target.describe()} did not answer ({result.reason})",
                                   target=target.value)
        return result.agent_channel

    # -- CallControlBackend -------------------------------------------
    def view(self, call: ControlledCall) -> CallView:
        session = self.sessions.get(call.call_id, AstSession())
        parties = [{"party": "customer"}, {"party": "agent", "who": call.active.agent_id
                                            if call.active is not None else call.agent_id}]
        monitors = []
        for channel, (_, target, role) in session.extras.items():
            row = {"party": channel, "who": target.describe(), "role": role}
            if role.startswith("monitor"):
                # the same shape as the embedded core's view (the wallboard reads it)
                row["role"], _, row["mode"] = role.partition(":")
                monitors.append(row)
            else:
                parties.append(row)
        state = "held" if session.held and session.state == "talking" else session.state
        # The live call's owner and task (a transfer may have changed them since `call`
        # was looked up: a completed consult returns bram's view, not anna's).
        active = call.active
        agent_id = active.agent_id if active is not None else call.agent_id
        task_id = active.task_id if active is not None else call.task_id
        return CallView(call.call_id, task_id, call.case_id, agent_id, "asterisk",
                        state, held=session.held, hold_seconds=session.hold_seconds(),
                        muted=session.muted, parties=parties, monitors=monitors)

    async def hold(self, call: ControlledCall, music_class: str) -> None:
        await self._hold(call, self._session(call), music_class)

    async def resume(self, call: ControlledCall) -> float:
        return await self._unhold(call, self._session(call))

    async def mute(self, call: ControlledCall, muted: bool) -> None:
        session = self._session(call)
        if not session.agent_channel:
            raise CallControlError("invalid_state", "the agent's channel is not known")
        await self._to_room(call, session)
        await self._action("ConfbridgeMute" if muted else "ConfbridgeUnmute",
                           Conference=call.call_id, Channel=session.agent_channel)
        session.muted = muted

    async def hangup(self, call: ControlledCall) -> None:
        session = self._session(call)
        channel = session.agent_channel or self._customer(call).channel
        await self._action("Hangup", Channel=channel, Cause="16")

    async def send_dtmf(self, call: ControlledCall, digits: str) -> None:
        channel = self._customer(call).channel
        for digit in digits:
            await self._action("PlayDTMF", Channel=channel, Digit=digit, Duration="100")

    async def blind_transfer(self, call: ControlledCall, target: Target,
                             music_class: str) -> str:
        session = self._session(call)
        customer = self._customer(call)
        await self._action("Setvar", Channel=customer.channel, Variable=VAR_MOH,
                           Value=music_class)
        if target.kind == "queue" or (target.kind == "agent" and self.acd is not None
                                      and call.task_id and call.agent_id):
            # To a queue, or to an agent by name through the ACD (a task of their
            # own; not taken → back to the giver → the queue): the caller waits in
            # the holding context with music, and the offer rings like any other.
            if self.acd is None or not call.task_id or not call.agent_id:
                raise CallControlError("invalid_state", "this call has no task to transfer")
            if target.kind == "agent":
                await self.acd.transfer_to_agent(call.task_id, target.value,
                                                 by=call.agent_id, reason=call.note)
            else:
                await self.acd.transfer(call.task_id, call.agent_id, target.value,
                                        reason=call.note)
            if call.active is not None:
                call.active.agent_id = None
            await self._action("Setvar", Channel=customer.channel, Variable=VAR_STATE,
                               Value=STATE_WAITING)
            self.backend.registry.set_variable(customer.uniqueid, VAR_STATE, STATE_WAITING)
            await self._action("Redirect", Channel=customer.channel,
                               Context=self.backend.settings.holding_context, Exten="s",
                               Priority="1")
            outcome = "queued"
        else:
            await self._action("Setvar", Channel=customer.channel, Variable=VAR_TARGET,
                               Value=self._endpoint(target))
            if call.agent_id:
                agent = next((a for a in self.agents() if a.id == call.agent_id), None)
                if agent is not None and agent.sip is not None:
                    await self._action("Setvar", Channel=customer.channel, Variable=VAR_RETURN,
                                       Value=self.backend.agent_endpoint(agent.sip.username))
            await self._customer_to(call, EXTEN_BLIND)
            outcome = "ringing"
            # The agent's part is over (their leg leaves now): wrap-up for them. Who
            # answers is the dialplan's business, so the call is nobody's here after.
            await self._hand_over(call, None, target)
        if session.in_room and session.agent_channel:
            await self._action("Hangup", Channel=session.agent_channel, Cause="16")
        session.state = "transferring"
        return outcome

    async def consult(self, call: ControlledCall, target: Target, music_class: str) -> str:
        session = self._session(call)
        await self._hold(call, session, music_class)
        session.state = "consulting"
        try:
            channel = await self._originate_into_room(
                call, target, "agent" if target.kind == "agent" else "consult")
        except CallControlError:
            await self._unhold(call, session)
            session.state = "talking"
            raise
        session.extras[channel] = (channel, target, "consult")
        return "connected"

    def _consult(self, session: AstSession) -> tuple[str, Target]:
        for channel, (_, target, role) in session.extras.items():
            if role == "consult":
                return channel, target
        raise CallControlError("invalid_state", "there is no consult on this call")

    async def complete_consult(self, call: ControlledCall) -> Target:
        session = self._session(call)
        channel, target = self._consult(session)
        await self._unhold(call, session)
        if session.agent_channel:
            await self._action("Hangup", Channel=session.agent_channel, Cause="16")
        session.extras.pop(channel)
        session.agent_channel = channel
        session.state = "talking"
        await self._hand_over(call, target.value if target.kind == "agent" else None, target)
        return target

    async def _hand_over(self, call: ControlledCall, agent_id: str | None,
                         target: Target) -> None:
        """As on the embedded core (`control.hand_task_over`): the task follows the
        call to the target agent, or the giver's part is completed (a number)."""
        active = call.active
        if active is None or active.agent_id == agent_id:
            return
        old = active.agent_id
        active.agent_id = agent_id
        if self.recorder is not None:
            self.recorder.agent_changed(call.call_id, agent_id)
        await hand_task_over(self.acd, active, old, agent_id, target, call.note)

    async def cancel_consult(self, call: ControlledCall) -> None:
        session = self._session(call)
        channel, _ = self._consult(session)
        await self._action("Hangup", Channel=channel, Cause="16")
        session.extras.pop(channel)
        await self._unhold(call, session)
        session.state = "talking"

    async def conference(self, call: ControlledCall, target: Target | None) -> str:
        session = self._session(call)
        if target is None:
            channel, consulted = self._consult(session)
            session.extras[channel] = (channel, consulted, "conference")
            await self._unhold(call, session)
        else:
            await self._to_room(call, session)
            channel = await self._originate_into_room(
                call, target, "agent" if target.kind == "agent" else "conference")
            session.extras[channel] = (channel, target, "conference")
        session.state = "conference"
        return "connected"

    async def monitor(self, call: ControlledCall, mode: MonitorMode, phone: str) -> str:
        from pbx_bridge.asterisk.backend import _ring_result
        from pbx_bridge.asterisk.ports import RingOutcome

        session = self._session(call)
        if not session.agent_channel:
            raise CallControlError("invalid_state", "the agent's channel is not known")
        reply = await self._action(
            "Originate", reply_timeout=RING_SECONDS + 15,
            Channel=self.backend.agent_endpoint(phone), Application="ChanSpy",
            Data=f"{session.agent_channel},{CHANSPY_OPTIONS[mode]}",
            Timeout=str(RING_SECONDS * 1000), CallerID='"Monitor" <monitor>', Async="true",
            Variable=[f"{VAR_CALL_ID}={call.call_id}", f"{VAR_ROLE}=monitor"])
        result = _ring_result(reply)
        if result.outcome is not RingOutcome.ANSWERED or not result.agent_channel:
            raise CallControlError("target_unavailable",
                                   f"the supervisor's phone {phone} did not answer "
                                   f"({result.reason})", target=phone)
        session.extras[result.agent_channel] = (
            result.agent_channel, Target("agent", phone, phone, f"supervisor phone {phone}"),
            f"monitor:{mode}")
        return "connected"
