"""`CallLeg` over FastAGI: the IVR interpreter drives an Asterisk channel with it.

Mapping to AGI commands (and why):

- `play` -> `STREAM FILE <file> "<escape digits>"`: with barge-in the escape digits
  are all DTMF keys, and Asterisk stops at the first one and returns it (ASCII code
  in `result`), consumed. `result=-1` means the channel hung up *or* the file is
  missing; a dead-channel-safe `GET VARIABLE` tells the two apart (a hung-up channel
  gets Asterisk's `HANGUP` line or 511 first).
- `collect_digits` -> `WAIT FOR DIGIT` per digit: the interface distinguishes the
  first-digit and inter-digit timeouts and takes any terminator, which GET DATA does
  not (one timeout, `#` only). `get_data` offers the GET DATA form (prompt + digits).
- music on hold -> `SET MUSIC ON/OFF`; `hangup` -> `HANGUP` (or `EXEC Hangup <cause>`).
- a hang-up seen anywhere (AgiHangup) -> `CallerHangup`, once and for all: every
  later call raises it without touching the socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from ivr.call_leg import CallerData, CallerHangup, CallLeg, PlayResult
from pbx_bridge.asterisk.agi import AgiCommandError, AgiHangup, AgiReply, AgiSession
from pbx_bridge.asterisk.channels import (
    STATE_WAITING,
    VAR_CALL_ID,
    VAR_LANGUAGE,
    VAR_STATE,
    VAR_TASK_ID,
)
from pbx_bridge.asterisk.ports import PromptResolver, default_prompt_resolver

log = logging.getLogger(__name__)

ALL_DTMF = "0123456789*#"
VAR_NEXT = "CENTRALE_NEXT"  # what the dialplan does after the AGI: hold / transfer / hangup
VAR_MOH = "CENTRALE_MOH"
VAR_TRANSFER_TARGET = "CENTRALE_TRANSFER_TARGET"

#: CallLeg hang-up causes -> Q.850 codes for `Hangup(<cause>)`.
HANGUP_CAUSES = {
    "normal": 16,
    "busy": 17,
    "no_answer": 19,
    "rejected": 21,
    "unavailable": 34,
    "congestion": 34,
    "error": 41,
}


def _quote(value: str) -> str:
    """AGI argument quoting: double quotes, no newline (one command per line)."""
    cleaned = value.replace("\r", " ").replace("\n", " ").replace('"', "'")
    return f'"{cleaned}"'


def _sound(name: str) -> str:
    if not name or any(c.isspace() for c in name) or '"' in name:
        raise ValueError(f"not a playable sound name: {name!r}")
    return name


class AgiCallLeg(CallLeg):
    """One caller's channel, driven over its FastAGI session."""

    def __init__(
        self,
        session: AgiSession,
        caller: CallerData,
        *,
        prompt_resolver: PromptResolver = default_prompt_resolver,
        on_holding: Callable[[AgiCallLeg, str], None] | None = None,
    ) -> None:
        self.session = session
        self._caller = caller
        self._resolve = prompt_resolver
        self._on_holding = on_holding
        self._answered = False
        self._gone = False
        self.next_step = "hangup"
        self.task_id: str | None = None

    # --- identity -------------------------------------------------------------------
    @property
    def holds_caller_outside(self) -> bool:
        """A queued caller waits in the dialplan's holding context, not in this AGI
        session: the IVR hands over at its queue node (see `send_to_holding`)."""
        return True

    @property
    def caller(self) -> CallerData:
        return self._caller

    @property
    def channel(self) -> str:
        return self.session.env.get("agi_channel", "")

    @property
    def uniqueid(self) -> str:
        return self.session.env.get("agi_uniqueid", "")

    @property
    def language(self) -> str:
        return self.session.env.get("agi_language", "") or "en"

    @property
    def gone(self) -> bool:
        return self._gone

    # --- plumbing ------------------------------------------------------------------
    async def _run(self, command: str) -> AgiReply:
        if self._gone:
            raise CallerHangup(self._caller.call_id)
        try:
            return await self.session.command(command)
        except AgiHangup as exc:
            if command.startswith(("STREAM FILE", "CONTROL STREAM FILE")) and (
                not self.session.hung_up and not self.session.closed
            ):
                raise  # maybe a missing file: the caller of _run decides
            self._gone = True
            raise CallerHangup(self._caller.call_id) from exc

    async def _still_there(self) -> bool:
        """After `result=-1`: is the channel alive (missing file) or hung up?"""
        try:
            await self.session.command(f"GET VARIABLE {VAR_CALL_ID}")
        except AgiHangup:
            self._gone = True
            return False
        if self.session.hung_up:
            self._gone = True
            return False
        return True

    async def set_variable(self, name: str, value: str) -> None:
        await self._run(f"SET VARIABLE {name} {_quote(value)}")

    async def get_variable(self, name: str) -> str | None:
        reply = await self._run(f"GET VARIABLE {name}")
        return reply.data if reply.result == "1" else None

    # --- CallLeg ---------------------------------------------------------------------
    async def answer(self) -> None:
        if self._answered:
            return
        await self._run("ANSWER")
        self._answered = True

    async def play(
        self, prompts: list[str], language: str, *, barge_in: bool = False
    ) -> PlayResult:
        escape = ALL_DTMF if barge_in else ""
        for prompt in prompts:
            sound = _sound(self._resolve(prompt, language))
            command = f"STREAM FILE {sound} {_quote(escape)}"
            try:
                reply = await self._run(command)
            except AgiHangup as exc:
                if await self._still_there():
                    log.warning(
                        "prompt %r (%s) could not be played on %s", prompt, sound, self.channel
                    )
                    continue
                raise CallerHangup(self._caller.call_id) from exc
            if reply.number > 0:
                return PlayResult(interrupted_by=chr(reply.number))
        return PlayResult()

    async def collect_digits(
        self,
        max_digits: int,
        *,
        first_digit_timeout: float,
        inter_digit_timeout: float,
        terminator: str | None = "#",
    ) -> str:
        digits = ""
        timeout = first_digit_timeout
        while len(digits) < max_digits:
            reply = await self._run(f"WAIT FOR DIGIT {max(1, int(timeout * 1000))}")
            if reply.number <= 0:
                break  # timeout
            digit = chr(reply.number)
            if terminator and digit == terminator:
                break
            digits += digit
            timeout = inter_digit_timeout
        return digits

    async def get_data(self, prompt: str, language: str, *, timeout: float, max_digits: int) -> str:
        """Play `prompt` and read up to `max_digits` (GET DATA: `#` ends, one timeout
        for every digit). Returns '' on timeout without digits."""
        sound = _sound(self._resolve(prompt, language))
        reply = await self._run(f"GET DATA {sound} {max(1, int(timeout * 1000))} {max_digits}")
        return reply.result if set(reply.result) <= set(ALL_DTMF) else ""

    async def start_music_on_hold(self, music_class: str = "default") -> None:
        await self._run(f"SET MUSIC ON {_sound(music_class)}")

    async def stop_music_on_hold(self) -> None:
        await self._run("SET MUSIC OFF")

    async def hangup(self, cause: str = "normal") -> None:
        if self._gone:
            return
        code = HANGUP_CAUSES.get(cause, 16)
        try:
            if code == 16:
                await self.session.command("HANGUP")
            else:
                await self.session.command(f"EXEC Hangup {code}")
        except AgiHangup:
            pass
        finally:
            self._gone = True
            self.next_step = "hangup"

    async def record(self, max_seconds: float, *, beep: bool = True,
                     silence_seconds: float | None = None, end_key: str | None = "#"
                     ) -> str | None:
        """AGI `RECORD FILE` (docs/recording.md: the file is written by Asterisk under
        its spool, `centrale/recordings/<call id>.wav`, which the deployment shares
        with Centrale's recordings directory). `s=` is Asterisk's silence stop."""
        name = f"centrale/recordings/{self._caller.call_id}"
        ms = max(1000, int(max_seconds * 1000))
        beep_arg = " BEEP" if beep else ""
        keys = f'"{end_key}"' if end_key else '""'
        silence = f" s={max(1, round(silence_seconds))}" if silence_seconds else ""
        try:
            await self._run(f"RECORD FILE {name} wav {keys} {ms}{beep_arg}{silence}")
        except AgiCommandError as exc:
            log.error("recording failed on %s: %s", self.channel, exc)
            return None
        return f"asterisk:{name}.wav"

    async def transfer(self, target: str) -> None:
        """Blind transfer: the dialplan dials `target` through the trunk once the
        AGI session ends (`CENTRALE_NEXT=transfer`)."""
        if not target or not all(c.isalnum() or c in "+*#" for c in target):
            raise ValueError(f"not a dialable transfer target: {target!r}")
        await self.set_variable(VAR_TRANSFER_TARGET, target)
        await self.set_variable(VAR_NEXT, "transfer")
        self.next_step = "transfer"

    # --- Asterisk specifics --------------------------------------------------------
    async def send_to_holding(
        self,
        *,
        task_id: str,
        music_class: str = "default",
        language: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        """Park the caller for the ACD: mark the channel (these variables are what a
        resync reads back) and let the dialplan continue into the holding context
        with music on hold when this AGI session ends.

        `language` is the one the caller chose in the IVR: it becomes the channel's
        language, so the holding loop's announcements (and Asterisk's own sounds,
        such as numbers) are in it rather than in the trunk's default. `variables`
        are more channel variables to keep on the call (what a restarted Centrale
        needs to queue the caller again)."""
        await self.set_variable(VAR_TASK_ID, task_id)
        await self.set_variable(VAR_MOH, _sound(music_class))
        if language:
            await self.set_variable(VAR_LANGUAGE, _sound(language))
            await self.set_variable("CHANNEL(language)", _sound(language))
        for name, value in (variables or {}).items():
            await self.set_variable(name, value)
        await self.set_variable(VAR_STATE, STATE_WAITING)
        await self.set_variable(VAR_NEXT, "hold")
        self.task_id = task_id
        self.next_step = "hold"
        if self._on_holding is not None:
            self._on_holding(self, task_id)
