"""Recording a live call, whatever the backend: the queue's policy at the answer, and
start / pause / resume from the desktop and the API.

`CallRecordings` sits beside `control.CallControlService` and uses it to find the
call and check who may act on it (the agent on the call, supervisors, admins), and to
write each operation on the case timeline and the bus (`call.recording_paused`, …).
The media work is the backend's (`RecordingBackend`): `sip.recording.SipCallRecorder`
(a tap on the call's mixer) or `asterisk.recording.AsteriskCallRecorder`
(MixMonitor and its mute action).

Policy (docs/recording.md): `off` — nothing, and a start is refused (409); `always` —
recorded from the agent's answer unless the caller declined at the consent prompt
(the IVR sets `recording_declined` on the call); `on_demand` — the agent starts it.
Pause is for card numbers (PCI DSS): the paused stretch is silence in the file, and
the timeline says who paused and for how long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from config.schema.recording import QueueRecording
from pbx_bridge.control import Actor, CallControlError, CallControlService, ControlledCall

log = logging.getLogger(__name__)


class RecordingBackend(Protocol):
    def state(self, call: ControlledCall) -> dict[str, Any] | None: ...

    async def begin(self, call: ControlledCall, *, retention_days: int) -> dict[str, Any]: ...

    async def pause(self, call: ControlledCall, by: str) -> dict[str, Any]: ...

    async def resume(self, call: ControlledCall, by: str) -> tuple[dict[str, Any], float]: ...


@dataclass(frozen=True)
class SystemActor:
    """The policy acting at the answer (not a person)."""

    username: str = "recording-policy"
    role: str = "admin"
    agent_id: str | None = None


class CallRecordings:
    def __init__(self, control: CallControlService,
                 backends: dict[str, RecordingBackend]) -> None:
        self.control = control
        self.backends = backends

    def policy(self, queue_id: str | None) -> QueueRecording:
        if queue_id:
            try:
                return self.control.config.queue(queue_id).recording
            except StopIteration:
                pass
        return QueueRecording()

    def _backend(self, call: ControlledCall) -> RecordingBackend:
        backend = self.backends.get(call.backend)
        if backend is None:
            raise CallControlError("not_supported",
                                   f"recording is not available on {call.backend}")
        return backend

    def _view(self, call: ControlledCall, state: dict[str, Any] | None) -> dict[str, Any]:
        policy = self.policy(call.queue_id)
        return {"call_id": call.call_id, "case_id": call.case_id, "mode": policy.mode,
                "declined": bool(getattr(call.active, "recording_declined", False)),
                "recording": state}

    # -- at the answer ---------------------------------------------------------
    async def connected(self, active: Any) -> None:
        """The agent answered: start recording if the queue's policy says `always`."""
        try:
            call = self.control._find(active.call_id, SystemActor())
            policy = self.policy(call.queue_id)
            if policy.mode != "always" or getattr(active, "recording_declined", False):
                return
            await self._backend(call).begin(call, retention_days=policy.retention_days)
        except CallControlError as exc:
            log.info("call %s not recorded: %s", active.call_id, exc)
        except Exception:  # recording must never take the call down
            log.exception("starting the recording of %s failed", active.call_id)

    # -- the desktop and the API -----------------------------------------------
    async def state(self, call_ref: str, actor: Actor) -> dict[str, Any]:
        call = self.control._find(call_ref, actor)
        return self._view(call, self._backend(call).state(call))

    async def begin(self, call_ref: str, actor: Actor) -> dict[str, Any]:
        call = self.control._find(call_ref, actor)
        policy = self.policy(call.queue_id)
        if policy.mode == "off":
            raise CallControlError("invalid_state", "this queue's calls are not recorded")
        if getattr(call.active, "recording_declined", False):
            raise CallControlError("invalid_state", "the caller declined to be recorded")
        backend = self._backend(call)
        if backend.state(call) is not None:
            return self._view(call, backend.state(call))
        state = await backend.begin(call, retention_days=policy.retention_days)
        await self.control.report(call, "recording_started",
                                  f"{actor.username} started recording the call",
                                  {"actor": actor.username,
                                   "recording_id": state.get("recording_id")})
        return self._view(call, state)

    async def pause(self, call_ref: str, actor: Actor) -> dict[str, Any]:
        call = self.control._find(call_ref, actor)
        backend = self._backend(call)
        current = backend.state(call)
        if current is None:
            raise CallControlError("invalid_state", "this call is not being recorded")
        if current.get("status") == "paused":
            raise CallControlError("invalid_state", "the recording is paused already")
        state = await backend.pause(call, actor.username)
        await self.control.report(call, "recording_paused",
                                  f"{actor.username} paused the recording",
                                  {"actor": actor.username,
                                   "recording_id": state.get("recording_id")})
        return self._view(call, state)

    async def resume(self, call_ref: str, actor: Actor) -> dict[str, Any]:
        call = self.control._find(call_ref, actor)
        backend = self._backend(call)
        current = backend.state(call)
        if current is None or current.get("status") != "paused":
            raise CallControlError("invalid_state", "the recording is not paused")
        state, seconds = await backend.resume(call, actor.username)
        await self.control.report(call, "recording_resumed",
                                  f"{actor.username} resumed the recording after "
                                  f"{seconds:.0f} s", {"actor": actor.username,
                                                       "paused_seconds": round(seconds, 1),
                                                       "recording_id":
                                                           state.get("recording_id")})
        return self._view(call, state)
