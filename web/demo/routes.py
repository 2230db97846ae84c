"""HTTP routes of the customer simulator.

The page and its JSON API are behind the desktop's log-in (any role; CSRF on every
write, as the desktop's own routes): the simulator sends signed webhooks and places
calls, so it is not open to whoever reaches the port. The Graph API stand-in is called
by the node's own WhatsApp adapter and, like Meta's, authenticates that caller by its
bearer access token.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from aiohttp import web

from web.demo.personas import PERSONAS
from web.demo.simulator import Simulator, graph_error
from web.desktop.auth import requires
from web.desktop.pages import render
from web.middleware import json_error

SIMULATOR: web.AppKey[Simulator] = web.AppKey("centrale_demo_simulator", Simulator)

WA_ID = re.compile(r"^[1-9][0-9]{6,14}$")
PHONE = re.compile(r"^\+?[0-9]{3,15}$")
MAX_TEXT = 4096
MAX_NAME = 60
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
       "base-uri 'none'")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/demo", page)
    app.router.add_get("/demo/api/state", state)
    app.router.add_post("/demo/api/whatsapp", whatsapp_send)
    app.router.add_post("/demo/api/whatsapp/read", whatsapp_read)
    app.router.add_post("/demo/api/calls", call_start)
    app.router.add_post("/demo/api/calls/{call_id}/dtmf", call_dtmf)
    app.router.add_post("/demo/api/calls/{call_id}/hangup", call_hangup)
    app.router.add_get("/demo/api/calls/{call_id}/audio.wav", call_audio)
    app.router.add_post("/demo/api/desk/{agent}/answer", desk_answer)
    app.router.add_post("/demo/api/desk/{agent}/hangup", desk_hangup)
    app.router.add_post("/demo/graph/{version}/{phone_number_id}/messages", graph_messages)


def _sim(request: web.Request) -> Simulator:
    return request.app[SIMULATOR]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be JSON"}),
                                 content_type="application/json") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}),
                                 content_type="application/json")
    return data


def _name(data: dict[str, Any]) -> str:
    name = str(data.get("name") or "").strip()
    if len(name) > MAX_NAME:
        raise _bad(f"name is longer than {MAX_NAME} characters")
    return name


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}),
                              content_type="application/json")


def _wa_id(value: Any) -> str:
    wa_id = str(value or "").strip().lstrip("+").replace(" ", "")
    if not WA_ID.match(wa_id):
        raise _bad("the mobile number must be 7 to 15 digits, country code first "
                   "(+31612345678)")
    return wa_id


# ---- the page ----------------------------------------------------------------------

@requires("agent")
async def page(request: web.Request) -> web.Response:
    cfg = request.app[SIMULATOR].ctx.config
    numbers = [{"number": n.number, "name": n.name or n.number} for n in cfg.numbers]
    desk = [{"agent": a, "name": next((x.name for x in cfg.agents if x.id == a), a)}
            for a in request.app[SIMULATOR].desk_phones]
    resp = render(request, "demo.html", personas=PERSONAS, numbers=numbers, desk=desk)
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-store"
    return resp


@requires("agent")
async def state(request: web.Request) -> web.Response:
    """The customer's thread and calls (`wa_id`, optional) and the desk phones."""
    sim = _sim(request)
    wa_id = _wa_id(request.query["wa_id"]) if request.query.get("wa_id") else None
    thread = sim.threads.get(wa_id) if wa_id else None
    return web.json_response({
        "wa_id": wa_id,
        "messages": [m.as_json() for m in thread.messages] if thread else [],
        "calls": [c.summary() for c in sim.calls.values()
                  if wa_id and c.caller.lstrip("+") == wa_id],
        "desk_phones": [p.summary() for p in sim.desk_phones.values()],
    })


# ---- WhatsApp ------------------------------------------------------------------------

@requires("agent")
async def whatsapp_send(request: web.Request) -> web.Response:
    data = await _body(request)
    wa_id, name = _wa_id(data.get("wa_id")), _name(data)
    text = str(data.get("text") or "")
    if not text.strip():
        return json_error(400, "type a message first")
    if len(text) > MAX_TEXT:
        return json_error(400, f"a WhatsApp message is at most {MAX_TEXT} characters")
    try:
        sim = await _sim(request).customer_sends(wa_id, name, text)
    except LookupError as exc:
        return json_error(409, str(exc))
    return web.json_response(sim.as_json(), status=200 if sim.status == "posted" else 502)


@requires("agent")
async def whatsapp_read(request: web.Request) -> web.Response:
    data = await _body(request)
    count = await _sim(request).customer_reads(_wa_id(data.get("wa_id")))
    return web.json_response({"read": count})


@requires("agent")
async def call_start(request: web.Request) -> web.Response:
    data = await _body(request)
    number = str(data.get("number") or "").strip().replace(" ", "")
    if not PHONE.match(number):
        return json_error(400, "the caller's number must be 3 to 15 digits, optionally "
                               "with a leading +")
    sim = _sim(request)
    dial = str(data.get("dial") or "")
    known = [n.number for n in sim.ctx.config.numbers]
    if dial not in known:
        return json_error(400, f"dial one of the demo's numbers: {', '.join(known)}")
    try:
        call = await sim.call(number, _name(data), dial)
    except (LookupError, OverflowError) as exc:
        return json_error(409, str(exc))
    return web.json_response(call.summary(), status=201)


def _call(request: web.Request) -> Any:
    call = _sim(request).calls.get(request.match_info["call_id"])
    if call is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "no such call"}),
                               content_type="application/json")
    return call


@requires("agent")
async def call_dtmf(request: web.Request) -> web.Response:
    call = _call(request)
    digit = str((await _body(request)).get("digit") or "")
    try:
        await call.send_digit(digit)
    except ValueError as exc:
        return json_error(400, str(exc))
    except RuntimeError as exc:
        return json_error(409, str(exc))
    return web.json_response(call.summary())


@requires("agent")
async def call_hangup(request: web.Request) -> web.Response:
    call = _call(request)
    await call.hang_up()
    return web.json_response(call.summary())


@requires("agent")
async def call_audio(request: web.Request) -> web.Response:
    call = _call(request)
    return web.Response(body=call.recording_wav(), content_type="audio/wav",
                        headers={"Cache-Control": "no-store"})


def _desk(request: web.Request) -> Any:
    phone = _sim(request).desk_phones.get(request.match_info["agent"])
    if phone is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "no demo desk phone for that agent"}),
                               content_type="application/json")
    return phone


@requires("agent")
async def desk_answer(request: web.Request) -> web.Response:
    phone = _desk(request)
    try:
        await phone.answer()
    except RuntimeError as exc:
        return json_error(409, str(exc))
    return web.json_response(phone.summary())


@requires("agent")
async def desk_hangup(request: web.Request) -> web.Response:
    phone = _desk(request)
    await phone.hang_up()
    return web.json_response(phone.summary())


# ---- the Graph API stand-in -------------------------------------------------------------

async def graph_messages(request: web.Request) -> web.Response:
    """`POST /{version}/{phone_number_id}/messages`, as Meta answers it."""
    sim = _sim(request)
    try:
        wa = sim.whatsapp
    except LookupError as exc:
        return web.json_response(graph_error(100, str(exc)), status=400)
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(token.encode(), wa.access_token.get_secret_value().encode()):
        return web.json_response(graph_error(190, "Invalid OAuth access token."),
                                 status=401)
    if request.match_info["phone_number_id"] != wa.phone_number_id:
        return web.json_response(graph_error(100, "Unsupported post request: unknown "
                                                   "phone number id"), status=400)
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return web.json_response(graph_error(100, "body is not JSON"), status=400)
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return web.json_response(graph_error(100, "messaging_product must be whatsapp"),
                                 status=400)
    status, answer = sim.graph_send(body)
    return web.json_response(answer, status=status)
