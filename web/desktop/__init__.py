"""The web app people use: auth and roles, the agent desktop with the screen-pop, the
supervisor wallboard and reports, admin pages, the REST API with its OpenAPI document,
the one websocket, and outgoing webhooks.

`setup(app)` registers everything on the app `web.app.create_app` builds. What it needs
from the rest of Centrale comes from the `WebContext` (see docs/web.md, "Wiring").
"""

from __future__ import annotations

import logging
from dataclasses import replace

from aiohttp import web

from core.bus import Subscription
from web.context import CONTEXT
from web.desktop import api, calls, pages, recording_routes, report_routes
from web.desktop import assist as assist_api
from web.desktop.access import TaskLedger
from web.desktop.cluster_stats import ClusterStats
from web.desktop.figures import History
from web.desktop.hub import Hub
from web.desktop.openapi import openapi_json
from web.desktop.state import (
    DESKTOP,
    STATIC,
    DesktopSettings,
    DesktopState,
    make_templates,
)
from web.desktop.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

_OWN_PREFIXES = ("/login", "/logout", "/desktop", "/cases", "/wallboard", "/reports",
                 "/admin", "/api/", "/static/")
_SUBS: web.AppKey[list[Subscription]] = web.AppKey("centrale_desktop_subs", list)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def setup(app: web.Application) -> None:
    ctx = app[CONTEXT]
    settings = ctx.services.get("desktop_settings") or DesktopSettings()
    if not isinstance(settings, DesktopSettings):
        settings = replace(DesktopSettings(), **dict(settings))
    state = DesktopState(ctx=ctx, settings=settings, templates=make_templates(), hub=Hub(),
                         ledger=TaskLedger(ctx.db, ctx.clock),
                         webhooks=WebhookDispatcher(ctx, settings),
                         history=History(ctx.db, ctx.clock),
                         cluster=ClusterStats(ctx.clock.monotonic, own_node=ctx.node_id,
                                              stale_after=settings.stats_node_stale_seconds))
    app[DESKTOP] = state
    app[_SUBS] = []
    app.add_routes(pages.routes)
    app.add_routes(api.routes)
    app.add_routes(report_routes.routes)
    app.add_routes(calls.routes)
    app.add_routes(recording_routes.routes)
    app.add_routes(assist_api.routes)
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/ws", state.hub.handle)
    app.router.add_static("/static/", STATIC, name="static", append_version=False)
    app.on_startup.append(_start)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_stop)
    app.on_response_prepare.append(_security_headers)


async def _start(app: web.Application) -> None:
    state = app[DESKTOP]
    bus = state.ctx.bus
    subs = app[_SUBS]
    await state.hub.start(state)
    subs.append(await bus.subscribe("task.*", state.ledger.record, group="web.ledger"))
    subs.append(await bus.subscribe("*", state.webhooks.enqueue, group="web.webhooks"))
    await state.webhooks.start()


async def _close_sockets(app: web.Application) -> None:
    """on_shutdown runs before aiohttp waits for in-flight requests: close websockets
    first so they do not hold the shutdown for its timeout."""
    await app[DESKTOP].hub.close_sockets()


async def _stop(app: web.Application) -> None:
    state = app[DESKTOP]
    for sub in app[_SUBS]:
        await sub.close()
    await state.webhooks.stop()
    await state.hub.stop()


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.path.startswith(_OWN_PREFIXES) and request.path not in ("/", "/ws"):
        return
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")
