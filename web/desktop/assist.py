"""Agent assist's REST endpoints (the desktop's assist panel uses them; docs/assist.md).

Thin: every answer comes from `assist.AssistService` (ctx.services["assist"]). An agent
reaches only the cases of their own tasks (the same check as the case endpoints);
writes need the session's CSRF token like every other write. Nothing here sends a
message: inserting a suggestion puts it in the reply box, and the agent sends it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from cases import NotFound
from web.desktop.api import _when, body, check_case
from web.desktop.auth import current_user, requires
from web.desktop.bodies import Body, http_error
from web.desktop.state import ctx_of

routes = web.RouteTableDef()


class QueueBody(Body):
    queue_id: str | None = Field(None, max_length=64)


class FeedbackBody(Body):
    key: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    case_id: str = Field(min_length=1, max_length=32)
    queue_id: str | None = Field(None, max_length=64)
    source: Literal["case", "article", "model"]
    source_ref: str | None = Field(None, max_length=200)
    outcome: Literal["used", "edited", "ignored"]


def assist_of(request: web.Request) -> Any:
    service = ctx_of(request).services.get("assist")
    if service is None:
        raise http_error(501, "agent assist is not enabled (assist.enabled in the config)")
    return service


def _queue_param(request: web.Request) -> str | None:
    queue_id = request.query.get("queue_id") or None
    if queue_id is not None and queue_id not in {q.id for q in ctx_of(request).config.queues}:
        raise http_error(422, f"unknown queue {queue_id!r}")
    return queue_id


@routes.get("/api/assist/cases/{case_id}/suggestions")
@requires("agent")
async def suggestions(request: web.Request) -> web.Response:
    case_id = request.match_info["case_id"]
    await check_case(request, case_id)
    result = await assist_of(request).suggest(case_id, queue_id=_queue_param(request))
    return web.json_response(result.view())


@routes.post("/api/assist/cases/{case_id}/draft")
@requires("agent")
async def draft(request: web.Request) -> web.Response:
    """A reply draft from the model (cited), else the retrieval suggestions with a note.
    POST: it may send the customer's latest messages to the configured model."""
    case_id = request.match_info["case_id"]
    await check_case(request, case_id)
    data = await body(request, QueueBody)
    if data.queue_id and data.queue_id not in {q.id for q in ctx_of(request).config.queues}:
        raise http_error(422, f"unknown queue {data.queue_id!r}")
    result = await assist_of(request).draft(case_id, queue_id=data.queue_id)
    return web.json_response(result.view())


@routes.get("/api/assist/cases/{case_id}/summary")
@requires("agent")
async def summary(request: web.Request) -> web.Response:
    case_id = request.match_info["case_id"]
    await check_case(request, case_id)
    try:
        result = await assist_of(request).summary(case_id)
    except NotFound:
        raise http_error(404, f"case {case_id} not found") from None
    return web.json_response(result.view())


@routes.get("/api/assist/cases/{case_id}/wrap-up")
@requires("agent")
async def wrap_up(request: web.Request) -> web.Response:
    case_id = request.match_info["case_id"]
    await check_case(request, case_id)
    return web.json_response(await assist_of(request).suggest_wrap_up(
        case_id, queue_id=_queue_param(request)))


@routes.post("/api/assist/feedback")
@requires("agent")
async def feedback(request: web.Request) -> web.Response:
    data = await body(request, FeedbackBody)
    await check_case(request, data.case_id)
    if data.queue_id and data.queue_id not in {q.id for q in ctx_of(request).config.queues}:
        raise http_error(422, f"unknown queue {data.queue_id!r}")
    created = await assist_of(request).record_feedback(
        key=data.key, case_id=data.case_id, queue_id=data.queue_id,
        agent_id=current_user(request).agent_id, source=data.source,
        source_ref=data.source_ref, outcome=data.outcome)
    return web.json_response({"recorded": created, "key": data.key},
                             status=201 if created else 200)


@routes.get("/api/assist/use-rate")
@requires("supervisor")
async def use_rate(request: web.Request) -> web.Response:
    """The suggestion use rate per queue over [from, to) (default: today)."""
    now = ctx_of(request).clock.now()
    try:
        start = _when(request.query.get("from")) or now.replace(hour=0, minute=0, second=0,
                                                                microsecond=0)
        end = _when(request.query.get("to")) or start + timedelta(days=1)
    except ValueError as exc:
        raise http_error(400, f"from/to must be ISO dates or times: {exc}") from None
    if end <= start:
        raise http_error(400, "to must be after from")
    rows = await assist_of(request).use_rate(start=start, end=end)
    return web.json_response({"from": start.isoformat(), "to": end.isoformat(), "rows": rows})


# (method, path, tag, summary, minimum role, body model): listed in /api/openapi.json
OPERATIONS: list[tuple[str, str, str, str, str, type | None]] = [
    ("get", "/api/assist/cases/{case_id}/suggestions", "assist",
     "Replies from similar resolved cases and knowledge-base sections (retrieval only)",
     "agent", None),
    ("post", "/api/assist/cases/{case_id}/draft", "assist",
     "A reply draft from the configured model, citing its sources; else the suggestions "
     "and a note", "agent", QueueBody),
    ("get", "/api/assist/cases/{case_id}/summary", "assist",
     "The case summary (timeline; the model's wording when configured)", "agent", None),
    ("get", "/api/assist/cases/{case_id}/wrap-up", "assist", "A suggested wrap-up code",
     "agent", None),
    ("post", "/api/assist/feedback", "assist",
     "Record what the agent did with a suggestion (used, edited, ignored)", "agent",
     FeedbackBody),
    ("get", "/api/assist/use-rate", "assist", "Suggestion use rate per queue",
     "supervisor", None),
]
