"""Test doubles for the IVR: a scripted call leg, an in-memory ACD and timeline.

Shipped in the package (not only under tests/) because the bridges and the end-to-end
tests drive flows with them too. No real waiting happens: a `ScriptedCallLeg` moves a
`ManualClock` by the timeout whenever the script says the caller stays silent.

A script is a list of caller actions, consumed in order:

- `Press("12#")`: the caller types these keys when the IVR next collects digits;
- `Barge("3")`: the caller presses 3 during the next barge-in prompt;
- `Silence()`: the caller does nothing until the next collect times out;
- `Hangup()`: the caller hangs up at the next leg operation (play, collect, ...);
- `Then(fn)`: at the next collect, run `fn()` (e.g. let the fake ACD connect an agent)
  and keep the caller silent until the IVR stops listening.

When the script runs out the caller is silent. `HangupOnPrompt(key)` raises the hangup
while that prompt plays.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.clock import ManualClock
from ivr.call_leg import CallerData, CallerHangup, CallLeg, PlayResult
from ivr.ports import QueueOutcome, QueueOutcomeKind, QueueUnavailable, VoiceTaskRequest

__all__ = [
    "Barge",
    "FakeQueue",
    "Hangup",
    "HangupAfterPrompt",
    "HangupOnPrompt",
    "Press",
    "RecordingTimeline",
    "ScriptedCallLeg",
    "Silence",
    "Then",
]


@dataclass(frozen=True)
class Press:
    keys: str


@dataclass(frozen=True)
class Barge:
    key: str


@dataclass(frozen=True)
class Silence:
    pass


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class HangupOnPrompt:
    prompt: str


@dataclass(frozen=True)
class HangupAfterPrompt:
    """The caller hangs up right after this prompt ends: the IVR notices through
    `caller_gone` at the next node, whatever its type."""

    prompt: str


@dataclass(frozen=True)
class Then:
    action: Callable[[], Any]


Action = Press | Barge | Silence | Hangup | HangupOnPrompt | HangupAfterPrompt | Then


class ScriptedCallLeg(CallLeg):
    """A CallLeg driven by a script; records what the IVR did in `events`."""

    def __init__(
        self,
        script: list[Action] | None = None,
        *,
        clock: ManualClock | None = None,
        caller: CallerData | None = None,
        can_record: bool = True,
        can_transfer: bool = True,
        prompt_seconds: float = 1.0,
        max_operations: int = 10_000,
    ) -> None:
        self.script: list[Action] = list(script or [])
        self.clock = clock or ManualClock()
        self._caller = caller or CallerData(call_id="call-1", caller_id="+31612345678",
                                            dialled="+31201234567")
        self.can_record = can_record
        self.can_transfer = can_transfer
        self.prompt_seconds = prompt_seconds
        self.max_operations = max_operations
        self.events: list[tuple[str, Any]] = []
        self.played: list[tuple[str, str]] = []  # (language, prompt key)
        self.answered = False
        self.hung_up = False
        self.moh = False
        self._ops = 0
        self._hang_on = {a.prompt for a in self.script if isinstance(a, HangupOnPrompt)}
        self._hang_after = {a.prompt for a in self.script if isinstance(a, HangupAfterPrompt)}
        self.script = [a for a in self.script
                       if not isinstance(a, (HangupOnPrompt, HangupAfterPrompt))]

    # ---- helpers ---------------------------------------------------------------------

    @property
    def caller(self) -> CallerData:
        return self._caller

    @property
    def caller_gone(self) -> bool:
        return self.hung_up

    def prompts(self, language: str | None = None) -> list[str]:
        return [k for lang, k in self.played if language is None or lang == language]

    def _op(self, name: str, detail: Any = None) -> None:
        self._ops += 1
        if self._ops > self.max_operations:
            raise RuntimeError("scripted leg: too many operations (does the flow loop?)")
        if self.hung_up:
            raise CallerHangup()
        self.events.append((name, detail))
        if self.script and isinstance(self.script[0], Hangup):
            self.script.pop(0)
            self.hung_up = True
            self.events.append(("caller_hangup", name))
            raise CallerHangup()

    # ---- CallLeg ---------------------------------------------------------------------

    async def answer(self) -> None:
        self._op("answer")
        self.answered = True

    async def play(self, prompts: list[str], language: str, *, barge_in: bool = False
                   ) -> PlayResult:
        self._op("play", (tuple(prompts), language, barge_in))
        for key in prompts:
            self.played.append((language, key))
            self.clock.advance(self.prompt_seconds)
            if key in self._hang_on:
                self._hang_on.discard(key)
                self.hung_up = True
                self.events.append(("caller_hangup", f"play:{key}"))
                raise CallerHangup()
            if barge_in and self.script and isinstance(self.script[0], Barge):
                digit = self.script.pop(0).key  # type: ignore[union-attr]
                self.events.append(("barge_in", digit))
                return PlayResult(interrupted_by=digit)
        await asyncio.sleep(0)
        for key in prompts:
            if key in self._hang_after:
                self._hang_after.discard(key)
                self.hung_up = True
                self.events.append(("caller_hangup", f"after:{key}"))
        return PlayResult()

    async def collect_digits(
        self,
        max_digits: int,
        *,
        first_digit_timeout: float,
        inter_digit_timeout: float,
        terminator: str | None = "#",
    ) -> str:
        self._op("collect", (max_digits, first_digit_timeout, terminator))
        await asyncio.sleep(0)
        action = self.script.pop(0) if self.script else Silence()
        if isinstance(action, Barge):  # pressed while nothing played: same as a press
            action = Press(action.key)
        if isinstance(action, Then):
            action.action()
            never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            return await never  # silent until the IVR cancels the collect
        if isinstance(action, Silence):
            self.clock.advance(first_digit_timeout)
            return ""
        assert isinstance(action, Press)
        out = ""
        for key in action.keys:
            if terminator is not None and key == terminator:
                return out
            out += key
            self.clock.advance(0.3)
            if len(out) >= max_digits:
                return out
        self.clock.advance(inter_digit_timeout)
        return out

    async def start_music_on_hold(self, music_class: str = "default") -> None:
        self._op("moh_on", music_class)
        self.moh = True

    async def stop_music_on_hold(self) -> None:
        self._op("moh_off")
        self.moh = False

    async def hangup(self, cause: str = "normal") -> None:
        self.events.append(("hangup", cause))
        self.hung_up = True

    async def record(self, max_seconds: float, *, beep: bool = True,
                     silence_seconds: float | None = None, end_key: str | None = "#"
                     ) -> str | None:
        self._op("record", max_seconds)
        if not self.can_record:
            return None
        self.clock.advance(min(12.0, max_seconds))
        return f"recordings/{self._caller.call_id}.wav"

    async def transfer(self, target: str) -> None:
        self._op("transfer", target)
        if not self.can_transfer:
            raise NotImplementedError("this backend cannot transfer")


class FakeQueue:
    """An in-memory ACD: positions and waits are set by the test; outcomes on command."""

    def __init__(self, *, position: int | None = 3, wait: float | None = 240.0,
                 refuse: str | None = None) -> None:
        self.requests: list[VoiceTaskRequest] = []
        self.position_value = position
        self.wait_value = wait
        self.refuse = refuse
        self.abandoned: list[str] = []
        self.callbacks: list[tuple[str, str]] = []
        self._outcomes: dict[str, asyncio.Future[QueueOutcome]] = {}
        self._ids = itertools.count(1)

    async def enqueue(self, request: VoiceTaskRequest) -> str:
        if self.refuse:
            raise QueueUnavailable(self.refuse)
        self.requests.append(request)
        task_id = f"task-{next(self._ids)}"
        self._outcomes[task_id] = asyncio.get_running_loop().create_future()
        return task_id

    async def position(self, task_id: str) -> int | None:
        return self.position_value

    async def estimated_wait(self, task_id: str) -> float | None:
        return self.wait_value

    async def abandon(self, task_id: str) -> None:
        self.abandoned.append(task_id)

    async def request_callback(self, task_id: str, number: str) -> None:
        self.callbacks.append((task_id, number))

    async def wait_outcome(self, task_id: str) -> QueueOutcome:
        return await self._outcomes[task_id]

    def last_task(self) -> str:
        return f"task-{len(self.requests)}"

    def connect(self, agent_id: str = "agent-1", task_id: str | None = None) -> None:
        self._outcomes[task_id or self.last_task()].set_result(
            QueueOutcome(QueueOutcomeKind.CONNECTED, agent_id=agent_id))

    def send_away(self, *, flow_node: str | None = None, voicemail: bool = False,
                  reason: str = "overflow", task_id: str | None = None) -> None:
        self._outcomes[task_id or self.last_task()].set_result(
            QueueOutcome(QueueOutcomeKind.EXIT, flow_node=flow_node, voicemail=voicemail,
                         reason=reason))


@dataclass
class RecordingTimeline:
    """Keeps every timeline entry in memory."""

    entries: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    async def record(self, case_id: str, kind: str, body: str,
                     metadata: Mapping[str, Any]) -> None:
        self.entries.append((case_id, kind, body, dict(metadata)))

    def kinds(self) -> list[str]:
        return [e[1] for e in self.entries]

    def bodies(self, kind: str | None = None) -> list[str]:
        return [e[2] for e in self.entries if kind is None or e[1] == kind]
