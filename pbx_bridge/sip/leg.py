"""`SipCallLeg`: the IVR's `CallLeg` on top of one SIP dialog and its RTP session.

Above the dialog (`dialog.Call`), below the server: what a leg needs from the layer
that owns transactions is the `LegHost` protocol, which `SipServer` satisfies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ivr.call_leg import CallerData, CallerHangup, CallLeg, PlayResult
from pbx_bridge.media import g711
from pbx_bridge.media.audio import AudioCache, AudioFormatError, EncodedAudio
from pbx_bridge.media.mixer import decode_frame
from pbx_bridge.media.recorder import StereoRecording
from pbx_bridge.media.rtp import AudioSource
from pbx_bridge.sip.dialog import Call
from pbx_bridge.sip.ports import MusicResolver

log = logging.getLogger(__name__)


class LegHost(Protocol):
    """What a leg asks of the layer that owns the dialog's transactions."""

    audio_cache: AudioCache
    music: MusicResolver | None
    default_music: EncodedAudio

    async def answer_call(self, call: Call) -> None: ...

    def send_provisional(self, call: Call, status: int) -> None: ...

    async def hangup_call(self, call: Call, cause: str = "normal", *, by: str = "server",
                          status: int = 480) -> None: ...

    async def resolve_prompt(self, prompt: str, language: str) -> Path | None: ...

    # voicemail (issue #20): (media reference, file path, writer), or None when this
    # node does not record; set by the wiring (`server.voicemail_target`).
    voicemail_target: Callable[[], tuple[str, Path, Any] | None] | None


class SipCallLeg(CallLeg):
    """One party of a call (a caller on a trunk, or an agent's phone).

    Every waiting method also watches the dialog: when the far end hangs up,
    the method in progress raises `CallerHangup`.
    """

    def __init__(self, server: LegHost, call: Call, caller: CallerData) -> None:
        self._server = server
        self.call = call
        self._caller = caller
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self._moh: AudioSource | None = None

    # -- state --------------------------------------------------------
    @property
    def caller(self) -> CallerData:
        return self._caller

    @property
    def call_id(self) -> str:
        return self.call.call_id

    @property
    def ended(self) -> bool:
        return self.call.ended.is_set()

    @property
    def caller_gone(self) -> bool:
        """True as soon as the far end's BYE/CANCEL arrived (or the call ended)."""
        return self.call.ended.is_set()

    @property
    def answered(self) -> bool:
        return self.call.answered

    @property
    def on_hold(self) -> bool:
        return self.call.remote_on_hold

    async def wait_ended(self) -> None:
        await self.call.ended.wait()

    def _check(self) -> None:
        if self.ended:
            raise CallerHangup(self.call.call_id)

    def dtmf_received(self, digit: str) -> None:
        self.call.record.digits.append(digit)
        self.digits.put_nowait(digit)

    def discard_typed_ahead(self) -> None:
        while not self.digits.empty():
            self.digits.get_nowait()

    async def _race(self, awaitable: asyncio.Future | asyncio.Task, timeout: float | None
                    ) -> bool:
        """Wait for `awaitable` or hangup; True if it completed, False on timeout."""
        ended = asyncio.ensure_future(self.call.ended.wait())
        try:
            done, _ = await asyncio.wait({awaitable, ended}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if awaitable in done:
            return True
        if ended in done or self.ended:
            if isinstance(awaitable, asyncio.Task):
                awaitable.cancel()
            raise CallerHangup(self.call.call_id)
        return False

    # -- CallLeg ------------------------------------------------------
    async def answer(self) -> None:
        self._check()
        await self._server.answer_call(self.call)
        self._check()

    async def ring(self) -> None:
        """Send 180 Ringing (optional, before answer)."""
        self._check()
        self._server.send_provisional(self.call, 180)

    async def _load(self, prompt: str, language: str) -> EncodedAudio | None:
        path = await self._server.resolve_prompt(prompt, language)
        if path is None:
            log.warning("prompt %r (%s) not found; skipped", prompt, language)
            return None
        try:
            return self._server.audio_cache.load(path)
        except (AudioFormatError, OSError) as exc:
            log.warning("prompt %r unplayable: %s", prompt, exc)
            return None

    async def play(self, prompts: list[str], language: str, *, barge_in: bool = False
                   ) -> PlayResult:
        self._check()
        if not self.answered:
            await self.answer()
        for prompt in prompts:
            audio = await self._load(prompt, language)
            self.call.record.prompts.append(prompt)
            if audio is None:
                continue
            result = await self.play_audio(audio, barge_in=barge_in)
            if result.interrupted_by is not None:
                return result
        return PlayResult()

    async def play_audio(self, audio: EncodedAudio, *, barge_in: bool = False) -> PlayResult:
        """Play already-encoded audio (used by `play` and by tests/benchmarks)."""
        self._check()
        if barge_in and not self.digits.empty():
            return PlayResult(self.digits.get_nowait())  # typed ahead
        session = self.call.rtp
        assert session is not None
        source = AudioSource(audio)
        session.play(source)
        digit_task: asyncio.Task[str] | None = None
        ended: asyncio.Future[bool] | None = None
        try:
            if not barge_in:
                await self._race(source.done, None)
                return PlayResult()
            digit_task = asyncio.ensure_future(self.digits.get())
            ended = asyncio.ensure_future(self.call.ended.wait())
            done, _ = await asyncio.wait({source.done, digit_task, ended},
                                         return_when=asyncio.FIRST_COMPLETED)
            if digit_task in done:
                return PlayResult(digit_task.result())
            self._check()
            return PlayResult()
        finally:
            if digit_task is not None and not digit_task.done():
                digit_task.cancel()
            if ended is not None:
                ended.cancel()
            if session.source is source:
                session.stop_playing()
            source.finish()

    async def collect_digits(self, max_digits: int, *, first_digit_timeout: float,
                             inter_digit_timeout: float, terminator: str | None = "#") -> str:
        self._check()
        collected = ""
        timeout = first_digit_timeout
        while len(collected) < max_digits:
            task = asyncio.ensure_future(self.digits.get())
            if not await self._race(task, timeout):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                break
            digit = task.result()
            if terminator and digit == terminator:
                break
            collected += digit
            timeout = inter_digit_timeout
        return collected

    async def start_music_on_hold(self, music_class: str = "default") -> None:
        self._check()
        if not self.answered:
            await self.answer()
        path = self._server.music(music_class) if self._server.music else None
        audio = None
        if path is not None:
            try:
                audio = self._server.audio_cache.load(path)
            except (AudioFormatError, OSError) as exc:
                log.warning("music class %r unplayable: %s", music_class, exc)
        if audio is None:
            audio = self._server.default_music
        self._moh = AudioSource(audio, loop=True)
        assert self.call.rtp is not None
        self.call.rtp.play(self._moh)

    async def stop_music_on_hold(self) -> None:
        if self._moh is not None and self.call.rtp is not None:
            if self.call.rtp.source is self._moh:
                self.call.rtp.stop_playing()
            self._moh.finish()
            self._moh = None

    async def record(self, max_seconds: float, *, beep: bool = True,
                     silence_seconds: float | None = None, end_key: str | None = "#"
                     ) -> str | None:
        """Voicemail: the caller's audio, decoded, into a mono WAV under the recordings
        directory (`media.recorder`), until `max_seconds`, `silence_seconds` of
        silence, `end_key`, or the caller hanging up — whose message is kept."""
        target_of = getattr(self._server, "voicemail_target", None)
        target = target_of() if target_of is not None else None
        if target is None:
            return None
        self._check()
        if not self.answered:
            await self.answer()
        if beep:
            await self.play_audio(_beep())
        ref, path, writer = target
        session = self.call.rtp
        assert session is not None
        loop = asyncio.get_running_loop()
        sink = _VoicemailSink(StereoRecording(path, writer, channels=1, loop=loop),
                              loop.time())
        session.stop_playing()
        session.sink = sink
        while not self.digits.empty():  # keys pressed during the greeting do not end it
            self.digits.get_nowait()
        deadline = loop.time() + max_seconds
        try:
            while not self.ended:
                now = loop.time()
                if now >= deadline:
                    break
                if silence_seconds is not None and now - sink.last_voice >= silence_seconds:
                    break
                key = asyncio.ensure_future(self.digits.get())
                ended = asyncio.ensure_future(self.call.ended.wait())
                done, _ = await asyncio.wait({key, ended}, timeout=min(0.1, deadline - now),
                                             return_when=asyncio.FIRST_COMPLETED)
                ended.cancel()
                if key in done:
                    if end_key is not None and key.result() == end_key:
                        break
                else:
                    key.cancel()
        finally:
            if session.sink is sink:
                session.sink = None
            sink.recording.stop()
        result = await sink.recording.wait()
        if result.error is not None:
            log.error("voicemail of %s not stored: %s", self.call_id, result.error)
            return None
        return ref

    async def send_dtmf(self, digits: str) -> None:
        self._check()
        assert self.call.rtp is not None
        await self._race(self.call.rtp.send_dtmf(digits), None)

    async def hangup(self, cause: str = "normal") -> None:
        await self._server.hangup_call(self.call, cause, by="server")

    def __repr__(self) -> str:
        return f"<SipCallLeg {self.call.call_id} {self.call.direction}>"


SILENCE_LEVEL = 300  # mean |sample| below this (≈ -40 dBFS) is silence for voicemail


class _VoicemailSink:
    """The leg's frames while a message is recorded: decoded into the recording, and
    the time of the last one that was not silence (the silence stop)."""

    def __init__(self, recording: StereoRecording, now: float) -> None:
        self.recording = recording
        self.last_voice = now

    def frame_received(self, leg: Any, payload: bytes, payload_type: int) -> None:
        samples = decode_frame(payload, payload_type)
        if int(np.abs(samples).mean()) >= SILENCE_LEVEL:
            self.last_voice = asyncio.get_running_loop().time()
        self.recording.feed(samples.astype(np.int16))

    def digit_received(self, leg: Any, digit: str) -> None:
        pass  # the leg's on_dtmf queues it as well


_BEEP: EncodedAudio | None = None


def _beep() -> EncodedAudio:
    """0.25 s of 1 kHz: the tone that says "speak now"."""
    global _BEEP
    if _BEEP is None:
        from array import array

        t = np.arange(2000) / 8000
        linear = array("h", (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16).tobytes())
        _BEEP = EncodedAudio(g711.encode_ulaw(linear), g711.encode_alaw(linear))
    return _BEEP


InboundCallHandler = Callable[[SipCallLeg], Awaitable[None]]
"""Runs a call: receives the caller's leg (ringing, not yet answered) once the
INVITE has been accepted; the lead's wiring resolves the customer, runs the IVR,
queues, and bridges.  When it returns and the leg is still up, the leg is hung up."""


@dataclass
class AgentRingResult:
    """Outcome of ringing a phone: `answered` with a leg, or why not.

    `status` is one of: "answered", "timeout" (RONA), "busy", "rejected",
    "unregistered" (no contact), "failed", "cancelled".
    """

    status: str
    leg: SipCallLeg | None = None
    sip_status: int | None = None

    @property
    def answered(self) -> bool:
        return self.status == "answered" and self.leg is not None
