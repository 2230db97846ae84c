"""Recordings over HTTP: the live call's recording (start, pause, resume) and the
case's recordings (list, play, download).

The routes translate HTTP only: `services["call_recordings"]`
(pbx_bridge.recording.CallRecordings) for live calls, `services["recordings"]`
(cases.recordings.RecordingService) for files — which decides who may hear a file
(the agents who handled the case, supervisors, admins; others 403) and audits every
play and download. A file is only ever found by its recording's id; the id is never
a path, and a row whose path leaves the recordings directory is a 404.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from web.desktop.auth import current_user, requires
from web.desktop.bodies import http_error
from web.desktop.calls import STATUS_BY_CODE
from web.desktop.state import ctx_of

routes = web.RouteTableDef()

_ID = re.compile(r"^[0-9a-z]{26}$")


def _service(request: web.Request, name: str) -> Any:
    service = ctx_of(request).services.get(name)
    if service is None:
        raise http_error(501, f"recording is not wired (services[{name!r}])")
    return service


async def _live(request: web.Request, operation: str) -> web.Response:
    calls = _service(request, "call_recordings")
    try:
        view = await getattr(calls, operation)(request.match_info["call_ref"],
                                               current_user(request))
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code not in STATUS_BY_CODE:
            raise
        raise http_error(STATUS_BY_CODE[code], str(exc), code=code) from None
    return web.json_response(view)


@routes.get("/api/calls/{call_ref}/recording")
@requires("agent")
async def call_recording(request: web.Request) -> web.Response:
    return await _live(request, "state")


def _operation(operation: str) -> Any:
    @requires("agent")
    async def handler(request: web.Request) -> web.Response:
        return await _live(request, operation)

    handler.__name__ = f"call_recording_{operation}"
    return handler


for _path, _op in (("start", "begin"), ("pause", "pause"), ("resume", "resume")):
    routes.post(f"/api/calls/{{call_ref}}/recording/{_path}")(_operation(_op))


def recording_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "case_id": row.case_id, "call_id": row.call_id, "kind": row.kind,
            "backend": row.backend, "queue_id": row.queue_id, "status": row.status,
            "started_at": row.started_at.isoformat(),
            "duration_seconds": row.duration_seconds, "size_bytes": row.size_bytes,
            "checksum": row.checksum, "parties": row.parties, "pauses": row.pauses,
            "markers": row.markers, "error": row.error,
            "deleted_at": row.deleted_at.isoformat() if row.deleted_at else None,
            "deleted_reason": row.deleted_reason,
            "play_url": f"/api/recordings/{row.id}/play",
            "download_url": f"/api/recordings/{row.id}/download"}


@routes.get("/api/cases/{case_id}/recordings")
@requires("agent")
async def case_recordings(request: web.Request) -> web.Response:
    """The case's recordings the caller may hear (an agent who never handled the case
    gets 403, as for the files)."""
    recordings = _service(request, "recordings")
    case_id = request.match_info["case_id"]
    user = current_user(request)
    if user.role == "agent" and not (user.agent_id and await recordings.handled_case(
            user.agent_id, case_id)):
        raise http_error(403, "only the agents who handled this case may hear its recordings")
    rows = await recordings.for_case(case_id)
    return web.json_response({"recordings": [recording_json(r) for r in rows]})


async def _file(request: web.Request, action: str) -> web.StreamResponse:
    from cases import NotFound
    from cases.recordings import Forbidden

    recordings = _service(request, "recordings")
    rec_id = request.match_info["recording_id"]
    if not _ID.match(rec_id):
        raise http_error(404, "no such recording")
    try:
        found = await recordings.open_for(rec_id, current_user(request), action)
    except NotFound:
        raise http_error(404, "no such recording") from None
    except Forbidden:
        raise http_error(403, "only the agents who handled this case, supervisors and "
                              "admins may hear this recording") from None
    disposition = "attachment" if action == "download" else "inline"
    name = f"recording-{found.recording.case_id}-{found.recording.id}.wav"
    return web.FileResponse(found.path, headers={
        "Content-Type": "audio/wav", "Cache-Control": "private, no-store",
        "Content-Disposition": f'{disposition}; filename="{name}"'})


@routes.get("/api/recordings/{recording_id}/play")
@requires("agent")
async def recording_play(request: web.Request) -> web.StreamResponse:
    return await _file(request, "play")


@routes.get("/api/recordings/{recording_id}/download")
@requires("agent")
async def recording_download(request: web.Request) -> web.StreamResponse:
    return await _file(request, "download")


@routes.get("/api/recordings/{recording_id}/accesses")
@requires("supervisor")
async def recording_accesses(request: web.Request) -> web.Response:
    recordings = _service(request, "recordings")
    rows = await recordings.accesses(request.match_info["recording_id"])
    return web.json_response({"accesses": [
        {"username": a.username, "role": a.role, "action": a.action,
         "at": a.at.isoformat()} for a in rows]})


@routes.delete("/api/customers/{customer_id}/recordings")
@requires("admin")
async def erase_customer_recordings(request: web.Request) -> web.Response:
    """A customer's erasure request (GDPR art. 17): every recording of theirs is
    deleted now; the rows stay with `deleted_reason: erasure` (the proof it was done)."""
    recordings = _service(request, "recordings")
    customer_id = request.match_info["customer_id"]
    deleted = await recordings.erase_customer(customer_id)
    return web.json_response({"customer_id": customer_id, "deleted": deleted})


OPENAPI_OPERATIONS: list[tuple[str, str, str, str, str, type | None]] = [
    ("get", "/api/calls/{call_ref}/recording", "recordings",
     "The live call's recording: the queue's mode, status, paused stretches", "agent", None),
    ("post", "/api/calls/{call_ref}/recording/start", "recordings",
     "Start recording the call (queues with mode on_demand or always)", "agent", None),
    ("post", "/api/calls/{call_ref}/recording/pause", "recordings",
     "Pause the recording (card numbers): silence in the file, on the timeline", "agent",
     None),
    ("post", "/api/calls/{call_ref}/recording/resume", "recordings",
     "Resume a paused recording", "agent", None),
    ("get", "/api/cases/{case_id}/recordings", "recordings",
     "The case's recordings with parties, pauses and markers (agents who handled the case, "
     "supervisors, admins)", "agent", None),
    ("get", "/api/recordings/{recording_id}/play", "recordings",
     "The recording's WAV inline (audited)", "agent", None),
    ("get", "/api/recordings/{recording_id}/download", "recordings",
     "The recording's WAV as a download (audited)", "agent", None),
    ("get", "/api/recordings/{recording_id}/accesses", "recordings",
     "Who played or downloaded the recording, and who was refused", "supervisor", None),
    ("delete", "/api/customers/{customer_id}/recordings", "recordings",
     "Erase every recording of a customer (GDPR erasure); the deletion stays on record",
     "admin", None),
]
