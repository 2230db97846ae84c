"""Cross-cutting HTTP behaviour: JSON errors instead of HTML tracebacks, metrics."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from core import metrics

log = logging.getLogger(__name__)


def json_error(status: int, message: str, **extra: object) -> web.Response:
    body = {"error": message, **extra}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


@web.middleware
async def errors_and_metrics(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every failure becomes a clear 4xx/5xx JSON body; an unexpected exception is logged
    with its traceback and answered 500 without leaking internals."""
    started = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource \
        else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if exc.status >= 400 and exc.content_type != "application/json" and not exc.text:
            raise
        if exc.status >= 400 and exc.content_type != "application/json":
            return json_error(exc.status, exc.text or exc.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, route)
        return json_error(500, "internal error; see the server log")
    finally:
        metrics.http_requests.labels(request.method, route, str(status)).inc()
        metrics.http_latency.labels(route).observe(time.perf_counter() - started)
