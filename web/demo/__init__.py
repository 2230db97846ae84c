"""The demo's customer simulator at `/demo` (docs/demo.md).

`setup(app)` adds the routes only when the config says `server.demo.enabled: true`;
otherwise nothing is registered and every `/demo` path is a plain 404. Nothing in
Centrale imports this package: `web.app` loads it by name like every route module,
and `centrale demo seed` runs `web.demo.seed`.
"""

from __future__ import annotations

from aiohttp import web

from web.context import CONTEXT
from web.demo.routes import SIMULATOR, add_routes
from web.demo.simulator import Simulator


def setup(app: web.Application) -> None:
    ctx = app[CONTEXT]
    if not ctx.config.server.demo.enabled:
        return
    simulator = Simulator(ctx)
    app[SIMULATOR] = simulator
    add_routes(app)

    async def start(_: web.Application) -> None:
        await simulator.start()

    async def stop(_: web.Application) -> None:
        await simulator.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
