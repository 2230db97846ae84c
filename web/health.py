"""`/healthz` (liveness and dependencies) and `/metrics` (Prometheus text format)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

from core import metrics
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
            checks[name] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ok" if healthy else "degraded", "node": ctx.node_id,
                              "checks": checks}, status=200 if healthy else 503)


@routes.get("/metrics")
async def prometheus(request: web.Request) -> web.Response:
    return web.Response(body=metrics.render(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
