"""The voice path, whatever the backend: caller → customer and case → IVR → ACD →
the agent's phone rings → connected → hang-up → timeline.

Both backends hand an inbound call to `VoiceService`: the embedded SIP core keeps the
caller's leg for the whole call (the IVR's queue node waits on it with music), the
Asterisk backend parks a queued caller in its holding context and connects it from
there. The ACD does not know the difference: it offers a voice task, and this service
rings the offered agent through whichever backend holds the call.

Ringing is accepting: an answered phone accepts the offer; no answer within the queue's
`rona_seconds` lets the ACD's RONA timer take the offer back (agent not-ready "missed");
a busy, rejecting or unregistered phone declines the offer at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cases import CaseService, IdentityRef, InvalidIdentity
from cases.identities import normalise_phone
from cases.service import TimelineDraft
from config.schema import CentraleConfig
from core.bus import EventBus
from core.clock import Clock
from core.events import Event
from core.health import Unavailable
from core.ids import new_id
from ivr.call_leg import CallerHangup, CallLeg
from ivr.interpreter import Interpreter, Outcome
from ivr.ports import (
    CustomerContext,
    QueueOutcome,
    QueueOutcomeKind,
    QueueUnavailable,
    SurveyAnswer,
    VoiceTaskRequest,
)
from queues import AcdEngine, AcdError

log = logging.getLogger(__name__)


@dataclass
class ActiveCall:
    """A caller this node holds, from the IVR until hang-up."""

    call_id: str
    backend: str  # "sip" | "asterisk"
    leg: CallLeg
    case_id: str
    customer_id: str
    caller_number: str | None
    task_id: str | None = None
    agent_id: str | None = None
    agent_leg: Any = None  # SIP: the agent's answered leg, bridged by the inbound handler
    outcome: asyncio.Future[QueueOutcome] | None = None
    rings: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # offer_id -> ring
    stops: dict[str, asyncio.Event] = field(default_factory=dict)  # offer_id -> withdrawn
    connected_at: float | None = None
    # The customer context the IVR starts with, as identification found it (saves
    # re-reading the customer and the case before the first prompt).
    context: CustomerContext | None = None
    # The queue's survey flow when this caller is to be surveyed after the agent hangs
    # up (decided once, when the first agent is rung); None: hung up with the agent.
    survey_flow: str | None = None
    survey_checked: bool = False
    recording_declined: bool = False  # at the queue's consent prompt (issue #20)


@dataclass(frozen=True)
class SurveyContext:
    """What a survey answer is filed under: the contact that was surveyed."""

    case_id: str | None
    customer_id: str | None
    task_id: str | None
    queue_id: str | None
    agent_id: str | None


# A call that reaches a queue while the shared ACD state does not answer (a Redis
# restart) is queued as soon as it answers again, within this long.
ENQUEUE_RETRY_SECONDS = 30.0
ENQUEUE_RETRY_INTERVAL = 0.5


class AcdQueuePort:
    """The ACD as the IVR's `QueuePort`: voice tasks, position, wait, outcome."""

    def __init__(self, voice: VoiceService) -> None:
        self.voice = voice

    @property
    def acd(self) -> AcdEngine:
        return self.voice.acd

    async def enqueue(self, request: VoiceTaskRequest) -> str:
        call = self.voice.calls_by_id.get(request.call_id)
        if call is None or request.case_id is None or request.customer_id is None:
            raise QueueUnavailable("call not known to the voice service")
        # The IVR path on disk before the task can be offered: the screen-pop shows it.
        await self.voice.cases.timeline_settled(request.case_id)
        preferred = await self.voice.preferred_agent(request.case_id)
        call.recording_declined = call.recording_declined or request.recording_declined
        call.outcome = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + ENQUEUE_RETRY_SECONDS
        while True:
            # The offer can be published while enqueue runs: know the task before that.
            # A new id per attempt: an attempt Redis may have applied before it failed
            # must not make the next one a duplicate.
            task_id = new_id()
            call.task_id = task_id
            self.voice.calls_by_task[task_id] = call
            try:
                task = await self.acd.enqueue(
                    task_id=task_id,
                    queue_id=request.queue_id, channel="voice", case_id=request.case_id,
                    customer_id=request.customer_id, skills=dict(request.skills),
                    priority=request.priority, preferred_agent_id=preferred,
                    attributes={"call_id": request.call_id,
                                "caller": request.caller_number,
                                "language": request.language,
                                "ivr_path": list(request.ivr_path),
                                "backend": call.backend})
            except AcdError as exc:
                self.voice.calls_by_task.pop(task_id, None)
                call.task_id = None
                # The shared ACD state (Redis) is away for a moment: the caller stays on
                # the line and is queued when it is back, instead of being hung up on.
                if isinstance(exc, Unavailable) and loop.time() < give_up and \
                        request.call_id in self.voice.calls_by_id:
                    await asyncio.sleep(ENQUEUE_RETRY_INTERVAL)
                    continue
                raise QueueUnavailable(str(exc)) from exc
            break
        if task.status == "exited":
            self.voice.resolve_outcome(call, _exit_outcome(task.exit, task.exit_reason))
        return task.id

    async def position(self, task_id: str) -> int | None:
        try:
            return await self.acd.position(task_id)
        except AcdError:
            return None

    async def estimated_wait(self, task_id: str) -> float | None:
        try:
            return await self.acd.estimated_wait(task_id)
        except AcdError:
            return None

    async def abandon(self, task_id: str) -> None:
        with contextlib.suppress(AcdError):
            await self.acd.abandon(task_id)

    async def request_callback(self, task_id: str, number: str) -> None:
        await self.acd.request_callback(task_id, number)
        call = self.voice.calls_by_task.pop(task_id, None)
        if call is not None:
            call.task_id = None

    async def wait_outcome(self, task_id: str) -> QueueOutcome:
        call = self.voice.calls_by_task.get(task_id)
        if call is None or call.outcome is None:
            raise QueueUnavailable(f"task {task_id} is not waiting here")
        return await asyncio.shield(call.outcome)


class CaseTimelinePort:
    """The IVR's `TimelinePort` onto the case timeline (the screen-pop's IVR path).

    Steps are not committed one by one: they join the case service's group commits
    (cases.timeline_writer), and the voice service waits for them where they must be on
    disk — at queue entry (before the offer's screen-pop reads them) and when the call
    is over. A crash loses at most the unsettled steps of calls in progress."""

    def __init__(self, cases: CaseService) -> None:
        self.cases = cases

    async def record(self, case_id: str, kind: str, body: str,
                     metadata: Mapping[str, Any]) -> None:
        self.cases.append_timeline(case_id, kind=kind, channel="voice", direction="inbound",
                                   body=body, meta=dict(metadata))


class VoiceSurveyPort:
    """The IVR's `SurveyPort`: a `survey` entry on the case timeline when the question
    is asked and when it is answered, and `survey.answered` for `reports/` (the same
    event and payload as the survey after a conversation, channel `voice`)."""

    def __init__(self, voice: VoiceService) -> None:
        self.voice = voice

    async def asked(self, call_id: str, case_id: str | None, kind: str) -> None:
        if case_id is None:
            return
        await self.voice.cases.add_timeline(
            case_id, kind="survey", channel="voice", direction="outbound",
            body=f"Survey ({kind.upper()}) asked after the call",
            meta={"event": "asked", "call_id": call_id, "kind": kind},
            dedup_key=f"survey-asked:{call_id}")

    async def answered(self, answer: SurveyAnswer) -> None:
        ctx = self.voice.surveys.get(answer.call_id) or SurveyContext(
            answer.case_id, answer.customer_id, None, None, None)
        case_id = ctx.case_id or answer.case_id
        label = answer.kind.upper()
        text = "no answer" if answer.score is None else str(answer.score)
        if case_id is not None:
            await self.voice.cases.add_timeline(
                case_id, kind="survey", channel="voice", direction="inbound",
                body=f"Survey ({label}): {text}",
                meta={"event": "answered", "call_id": answer.call_id, "kind": answer.kind,
                      "score": answer.score, "tries": list(answer.tries),
                      "task_id": ctx.task_id, "agent_id": ctx.agent_id},
                dedup_key=f"survey:{answer.call_id}")
        await self.voice.bus.publish(Event("survey.answered", {
            "survey_id": f"call:{answer.call_id}", "kind": answer.kind,
            "score": answer.score, "case_id": case_id,
            "customer_id": ctx.customer_id or answer.customer_id,
            "task_id": ctx.task_id, "queue_id": ctx.queue_id, "agent_id": ctx.agent_id,
            "channel": "voice"}))


def _answered_transfer(payload: Mapping[str, Any]) -> bool:
    """An offer made for a transfer whose target is on the call already (a consult
    completed): call control accepts it itself (`AcdEngine.transfer_to_agent`)."""
    attributes = payload.get("attributes") or {}
    transfer = attributes.get("transfer") if isinstance(attributes, Mapping) else None
    return isinstance(transfer, Mapping) and bool(transfer.get("answered")) \
        and transfer.get("to_agent_id") == payload.get("agent_id")


def _exit_outcome(exit_: Mapping[str, Any] | None, reason: str | None) -> QueueOutcome:
    exit_ = exit_ or {}
    return QueueOutcome(QueueOutcomeKind.EXIT, flow_node=exit_.get("flow_node"),
                        voicemail=bool(exit_.get("voicemail")), reason=reason)


class VoiceService:
    def __init__(self, *, config: CentraleConfig, cases: CaseService, acd: AcdEngine,
                 bus: EventBus, clock: Clock, interpreter: Interpreter | None = None,
                 node_id: str | None = None) -> None:
        self.config = config
        self.node_id = node_id
        self.cases = cases
        self.acd = acd
        self.bus = bus
        self.clock = clock
        self.queue_port = AcdQueuePort(self)
        self.survey_port = VoiceSurveyPort(self)
        self.surveys: dict[str, SurveyContext] = {}  # call id -> the surveyed contact
        self.interpreter = interpreter or Interpreter(
            config, queues=self.queue_port, timeline=CaseTimelinePort(cases), clock=clock,
            surveys=self.survey_port)
        self.sip: Any = None  # pbx_bridge.sip.SipServer, set by the wiring
        self.asterisk: Any = None  # pbx_bridge.asterisk.AsteriskBackend
        self.sip_control: Any = None  # pbx_bridge.sip.control.SipCallControl
        self.browser_phone: Any = None  # pbx_bridge.webrtc.phone.BrowserPhone (with sip)
        self.call_control: Any = None  # pbx_bridge.control.CallControlService
        self.on_asterisk_connected: Any = None  # recording.CallRecordings.connected
        self.calls_by_id: dict[str, ActiveCall] = {}
        self.calls_by_task: dict[str, ActiveCall] = {}
        self._subscription: Any = None
        self._background: set[asyncio.Task[Any]] = set()
        self._declining: set[str] = set()  # offers a ring is rejecting by itself
        # agent id -> offers in a row whose phone could not be reached at all
        self._unreachable: dict[str, int] = {}
        self._routes: list[tuple[str, str | None, str]] = []
        self._routes_for: CentraleConfig | None = None  # the config _routes were made of

    # ---- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe("task.*", self.on_task_event)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def apply_config(self, config: CentraleConfig) -> None:
        self.config = config
        self.interpreter.config = config

    async def preferred_agent(self, case_id: str) -> str | None:
        """Sticky routing: the case's last agent (the queue decides for how long)."""
        return await self.cases.last_agent(case_id)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---- inbound calls ------------------------------------------------------------

    def flow_for(self, dialled: str) -> str | None:
        """The flow mapped to the dialled number; numbers compare as dialled or as E.164."""
        candidates = {dialled}
        with contextlib.suppress(InvalidIdentity):
            candidates.add(normalise_phone(dialled, self.config.server.default_region))
        for number, e164, flow in self._number_routes():
            if number in candidates or (e164 is not None and e164 in candidates):
                return flow
        return None

    def _number_routes(self) -> list[tuple[str, str | None, str]]:
        """The configured numbers with their E.164 form: parsed once per config load,
        not for every call (phone number parsing is the costly part of routing)."""
        config = self.config
        if self._routes_for is not config:
            routes = []
            for route in config.numbers:
                e164 = None
                with contextlib.suppress(InvalidIdentity):
                    e164 = normalise_phone(route.number, config.server.default_region)
                routes.append((route.number, e164, route.flow))
            self._routes, self._routes_for = routes, config
        return self._routes

    async def _identify(self, leg: CallLeg, backend: str) -> ActiveCall:
        caller = leg.caller
        ref: IdentityRef | None = None
        if not caller.withheld and caller.caller_id:
            try:
                normalise_phone(caller.caller_id, self.config.server.default_region)
                ref = IdentityRef("phone", caller.caller_id)
            except InvalidIdentity:
                # keep the URI's host: alice@example.org and alice@other.example are
                # two people (a backend that gives no host keeps the old key)
                host = caller.caller_host or backend
                ref = IdentityRef("sip", f"{caller.caller_id}@{host}")
        caller_number = None if caller.withheld else caller.caller_id
        # The caller's customer and case and the call-started entry in one transaction
        # (one commit instead of two, before the IVR can start).
        recorded = await self.cases.resolve_and_record(ref, TimelineDraft(
            kind="call", channel="voice", direction="inbound",
            body=f"Incoming call from {caller_number or 'a withheld number'} "
                 f"to {caller.dialled}",
            meta={"call_id": caller.call_id, "event": "started", "dialled": caller.dialled,
                  "caller": caller_number, "backend": backend}),
            display_name=caller.display_name)
        resolution = recorded.resolution
        call = ActiveCall(call_id=caller.call_id, backend=backend, leg=leg,
                          case_id=resolution.case.id, customer_id=resolution.customer.id,
                          caller_number=caller_number)
        call.context = self._context(call, resolution.customer,
                                     resolution.case.status == "open")
        self.calls_by_id[call.call_id] = call
        return call

    def _context(self, call: ActiveCall, customer: Any, case_open: bool) -> CustomerContext:
        return CustomerContext(customer_id=call.customer_id, case_id=call.case_id,
                               case_open=case_open, name=customer.display_name,
                               language=customer.language, tags=frozenset(customer.tags or []))

    async def _run_ivr(self, call: ActiveCall) -> Any:
        flow = self.flow_for(call.leg.caller.dialled)
        if flow is None:
            log.warning("no flow for dialled number %s", call.leg.caller.dialled)
            await self.cases.add_timeline(
                call.case_id, kind="call", channel="voice", direction="inbound",
                body=f"No flow for dialled number {call.leg.caller.dialled}; call rejected",
                meta={"call_id": call.call_id, "event": "no_flow"})
            await call.leg.hangup("no_route")
            return None
        context = call.context
        if context is None:
            customer = await self.cases.get_customer(call.customer_id)
            case = await self.cases.get_case(call.case_id)
            context = self._context(call, customer, case.status == "open")
        return await self.interpreter.run(call.leg, flow, context)

    async def handle_sip_call(self, leg: Any) -> None:
        """The SIP core's inbound handler: runs for the whole call."""
        call = await self._identify(leg, "sip")
        try:
            result = await self._run_ivr(call)
            if result is not None and result.outcome == Outcome.CONNECTED and \
                    call.agent_leg is not None:
                self._connected(call)
                if self.sip_control is not None:  # bridged with hold/transfer/conference
                    await self.sip_control.run_connected(call, call.agent_leg)
                else:
                    await self.sip.bridge(leg, call.agent_leg)
                await self._call_ended(call, "bridge ended")
                if call.survey_flow and not leg.caller_gone and not leg.ended:
                    # the agent hung up and call control kept the caller: survey them
                    await self.run_survey(call.leg, call.survey_flow, SurveyContext(
                        call.case_id, call.customer_id, call.task_id,
                        self._queue_of(call.task_id), call.agent_id), call.context)
        except CallerHangup:
            pass
        finally:
            await self._forget(call)

    # ---- the survey after a call ---------------------------------------------------

    def _queue_of(self, task_id: str | None) -> str | None:
        if not task_id:
            return None
        try:
            return self.acd.task(task_id).queue_id
        except Exception:
            return None

    async def survey_flow_for(self, call: ActiveCall) -> str | None:
        """The queue's survey flow if this caller is to be surveyed after the call:
        the queue names one, it exists, and the customer has no `survey` entry (asked
        or answered, any channel) within `reports.call_survey_period_days`."""
        if call.survey_checked:
            return call.survey_flow
        call.survey_checked = True
        queue_id = self._queue_of(call.task_id)
        if queue_id is None:
            return None
        try:
            flow = self.config.queue(queue_id).survey_flow
        except StopIteration:
            return None
        if flow is None or not any(f.id == flow for f in self.config.flows):
            return None
        since = self.clock.now() - timedelta(days=self.config.reports.call_survey_period_days)
        try:
            if await self.cases.has_entry_since(call.customer_id, "survey", since):
                return None
        except Exception:
            log.exception("survey period check failed for call %s", call.call_id)
            return None
        call.survey_flow = flow
        return flow

    async def handle_agi_survey(self, leg: CallLeg, variables: Mapping[str, str]) -> None:
        """The Asterisk backend's survey route: the agent hung up and the dialplan sent
        the caller here (Bridge option F). The call is over for the agent (the task
        completes now, not when the caller finishes the survey); then the queue's
        survey flow runs on the caller's channel."""
        call = self.calls_by_id.get(variables.get("CENTRALE_CALL_ID", ""))
        task_id = variables.get("CENTRALE_TASK_ID") or (call.task_id if call else None)
        agent_id = call.agent_id if call else None
        if agent_id is None and task_id:
            with contextlib.suppress(Exception):
                agent_id = self.acd.task(task_id).agent_id
        queue_id = variables.get("CENTRALE_QUEUE_ID") or self._queue_of(task_id)
        if call is not None:
            await self._call_ended(call, "agent hung up")
            await self._forget(call)
        flow = call.survey_flow if call is not None else None
        if flow is None and queue_id:
            with contextlib.suppress(StopIteration):
                flow = self.config.queue(queue_id).survey_flow
        if not flow or not any(f.id == flow for f in self.config.flows):
            await leg.hangup("no survey flow")
            return
        case_id = variables.get("CENTRALE_CASE_ID") or (call.case_id if call else None)
        customer_id = variables.get("CENTRALE_CUSTOMER_ID") or \
            (call.customer_id if call else None)
        await self.run_survey(leg, flow, SurveyContext(
            case_id, customer_id, task_id, queue_id, agent_id),
            call.context if call else None)

    async def run_survey(self, leg: CallLeg, flow: str, ctx: SurveyContext,
                         context: CustomerContext | None = None) -> None:
        """Run the survey flow on a caller whose agent has hung up (both backends)."""
        self.surveys[leg.caller.call_id] = ctx
        try:
            await self.interpreter.run(leg, flow, context or CustomerContext(
                customer_id=ctx.customer_id, case_id=ctx.case_id, case_open=True))
        finally:
            self.surveys.pop(leg.caller.call_id, None)

    async def handle_agi_call(self, leg: Any) -> None:
        """The Asterisk backend's inbound handler: IVR, then hand over to holding."""
        call = await self._identify(leg, "asterisk")
        keep = False
        try:
            result = await self._run_ivr(call)
            if result is not None and result.outcome == Outcome.HELD and result.task_id:
                task = self.acd.task(result.task_id)
                queue = self.config.queue(task.queue_id)
                # The caller's IVR language (for the hold announcements), and what a
                # restarted Centrale needs to queue the caller again, on the channel.
                await leg.send_to_holding(
                    task_id=result.task_id, music_class=queue.music_on_hold,
                    language=result.language,
                    variables={"CENTRALE_CASE_ID": call.case_id,
                               "CENTRALE_CUSTOMER_ID": call.customer_id,
                               "CENTRALE_QUEUE_ID": task.queue_id,
                               "CENTRALE_ENQUEUED_AT": task.enqueued_at.isoformat()})
                keep = True  # the call lives on in Asterisk's holding context
            elif result is not None and result.outcome == Outcome.CALLER_HANGUP:
                log.info("caller %s hung up in the IVR (%s)", call.call_id, result.node)
        except CallerHangup:
            log.info("caller %s hung up in the IVR", call.call_id)
        finally:
            if not keep:
                await self._forget(call)

    async def hold_announcement(self, task_id: str, language: str) -> list[str | int]:
        """Asterisk's holding loop asks what to say: position then estimated wait."""
        out: list[str | int] = []
        position = await self.queue_port.position(task_id)
        if position:
            out += ["queue/you_are_number", position, "queue/in_line"]
        wait = await self.queue_port.estimated_wait(task_id)
        if wait is not None:
            minutes = max(1, round(wait / 60))
            out += ["queue/wait_time_is", "queue/about", minutes,
                    "queue/minute" if minutes == 1 else "queue/minutes"]
        return out

    async def on_asterisk_event(self, event: Any) -> None:
        """Abandons, hang-ups and recovered calls reported by the Asterisk backend."""
        kind = type(event).__name__
        call = self.calls_by_id.get(getattr(event, "call_id", "") or "")
        if kind == "CallerAbandoned":
            task_id = getattr(event, "task_id", None) or (call.task_id if call else None)
            if task_id:
                await self._record_abandon(task_id, event)
                await self.queue_port.abandon(task_id)
            if call is not None:
                await self._forget(call)
        elif kind == "ChannelHungUp" and call is not None:
            if call.agent_id is not None:
                await self._call_ended(call, getattr(event, "cause", "hangup"),
                                       outage_seconds=getattr(event, "outage_seconds", 0.0)
                                       if getattr(event, "during_outage", False) else None)
            elif call.task_id is not None:
                await self._record_abandon(call.task_id, event)
                await self.queue_port.abandon(call.task_id)
            await self._forget(call)
        elif kind == "CallRecovered" and call is None:
            await self._recover_asterisk_call(event)

    async def _record_abandon(self, task_id: str, event: Any) -> None:
        """The caller hung up while Asterisk held them for an agent: say so on the
        case timeline (as the SIP core's IVR does), with the queue and the wait."""
        try:
            task = self.acd.task(task_id)
        except AcdError:
            return
        if task.status not in ("waiting", "offered"):
            return  # reported already (its hang-up came first), or not waiting
        waited = getattr(event, "waited_seconds", None)
        if waited is None:  # a plain hang-up event: the wait since the task was queued
            waited = (self.clock.now() - task.enqueued_at).total_seconds() - \
                float(getattr(event, "outage_seconds", 0.0) or 0.0)
        waited = max(0.0, float(waited))
        if getattr(event, "during_outage", False):
            body = (f"Caller lost in queue {task.queue_id} during an Asterisk outage "
                    f"(after {waited:.0f} s)")
        else:
            body = f"Caller hung up in queue {task.queue_id} after {waited:.0f} s"
        await self.cases.add_timeline(
            task.case_id, kind="call", channel="voice", direction="inbound", body=body,
            meta={"call_id": task.attributes.get("call_id"), "event": "abandoned",
                  "task_id": task.id, "queue_id": task.queue_id, "waited_seconds": waited,
                  "during_outage": bool(getattr(event, "during_outage", False))})

    async def _recover_asterisk_call(self, event: Any) -> None:
        """Centrale restarted while Asterisk held one of its callers (found by the AMI
        resync by its channel variables). A caller still waiting for an agent is queued
        again under the same task id and with the original queue time, so they keep
        their place and are connected when an agent is free. A task another node
        adopted is taken over through `task.adopted` instead."""
        if self.asterisk is None or event.state != "waiting" or not event.task_id:
            return
        with contextlib.suppress(AcdError):
            if self.acd.task(event.task_id).status in ("waiting", "offered", "assigned"):
                return  # the ACD still has it (another node, shared state)
        v = event.variables
        case_id, customer_id = v.get("CENTRALE_CASE_ID"), v.get("CENTRALE_CUSTOMER_ID")
        queue_id = v.get("CENTRALE_QUEUE_ID")
        if not (case_id and customer_id and queue_id):
            log.warning("recovered Asterisk call %s lacks its queue variables; "
                        "it cannot be queued again", event.call_id)
            return
        enqueued_at = None
        with contextlib.suppress(ValueError):
            enqueued_at = datetime.fromisoformat(v.get("CENTRALE_ENQUEUED_AT", ""))
        if enqueued_at is not None and enqueued_at > self.clock.now():
            enqueued_at = None
        tracked = self.asterisk.registry.by_call_id(event.call_id)
        caller_number = tracked.caller_id if tracked is not None else None
        call = ActiveCall(call_id=event.call_id, backend="asterisk",
                          leg=None,  # type: ignore[arg-type]  # its AGI session is gone
                          case_id=case_id, customer_id=customer_id,
                          caller_number=caller_number, task_id=event.task_id)
        self.calls_by_id[call.call_id] = call
        self.calls_by_task[event.task_id] = call
        try:
            await self.acd.enqueue(
                task_id=event.task_id, queue_id=queue_id, channel="voice", case_id=case_id,
                customer_id=customer_id, enqueued_at=enqueued_at,
                attributes={"call_id": call.call_id, "caller": caller_number,
                            "language": v.get("CENTRALE_LANGUAGE"), "backend": "asterisk",
                            "recovered": True})
        except AcdError as exc:
            log.error("recovered Asterisk call %s could not be queued again: %s",
                      call.call_id, exc)
            self.calls_by_id.pop(call.call_id, None)
            self.calls_by_task.pop(event.task_id, None)
            return
        log.info("queued recovered Asterisk call %s again (task %s in %s)",
                 call.call_id, event.task_id, queue_id)
        await self.cases.add_timeline(
            case_id, kind="call", channel="voice", direction="inbound",
            body=f"Call recovered after a Centrale restart; waiting in queue {queue_id} again",
            meta={"call_id": call.call_id, "event": "recovered", "task_id": event.task_id})

    async def _call_ended(self, call: ActiveCall, why: Any,
                          outage_seconds: float | None = None) -> None:
        """`outage_seconds` (not None) means the call was found gone after an Asterisk /
        AMI outage that long: it ended somewhere in it, so the talk time stops at the
        outage's start and the timeline says the call was closed after the outage."""
        talk = None
        if call.connected_at is not None:
            talk = self.clock.monotonic() - call.connected_at - (outage_seconds or 0.0)
            talk = round(max(0.0, talk), 1)
        body = f"Call with {call.agent_id} ended" + (f" after {talk:.0f} s" if talk else "")
        if outage_seconds is not None:
            body = (f"Call with {call.agent_id} closed after an Asterisk outage "
                    f"(talk time up to the outage: {talk or 0:.0f} s)")
        await self.cases.add_timeline(
            call.case_id, kind="call", channel="voice", direction="inbound", body=body,
            meta={"call_id": call.call_id, "event": "ended", "agent_id": call.agent_id,
                  "talk_seconds": talk, "cause": why, "task_id": call.task_id,
                  "during_outage": outage_seconds is not None,
                  "outage_seconds": outage_seconds})
        if call.task_id and call.agent_id:
            try:
                await self.acd.complete(call.task_id, call.agent_id)
            except AcdError as exc:
                log.info("completing task %s: %s", call.task_id, exc)

    def _stop_ringing(self, call: ActiveCall, offer_id: str) -> None:
        """SIP phones get CANCEL (the ring returns "cancelled"); an Asterisk ring is
        cancelled, which hangs up the originated agent channel."""
        stop = call.stops.pop(offer_id, None)
        ring = call.rings.pop(offer_id, None)
        if stop is not None:
            stop.set()
        elif ring is not None:
            ring.cancel()

    async def _forget(self, call: ActiveCall) -> None:
        # The call's IVR steps are on disk before the call counts as gone.
        with contextlib.suppress(Exception):
            await self.cases.timeline_settled(call.case_id)
        if self.call_control is not None:  # later operations on it: 409, not 404
            self.call_control.call_gone(call.call_id, call.task_id)
        for offer_id in list(call.rings):
            self._stop_ringing(call, offer_id)
        self.calls_by_id.pop(call.call_id, None)
        if call.task_id:
            self.calls_by_task.pop(call.task_id, None)
        if call.outcome is not None and not call.outcome.done():
            call.outcome.cancel()

    def resolve_outcome(self, call: ActiveCall, outcome: QueueOutcome) -> None:
        if call.outcome is not None and not call.outcome.done():
            call.outcome.set_result(outcome)

    # ---- ACD events ---------------------------------------------------------------

    async def on_task_event(self, event: Event) -> None:
        p = event.payload
        if p.get("channel") != "voice":
            return
        call = self.calls_by_task.get(p.get("task_id", ""))
        if call is None and event.topic == "task.adopted":
            call = self._adopted_asterisk_call(p)
        if event.topic == "task.offered" and call is not None:
            if _answered_transfer(p):
                return  # the target talks with the caller already: nothing to ring
            offer_id = p["offer_id"]
            call.rings[offer_id] = self._spawn(self._ring(call, offer_id, p["agent_id"]))
        elif event.topic in ("task.offer_withdrawn", "task.missed") and call is not None:
            self._stop_ringing(call, p.get("offer_id", ""))
        elif event.topic == "task.rejected" and call is not None \
                and p.get("offer_id") not in self._declining:
            # Rejected on the desktop: the desk phone stops ringing at once (SIP:
            # CANCEL; Asterisk: the originated agent channel is hung up). Not when the
            # ring itself declined (busy, failed): that ring is over already.
            self._stop_ringing(call, p.get("offer_id", ""))
        elif event.topic == "task.exited" and call is not None:
            self.resolve_outcome(call, _exit_outcome(p.get("exit"), p.get("reason")))
        elif event.topic == "task.accepted" and p.get("kind") == "callback" and \
                p.get("node_id") in (None, self.node_id):
            # Every node sees the event; the task's owner places the call, once.
            self._spawn(self._place_callback(p))
        elif event.topic == "task.adopted" and call is None and p.get("node_id") == self.node_id:
            self._spawn(self._end_call_lost_with_node(p))

    def _connected(self, call: ActiveCall) -> None:
        """The caller talks to an agent from now on: talk time counts, and call
        control tells the other nodes the call is here (their desktops' operations on
        it are forwarded to this node)."""
        call.connected_at = self.clock.monotonic()
        if self.call_control is not None:
            self.call_control.call_connected(call)

    def _adopted_asterisk_call(self, p: Mapping[str, Any]) -> ActiveCall | None:
        """A voice task this node owns whose FastAGI session ran on another node
        (adopted when that node died) or in this node's previous life: the caller is
        still on Asterisk — waiting in the holding context, or bridged with an agent —
        and every node's AMI client tracks the channel by its CENTRALE_CALL_ID. Take the
        call over from the task's attributes when it is adopted: offers ring the agent
        from here, and the hang-up ends the task (abandon while waiting, wrap-up after
        talking), as for a call of our own."""
        if self.asterisk is None or self.node_id is None or p.get("node_id") != self.node_id:
            return None
        try:
            task = self.acd.task(p["task_id"])
        except AcdError:
            return None
        call_id = task.attributes.get("call_id")
        if task.kind == "callback" or task.attributes.get("backend") != "asterisk" \
                or not call_id or call_id in self.calls_by_id \
                or task.status not in ("waiting", "offered", "assigned"):
            return None
        # No leg: the FastAGI session ended with its node; AMI is all the rest needs.
        call = ActiveCall(call_id=call_id, backend="asterisk", leg=None,  # type: ignore[arg-type]
                          case_id=task.case_id, customer_id=task.customer_id,
                          caller_number=task.attributes.get("caller"), task_id=task.id)
        if task.status == "assigned":
            call.agent_id = task.agent_id
            self._connected(call)  # talk time counts from here
        self.calls_by_id[call_id] = call
        self.calls_by_task[task.id] = call
        log.info("took over Asterisk call %s of task %s", call_id, task.id)
        return call

    async def _end_call_lost_with_node(self, p: Mapping[str, Any]) -> None:
        """This node adopted the voice task of a dead node (or of its own previous life).
        With the embedded SIP core the call's media ran through that process: the caller
        is gone, so end the task rather than offer a call nobody can connect (each offer
        would ring no phone and end in RONA). A caller Asterisk holds is not touched."""
        try:
            task = self.acd.task(p["task_id"])
        except AcdError:
            return
        if task.kind == "callback" or task.attributes.get("backend") != "sip":
            return
        lost = f"call lost: node {p.get('from_node')} stopped"
        await self.cases.add_timeline(
            task.case_id, kind="call", channel="voice", direction="inbound",
            body=lost.capitalize(), meta={"call_id": task.attributes.get("call_id"),
                                          "event": "lost", "task_id": task.id})
        with contextlib.suppress(AcdError):
            if task.status in ("waiting", "offered"):
                await self.acd.abandon(task.id)
            elif task.status == "assigned" and task.agent_id:
                await self.acd.complete(task.id, task.agent_id, notes=lost)

    async def _ring(self, call: ActiveCall, offer_id: str, agent_id: str) -> None:
        await self.survey_flow_for(call)  # decided before the agent's leg exists
        try:
            agent = self.config.agent(agent_id)
        except StopIteration:
            agent = None
        queue = self.config.queue(self.acd.task(call.task_id or "").queue_id) \
            if call.task_id else None
        timeout = queue.rona_seconds if queue else 20.0
        browser = agent is not None and call.backend == "sip" and self._rings_browser(agent)
        if agent is None or (agent.sip is None and not browser):
            await self._decline(offer_id, agent_id, "agent has no phone configured")
            return
        try:
            if browser:
                await self._ring_browser(call, offer_id, agent_id, timeout)
            elif call.backend == "sip":
                await self._ring_sip(call, offer_id, agent_id, agent.sip.username, timeout)
            else:
                await self._ring_asterisk(call, offer_id, agent_id, agent.sip.username, timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ringing agent %s for call %s failed", agent_id, call.call_id)
            await self._decline(offer_id, agent_id, "ringing failed")
        finally:
            call.rings.pop(offer_id, None)
            call.stops.pop(offer_id, None)

    async def _ring_sip(self, call: ActiveCall, offer_id: str, agent_id: str, username: str,
                        timeout: float) -> None:
        stop = call.stops.setdefault(offer_id, asyncio.Event())
        result = await self.sip.ring_agent(username, caller_id=call.caller_number,
                                           timeout=timeout, stop=stop)
        if result.answered:
            self._unreachable.pop(agent_id, None)
            if not await self._accept(call, offer_id, agent_id):
                await result.leg.hangup("offer_gone")
                return
            call.agent_leg = result.leg
            self.resolve_outcome(call, QueueOutcome(QueueOutcomeKind.CONNECTED,
                                                    agent_id=agent_id))
        elif result.status in ("unregistered", "failed"):
            await self._phone_unreachable(offer_id, agent_id, f"phone {result.status}")
        elif result.status in ("busy", "rejected"):
            await self._decline(offer_id, agent_id, f"phone {result.status}")
        # "timeout": the ACD's own RONA timer takes the offer back

    def _rings_browser(self, agent: Any) -> bool:
        """The agent's voice device is the page: "browser", or "both" while a page of
        theirs is open (else their SIP phone rings)."""
        device = getattr(agent, "voice_device", "sip")
        if self.browser_phone is None or device == "sip":
            return False
        return device == "browser" or agent.sip is None or \
            self.browser_phone.reachable(agent.id)

    async def _ring_browser(self, call: ActiveCall, offer_id: str, agent_id: str,
                            timeout: float) -> None:
        """Ring the agent's page (`webrtc.BrowserPhone`): answering in the page is
        accepting, the call is bridged with the page's leg like a SIP phone's."""
        stop = call.stops.setdefault(offer_id, asyncio.Event())
        result = await self.browser_phone.ring(
            agent_id, offer_id=offer_id, call_id=call.call_id, task_id=call.task_id,
            caller_id=call.caller_number, timeout=timeout, stop=stop)
        if result.answered:
            self._unreachable.pop(agent_id, None)
            if not await self._accept(call, offer_id, agent_id):
                await result.leg.hangup("offer_gone")
                return
            call.agent_leg = result.leg
            self.resolve_outcome(call, QueueOutcome(QueueOutcomeKind.CONNECTED,
                                                    agent_id=agent_id))
        elif result.status in ("unregistered", "failed"):
            await self._phone_unreachable(offer_id, agent_id, f"browser phone {result.status}")
        elif result.status in ("busy", "rejected"):
            await self._decline(offer_id, agent_id, f"browser phone {result.status}")
        # "timeout": the ACD's own RONA timer takes the offer back

    async def _ring_asterisk(self, call: ActiveCall, offer_id: str, agent_id: str,
                             username: str, timeout: float) -> None:
        from pbx_bridge.asterisk import AgentOffer, RingOutcome

        result = await self.asterisk.ring_agent(AgentOffer(
            offer_id=offer_id, call_id=call.call_id,
            endpoint=self.asterisk.agent_endpoint(username), ring_timeout=timeout,
            task_id=call.task_id or "", agent_id=agent_id,
            survey_flow=call.survey_flow or ""))
        if result.outcome == RingOutcome.ANSWERED:
            self._unreachable.pop(agent_id, None)
            if await self._accept(call, offer_id, agent_id):
                self._connected(call)
                if self.on_asterisk_connected is not None:  # the recording policy
                    self._spawn(self.on_asterisk_connected(call))
        elif result.outcome == RingOutcome.FAILED:
            await self._phone_unreachable(offer_id, agent_id,
                                          result.reason or result.outcome.value)
        elif result.outcome == RingOutcome.BUSY:
            await self._decline(offer_id, agent_id, result.reason or result.outcome.value)

    async def _phone_unreachable(self, offer_id: str, agent_id: str, why: str) -> None:
        """The agent's phone could not be rung at all (not registered, no such endpoint).
        The offer goes to the next agent at once; after `acd.unreachable_after` such
        offers in a row the agent is made not-ready with `acd.unreachable_reason`, which
        the supervisor sees, instead of failing a new offer every ring."""
        failures = self._unreachable.get(agent_id, 0) + 1
        self._unreachable[agent_id] = failures
        limit = self.config.acd.unreachable_after
        if not limit or failures < limit:
            await self._decline(offer_id, agent_id, f"{why} ({failures} in a row)")
            return
        self._unreachable.pop(agent_id, None)
        reason = self.config.acd.unreachable_reason
        log.warning("agent %s: phone unreachable on %d offers in a row (%s); "
                    "made not-ready (%s)", agent_id, failures, why, reason)
        try:
            # Going not-ready withdraws the offer: the caller goes to the next agent.
            await self.acd.set_state(agent_id, "not_ready", reason)
        except AcdError as exc:
            log.info("agent %s could not be made not-ready: %s", agent_id, exc)
            await self._decline(offer_id, agent_id, why)

    async def _accept(self, call: ActiveCall, offer_id: str, agent_id: str) -> bool:
        try:
            await self.acd.accept(offer_id, agent_id)
        except AcdError as exc:
            log.info("agent %s answered but the offer is gone: %s", agent_id, exc)
            return False
        call.agent_id = agent_id
        return True

    async def _decline(self, offer_id: str, agent_id: str, why: str) -> None:
        log.info("agent %s cannot take offer %s: %s", agent_id, offer_id, why)
        self._declining.add(offer_id)
        try:
            with contextlib.suppress(AcdError):
                await self.acd.reject(offer_id, agent_id)
        finally:
            self._declining.discard(offer_id)

    async def _place_callback(self, p: Mapping[str, Any]) -> None:
        """A callback task was accepted: ring the agent first, then the customer."""
        number, agent_id = p.get("callback_number"), p.get("agent_id")
        if not number or not agent_id:
            return
        outcome = await self._agent_then_customer(agent_id, number, p["case_id"],
                                                  p["task_id"])
        with contextlib.suppress(AcdError):
            await self.acd.complete(p["task_id"], agent_id,
                                    notes=None if outcome == "connected" else outcome)

    async def _agent_then_customer(self, agent_id: str, number: str, case_id: str,
                                   ref: str) -> str:
        """Outbound call for an agent: their phone first, then the customer, bridged.
        Returns "connected", "agent did not answer" or "customer did not answer"."""
        agent = self.config.agent(agent_id)
        if self.sip is not None and self.asterisk is None and self._rings_browser(agent):
            return await self._browser_then_customer(agent_id, number, case_id, ref)
        if agent.sip is None:
            return "agent has no phone"
        if self.asterisk is not None:
            from pbx_bridge.asterisk import CallbackRequest, RingOutcome

            try:
                ring = await self.asterisk.place_callback(CallbackRequest(
                    callback_id=ref, number=number,
                    endpoint=self.asterisk.agent_endpoint(agent.sip.username), task_id=ref))
            except ValueError as exc:
                log.warning("callback %s not placed: %s", ref, exc)
                return "not dialable"
            if ring.outcome != RingOutcome.ANSWERED:
                log.info("callback %s: agent %s did not answer (%s)", ref, agent_id,
                         ring.reason or ring.outcome.value)
                return "agent did not answer"
            await self.cases.add_timeline(case_id, kind="call", channel="voice",
                                          direction="outbound", body=f"Call to {number}",
                                          meta={"event": "outbound_connected",
                                                "agent_id": agent_id, "backend": "asterisk"})
            return "connected"
        if self.sip is None:
            return "no voice backend"
        agent_ring = await self.sip.ring_agent(agent.sip.username, caller_id=number)
        if not agent_ring.answered:
            return "agent did not answer"
        customer = await self.sip.place_outbound_call(number)
        if not customer.answered:
            await agent_ring.leg.hangup("customer_unreachable")
            await self.cases.add_timeline(case_id, kind="call", channel="voice",
                                          direction="outbound",
                                          body=f"Call to {number}: no answer",
                                          meta={"event": "outbound_failed", "agent_id": agent_id,
                                                "status": customer.status})
            return "customer did not answer"
        started = self.clock.monotonic()
        await self.cases.add_timeline(case_id, kind="call", channel="voice",
                                      direction="outbound", body=f"Call to {number}",
                                      meta={"event": "outbound_connected", "agent_id": agent_id})
        await self.sip.bridge(customer.leg, agent_ring.leg)
        talk = round(self.clock.monotonic() - started, 1)
        await self.cases.add_timeline(case_id, kind="call", channel="voice",
                                      direction="outbound",
                                      body=f"Call to {number} ended after {talk:.0f} s",
                                      meta={"event": "ended", "agent_id": agent_id,
                                            "talk_seconds": talk})
        return "connected"

    async def _browser_then_customer(self, agent_id: str, number: str, case_id: str,
                                     ref: str) -> str:
        """Outbound for an agent whose phone is the page: the page rings first (Answer
        in it), then the customer through the trunk, bridged by the media engine."""
        from pbx_bridge.webrtc.bridge import bridge_customer

        ring = await self.browser_phone.ring(agent_id, offer_id=ref, call_id=ref,
                                             caller_id=number,
                                             timeout=self.config.server.sip.ring_timeout_seconds)
        if not ring.answered:
            return "agent did not answer"
        customer = await self.sip.place_outbound_call(number)
        if not customer.answered:
            await ring.leg.hangup("customer_unreachable")
            await self.cases.add_timeline(case_id, kind="call", channel="voice",
                                          direction="outbound",
                                          body=f"Call to {number}: no answer",
                                          meta={"event": "outbound_failed", "agent_id": agent_id,
                                                "status": customer.status})
            return "customer did not answer"
        started = self.clock.monotonic()
        await self.cases.add_timeline(case_id, kind="call", channel="voice",
                                      direction="outbound", body=f"Call to {number}",
                                      meta={"event": "outbound_connected", "agent_id": agent_id,
                                            "device": "browser"})
        await bridge_customer(customer.leg, ring.leg)
        talk = round(self.clock.monotonic() - started, 1)
        await self.cases.add_timeline(case_id, kind="call", channel="voice",
                                      direction="outbound",
                                      body=f"Call to {number} ended after {talk:.0f} s",
                                      meta={"event": "ended", "agent_id": agent_id,
                                            "talk_seconds": talk})
        return "connected"

    # ---- the desktop's outbound actions ----------------------------------------------

    def _e164(self, number: str) -> str:
        try:
            return normalise_phone(number, self.config.server.default_region)
        except InvalidIdentity as exc:
            raise ValueError(str(exc)) from None

    async def click_to_call(self, agent_id: str, number: str) -> dict[str, str]:
        """`services["dialer"]`: ring the agent's phone, then call the number."""
        e164 = self._e164(number)
        if self.sip is None and self.asterisk is None:
            raise ValueError("no voice backend is enabled on this node")
        resolution = await self.cases.resolve(IdentityRef("phone", e164))
        self._spawn(self._agent_then_customer(agent_id, e164, resolution.case.id,
                                              f"dial-{new_id()}"))
        return {"number": e164, "case_id": resolution.case.id}

    async def schedule_callback(self, *, case_id: str, customer_id: str, number: str,
                                queue_id: str | None, agent_id: str | None,
                                at: Any = None) -> str:
        """`services["callbacks"]`: a callback task in the queue now (it keeps its place
        in line like any contact). A callback at a set later time is not offered yet."""
        if at:
            raise ValueError("callbacks at a set time are not supported yet; "
                             "leave the time empty to queue the callback now")
        e164 = self._e164(number)
        if queue_id is None:
            agent = self.config.agent(agent_id) if agent_id else None
            queue_id = agent.queues[0] if agent and agent.queues else self.config.queues[0].id
        task = await self.acd.enqueue(queue_id=queue_id, channel="voice", case_id=case_id,
                                      customer_id=customer_id, callback_number=e164,
                                      attributes={"requested_by": agent_id})
        await self.cases.add_timeline(case_id, kind="callback_request", channel="voice",
                                      direction="outbound",
                                      body=f"Callback to {e164} queued in {queue_id}",
                                      meta={"task_id": task.id, "requested_by": agent_id})
        return task.id
