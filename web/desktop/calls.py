"""Call control under /api/calls/{call_ref}/…: hold, mute, hang-up, DTMF, transfers,
conference and supervisor monitoring.

`call_ref` is the call's id or its task's id (the desktop knows the task). The routes
only translate HTTP to `ctx.services["call_control"]` (pbx_bridge.control.CallControl)
and its refusals to statuses by their `code`; which voice backend holds the call is
not known here. Agents act on their own calls (else 403); supervisors and admins on
any, and only they may monitor. Writes need the CSRF token like every other write.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from web.desktop.auth import current_user, requires
from web.desktop.bodies import Body, http_error, read_json
from web.desktop.state import ctx_of, state_of

routes = web.RouteTableDef()

STATUS_BY_CODE = {
    "unknown_call": 404, "call_ended": 409, "not_your_call": 403, "unknown_target": 422,
    "invalid_state": 409, "invalid_argument": 422, "target_unavailable": 409,
    "not_supported": 501, "owner_unavailable": 503,
}


class TransferBody(Body):
    kind: Literal["agent", "queue", "number"]
    target: str = Field(min_length=1, max_length=64)
    reason: str | None = Field(None, max_length=300)


class ConsultBody(Body):
    kind: Literal["agent", "number"]
    target: str = Field(min_length=1, max_length=64)


class CompleteTransferBody(Body):
    reason: str | None = Field(None, max_length=300)


class ConferenceBody(Body):
    """Empty: the consulted party joins; or a third party to ring and add."""

    kind: Literal["agent", "number"] | None = None
    target: str | None = Field(None, min_length=1, max_length=64)


class DtmfBody(Body):
    digits: str = Field(pattern=r"^[0-9*#A-Da-d]{1,32}$")


class MonitorBody(Body):
    mode: Literal["listen", "whisper", "barge"]
    phone: str | None = Field(None, min_length=1, max_length=64,
                              description="the SIP user name of the supervisor's phone; "
                                          "default: the phone of the user's agent")


def _control(request: web.Request) -> Any:
    control = ctx_of(request).services.get("call_control")
    if control is None:
        raise http_error(501, "call control is not wired (services['call_control'])")
    return control


async def _run(request: web.Request, method: str, *args: Any, **kwargs: Any
               ) -> web.Response:
    try:
        view = await getattr(_control(request), method)(
            request.match_info["call_ref"], *args, actor=current_user(request), **kwargs)
    except (TypeError, AttributeError, AssertionError):
        raise
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code not in STATUS_BY_CODE:
            raise
        raise http_error(STATUS_BY_CODE[code], str(exc), code=code,
                         **getattr(exc, "details", {})) from None
    return web.json_response({"call": view.as_dict()})


async def _body(request: web.Request, model: type[Any]) -> Any:
    return await read_json(request, model, limit=state_of(request).settings.api_max_body_bytes)


@routes.get("/api/calls/{call_ref}")
@requires("agent")
async def call_view(request: web.Request) -> web.Response:
    return await _run(request, "view")


def _simple(operation: str) -> Any:
    @requires("agent")
    async def handler(request: web.Request) -> web.Response:
        return await _run(request, operation)

    handler.__name__ = f"call_{operation}"
    return handler


for _op in ("hold", "resume", "mute", "unmute", "hangup"):
    routes.post(f"/api/calls/{{call_ref}}/{_op}")(_simple(_op))


@routes.post("/api/calls/{call_ref}/dtmf")
@requires("agent")
async def call_dtmf(request: web.Request) -> web.Response:
    data = await _body(request, DtmfBody)
    return await _run(request, "send_dtmf", data.digits)


@routes.post("/api/calls/{call_ref}/transfer")
@requires("agent")
async def call_transfer(request: web.Request) -> web.Response:
    data = await _body(request, TransferBody)
    return await _run(request, "blind_transfer", data.kind, data.target, reason=data.reason)


@routes.post("/api/calls/{call_ref}/consult")
@requires("agent")
async def call_consult(request: web.Request) -> web.Response:
    data = await _body(request, ConsultBody)
    return await _run(request, "consult", data.kind, data.target)


@routes.post("/api/calls/{call_ref}/consult/complete")
@requires("agent")
async def call_consult_complete(request: web.Request) -> web.Response:
    data = await _body(request, CompleteTransferBody)
    return await _run(request, "complete_consult", reason=data.reason)


@routes.post("/api/calls/{call_ref}/consult/cancel")
@requires("agent")
async def call_consult_cancel(request: web.Request) -> web.Response:
    return await _run(request, "cancel_consult")


@routes.post("/api/calls/{call_ref}/conference")
@requires("agent")
async def call_conference(request: web.Request) -> web.Response:
    data = await _body(request, ConferenceBody)
    if (data.kind is None) != (data.target is None):
        raise http_error(422, "give both kind and target, or neither (the consulted party)")
    return await _run(request, "conference", kind=data.kind, target=data.target)


@routes.post("/api/calls/{call_ref}/monitor")
@requires("supervisor")
async def call_monitor(request: web.Request) -> web.Response:
    data = await _body(request, MonitorBody)
    phone = data.phone or _own_phone(request)
    return await _run(request, "monitor", data.mode, phone=phone or "")


def _own_phone(request: web.Request) -> str | None:
    """The supervisor's phone: that of the agent their user is linked to (the SIP
    user, or the browser phone of an agent who has no other)."""
    agent_id = current_user(request).agent_id
    agent = next((a for a in ctx_of(request).config.agents if a.id == agent_id), None)
    return agent.phone_address() if agent is not None else None


OPENAPI_OPERATIONS: list[tuple[str, str, str, str, str, type | None]] = [
    ("get", "/api/calls/{call_ref}", "calls",
     "A live call: state, hold time, mute, parties, monitors (call id or task id)", "agent",
     None),
    *[("post", f"/api/calls/{{call_ref}}/{op}", "calls", summary, "agent", None)
      for op, summary in (("hold", "Put the caller on hold (the queue's music)"),
                          ("resume", "Take the caller off hold"),
                          ("mute", "Mute the agent towards the caller"),
                          ("unmute", "Unmute the agent"),
                          ("hangup", "The agent leaves the call (ends a two-party call)"))],
    ("post", "/api/calls/{call_ref}/dtmf", "calls", "Send DTMF to the far end", "agent",
     DtmfBody),
    ("post", "/api/calls/{call_ref}/transfer", "calls",
     "Blind transfer to an agent, a queue or a number (422 names an unknown target)",
     "agent", TransferBody),
    ("post", "/api/calls/{call_ref}/consult", "calls",
     "Consult an agent or a number; the caller is held", "agent", ConsultBody),
    ("post", "/api/calls/{call_ref}/consult/complete", "calls",
     "Complete the consultative transfer (caller and target talk; the agent leaves)",
     "agent", CompleteTransferBody),
    ("post", "/api/calls/{call_ref}/consult/cancel", "calls",
     "Cancel the consult and go back to the caller", "agent", None),
    ("post", "/api/calls/{call_ref}/conference", "calls",
     "Conference: the consulted party joins, or a third party is rung and added", "agent",
     ConferenceBody),
    ("post", "/api/calls/{call_ref}/monitor", "calls",
     "Listen, whisper to the agent, or barge in from the supervisor's phone (audited)",
     "supervisor", MonitorBody),
]
