"""Reading API request bodies: size-capped, JSON only, validated by a pydantic model,
with a 4xx that says exactly what is wrong. A handler gets a valid object or nothing —
no half-parsed body ever reaches the domain."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from core.json_input import loads_untrusted

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """Base of API bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def http_error(status: int, message: str, **extra: Any) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
           404: web.HTTPNotFound, 409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge,
           415: web.HTTPUnsupportedMediaType, 422: web.HTTPUnprocessableEntity,
           429: web.HTTPTooManyRequests, 501: web.HTTPNotImplemented,
           503: web.HTTPServiceUnavailable}.get(status)
    if cls is web.HTTPRequestEntityTooLarge:
        return web.HTTPRequestEntityTooLarge(max_size=extra.get("limit", 0),  # type: ignore[arg-type]
                                             actual_size=extra.get("size", 0),  # type: ignore[arg-type]
                                             text=json.dumps({"error": message, **extra}),
                                             content_type="application/json")
    return (cls or web.HTTPBadRequest)(text=json.dumps({"error": message, **extra}),
                                       content_type="application/json")


async def read_json(request: web.Request, model: type[M], *, limit: int) -> M:
    if request.content_type != "application/json":
        raise http_error(415, "send the body as JSON with Content-Type: application/json")
    if request.content_length is not None and request.content_length > limit:
        raise http_error(413, f"body is {request.content_length} bytes; the limit is {limit}",
                         limit=limit, size=request.content_length)
    raw = bytearray()
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            break
        raw += chunk
        if len(raw) > limit:
            raise http_error(413, f"body is larger than the limit of {limit} bytes",
                             limit=limit, size=len(raw))
    try:
        data = loads_untrusted(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise http_error(400, "body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise http_error(400, f"malformed JSON: {exc.msg} at line {exc.lineno} "
                              f"column {exc.colno}") from None
    except ValueError as exc:  # a lone surrogate (see core.json_input)
        raise http_error(400, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise http_error(400, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)",
                     "message": e["msg"]} for e in exc.errors()]
        raise http_error(422, "invalid body: " + "; ".join(
            f"{p['field']}: {p['message']}" for p in problems), problems=problems) from None
