"""Recording calls on the embedded SIP core (the `RecordingBackend` for `sip`).

A plain recorded call stays on the packet relay: the relay recorder
(`media.relay_tap`) hands the tap (`media.recorder.StereoRecording`) the G.711 bytes
both legs relayed, every second, and the writer thread decodes them. The first operation that
needs a mixer (hold, transfer, conference, monitoring) moves the call there and the
tap with it (`moved_to_mixer`); from then on the mixer hands the tap each tick's
customer row and what the customer heard. The mixer outlives every change of the
agent side, so one file follows the customer from the agent's answer to the caller's
hang-up. Cost: `bench/recording_bench.py`.

`SipCallControl` calls the hooks (`connected`, `held`, `agent_changed`, `ended`);
the call control service calls `start`/`pause`/`resume`/`state` for the desktop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from cases.recordings import RecordingService
from core import metrics
from pbx_bridge.media.recorder import RecordingWriter, StereoRecording
from pbx_bridge.media.relay_tap import RelayRecorder

log = logging.getLogger(__name__)


@dataclass
class LiveRecording:
    recording_id: str
    tap: StereoRecording
    call_id: str
    case_id: str
    parties: list[dict[str, Any]] = field(default_factory=list)
    failure_reported: bool = False
    row_missing: bool = False  # the row could not be written: nothing to finish
    row_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def state(self) -> dict[str, Any]:
        status = "failed" if self.tap.error else "paused" if self.tap.paused else "recording"
        return {"recording_id": self.recording_id, "status": status,
                "seconds": round(self.tap.seconds, 1), "error": self.tap.error,
                "pauses": list(self.tap.pauses)}


class SipCallRecorder:
    """Starts, marks and finishes the recordings of the SIP core's connected calls."""

    def __init__(self, recordings: RecordingService, *, header_sync_seconds: float = 2.0,
                 writer: RecordingWriter | None = None) -> None:
        self.recordings = recordings
        self.writer = writer or RecordingWriter()
        self.header_sync_seconds = header_sync_seconds
        self.control: Any = None  # SipCallControl: sessions and the mixer
        self.report: Any = None  # CallControlService.report (timeline + bus)
        self.live: dict[str, LiveRecording] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- RecordingBackend ----------------------------------------------------
    def state(self, call: Any) -> dict[str, Any] | None:
        live = self.live.get(call.call_id)
        return live.state() if live is not None else None

    async def begin(self, call: Any, *, retention_days: int) -> dict[str, Any]:
        """Start recording a connected call (policy `always` at the answer, or the
        agent's request for `on_demand`). Starting twice is the same recording."""
        live = self.live.get(call.call_id)
        if live is not None:
            return live.state()
        session = self.control.sessions.get(call.call_id)
        if session is None or session.customer.ended:
            from pbx_bridge.control import CallControlError

            raise CallControlError("call_ended", f"call {call.call_id} has ended")
        # The tap first (the file starts with the answer), the row right after.
        rec_id, path = self.recordings.plan()
        loop = asyncio.get_running_loop()
        tap = StereoRecording(path, self.writer, header_sync_seconds=self.header_sync_seconds,
                              on_failure=lambda t: self._failed(call, t), loop=loop)
        live = LiveRecording(rec_id, tap, call.call_id, call.case_id,
                             [{"agent_id": call.agent_id, "from": 0.0, "to": None}]
                             if call.agent_id else [])
        self.live[call.call_id] = live
        if session.held:
            tap.set_held(True)
        if session.mixer is not None:
            session.mixer.attach_tap(tap)
        else:  # a plain call stays on the relay; the relay recorder decodes a copy
            customer, agent = session.customer.call.rtp, session.agent.call.rtp \
                if session.agent is not None else None
            if customer is None or agent is None or customer.peer is not agent:
                self.control._mixer(session)  # attaches the tap (moved_to_mixer)
            else:
                RelayRecorder.of(self.control.server.media).attach(tap, customer, agent)
        metrics.recordings_started.labels("sip", "call").inc()
        metrics.recordings_active.inc()
        try:
            await self.recordings.begin(
                case_id=call.case_id, kind="call", backend="sip",
                retention_days=retention_days, call_id=call.call_id, queue_id=call.queue_id,
                agent_id=call.agent_id, customer_id=getattr(session.active, "customer_id", None),
                planned=(rec_id, path))
        except Exception:
            live.row_missing = True
            raise
        finally:
            live.row_ready.set()
        return live.state()

    async def pause(self, call: Any, by: str) -> dict[str, Any]:
        live = self._live(call)
        live.tap.pause(by)
        return live.state()

    async def resume(self, call: Any, by: str) -> tuple[dict[str, Any], float]:
        live = self._live(call)
        seconds = live.tap.resume(by)
        return live.state(), seconds

    def _live(self, call: Any) -> LiveRecording:
        live = self.live.get(call.call_id)
        if live is None:
            from pbx_bridge.control import CallControlError

            raise CallControlError("invalid_state", "this call is not being recorded")
        return live

    # -- hooks from SipCallControl ---------------------------------------------
    def moved_to_mixer(self, call_id: str, mixer: Any) -> None:
        """An operation moved the call from the relay into a mixer: the recording
        follows (same file, same clock)."""
        live = self.live.get(call_id)
        if live is None:
            return
        RelayRecorder.of(self.control.server.media).detach(live.tap)
        mixer.attach_tap(live.tap)

    def held(self, call_id: str, held: bool) -> None:
        live = self.live.get(call_id)
        if live is not None:
            live.tap.set_held(held)

    def agent_changed(self, call_id: str, agent_id: str | None) -> None:
        """A transfer or a promoted conference party: the same file goes on; the
        hand-over is a marker and the new agent a party."""
        live = self.live.get(call_id)
        if live is None:
            return
        previous = live.parties[-1] if live.parties else None
        if previous is not None and previous["agent_id"] == agent_id:
            return
        marker = live.tap.mark("handover", to_agent=agent_id,
                               from_agent=previous["agent_id"] if previous else None)
        at = round(marker.at, 2)  # after the mark: a batching feeder synced first
        if previous is not None and previous["to"] is None:
            previous["to"] = at
        live.parties.append({"agent_id": agent_id, "from": at, "to": None})

    def ended(self, call_id: str) -> None:
        """The call is over (its mixer closed, which stopped the tap): finish the row."""
        live = self.live.pop(call_id, None)
        if live is None:
            return
        if self.control is not None:
            RelayRecorder.of(self.control.server.media).detach(live.tap)
        live.tap.stop()
        task = asyncio.ensure_future(self._finish(live))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, live: LiveRecording) -> None:
        metrics.recordings_active.dec()
        await live.row_ready.wait()
        if live.row_missing:
            await live.tap.wait()
            log.error("recording %s has a file but no row (the database failed at its "
                      "start): %s", live.recording_id, live.tap.path)
            return
        try:
            result = await live.tap.wait()
            end = round(result.seconds, 2)
            for party in live.parties:
                if party["to"] is None:
                    party["to"] = end
            row = await self.recordings.finish(
                live.recording_id, seconds=result.seconds, size_bytes=result.size_bytes,
                checksum=result.checksum, error=result.error, parties=live.parties,
                pauses=live.tap.pauses, markers=[m.as_dict() for m in live.tap.markers])
            agents = ", ".join(dict.fromkeys(str(p["agent_id"]) for p in live.parties
                                             if p["agent_id"])) or "nobody"
            body = (f"Call recorded ({result.seconds:.0f} s, with {agents})" if not
                    result.error else f"Call recording failed: {result.error}")
            await self.recordings.cases.add_timeline(
                live.case_id, kind="recording", channel="voice", direction="internal",
                body=body,
                meta={"event": "recording", "recording_id": row.id, "call_id": live.call_id,
                      "seconds": row.duration_seconds, "status": row.status,
                      "agents": [p["agent_id"] for p in live.parties],
                      "pauses": row.pauses})
        except Exception:
            log.exception("finishing recording %s failed", live.recording_id)

    def _failed(self, call: Any, tap: StereoRecording) -> None:
        """Event loop, from the writer thread: logged there; counted and shown here."""
        metrics.recordings_failed.labels("sip", "call").inc()
        live = self.live.get(call.call_id)
        if live is not None:
            if live.failure_reported:
                return
            live.failure_reported = True
        if self.report is not None:
            coro = self.report(call, "recording_failed",
                               f"Recording failed, the call goes on unrecorded: {tap.error}",
                               {"error": tap.error})
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for call_id in list(self.live):
            self.ended(call_id)
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        await asyncio.to_thread(self.writer.stop)
