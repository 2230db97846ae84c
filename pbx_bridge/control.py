"""Call control: hold, mute, hang-up, DTMF, transfers, conference and monitoring.

`CallControl` is the one interface the web desktop and the REST API use; nothing
above it knows which voice backend holds the call. `CallControlService` implements it
once for both backends: it finds the call, checks who may act on it, checks the
target, asks the backend (`CallControlBackend`: `sip.control.SipCallControl`, later
`asterisk.control`) to do the media work, and then writes what happened on the case
timeline and publishes it on the bus (topic `call.<operation>`), so the desktop, the
wallboard and other nodes see it. Monitoring is also written to the audit log
(logger `centrale.audit`).

Errors carry a `code` the web layer turns into an HTTP status without importing this
module: unknown_call (404), call_ended (409), not_your_call (403), unknown_target
(422), invalid_state (409), not_supported (501), owner_unavailable (503).

Several nodes: a call's media lives on one node (the embedded core's RTP, or the
node whose AMI client runs the Asterisk call), but a desktop's requests may reach any
node. Each node announces the calls it connects (`voice.call_located`, and
`voice.call_released` when they end) and keeps where the others' are; an operation
on a call held elsewhere is forwarded to that node over the bus's request/reply
(`EventBus.request`, service `call_control`), run there with the same checks, and its
answer — the call's view or the refusal — returned as if local. A node that does not
take the request within a few seconds gives `owner_unavailable`; nothing changed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cases import CaseService
from cases.identities import normalise_phone
from config.schema import CentraleConfig
from core.bus import EventBus
from core.events import Event

log = logging.getLogger(__name__)
audit = logging.getLogger("centrale.audit")

MonitorMode = Literal["listen", "whisper", "barge"]
TargetKind = Literal["agent", "queue", "number"]


class CallControlError(Exception):
    """A refused operation; `code` says why (see the module docstring)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class Actor(Protocol):
    """Who asks: a user of the desktop or the API (web's user satisfies it), or a
    desk phone's agent (`PhoneActor`)."""

    username: str
    role: str  # "agent" | "supervisor" | "admin" | "phone"
    agent_id: str | None


@dataclass(frozen=True)
class PhoneActor:
    username: str
    agent_id: str | None
    role: str = "phone"


def supervises(actor: Actor) -> bool:
    return actor.role in ("supervisor", "admin")


@dataclass(frozen=True)
class Target:
    """Where a transfer, consult or conference goes. Resolved: an agent's phone user
    name, a queue id, or an E.164 number with the trunk that reaches it."""

    kind: TargetKind
    value: str
    phone: str | None = None  # agent: their SIP username; number: the E.164 number
    label: str = ""

    def describe(self) -> str:
        return self.label or f"{self.kind} {self.value}"


@dataclass
class CallView:
    """A call as call control sees it (returned by every operation)."""

    call_id: str
    task_id: str | None
    case_id: str
    agent_id: str | None
    backend: str
    state: str  # "talking" | "held" | "consulting" | "conference" | "transferring"
    held: bool = False
    hold_seconds: float = 0.0  # total so far, the running hold included
    muted: bool = False
    parties: list[dict[str, Any]] = field(default_factory=list)
    monitors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "task_id": self.task_id, "case_id": self.case_id,
                "agent_id": self.agent_id, "backend": self.backend, "state": self.state,
                "held": self.held, "hold_seconds": round(self.hold_seconds, 1),
                "muted": self.muted, "parties": self.parties, "monitors": self.monitors}


class CallControl(Protocol):
    """The operations the desktop and the API offer (`call_ref`: call id or task id)."""

    async def view(self, call_ref: str, actor: Actor) -> CallView: ...

    async def hold(self, call_ref: str, actor: Actor) -> CallView: ...

    async def resume(self, call_ref: str, actor: Actor) -> CallView: ...

    async def mute(self, call_ref: str, actor: Actor) -> CallView: ...

    async def unmute(self, call_ref: str, actor: Actor) -> CallView: ...

    async def hangup(self, call_ref: str, actor: Actor) -> CallView: ...

    async def send_dtmf(self, call_ref: str, digits: str, actor: Actor) -> CallView: ...

    async def blind_transfer(self, call_ref: str, kind: str, target: str, actor: Actor,
                             reason: str | None = None) -> CallView: ...

    async def consult(self, call_ref: str, kind: str, target: str, actor: Actor) -> CallView: ...

    async def complete_consult(self, call_ref: str, actor: Actor,
                               reason: str | None = None) -> CallView: ...

    async def cancel_consult(self, call_ref: str, actor: Actor) -> CallView: ...

    async def conference(self, call_ref: str, actor: Actor, kind: str | None = None,
                         target: str | None = None) -> CallView: ...

    async def monitor(self, call_ref: str, mode: str, actor: Actor, phone: str) -> CallView: ...


@dataclass
class ControlledCall:
    """What the service knows of a live call (from the voice service's ActiveCall)."""

    call_id: str
    task_id: str | None
    case_id: str
    agent_id: str | None
    backend: str
    queue_id: str | None
    active: Any  # pbx_bridge.voice.ActiveCall
    note: str | None = None  # a transfer's reason, for the receiving agent's screen-pop


class CallControlBackend(Protocol):
    """The media side of call control, one per voice backend."""

    def alive(self, active: Any) -> bool:
        """Is the call still up on this backend (its customer side)?"""

    def view(self, call: ControlledCall) -> CallView: ...

    async def hold(self, call: ControlledCall, music_class: str) -> None: ...

    async def resume(self, call: ControlledCall) -> float:
        """Returns how long this hold lasted (seconds)."""

    async def mute(self, call: ControlledCall, muted: bool) -> None: ...

    async def hangup(self, call: ControlledCall) -> None: ...

    async def send_dtmf(self, call: ControlledCall, digits: str) -> None: ...

    async def blind_transfer(self, call: ControlledCall, target: Target,
                             music_class: str) -> str:
        """Starts the hand-over; returns at once with what happens next ("ringing",
        "queued"); the outcome is reported through the service's `report`."""

    async def consult(self, call: ControlledCall, target: Target, music_class: str) -> str: ...

    async def complete_consult(self, call: ControlledCall) -> Target: ...

    async def cancel_consult(self, call: ControlledCall) -> None: ...

    async def conference(self, call: ControlledCall, target: Target | None) -> str: ...

    async def monitor(self, call: ControlledCall, mode: MonitorMode, phone: str) -> str: ...


async def hand_task_over(acd: Any, active: Any, old: str | None, new_agent: str | None,
                         target: Target, note: str | None) -> None:
    """The call changed hands after the target answered (consult completed, the owner
    left a conference, a blind transfer the dialplan connected): the ACD task follows.
    To another agent → `transfer_to_agent(answered=True)`: their task now (busy, their
    wrap-up, their handle time; their screen-pop shows the case and who transferred
    it); the call keeps its task id. Out of the centre (a number), or an agent the ACD
    cannot give it to (not logged in, full) → the giver's part is completed (wrap-up,
    notes say to whom) and the call has no task any more. Used by both backends."""
    task_id = active.task_id
    if not old or not task_id or acd is None:
        return
    if new_agent is not None:
        try:
            await acd.transfer_to_agent(task_id, new_agent, by=old, reason=note,
                                        answered=True)
            return
        except Exception as exc:  # AcdError: not logged in, full, …
            log.info("task %s cannot follow the call to %s: %s", task_id, new_agent, exc)
    active.task_id = None
    try:
        await acd.complete(task_id, old, notes=f"transferred to {target.describe()}"[:4000])
    except Exception as exc:
        log.info("completing task %s after a transfer: %s", task_id, exc)


Reporter = Callable[[ControlledCall, str, str, dict[str, Any]], Awaitable[None]]

OPERATION_WORDS = {
    "hold": "put the caller on hold", "resume": "took the caller off hold",
    "mute": "muted the microphone", "unmute": "unmuted the microphone",
    "hangup": "hung up", "dtmf": "sent DTMF",
}


@dataclass(frozen=True)
class RemoteActor:
    """The actor of an operation forwarded from another node (checked there by the web
    layer's roles, and here again against the call)."""

    username: str
    role: str
    agent_id: str | None


# operation name -> its arguments after call_ref (actor travels separately)
FORWARDED: dict[str, tuple[str, ...]] = {
    "view": (), "hold": (), "resume": (), "mute": (), "unmute": (), "hangup": (),
    "send_dtmf": ("digits",), "blind_transfer": ("kind", "target", "reason"),
    "consult": ("kind", "target"), "complete_consult": ("reason",),
    "cancel_consult": (), "conference": ("kind", "target"),
    "monitor": ("mode", "phone"),
}
SERVICE = "call_control"


class CallControlService:
    """`CallControl` for every voice backend of this node (and, forwarded, for the
    calls other nodes hold)."""

    def __init__(self, *, voice: Any, cases: CaseService, bus: EventBus,
                 backends: dict[str, CallControlBackend], ended_memory: int = 10_000,
                 node_id: str | None = None, ack_timeout: float = 3.0) -> None:
        self.voice = voice  # pbx_bridge.voice.VoiceService: the node's live calls
        self.cases = cases
        self.bus = bus
        self.backends = backends
        self.ended: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._ended_memory = ended_memory
        self.node_id = node_id
        self.ack_timeout = ack_timeout
        # call id / task id -> the node holding that call (from other nodes' events)
        self.elsewhere: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._announced: set[str] = set()  # calls other nodes were told are here

    # -- several nodes ------------------------------------------------
    async def start(self) -> None:
        """Serve the operations other nodes forward, and follow where calls are."""
        if self.node_id is None:
            return
        try:
            self._subs.append(await self.bus.serve(SERVICE, self._serve_forwarded))
        except NotImplementedError:
            return
        self._subs.append(await self.bus.subscribe("voice.*", self._on_location))

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.close()
        self._subs.clear()

    def _announce(self, topic: str, call_id: str, task_id: str | None) -> None:
        """Only when other nodes share the bus (a single node has nobody to tell: no
        extra events on its calls' path); a release only for a call announced."""
        if self.node_id is None or not getattr(self.bus, "shared", False):
            return
        if topic == "voice.call_located":
            self._announced.add(call_id)
        elif call_id in self._announced:
            self._announced.discard(call_id)
        else:
            return
        task = asyncio.ensure_future(self.bus.publish(Event(topic=topic, payload={
            "call_id": call_id, "task_id": task_id, "node_id": self.node_id})))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def call_connected(self, active: Any) -> None:
        """The voice service connected a call to an agent here: other nodes learn it
        is ours (their desktops' operations on it are forwarded here)."""
        self._announce("voice.call_located", active.call_id, active.task_id)

    async def _on_location(self, event: Event) -> None:
        p = event.payload
        node = p.get("node_id")
        if not node or node == self.node_id:
            return
        refs = [r for r in (p.get("call_id"), p.get("task_id")) if r]
        if event.topic == "voice.call_located":
            for ref in refs:
                self.elsewhere[str(ref)] = str(node)
                self.elsewhere.move_to_end(str(ref))
            while len(self.elsewhere) > self._ended_memory:
                self.elsewhere.popitem(last=False)
        elif event.topic == "voice.call_released":
            for ref in refs:
                self.elsewhere.pop(str(ref), None)
                self._remember_ended(str(ref), str(p.get("call_id")))

    def _owner_elsewhere(self, call_ref: str) -> str | None:
        """The other node holding `call_ref`, when it is not a call of this node."""
        if call_ref in self.voice.calls_by_id or call_ref in self.voice.calls_by_task:
            return None
        return self.elsewhere.get(call_ref)

    async def _forward(self, node: str, operation: str, call_ref: str, actor: Actor,
                       args: dict[str, Any]) -> CallView:
        reply = await self.bus.request(node, SERVICE, {
            "operation": operation, "call_ref": call_ref, "args": args,
            "actor": {"username": actor.username, "role": actor.role,
                      "agent_id": actor.agent_id}}, ack_timeout=self.ack_timeout)
        if reply is None:
            raise CallControlError("owner_unavailable",
                                   f"node {node} holds call {call_ref} and did not answer; "
                                   "nothing was changed", node=node)
        if "error" in reply:
            raise CallControlError(str(reply["error"]), str(reply.get("message", "")),
                                   **dict(reply.get("details") or {}))
        return CallView(**reply["view"])

    async def _serve_forwarded(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Another node's desktop asked for an operation on a call of ours."""
        try:
            operation = str(payload["operation"])
            names = FORWARDED[operation]
            raw = dict(payload.get("actor") or {})
            actor = RemoteActor(str(raw["username"]), str(raw["role"]),
                                raw.get("agent_id"))
            args = dict(payload.get("args") or {})
            call_ref = str(payload["call_ref"])
        except (KeyError, TypeError, ValueError):
            return {"error": "invalid_argument", "message": "malformed forwarded request"}
        if call_ref not in self.voice.calls_by_id and \
                call_ref not in self.voice.calls_by_task and call_ref not in self.ended:
            return {"error": "unknown_call", "message": f"no live call {call_ref}"}
        try:
            view = await getattr(self, operation)(
                call_ref, actor=actor, **{n: args.get(n) for n in names})
        except CallControlError as exc:
            return {"error": exc.code, "message": str(exc), "details": exc.details}
        return {"view": view.as_dict()}

    @property
    def config(self) -> CentraleConfig:
        return self.voice.config

    # -- finding the call ---------------------------------------------
    def call_gone(self, call_id: str, task_id: str | None) -> None:
        """The voice service forgot a call: later operations on it are 409, not 404
        (here and, through `voice.call_released`, on the other nodes)."""
        for ref in (call_id, task_id):
            if ref:
                self._remember_ended(ref, call_id)
        self._announce("voice.call_released", call_id, task_id)

    def _remember_ended(self, ref: str, call_id: str) -> None:
        self.ended[ref] = call_id
        while len(self.ended) > self._ended_memory:
            self.ended.popitem(last=False)

    def _find(self, call_ref: str, actor: Actor, *, monitoring: bool = False
              ) -> ControlledCall:
        active = self.voice.calls_by_id.get(call_ref) or self.voice.calls_by_task.get(call_ref)
        if active is None:
            if call_ref in self.ended:
                raise CallControlError("call_ended", f"call {call_ref} has ended")
            raise CallControlError("unknown_call", f"no live call {call_ref} on this node")
        backend = self.backends.get(active.backend)
        if backend is None:
            raise CallControlError("not_supported",
                                   f"call control is not available on {active.backend}")
        if not backend.alive(active):
            raise CallControlError("call_ended", f"call {call_ref} has ended")
        if active.connected_at is None:
            raise CallControlError("invalid_state",
                                   f"call {call_ref} is not connected to an agent yet")
        if monitoring:
            if not supervises(actor):
                raise CallControlError("not_your_call",
                                       "only supervisors and admins may monitor calls")
        elif not supervises(actor) and actor.agent_id != active.agent_id:
            raise CallControlError("not_your_call", f"call {call_ref} is not yours")
        queue_id = None
        if active.task_id:
            try:
                queue_id = self.voice.acd.task(active.task_id).queue_id
            except Exception:
                queue_id = None
        return ControlledCall(active.call_id, active.task_id, active.case_id,
                              active.agent_id, active.backend, queue_id, active)

    def _backend(self, call: ControlledCall) -> CallControlBackend:
        return self.backends[call.backend]

    def _music(self, call: ControlledCall) -> str:
        if call.queue_id:
            try:
                return self.config.queue(call.queue_id).music_on_hold
            except Exception:
                return "default"
        return "default"

    def resolve_target(self, kind: str, value: str) -> Target:
        """An agent (with a phone), a queue, or a number a trunk can reach; else 422."""
        value = (value or "").strip()
        if kind == "agent":
            agent = next((a for a in self.config.agents if a.id == value), None)
            phone = agent.phone_address() if agent is not None else None
            if agent is None or phone is None:
                raise CallControlError("unknown_target", f"unknown agent {value!r}"
                                       if agent is None else f"agent {value!r} has no phone",
                                       target=value)
            return Target("agent", agent.id, phone, f"agent {agent.id}")
        if kind == "queue":
            if value not in {q.id for q in self.config.queues}:
                raise CallControlError("unknown_target", f"unknown queue {value!r}",
                                       target=value)
            return Target("queue", value, None, f"queue {value}")
        if kind == "number":
            try:
                e164 = normalise_phone(value, self.config.server.default_region)
            except Exception:
                raise CallControlError("unknown_target", f"not a phone number: {value!r}",
                                       target=value) from None
            if not self._number_reachable():
                raise CallControlError("unknown_target",
                                       f"no trunk can reach {value!r}", target=value)
            return Target("number", e164, e164, e164)
        raise CallControlError("unknown_target", f"unknown kind of target {kind!r}",
                               target=value)

    def _number_reachable(self) -> bool:
        sip = self.config.server.sip
        if sip.enabled and any(t.outbound_host for t in sip.trunks):
            return True
        return bool(self.config.server.asterisk.enabled)

    # -- bookkeeping --------------------------------------------------
    async def report(self, call: ControlledCall, operation: str, body: str,
                     meta: dict[str, Any]) -> None:
        """Timeline entry + bus event for one operation (or one of its outcomes)."""
        payload = {"call_id": call.call_id, "task_id": call.task_id, "case_id": call.case_id,
                   "agent_id": call.agent_id, "operation": operation, **meta}
        try:
            await self.cases.add_timeline(call.case_id, kind="call_control", channel="voice",
                                          direction="internal", body=body,
                                          meta={"event": operation, **payload})
        except Exception:
            log.exception("timeline entry for %s on %s failed", operation, call.call_id)
        await self.bus.publish(Event(topic=f"call.{operation}", payload=payload))

    async def _done(self, call: ControlledCall, actor: Actor, operation: str, what: str,
                    **meta: Any) -> CallView:
        await self.report(call, operation, f"{actor.username} {what}",
                          {"actor": actor.username, "actor_role": actor.role, **meta})
        return self._backend(call).view(call)

    # -- CallControl --------------------------------------------------
    async def view(self, call_ref: str, actor: Actor) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "view", call_ref, actor, {})
        call = self._find(call_ref, actor, monitoring=supervises(actor))
        return self._backend(call).view(call)

    async def hold(self, call_ref: str, actor: Actor) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "hold", call_ref, actor, {})
        call = self._find(call_ref, actor)
        if self._backend(call).view(call).held:
            raise CallControlError("invalid_state", "the caller is on hold already")
        await self._backend(call).hold(call, self._music(call))
        return await self._done(call, actor, "hold", OPERATION_WORDS["hold"])

    async def resume(self, call_ref: str, actor: Actor) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "resume", call_ref, actor, {})
        call = self._find(call_ref, actor)
        if not self._backend(call).view(call).held:
            raise CallControlError("invalid_state", "the caller is not on hold")
        seconds = await self._backend(call).resume(call)
        # The running total goes with each resume, so the reports count every hold of
        # the call even when an event is replayed or arrives twice (it is a total).
        total = self._backend(call).view(call).hold_seconds
        return await self._done(call, actor, "resume",
                                f"{OPERATION_WORDS['resume']} after {seconds:.0f} s",
                                hold_seconds=round(seconds, 1),
                                hold_total_seconds=round(total, 1))

    async def mute(self, call_ref: str, actor: Actor) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "mute", call_ref, actor, {})
        call = self._find(call_ref, actor)
        await self._backend(call).mute(call, True)
        return await self._done(call, actor, "mute", OPERATION_WORDS["mute"])

    async def unmute(self, call_ref: str, actor: Actor) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "unmute", call_ref, actor, {})
        call = self._find(call_ref, actor)
        await self._backend(call).mute(call, False)
        return await self._done(call, actor, "unmute", OPERATION_WORDS["unmute"])

    async def hangup(self, call_ref: str, actor: Actor) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "hangup", call_ref, actor, {})
        call = self._find(call_ref, actor)
        view = self._backend(call).view(call)
        await self._backend(call).hangup(call)
        await self.report(call, "hangup", f"{actor.username} hung up",
                          {"actor": actor.username, "actor_role": actor.role})
        view.state = "ended"
        return view

    async def send_dtmf(self, call_ref: str, digits: str, actor: Actor) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "send_dtmf", call_ref, actor, {"digits": digits})
        digits = (digits or "").upper()
        if not digits or len(digits) > 32 or any(d not in "0123456789*#ABCD" for d in digits):
            raise CallControlError("invalid_argument", f"not DTMF digits: {digits!r}")
        call = self._find(call_ref, actor)
        await self._backend(call).send_dtmf(call, digits)
        return await self._done(call, actor, "dtmf", f"sent DTMF {digits}", digits=digits)

    async def blind_transfer(self, call_ref: str, kind: str, target: str, actor: Actor,
                             reason: str | None = None) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "blind_transfer", call_ref, actor,
                                       {"kind": kind, "target": target, "reason": reason})
        call = self._find(call_ref, actor)
        resolved = self.resolve_target(kind, target)
        self._not_busy(call)
        call.note = reason
        outcome = await self._backend(call).blind_transfer(call, resolved, self._music(call))
        note = f": {reason}" if reason else ""
        return await self._done(call, actor, "transfer",
                                f"transferred the call to {resolved.describe()}{note}",
                                mode="blind", target_kind=resolved.kind,
                                target=resolved.value, reason=reason, status=outcome)

    async def consult(self, call_ref: str, kind: str, target: str, actor: Actor) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "consult", call_ref, actor,
                                       {"kind": kind, "target": target})
        call = self._find(call_ref, actor)
        resolved = self.resolve_target(kind, target)
        if resolved.kind == "queue":
            raise CallControlError("unknown_target",
                                   "a consult goes to an agent or a number, not a queue",
                                   target=target)
        self._not_busy(call)
        outcome = await self._backend(call).consult(call, resolved, self._music(call))
        return await self._done(call, actor, "consult",
                                f"consults {resolved.describe()} (caller on hold)",
                                target_kind=resolved.kind, target=resolved.value,
                                status=outcome)

    async def consulted_from_phone(self, call_ref: str, actor: Actor,
                                   target: Target) -> CallView:
        """The agent's desk phone placed the consult itself (its own call to a
        colleague's extension through this node, joined to the caller by REFER with
        Replaces): recorded as the desktop's consult is, without ringing anyone."""
        call = self._find(call_ref, actor)
        return await self._done(call, actor, "consult",
                                f"consults {target.describe()} from the desk phone "
                                "(caller on hold)", target_kind=target.kind,
                                target=target.value, status="connected", via="phone")

    async def complete_consult(self, call_ref: str, actor: Actor,
                               reason: str | None = None) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "complete_consult", call_ref, actor,
                                       {"reason": reason})
        call = self._find(call_ref, actor)
        call.note = reason
        target = await self._backend(call).complete_consult(call)
        note = f": {reason}" if reason else ""
        return await self._done(call, actor, "transfer",
                                f"transferred the call to {target.describe()} after "
                                f"consulting{note}", mode="consultative",
                                target_kind=target.kind, target=target.value, reason=reason,
                                status="connected")

    async def cancel_consult(self, call_ref: str, actor: Actor) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "cancel_consult", call_ref, actor, {})
        call = self._find(call_ref, actor)
        await self._backend(call).cancel_consult(call)
        return await self._done(call, actor, "consult_cancelled",
                                "ended the consult and went back to the caller")

    async def conference(self, call_ref: str, actor: Actor, kind: str | None = None,
                         target: str | None = None) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "conference", call_ref, actor,
                                       {"kind": kind, "target": target})
        call = self._find(call_ref, actor)
        resolved = self.resolve_target(kind, target or "") if kind else None
        if resolved is not None and resolved.kind == "queue":
            raise CallControlError("unknown_target",
                                   "a conference adds an agent or a number, not a queue",
                                   target=target)
        outcome = await self._backend(call).conference(call, resolved)
        who = resolved.describe() if resolved else "the consulted party"
        return await self._done(call, actor, "conference",
                                f"started a conference with {who}",
                                target_kind=resolved.kind if resolved else None,
                                target=resolved.value if resolved else None, status=outcome)

    async def monitor(self, call_ref: str, mode: str, actor: Actor, phone: str) -> CallView:
        if (node := self._owner_elsewhere(call_ref)) is not None:
            return await self._forward(node, "monitor", call_ref, actor,
                                       {"mode": mode, "phone": phone})
        if mode not in ("listen", "whisper", "barge"):
            raise CallControlError("invalid_argument", f"unknown monitoring mode {mode!r}")
        call = self._find(call_ref, actor, monitoring=True)
        if not phone:
            raise CallControlError("unknown_target",
                                   "the supervisor has no phone to monitor with", target="")
        outcome = await self._backend(call).monitor(call, mode, phone)  # type: ignore[arg-type]
        audit.info("monitor mode=%s call=%s case=%s agent=%s by=%s phone=%s", mode,
                   call.call_id, call.case_id, call.agent_id, actor.username, phone)
        return await self._done(call, actor, "monitor",
                                f"started monitoring ({mode}) from phone {phone}", mode=mode,
                                phone=phone, status=outcome)

    def _not_busy(self, call: ControlledCall) -> None:
        state = self._backend(call).view(call).state
        if state in ("consulting", "transferring"):
            raise CallControlError("invalid_state", f"the call is {state} already")
