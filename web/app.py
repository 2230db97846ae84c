"""The aiohttp application: one app for the desktop, wallboard, admin, API and webhooks.

Route modules register themselves through `ROUTE_MODULES`: each exposes
`setup(app: web.Application) -> None`. A module that is not there yet (a channel not
built) is skipped, so the app always starts with what exists.
"""

from __future__ import annotations

import importlib
import logging

from aiohttp import web

from web import health
from web.context import CONTEXT, WebContext
from web.middleware import errors_and_metrics, quiet_malformed_requests

log = logging.getLogger(__name__)

ROUTE_MODULES = (
    "web.channels",  # webhooks and the webchat widget/socket (thin, delegate to digital/)
    "web.desktop",  # auth, agent desktop, supervisor, admin, REST API, websockets
    "web.demo",  # the demo's customer simulator: routes only when server.demo.enabled
)


def create_app(ctx: WebContext) -> web.Application:
    quiet_malformed_requests()
    app = web.Application(
        middlewares=[errors_and_metrics],
        client_max_size=ctx.config.server.web.max_body_bytes,
    )
    app[CONTEXT] = ctx
    app.add_routes(health.routes)
    for name in ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.setup(app)
    return app
