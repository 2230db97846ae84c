"""`/healthz` (liveness and dependencies) and `/metrics` (Prometheus text format)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

from core import metrics
from core.health import Degraded
from web.context import CONTEXT

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with ctx.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    for name, check in ctx.health_checks.items():
        try:
            async with asyncio.timeout(2):
                await check()
            checks[name] = "ok"
        except Exception as exc:
            # A check's own "degraded" message says what is wrong and holds no secret;
            # any other exception is named by its type only (its text might).
            said = str(exc) if isinstance(exc, Degraded) else type(exc).__name__
            checks[name] = f"error: {said}"[:300]
    healthy = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ok" if healthy else "degraded", "node": ctx.node_id,
                              "checks": checks}, status=200 if healthy else 503)


@routes.get("/metrics")
async def prometheus(request: web.Request) -> web.Response:
    await metrics.refresh()
    return web.Response(body=metrics.render(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
