"""Webhook routes and the webchat widget: thin transport glue over digital/.

Each handler reads the request as its provider sends it (raw bytes for Meta's
signature, the form for Twilio's, a websocket for webchat), hands it to the channel
adapter in `ctx.channels`, and turns the adapter's answer into a Response. No business
rule lives here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from core import metrics
from web.context import CONTEXT
from web.middleware import json_error, quiet_malformed_requests

STATIC = Path(__file__).parent / "static"


def setup(app: web.Application) -> None:
    quiet_malformed_requests()
    app.router.add_get("/webhooks/whatsapp", whatsapp_verify)
    app.router.add_post("/webhooks/whatsapp", whatsapp_webhook)
    app.router.add_post("/webhooks/twilio/sms", twilio_sms)
    app.router.add_post("/webhooks/twilio/status", twilio_status)
    app.router.add_get("/webchat/widget.js", webchat_widget)
    app.router.add_get("/webchat/ws", webchat_socket)
    app.on_shutdown.append(_close_webchat_sockets)


async def _close_webchat_sockets(app: web.Application) -> None:
    """Open websockets would hold the shutdown for its whole timeout otherwise."""
    ctx = app[CONTEXT]
    adapter = ctx.channels.get("webchat") or getattr(
        ctx.services.get("digital"), "adapters", {}).get("webchat")
    if adapter is not None:
        await adapter.close_sockets()


def _adapter(request: web.Request, name: str) -> Any:
    ctx = request.app[CONTEXT]
    adapter = ctx.channels.get(name)
    if adapter is None:  # wired as one service: ctx.services["digital"] (digital.build)
        adapter = getattr(ctx.services.get("digital"), "adapters", {}).get(name)
    if adapter is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f"channel {name} is not enabled"}),
                               content_type="application/json")
    return adapter


def _reply(reply: Any, channel: str | None = None) -> web.Response:
    if channel is not None and 400 <= reply.status < 500:
        metrics.webhook_rejected(channel, reply.status)
    if isinstance(reply.body, dict | list):
        return web.Response(status=reply.status, text=json.dumps(reply.body),
                            content_type="application/json")
    return web.Response(status=reply.status, text=str(reply.body),
                        content_type=reply.content_type.split(";")[0])


async def _raw_body(request: web.Request, channel: str) -> bytes | web.Response:
    limit = request.app[CONTEXT].config.server.web.max_body_bytes
    try:
        if request.content_length is None or request.content_length <= limit:
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        pass
    metrics.webhook_rejected(channel, 413)
    return json_error(413, f"body over the {limit}-byte limit")


# ---- WhatsApp Cloud API ----------------------------------------------------------

async def whatsapp_verify(request: web.Request) -> web.Response:
    q = request.query
    return _reply(_adapter(request, "whatsapp").verify_subscription(
        q.get("hub.mode"), q.get("hub.verify_token"), q.get("hub.challenge")))


async def whatsapp_webhook(request: web.Request) -> web.Response:
    adapter = _adapter(request, "whatsapp")
    raw = await _raw_body(request, "whatsapp")
    if isinstance(raw, web.Response):
        return raw
    return _reply(await adapter.handle_webhook(
        raw, request.headers.get("X-Hub-Signature-256"), request.headers.get("Content-Type")),
        "whatsapp")


# ---- Twilio ------------------------------------------------------------------------

async def _twilio(request: web.Request, kind: str) -> web.Response:
    adapter = _adapter(request, "twilio")
    raw = await _raw_body(request, "sms")
    if isinstance(raw, web.Response):
        return raw
    return _reply(await adapter.handle_webhook(
        kind, request.path_qs, raw, request.headers.get("Content-Type"),
        request.headers.get("X-Twilio-Signature"), request.url), "sms")


async def twilio_sms(request: web.Request) -> web.Response:
    return await _twilio(request, "message")


async def twilio_status(request: web.Request) -> web.Response:
    return await _twilio(request, "status")


# ---- Webchat -----------------------------------------------------------------------

async def webchat_widget(request: web.Request) -> web.Response:
    adapter = _adapter(request, "webchat")
    script = (STATIC / "widget.js").read_text(encoding="utf-8")
    config = json.dumps({"title": adapter.cfg.title})
    return web.Response(text=script.replace("/*CENTRALE_CONFIG*/{}", config),
                        content_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=300",
                                 "Access-Control-Allow-Origin": "*"})


async def webchat_socket(request: web.Request) -> web.StreamResponse:
    adapter = _adapter(request, "webchat")
    origin = request.headers.get("Origin")
    if not adapter.origin_allowed(origin):
        return json_error(403, f"origin {origin!r} is not allowed for webchat")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    await adapter.serve(WebSocketTransport(ws))
    return ws


class WebSocketTransport:
    """The socket as the webchat protocol sees it: JSON in, JSON out."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(frame, default=str))

    async def frames(self):  # type: ignore[no-untyped-def]
        from aiohttp import WSMsgType

        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                yield msg.data
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code=code, message=reason.encode())

    @property
    def closed(self) -> bool:
        return self.ws.closed
