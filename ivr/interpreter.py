"""The interpreter: runs a configured Flow on a CallLeg.

One interpreter for every backend: the SIP core and the Asterisk bridge hand it a
`CallLeg`, the caller's `CustomerContext` and the flow id (from the dialled number).
It walks the flow's nodes, talks to the ACD through a `QueuePort`, and writes every
step to the case timeline through a `TimelinePort` — which menu, which digits, which
branch and how long — so the agent's screen-pop shows the caller's path.

It never waits on its own: all waiting happens in the leg (`collect_digits` with a
timeout, `play`) or the ACD (`wait_outcome`), so a test leg with a manual clock runs a
ten-minute queue wait in microseconds, and a real leg waits for real.

A run ends in one of the `Outcome`s; `CONNECTED` means an agent took the call and the
bridge now owns the leg (music on hold has been stopped). `CallerHangup` raised by the
leg at any point ends the run cleanly with `CALLER_HANGUP` and the node it happened in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from config.calendar import ScheduleState, is_open
from config.schema import CentraleConfig
from config.schema.ivr import (
    CollectNode,
    ConditionNode,
    Flow,
    HangupNode,
    MenuNode,
    PlayNode,
    QueueNode,
    ScheduleNode,
    SetNode,
    SurveyNode,
    TransferNode,
    VoicemailNode,
    WaitNode,
)
from config.validate_flows import statistics_queues
from core.clock import Clock, SystemClock
from ivr import survey
from ivr.call_leg import CallerHangup, CallLeg
from ivr.expressions import ExpressionError, evaluate_source, truthy
from ivr.ports import (
    CustomerContext,
    LookupMatch,
    QueueOutcome,
    QueueOutcomeKind,
    QueuePort,
    QueueStatisticsPort,
    QueueUnavailable,
    SurveyAnswer,
    SurveyPort,
    TimelinePort,
    VoicemailMessage,
    VoicemailPort,
    VoiceTaskRequest,
)
from ivr.prompts import key_for_dtmf, say_duration, say_position

__all__ = ["Interpreter", "IvrResult", "Outcome", "Step"]

log = logging.getLogger(__name__)

TIMELINE_STEP = "ivr_step"
TIMELINE_END = "ivr_end"
TIMELINE_VOICEMAIL = "voicemail"
TIMELINE_CALLBACK = "callback_request"

_NO_LIMIT_WAIT = 3600.0
_DIALABLE = re.compile(r"\+?[0-9*#]{2,32}")  # seconds one collect may wait when nothing else is due


class Outcome(StrEnum):
    CONNECTED = "connected"  # an agent took the call; the bridge owns the leg
    HANGUP = "hangup"  # the flow hung up (hangup node, play/voicemail without next)
    CALLER_HANGUP = "caller_hangup"
    TRANSFERRED = "transferred"
    CALLBACK = "callback"  # the caller left a callback request and was hung up on
    HELD = "held"  # queued; the backend holds the caller outside the IVR (Asterisk)
    ERROR = "error"  # something broke; the leg was hung up


@dataclass(frozen=True)
class Step:
    """One node visit, as recorded on the timeline."""

    flow: str
    node: str
    type: str
    summary: str
    seconds: float
    next: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class IvrResult:
    outcome: Outcome
    flow: str
    node: str | None  # the node the run ended in
    steps: list[Step]
    language: str
    variables: dict[str, Any]
    task_id: str | None = None
    agent_id: str | None = None
    seconds: float = 0.0


@dataclass
class _End:
    outcome: Outcome
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _CallState:
    flow: Flow
    node: str
    language: str
    customer: CustomerContext
    variables: dict[str, Any] = field(default_factory=dict)
    skills: dict[str, int] = field(default_factory=dict)
    priority: int | None = None
    digits: str | None = None
    lookup: LookupMatch | None = None
    queue_result: str | None = None
    queue_id: str | None = None
    task_id: str | None = None
    agent_id: str | None = None
    path: list[str] = field(default_factory=list)


class Interpreter:
    """Runs flows. One instance per site; `run` once per call (calls run concurrently).

    `config` may be replaced (hot reload): a call keeps the config it started with.
    """

    def __init__(
        self,
        config: CentraleConfig,
        *,
        queues: QueuePort,
        timeline: TimelinePort,
        clock: Clock | None = None,
        max_steps: int = 500,
        queue_stats: QueueStatisticsPort | None = None,
        surveys: SurveyPort | None = None,
        voicemail: VoicemailPort | None = None,
    ) -> None:
        self.config = config
        self.queues = queues
        self.queue_stats = queue_stats
        self.surveys = surveys  # where `survey` nodes' answers go (none: timeline only)
        self.voicemail = voicemail  # stores messages as recordings (None: timeline only)
        self.timeline = timeline
        self.clock: Clock = clock or SystemClock()
        self.max_steps = max_steps

    # ---- entry point -----------------------------------------------------------------

    async def run(
        self, leg: CallLeg, flow_id: str, customer: CustomerContext | None = None
    ) -> IvrResult:
        config = self.config
        customer = customer or CustomerContext()
        flow = next((f for f in config.flows if f.id == flow_id), None)
        if flow is None:
            raise ValueError(f"unknown flow {flow_id!r}")
        state = _CallState(flow, flow.start, self._first_language(flow, customer, config),
                           customer)
        run = _Run(self, config, leg, state)
        return await run.execute()

    @staticmethod
    def _first_language(flow: Flow, customer: CustomerContext, config: CentraleConfig) -> str:
        for lang in (customer.language, config.server.default_language):
            if lang and lang in flow.languages:
                return lang
        return flow.languages[0]


class _Run:
    """One call's walk through the flow."""

    def __init__(
        self, owner: Interpreter, config: CentraleConfig, leg: CallLeg, state: _CallState
    ) -> None:
        self.owner = owner
        self.config = config
        self.leg = leg
        self.state = state
        self.clock = owner.clock
        self.steps: list[Step] = []
        self.started = self.clock.monotonic()
        self.node_started = self.started

    # ---- bookkeeping -----------------------------------------------------------------

    @property
    def lang(self) -> str:
        return self.state.language

    def elapsed(self) -> float:
        return round(self.clock.monotonic() - self.node_started, 3)

    async def record(
        self, summary: str, *, next_node: str | None = None, **data: Any
    ) -> None:
        s = self.state
        node = s.flow.nodes.get(s.node)
        step = Step(s.flow.id, s.node, getattr(node, "type", "?"), summary, self.elapsed(),
                    next_node, data)
        self.steps.append(step)
        await self.timeline_write(
            TIMELINE_STEP, summary,
            {"flow": step.flow, "node": step.node, "type": step.type, "seconds": step.seconds,
             "next": next_node, **data},
        )

    async def timeline_write(self, kind: str, body: str, metadata: Mapping[str, Any]) -> None:
        case_id = self.state.customer.case_id
        if case_id is None:
            return
        try:
            await self.owner.timeline.record(case_id, kind, body, dict(metadata))
        except Exception:  # the caller must not lose the call over a timeline write
            log.exception("timeline write failed for case %s", case_id)

    def scope(self) -> dict[str, Any]:
        s = self.state
        c = s.customer
        caller = self.leg.caller
        lookup: dict[str, Any] = {}
        if s.lookup is not None:
            lookup = {
                "found": s.lookup.found,
                "customer_id": s.lookup.customer_id,
                "matches_customer": bool(s.lookup.found and c.customer_id
                                         and s.lookup.customer_id == c.customer_id),
            }
        return {
            "customer": {"known": c.known, "vip": c.vip, "tags": sorted(c.tags),
                         "language": c.language, "name": c.name, "id": c.customer_id},
            "case": {"open": c.case_open, "id": c.case_id},
            "caller": {"number": None if caller.withheld else caller.caller_id,
                       "withheld": caller.withheld, "dialled": caller.dialled},
            "lookup": lookup,
            "vars": dict(s.variables),
            "digits": s.digits,
            "language": s.language,
            "queue": {"result": s.queue_result, "id": s.queue_id},
        }

    async def play(self, prompts: list[str] | tuple[str, ...], *, barge_in: bool = False
                   ) -> str | None:
        if not prompts:
            return None
        result = await self.leg.play(list(prompts), self.lang, barge_in=barge_in)
        return result.interrupted_by if barge_in else None

    def goto(self, ref: str) -> None:
        if "." in ref:
            flow_id, node = ref.split(".", 1)
            flow = next((f for f in self.config.flows if f.id == flow_id), None)
            if flow is None or node not in flow.nodes:
                raise LookupError(f"target {ref!r} does not exist")
            self.state.flow = flow
            if self.state.language not in flow.languages:
                self.state.language = flow.languages[0]
        elif ref not in self.state.flow.nodes:
            raise LookupError(f"target {ref!r} does not exist in flow {self.state.flow.id!r}")
        else:
            node = ref
        self.state.node = node

    # ---- the loop --------------------------------------------------------------------

    async def execute(self) -> IvrResult:
        s = self.state
        end: _End
        try:
            await self.leg.answer()
            await self.timeline_write(
                TIMELINE_STEP, f"IVR {s.flow.id} started ({s.language})",
                {"flow": s.flow.id, "node": None, "type": "start", "language": s.language,
                 "caller": None if self.leg.caller.withheld else self.leg.caller.caller_id,
                 "dialled": self.leg.caller.dialled},
            )
            end = await self.walk()
        except asyncio.CancelledError:
            await self.timeline_write(
                TIMELINE_END, f"IVR cancelled in {s.node}",
                {"flow": s.flow.id, "node": s.node, "outcome": "cancelled",
                 "path": list(s.path)},
            )
            raise
        except CallerHangup:
            node = s.flow.nodes.get(s.node)
            kind = getattr(node, "type", "?")
            end = _End(Outcome.CALLER_HANGUP,
                       f"Caller hung up in {kind} {s.node}", {"type": kind})
            self.steps.append(Step(s.flow.id, s.node, kind, end.summary, self.elapsed()))
        except Exception as exc:  # a bug or a broken port: end the call, say where
            log.exception("IVR flow %s failed at node %s", s.flow.id, s.node)
            end = _End(Outcome.ERROR, f"IVR error in {s.node}: {exc}")
            with contextlib.suppress(Exception):
                await self.leg.hangup("failure")
        total = round(self.clock.monotonic() - self.started, 3)
        await self.timeline_write(
            TIMELINE_END, f"{end.summary} ({_fmt_seconds(total)} in IVR)",
            {"flow": s.flow.id, "node": s.node, "outcome": str(end.outcome),
             "seconds": total, "path": list(s.path), "language": s.language,
             "variables": {k: str(v) for k, v in s.variables.items()},
             "task_id": s.task_id, "agent_id": s.agent_id, **end.data},
        )
        return IvrResult(end.outcome, s.flow.id, s.node, self.steps, s.language,
                         dict(s.variables), s.task_id, s.agent_id, total)

    async def walk(self) -> _End:
        s = self.state
        for _ in range(self.owner.max_steps):
            node = s.flow.nodes[s.node]
            s.path.append(f"{s.flow.id}.{s.node}")
            self.node_started = self.clock.monotonic()
            if self.leg.caller_gone:
                raise CallerHangup()
            handler = getattr(self, f"node_{node.type}")
            result = await handler(node)
            if isinstance(result, _End):
                return result
            self.goto(result)
        await self.record(f"Stopped after {self.owner.max_steps} steps (flow loops)")
        await self.leg.hangup("failure")
        return _End(Outcome.ERROR, f"IVR stopped after {self.owner.max_steps} steps")

    async def hang_up(self, summary: str, prompts: list[str] | None = None) -> _End:
        if prompts:
            await self.play(prompts)
        await self.leg.hangup()
        return _End(Outcome.HANGUP, summary)

    # ---- node handlers: return the next node reference, or an _End --------------------

    async def node_play(self, node: PlayNode) -> str | _End:
        digit = await self.play(node.prompts, barge_in=node.barge_in)
        if digit is not None and digit in node.digit_next:
            nxt = node.digit_next[digit]
            await self.record(f"Played {', '.join(node.prompts)}; caller pressed {digit} "
                              f"→ {nxt}", next_node=nxt, digits=digit)
            return nxt
        if node.next is None:
            await self.record(f"Played {', '.join(node.prompts)}; end")
            return await self.hang_up(f"Hung up after {self.state.node}")
        await self.record(f"Played {', '.join(node.prompts)}", next_node=node.next,
                          **({"digits": digit} if digit else {}))
        return node.next

    async def node_menu(self, node: MenuNode) -> str | _End:
        pressed: list[str] = []
        for attempt in range(1, node.retries + 1):
            digit = await self.play(node.prompts, barge_in=True)
            if digit is None:
                digit = await self.leg.collect_digits(
                    1, first_digit_timeout=node.timeout_seconds,
                    inter_digit_timeout=node.timeout_seconds, terminator=None,
                )
            digit = digit[:1]
            pressed.append(digit or "timeout")
            if digit in node.options:
                nxt = node.options[digit]
                self.state.digits = digit
                await self.record(f"Menu {self.state.node}: pressed {digit} → {nxt}",
                                  next_node=nxt, digits=digit, attempts=attempt,
                                  tries=pressed)
                return nxt
            if attempt < node.retries:
                await self.play(node.timeout_prompts if not digit else node.invalid_prompts)
        await self.record(f"Menu {self.state.node}: no valid choice after {node.retries} "
                          f"tries ({', '.join(pressed)}) → {node.fallback}",
                          next_node=node.fallback, attempts=node.retries, tries=pressed)
        return node.fallback

    async def node_collect(self, node: CollectNode) -> str | _End:
        tries: list[str] = []
        for attempt in range(1, node.retries + 1):
            entry = await self._collect_entry(node)
            tries.append(entry or "timeout")
            valid = len(entry) >= node.min_digits and (
                node.pattern is None or re.fullmatch(node.pattern, entry) is not None)
            if valid and node.lookup:
                valid = await self._lookup(node, entry)
            if valid:
                self.state.variables[node.variable] = entry
                self.state.digits = entry
                data: dict[str, Any] = {"digits": entry, "variable": node.variable,
                                        "attempts": attempt}
                if self.state.lookup is not None:
                    data["lookup_found"] = self.state.lookup.found
                    data["lookup_customer_id"] = self.state.lookup.customer_id
                await self.record(f"Entered {node.variable} {entry} → {node.next}",
                                  next_node=node.next, **data)
                return node.next
            if entry and attempt < node.retries:
                await self.play(node.invalid_prompts)
        await self.record(f"No valid {node.variable} after {node.retries} tries "
                          f"({', '.join(tries)}) → {node.fallback}",
                          next_node=node.fallback, tries=tries)
        return node.fallback

    async def _collect_entry(self, node: CollectNode) -> str:
        first = await self.play(node.prompts, barge_in=True)
        if first is not None:
            if first == node.terminator:
                return ""
            if node.max_digits == 1:
                return first
            rest = await self.leg.collect_digits(
                node.max_digits - 1, first_digit_timeout=node.inter_digit_timeout,
                inter_digit_timeout=node.inter_digit_timeout, terminator=node.terminator,
            )
            return first + rest
        return await self.leg.collect_digits(
            node.max_digits, first_digit_timeout=node.first_digit_timeout,
            inter_digit_timeout=node.inter_digit_timeout, terminator=node.terminator,
        )

    async def _lookup(self, node: CollectNode, entry: str) -> bool:
        """True when the entry stands (found, or no lookup wired / lookup broken)."""
        lookup = self.state.customer.lookup
        if lookup is None or node.lookup is None:
            return True
        try:
            match = await lookup(node.lookup, entry)
        except Exception:
            log.exception("lookup of %s failed", node.lookup)
            return True
        self.state.lookup = match
        return match.found

    async def node_schedule(self, node: ScheduleNode) -> str | _End:
        schedule = next(s for s in self.config.schedules if s.id == node.schedule)
        tz = None
        if "timezone" not in schedule.model_fields_set:
            tz = self.state.flow.timezone or self.config.server.timezone
        now = self.clock.now()
        state = is_open(schedule, self.config.holiday_calendars, now, timezone=tz)
        nxt = {ScheduleState.OPEN: node.open, ScheduleState.CLOSED: node.closed,
               ScheduleState.HOLIDAY: node.holiday or node.closed}[state]
        await self.record(f"Schedule {node.schedule}: {state} → {nxt}", next_node=nxt,
                          state=str(state), at=now.isoformat())
        return nxt

    async def statistics_scope(self, node: ConditionNode) -> dict[str, Any]:
        """`queue_stats.<queue>` for the queues this node's conditions read, fetched now
        (never cached across nodes: a loop re-tests live figures each time round)."""
        wanted: set[str] = set()
        for branch in node.branches:
            wanted |= statistics_queues(branch.when)
        port = self.owner.queue_stats
        out: dict[str, Any] = {}
        if not wanted or port is None:
            return out
        for queue in sorted(wanted):
            try:
                figures = await port.statistics(queue)
            except Exception:
                log.exception("queue statistics of %s failed", queue)
                figures = None
            if figures is not None:
                out[queue] = figures.as_scope()
        return out

    async def node_condition(self, node: ConditionNode) -> str | _End:
        scope = self.scope()
        stats = await self.statistics_scope(node)
        if stats:
            scope["queue_stats"] = stats
        for i, branch in enumerate(node.branches):
            try:
                hit = truthy(evaluate_source(branch.when, scope))
            except ExpressionError:
                log.error("condition %r does not parse (validation should have caught it)",
                          branch.when)
                hit = False
            if hit:
                await self.record(f"Condition {branch.when} → {branch.next}",
                                  next_node=branch.next, branch=i)
                return branch.next
        await self.record(f"No condition held → {node.otherwise}", next_node=node.otherwise,
                          branch="otherwise")
        return node.otherwise

    async def node_set(self, node: SetNode) -> str | _End:
        s = self.state
        changes: dict[str, Any] = {}
        for name, raw in node.variables.items():
            value: Any = raw
            if raw.startswith("="):
                try:
                    value = evaluate_source(raw[1:], self.scope())
                except ExpressionError:
                    value = None
            s.variables[name] = value
            changes[f"vars.{name}"] = value
        if node.language is not None:
            if node.language in s.flow.languages:
                s.language = node.language
                changes["language"] = node.language
            else:
                log.warning("flow %s does not offer language %s", s.flow.id, node.language)
        if node.skills:
            s.skills.update(node.skills)
            changes["skills"] = dict(s.skills)
        if node.priority is not None:
            s.priority = node.priority
            changes["priority"] = node.priority
        text = ", ".join(f"{k}={v}" for k, v in changes.items()) or "nothing"
        await self.record(f"Set {text} → {node.next}", next_node=node.next,
                          changes={k: str(v) for k, v in changes.items()})
        return node.next

    async def node_transfer(self, node: TransferNode) -> str | _End:
        target = node.target
        if target is None:  # target_variable: digits the caller entered
            raw = self.state.variables.get(node.target_variable or "")
            value = "" if raw is None else str(raw).strip()
            if not _DIALABLE.fullmatch(value):
                why = f"vars.{node.target_variable} = {value!r} is not a dialable number"
                if node.failed_next:
                    await self.record(f"No transfer: {why} → {node.failed_next}",
                                      next_node=node.failed_next)
                    return node.failed_next
                await self.record(f"No transfer: {why}; end")
                return await self.hang_up(f"Transfer impossible at {self.state.node}")
            target = value
        await self.play(node.prompts)
        try:
            await self.leg.transfer(target)
        except NotImplementedError:
            if node.failed_next:
                await self.record(f"Transfer to {target} not supported by this backend → "
                                  f"{node.failed_next}", next_node=node.failed_next)
                return node.failed_next
            await self.record(f"Transfer to {target} not supported by this backend")
            await self.leg.hangup("failure")
            return _End(Outcome.ERROR, f"Transfer to {target} impossible")
        await self.record(f"Transferred to {target}", target=target)
        return _End(Outcome.TRANSFERRED, f"Transferred to {target}", {"target": target})

    async def node_wait(self, node: WaitNode) -> str | _End:
        """Hold the caller for `seconds`; the leg does the waiting (a digit-collect that
        times out), so a manual clock runs it at once in tests. Digits are ignored, as
        in Avaya's wait-time."""
        if node.hearing != "silence":
            music = node.music_on_hold or ("ringback" if node.hearing == "ringback"
                                           else "default")
            await self.leg.start_music_on_hold(music)
        deadline = self.clock.monotonic() + node.seconds
        try:
            while (left := deadline - self.clock.monotonic()) > 0:
                await self.leg.collect_digits(1, first_digit_timeout=left,
                                              inter_digit_timeout=left, terminator=None)
        finally:
            if node.hearing != "silence":
                with contextlib.suppress(CallerHangup):
                    await self.leg.stop_music_on_hold()
        await self.record(f"Waited {node.seconds:g} s hearing {node.hearing} → {node.next}",
                          next_node=node.next)
        return node.next

    async def node_voicemail(self, node: VoicemailNode) -> str | _End:
        await self.leave_voicemail(node.prompts, node.max_seconds,
                                   silence_seconds=node.silence_stop_seconds,
                                   end_key=node.end_key, queue=node.queue,
                                   retention_days=node.retention_days)
        if node.next is None:
            return await self.hang_up("Hung up after voicemail")
        return node.next

    async def leave_voicemail(self, prompts: list[str], max_seconds: float, *,
                              silence_seconds: float | None = 5.0, end_key: str | None = "#",
                              queue: str | None = None,
                              retention_days: int | None = None) -> None:
        """Record a message; with a voicemail port it becomes a recording on the case
        and a callback task in `queue`. A caller hanging up ends the message (it is
        kept): the hang-up is raised only after the message is stored."""
        await self.play(prompts)
        started = self.clock.monotonic()
        media = await self.leg.record(max_seconds, beep=True, silence_seconds=silence_seconds,
                                      end_key=end_key)
        seconds = round(self.clock.monotonic() - started, 1)
        if media is None:
            await self.record("Voicemail not recorded (backend cannot record)")
            return
        caller = None if self.leg.caller.withheld else self.leg.caller.caller_id
        stored: dict[str, Any] = {}
        customer = self.state.customer
        port = self.owner.voicemail
        if port is not None and customer.case_id is not None:
            try:
                stored = await port.store(VoicemailMessage(
                    case_id=customer.case_id, customer_id=customer.customer_id,
                    call_id=self.leg.caller.call_id, media=media, seconds=seconds,
                    caller=caller, queue_id=queue, retention_days=retention_days,
                    flow=self.state.flow.id, node=self.state.node))
            except Exception:  # the message is on disk; the timeline still says so
                log.exception("storing the voicemail of %s failed", self.leg.caller.call_id)
        with contextlib.suppress(CallerHangup):
            await self.record(f"Voicemail recorded ({_fmt_seconds(seconds)})", media=media)
        await self.timeline_write(
            TIMELINE_VOICEMAIL, f"Voicemail ({_fmt_seconds(stored.get('seconds', seconds))})",
            {"media": media, "seconds": stored.get("seconds", seconds),
             "flow": self.state.flow.id, "node": self.state.node, "caller": caller,
             "recording_id": stored.get("recording_id"), "task_id": stored.get("task_id")},
        )

    async def node_hangup(self, node: HangupNode) -> str | _End:
        await self.record(f"Hang up{' after ' + ', '.join(node.prompts) if node.prompts else ''}")
        return await self.hang_up(f"Hung up at {self.state.node}", node.prompts)

    async def node_queue(self, node: QueueNode) -> str | _End:
        return await _QueueWait(self, node).run()

    async def node_survey(self, node: SurveyNode) -> str | _End:
        """The survey after a call (ivr/survey.py has the rules)."""
        c = self.state.customer
        call_id = self.leg.caller.call_id

        async def play(prompts: list[str], barge_in: bool) -> str | None:
            return await self.play(prompts, barge_in=barge_in)

        self.leg.discard_typed_ahead()  # a key from the conversation is no answer
        await self._to_surveys("asked", call_id, c.case_id, node.kind)
        try:
            score, tries = await survey.ask(self.leg, node, play)
        except CallerHangup:
            await self._to_surveys("answered", SurveyAnswer(
                call_id, c.case_id, c.customer_id, node.kind, None, ("hung up",)))
            raise
        await self._to_surveys("answered", SurveyAnswer(
            call_id, c.case_id, c.customer_id, node.kind, score, tuple(tries)))
        if score is not None and node.thanks_prompts:
            await self.play(node.thanks_prompts)
        answer = "no answer" if score is None else str(score)
        await self.record(f"Survey {node.kind.upper()}: {answer} ({', '.join(tries)})",
                          next_node=node.next, kind=node.kind, score=score, tries=tries)
        if node.next is None:
            return await self.hang_up(f"Hung up after survey {self.state.node}")
        return node.next

    async def _to_surveys(self, what: str, *args: Any) -> None:
        port = self.owner.surveys
        if port is None:
            return
        try:
            await getattr(port, what)(*args)
        except Exception:  # the caller must not lose the call over a failed write
            log.exception("survey port %s failed", what)


class _QueueWait:
    """A caller waiting in an ACD queue: music on hold, announcements, keys, max wait."""

    def __init__(self, run: _Run, node: QueueNode) -> None:
        self.run_ = run
        self.node = node
        self.leg = run.leg
        self.clock = run.clock
        self.queues = run.owner.queues
        self.queue_cfg = next((q for q in run.config.queues if q.id == node.queue), None)
        self.task_id: str | None = None
        self.outcome_task: asyncio.Task[QueueOutcome] | None = None
        self.moh_on = False
        self.entered = 0.0
        self.left = False  # abandoned, or turned into a callback: no abandon any more

    @property
    def interval(self) -> float | None:
        value = self.node.announce_interval_seconds
        if value is None and self.queue_cfg is not None:
            value = self.queue_cfg.announce_interval_seconds
        return value or None

    async def run(self) -> str | _End:
        run, node, s = self.run_, self.node, self.run_.state
        skills = {**s.skills, **node.skills}
        priority = node.priority if node.priority is not None else s.priority
        declined = await self.recording_consent()
        request = VoiceTaskRequest(
            queue_id=node.queue, call_id=self.leg.caller.call_id, skills=skills,
            priority=priority, case_id=s.customer.case_id, customer_id=s.customer.customer_id,
            language=s.language,
            caller_number=None if self.leg.caller.withheld else self.leg.caller.caller_id,
            ivr_path=tuple(s.path), recording_declined=declined,
        )
        s.queue_id = node.queue
        try:
            self.task_id = await self.queues.enqueue(request)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if not isinstance(exc, QueueUnavailable):
                log.exception("enqueue in %s failed", node.queue)
            s.queue_result = "failed"
            if node.failed_next:
                await run.record(f"Queue {node.queue} unavailable ({reason}) → "
                                 f"{node.failed_next}", next_node=node.failed_next,
                                 reason=reason)
                return node.failed_next
            await run.record(f"Queue {node.queue} unavailable ({reason}); end", reason=reason)
            return await run.hang_up(f"Queue {node.queue} unavailable", ["goodbye"])
        s.task_id = self.task_id
        if self.leg.holds_caller_outside:
            s.queue_result = "held"
            await run.record(f"Waiting in queue {node.queue} (held by the voice backend)",
                             task_id=self.task_id)
            return _End(Outcome.HELD, f"Waiting in queue {node.queue}", {"queue": node.queue})
        self.entered = self.clock.monotonic()
        self.outcome_task = asyncio.ensure_future(self.queues.wait_outcome(self.task_id))
        try:
            return await self.wait()
        except (CallerHangup, asyncio.CancelledError):
            # the caller left (or the bridge cancelled the run): free the place in line,
            # unless it has become a callback request
            await self.leave("caller hung up")
            raise
        finally:
            if self.outcome_task is not None and not self.outcome_task.done():
                self.outcome_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.outcome_task

    def waited(self) -> float:
        return round(self.clock.monotonic() - self.entered, 1)

    async def leave(self, why: str) -> None:
        """Abandon the task once; never a task that became a callback request."""
        if self.task_id is None or self.left:
            return
        self.left = True
        try:
            await self.queues.abandon(self.task_id)
        except Exception:
            log.exception("abandon of task %s (%s) failed", self.task_id, why)

    async def moh(self, on: bool) -> None:
        if on and not self.moh_on:
            music = self.node.music_on_hold or (
                self.queue_cfg.music_on_hold if self.queue_cfg else "default")
            await self.leg.start_music_on_hold(music)
            self.moh_on = True
        elif not on and self.moh_on:
            await self.leg.stop_music_on_hold()
            self.moh_on = False

    async def announcement(self) -> list[str]:
        """Prompt keys for the position / wait announcement and the key offers."""
        lang = self.run_.lang
        keys: list[str] = []
        assert self.task_id is not None
        if self.node.announce_position:
            try:
                pos = await self.queues.position(self.task_id)
            except Exception:
                log.exception("queue position failed")
                pos = None
            if pos is not None and pos >= 1:
                keys += say_position(pos, lang).keys
        if self.node.announce_wait:
            try:
                ewt = await self.queues.estimated_wait(self.task_id)
            except Exception:
                log.exception("estimated wait failed")
                ewt = None
            if ewt is not None and ewt >= 0:
                keys += ["queue/wait_time_is", *say_duration(ewt, lang).keys]
        if self.node.callback_key and self.can_call_back():
            keys += ["queue/callback_offer", key_for_dtmf(self.node.callback_key)]
        if self.node.voicemail_key:
            keys += ["queue/voicemail_offer", key_for_dtmf(self.node.voicemail_key)]
        return keys

    def can_call_back(self) -> bool:
        caller = self.leg.caller
        return not caller.withheld and bool(caller.caller_id)

    async def announce(self) -> str | None:
        """Play the announcement over a pause in the music; returns a barge-in digit."""
        keys = await self.announcement()
        if not keys:
            return None
        await self.moh(False)
        digit = await self.run_.play(keys, barge_in=True)
        return digit

    async def wait(self) -> str | _End:
        node = self.node
        run = self.run_
        await run.record(f"Queued in {node.queue} (task {self.task_id})", task_id=self.task_id,
                         queue=node.queue)
        # announcements run every `interval` seconds, counted from the start of the last
        next_announce = self.clock.monotonic() + self.interval if self.interval else None
        digit = await self.announce()
        deadline = self.entered + node.max_wait_seconds if node.max_wait_seconds else None
        assert self.outcome_task is not None
        while True:
            if self.outcome_task.done():
                return await self.on_outcome(self.outcome_task.result())
            if digit:
                handled = await self.on_key(digit)
                if handled is not None:
                    return handled
                digit = None
            now = self.clock.monotonic()
            if deadline is not None and now >= deadline:
                return await self.on_max_wait()
            if next_announce is not None and now >= next_announce:
                next_announce = now + (self.interval or _NO_LIMIT_WAIT)
                digit = await self.announce()
                continue
            await self.moh(True)
            due = [t for t in (deadline, next_announce) if t is not None]
            timeout = max(0.01, min(due) - now) if due else _NO_LIMIT_WAIT
            digit = await self.key_or_outcome(timeout)

    async def key_or_outcome(self, timeout: float) -> str | None:
        """Wait for a key (up to `timeout`) unless the ACD decides first."""
        assert self.outcome_task is not None
        key_task = asyncio.ensure_future(self.leg.collect_digits(
            1, first_digit_timeout=timeout, inter_digit_timeout=timeout, terminator=None))
        try:
            await asyncio.wait({key_task, self.outcome_task},
                               return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            key_task.cancel()
            raise
        if key_task.done():
            return key_task.result() or None  # raises CallerHangup if the caller left
        key_task.cancel()
        # a CallerHangup raised while cancelling still propagates: the caller left just
        # as the ACD decided, and leaving wins
        with contextlib.suppress(asyncio.CancelledError):
            await key_task
        return None

    async def on_key(self, digit: str) -> str | _End | None:
        node, run, s = self.node, self.run_, self.run_.state
        if digit == node.callback_key and self.can_call_back():
            number = self.leg.caller.caller_id or ""
            assert self.task_id is not None
            await self.queues.request_callback(self.task_id, number)
            self.left = True  # the ACD keeps the task as a callback: never abandon it
            s.queue_result = "callback"
            await self.moh(False)
            await run.record(f"Callback requested to {number} after {self.waited()} s in "
                             f"{node.queue}", number=number, task_id=self.task_id,
                             waited=self.waited())
            await run.timeline_write(TIMELINE_CALLBACK, f"Callback requested to {number}",
                                     {"number": number, "queue": node.queue,
                                      "task_id": self.task_id})
            await run.play(["callback_confirmed", "goodbye"])
            await self.leg.hangup()
            return _End(Outcome.CALLBACK, f"Callback requested from queue {node.queue}",
                        {"number": number})
        if digit == node.voicemail_key:
            await self.leave("voicemail key")
            s.queue_result = "voicemail"
            await self.moh(False)
            await run.record(f"Left queue {node.queue} for voicemail after {self.waited()} s",
                             waited=self.waited(), digits=digit)
            return await self.voicemail_then_hangup()
        if digit in node.exit_keys:
            nxt = node.exit_keys[digit]
            await self.leave("exit key")
            s.queue_result = "exit_key"
            await self.moh(False)
            await run.record(f"Left queue {node.queue} with key {digit} after {self.waited()} s "
                             f"→ {nxt}", next_node=nxt, digits=digit, waited=self.waited())
            return nxt
        return None  # other keys are ignored while waiting

    async def recording_consent(self) -> bool:
        """The queue records calls and has a consent prompt: it is played before the
        caller waits (so before any agent is connected). With a `decline_key`, pressing
        it during the prompt declines: the call is not recorded (returns True)."""
        policy = getattr(self.queue_cfg, "recording", None)
        if policy is None or policy.mode == "off" or not policy.consent_prompt:
            return False
        run = self.run_
        digit = await run.play([policy.consent_prompt], barge_in=policy.decline_key is not None)
        if digit is not None and digit == policy.decline_key:
            await run.record(f"The caller declined recording (key {digit})",
                             recording="declined")
            return True
        return False

    async def voicemail_then_hangup(self) -> _End:
        await self.run_.leave_voicemail(["leave_message"], 120)
        await self.run_.play(["goodbye"])
        await self.leg.hangup()
        return _End(Outcome.HANGUP, f"Voicemail from queue {self.node.queue}")

    async def on_max_wait(self) -> str | _End:
        node, run, s = self.node, self.run_, self.run_.state
        await self.leave("max wait")
        s.queue_result = "timeout"
        await self.moh(False)
        exit_ = self.queue_cfg.exit if self.queue_cfg else None
        nxt = node.timeout_next or (exit_.flow_node if exit_ else None)
        if nxt:
            await run.record(f"Max wait {node.max_wait_seconds:g} s in {node.queue} → {nxt}",
                             next_node=nxt, waited=self.waited())
            return nxt
        await run.record(f"Max wait {node.max_wait_seconds:g} s in {node.queue}",
                         waited=self.waited())
        if exit_ is not None and exit_.voicemail:
            return await self.voicemail_then_hangup()
        return await run.hang_up(f"Max wait in {node.queue}", ["goodbye"])

    async def on_outcome(self, outcome: QueueOutcome) -> str | _End:
        node, run, s = self.node, self.run_, self.run_.state
        await self.moh(False)
        if outcome.kind == QueueOutcomeKind.CONNECTED:
            s.queue_result = "connected"
            s.agent_id = outcome.agent_id
            await run.record(f"Connected to agent {outcome.agent_id} after {self.waited()} s "
                             f"in {node.queue}", agent_id=outcome.agent_id,
                             task_id=self.task_id, waited=self.waited())
            return _End(Outcome.CONNECTED, f"Connected to agent {outcome.agent_id}",
                        {"queue": node.queue})
        s.queue_result = "exit"
        why = outcome.reason or "queue exit"
        nxt = outcome.flow_node or node.timeout_next
        if nxt:
            await run.record(f"Queue {node.queue} sent the caller on ({why}) → {nxt}",
                             next_node=nxt, reason=why, waited=self.waited())
            return nxt
        await run.record(f"Queue {node.queue} sent the caller away ({why})", reason=why,
                         waited=self.waited())
        if outcome.voicemail:
            return await self.voicemail_then_hangup()
        return await run.hang_up(f"Queue {node.queue} exit ({why})", ["goodbye"])


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, sec = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m{sec:02d}s"
