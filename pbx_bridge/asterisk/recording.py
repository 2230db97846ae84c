"""Recording calls on the Asterisk backend (the `RecordingBackend` for `asterisk`).

Asterisk writes the audio; Centrale asks for it over AMI and keeps the metadata
(actions and replies as documented in Asterisk 20's `apps/app_mixmonitor.c`):

- start: `MixMonitor` on the customer's channel, `File: centrale/<id>.raw`,
  `Options: D`. `D` interleaves the audio *from* the channel (the customer) and *to*
  the channel (everything the customer hears: the agent, a conference) as 16-bit
  stereo at the channel's rate — the same layout as the embedded core's files. The
  `.raw` extension is required by `D` (any other gives a corrupted file). The monitor
  follows the customer's channel through Redirects, so transfers, the ConfBridge room
  and hold keep one file. `b` is not used: it would drop the held stretches and shift
  every marker after them.
- hold and pause: `MixMonitorMute` with `Direction: both`, `State: 1` (0 to resume),
  so a held stretch is silence, never the music, and a paused one is silence
  (PCI DSS). `PauseMonitor` belongs to the deprecated `Monitor` application, not to
  MixMonitor, and is not used.
- end: when the customer's channel hangs up (`ChannelHungUp`), Asterisk closes the
  file; Centrale turns `<recordings>/asterisk/centrale/<id>.raw` into a WAV (the
  44-byte header in front of the samples) and finishes the row.

Where the files go (docs/recording.md): MixMonitor writes relative names under
Asterisk's monitor spool (`/var/spool/asterisk/monitor`); a deployment mounts that
directory as `asterisk/` inside Centrale's recordings directory (docker/compose.yaml
shares one volume). A file Centrale cannot see at the end is recorded as failed,
with the reason, and counted in /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cases.recordings import RecordingService
from core import metrics
from pbx_bridge.control import CallControlError
from pbx_bridge.media.recorder import RATE, file_checksum, wav_header

log = logging.getLogger(__name__)

SPOOL_DIR = "asterisk"  # Asterisk's monitor spool, as mounted in the recordings directory
FILE_PREFIX = "centrale"


@dataclass
class AstLive:
    recording_id: str
    call_id: str
    case_id: str
    channel: str
    started: float
    paused: bool = False
    held: bool = False
    pauses: list[dict[str, Any]] = field(default_factory=list)
    markers: list[dict[str, Any]] = field(default_factory=list)
    parties: list[dict[str, Any]] = field(default_factory=list)

    def at(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def state(self) -> dict[str, Any]:
        return {"recording_id": self.recording_id,
                "status": "paused" if self.paused else "recording",
                "seconds": self.at(), "error": None, "pauses": list(self.pauses)}


def raw_to_wav(raw: Path, wav: Path) -> int:
    """Asterisk's interleaved 16-bit stereo `.raw` as a WAV; returns the WAV's size."""
    data_bytes = raw.stat().st_size // 4 * 4
    with open(raw, "rb") as src, open(wav, "wb") as dst:
        dst.write(wav_header(2, data_bytes))
        remaining = data_bytes
        while remaining:
            chunk = src.read(min(remaining, 1 << 20))
            if not chunk:
                break
            dst.write(chunk)
            remaining -= len(chunk)
    raw.unlink()
    return wav.stat().st_size


class AsteriskCallRecorder:
    def __init__(self, backend: Any, recordings: RecordingService) -> None:
        self.backend = backend  # pbx_bridge.asterisk.backend.AsteriskBackend
        self.recordings = recordings
        self.live: dict[str, AstLive] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _action(self, name: str, **headers: Any) -> Any:
        from pbx_bridge.asterisk.ami import AmiError

        try:
            return await self.backend.ami.action(name, **headers)
        except AmiError as exc:
            raise CallControlError("invalid_state", f"Asterisk refused {name}: {exc}") from None

    # -- RecordingBackend ----------------------------------------------------
    def state(self, call: Any) -> dict[str, Any] | None:
        live = self.live.get(call.call_id)
        return live.state() if live is not None else None

    async def begin(self, call: Any, *, retention_days: int) -> dict[str, Any]:
        live = self.live.get(call.call_id)
        if live is not None:
            return live.state()
        tracked = self.backend.registry.by_call_id(call.call_id)
        if tracked is None:
            raise CallControlError("call_ended", f"call {call.call_id} has ended")
        rec_id, _ = self.recordings.plan()
        await self._action("MixMonitor", Channel=tracked.channel,
                           File=f"{FILE_PREFIX}/{rec_id}.raw", Options="D")
        live = AstLive(rec_id, call.call_id, call.case_id, tracked.channel, time.monotonic(),
                       parties=[{"agent_id": call.agent_id, "from": 0.0, "to": None}]
                       if call.agent_id else [])
        self.live[call.call_id] = live
        wav = self.recordings.root / SPOOL_DIR / FILE_PREFIX / f"{rec_id}.wav"
        await self.recordings.begin(
            case_id=call.case_id, kind="call", backend="asterisk",
            retention_days=retention_days, call_id=call.call_id, queue_id=call.queue_id,
            agent_id=call.agent_id, customer_id=getattr(call.active, "customer_id", None),
            planned=(rec_id, wav))
        metrics.recordings_started.labels("asterisk", "call").inc()
        metrics.recordings_active.inc()
        return live.state()

    async def _mute(self, live: AstLive) -> None:
        state = "1" if live.paused or live.held else "0"
        await self._action("MixMonitorMute", Channel=live.channel, Direction="both",
                           State=state)

    async def pause(self, call: Any, by: str) -> dict[str, Any]:
        live = self._live(call)
        if not live.paused:
            live.paused = True
            await self._mute(live)
            live.pauses.append({"start": live.at(), "end": None, "by": by})
            live.markers.append({"at": live.at(), "type": "pause", "by": by})
        return live.state()

    async def resume(self, call: Any, by: str) -> tuple[dict[str, Any], float]:
        live = self._live(call)
        if not live.paused:
            return live.state(), 0.0
        live.paused = False
        await self._mute(live)
        stretch = live.pauses[-1]
        stretch.update(end=live.at(), resumed_by=by)
        live.markers.append({"at": live.at(), "type": "resume", "by": by})
        return live.state(), float(stretch["end"] - stretch["start"])

    def _live(self, call: Any) -> AstLive:
        live = self.live.get(call.call_id)
        if live is None:
            raise CallControlError("invalid_state", "this call is not being recorded")
        return live

    # -- hooks (AsteriskCallControl, the backend's events) ------------------------
    async def held(self, call_id: str, held: bool) -> None:
        live = self.live.get(call_id)
        if live is None or live.held == held:
            return
        live.held = held
        live.markers.append({"at": live.at(), "type": "hold" if held else "unhold"})
        try:
            await self._mute(live)
        except CallControlError as exc:
            log.warning("recording %s: could not %s the hold: %s", live.recording_id,
                        "mute" if held else "unmute", exc)

    def agent_changed(self, call_id: str, agent_id: str | None) -> None:
        live = self.live.get(call_id)
        if live is None:
            return
        previous = live.parties[-1] if live.parties else None
        if previous is not None and previous["agent_id"] == agent_id:
            return
        at = live.at()
        if previous is not None and previous["to"] is None:
            previous["to"] = at
        live.markers.append({"at": at, "type": "handover",
                             "from_agent": previous["agent_id"] if previous else None,
                             "to_agent": agent_id})
        live.parties.append({"agent_id": agent_id, "from": at, "to": None})

    async def on_event(self, event: Any) -> None:
        """The backend's listener: the customer's channel hung up → finish."""
        if type(event).__name__ != "ChannelHungUp":
            return
        call_id = getattr(event, "call_id", None)
        live = self.live.get(call_id or "")
        if live is None or getattr(event, "channel", live.channel) != live.channel:
            return
        self.live.pop(live.call_id, None)
        await self.finish(live)

    async def finish(self, live: AstLive) -> None:
        metrics.recordings_active.dec()
        spool = self.recordings.root / SPOOL_DIR / FILE_PREFIX
        raw, wav = spool / f"{live.recording_id}.raw", spool / f"{live.recording_id}.wav"
        end = live.at()
        for party in live.parties:
            if party["to"] is None:
                party["to"] = end
        if live.paused:
            live.pauses[-1].update(end=end, resumed_by="hang-up")
        size, seconds, checksum, error = 0, end, None, None
        try:
            if raw.is_file():
                size = await asyncio.to_thread(raw_to_wav, raw, wav)
                seconds = (size - 44) / (4 * RATE)
                checksum = await asyncio.to_thread(file_checksum, wav)
            else:
                error = (f"Asterisk's file {FILE_PREFIX}/{live.recording_id}.raw is not in "
                         f"{spool} (is the monitor spool mounted there?)")
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error:
            metrics.recordings_failed.labels("asterisk", "call").inc()
            log.error("recording %s: %s", live.recording_id, error)
        row = await self.recordings.finish(
            live.recording_id, seconds=seconds, size_bytes=size, checksum=checksum,
            error=error, parties=live.parties, pauses=live.pauses, markers=live.markers)
        agents = ", ".join(str(p["agent_id"]) for p in live.parties if p["agent_id"])
        await self.recordings.cases.add_timeline(
            live.case_id, kind="recording", channel="voice", direction="internal",
            body=(f"Call recorded ({seconds:.0f} s, with {agents or 'nobody'})" if not error
                  else f"Call recording failed: {error}"),
            meta={"event": "recording", "recording_id": row.id, "call_id": live.call_id,
                  "seconds": row.duration_seconds, "status": row.status,
                  "agents": [p["agent_id"] for p in live.parties], "pauses": row.pauses})
