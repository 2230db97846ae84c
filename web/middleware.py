"""Cross-cutting HTTP behaviour: JSON errors instead of HTML tracebacks, metrics."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

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


class MalformedRequestLog(logging.Filter):
    """aiohttp logs a request it cannot parse (a control character in a header, a bad
    request line) as an exception with its traceback. That is the client's error and
    it already got 400: one INFO line, no traceback, so hostile input cannot fill the
    log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: malformed request ({exc.code}, "\
                         f"{str(exc.message)[:120]!r})"
            record.args = ()
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_malformed_requests() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestLog) for f in server_log.filters):
        server_log.addFilter(MalformedRequestLog())
