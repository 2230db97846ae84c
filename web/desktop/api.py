"""The REST API under /api: the desktop's JavaScript and integrations use the same
endpoints (session cookie + CSRF header, or a Bearer token). The OpenAPI document at
/api/openapi.json describes every route here (web/desktop/openapi.py)."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field, model_validator
from sqlmodel import col, select

from cases import CaseError, NotFound
from core.ids import new_id
from web.desktop.auth import IDENTITY, current_user, identity_of, requires
from web.desktop.bodies import Body, http_error, read_json
from web.desktop.figures import normalise_stats
from web.desktop.screenpop import (
    annotate_delivery,
    build_case_bundle,
    conversations_view,
    entry_view,
    iso_utc,
    maybe_await,
    plain,
)
from web.desktop.state import ctx_of, state_of
from web.desktop.users import AuthUser, token_digest
from web.tables import AgentTask, ApiToken, WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


# ---------------------------------------------------------------- bodies

class StateBody(Body):
    state: Literal["available", "not_ready", "logged_out"]
    reason: str | None = Field(None, max_length=64)


class CompleteBody(Body):
    wrap_up_code: str | None = Field(None, max_length=64)
    notes: str | None = Field(None, max_length=4000)


class EndWrapUpBody(Body):
    wrap_up_code: str | None = Field(None, max_length=64)
    notes: str | None = Field(None, max_length=4000)


class TransferBody(Body):
    """To a queue (`queue_id`) or to a named agent (`agent_id`): exactly one of them."""

    queue_id: str | None = Field(None, min_length=1, max_length=64)
    agent_id: str | None = Field(None, min_length=1, max_length=64)
    reason: str | None = Field(None, max_length=300)

    @model_validator(mode="after")
    def _one_target(self) -> TransferBody:
        if (self.queue_id is None) == (self.agent_id is None):
            raise ValueError("give either queue_id or agent_id")
        return self


class ExtendBody(Body):
    seconds: float = Field(gt=0, le=3600)


class MessageBody(Body):
    case_id: str = Field(min_length=1, max_length=32)
    text: str = Field(min_length=1, max_length=4096)


class NoteBody(Body):
    text: str = Field(min_length=1, max_length=4000)


class CustomerPatch(Body):
    display_name: str | None = Field(None, max_length=200)
    language: str | None = Field(None, max_length=8)
    tags: list[str] | None = Field(None, max_length=50)


class MergeBody(Body):
    source_customer_id: str = Field(min_length=1, max_length=32)
    target_customer_id: str = Field(min_length=1, max_length=32)
    reason: str | None = Field(None, max_length=300)


class CallBody(Body):
    number: str = Field(pattern=r"^\+?[0-9*#]{2,32}$")
    case_id: str | None = Field(None, max_length=32)


class CallbackBody(Body):
    case_id: str = Field(min_length=1, max_length=32)
    number: str = Field(pattern=r"^\+?[0-9*#]{2,32}$")
    queue_id: str | None = Field(None, max_length=64)
    at: datetime | None = None


class WebhookBody(Body):
    url: str = Field(pattern=r"^https?://", max_length=500)
    secret: str | None = Field(None, min_length=16, max_length=200)
    topics: list[str] = Field(default_factory=lambda: ["case.*", "task.*"], max_length=20)


class TokenBody(Body):
    username: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1, max_length=100)


# ---------------------------------------------------------------- helpers

async def body(request: web.Request, model: type[Any]) -> Any:
    return await read_json(request, model, limit=state_of(request).settings.api_max_body_bytes)


async def acd_call(request: web.Request, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call the ACD; its refusals (offer expired, unknown task...) become 4xx."""
    acd = ctx_of(request).acd
    if acd is None or not hasattr(acd, method):
        raise http_error(501, f"the ACD is not wired (needs ctx.acd.{method})")
    try:
        return await maybe_await(getattr(acd, method)(*args, **kwargs))
    except (TypeError, AttributeError, AssertionError):
        raise
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code is None and not isinstance(exc, (ValueError, KeyError, LookupError)):
            raise
        status = acd_status(str(code or ""))
        raise http_error(status, str(exc) or type(exc).__name__, code=code) from None


def acd_status(code: str) -> int:
    """The ACD's error codes (queues/errors.py) as HTTP statuses."""
    if code in ("unknown_queue", "unknown_agent", "unknown_task", "unknown_offer"):
        return 404
    if code in ("invalid_argument", "unknown_reason_code", "unknown_wrap_up_code",
                "channel_not_served", "wrap_up_code_required"):
        return 422
    if code == "offer_not_yours":
        return 403
    if code == "remote_node":  # Redis or the task's node does not answer: retry later
        return 503
    return 409


async def check_case(request: web.Request, case_id: str) -> None:
    """404 for a case that does not exist, 403 for an agent who was not offered it."""
    user = current_user(request)
    try:
        await ctx_of(request).cases.get_case(case_id)
    except NotFound:
        raise http_error(404, f"case {case_id} not found") from None
    if user.at_least("supervisor"):
        return
    if not user.agent_id or not await state_of(request).ledger.may_open_case(
            user.agent_id, case_id):
        raise http_error(403, "this case is not one of your tasks")


async def check_customer(request: web.Request, customer_id: str) -> None:
    user = current_user(request)
    ctx = ctx_of(request)
    try:
        await ctx.cases.get_customer(customer_id)
    except NotFound:
        raise http_error(404, f"customer {customer_id} not found") from None
    if user.at_least("supervisor"):
        return
    case_ids = [c.id for c in await ctx.cases.cases_of(customer_id)]
    if not user.agent_id or not await state_of(request).ledger.may_see_customer(
            user.agent_id, customer_id, case_ids):
        raise http_error(403, "this customer is not on one of your tasks")


def _open_offer_row(request: web.Request, offer_id: str) -> AgentTask | None:
    """An offer the durable ledger has not written yet (its consumer runs after the
    websocket push, so an agent who accepts at once can be quicker): the ACD's own
    view of the open offer on this node stands in. None when the ACD has no such offer."""
    acd = ctx_of(request).acd
    try:
        offer = acd.offer(offer_id)
        task = acd.task(offer.task_id)
    except Exception:
        return None
    return AgentTask(id="", agent_id=offer.agent_id, task_id=offer.task_id,
                     case_id=task.case_id, offer_id=offer.id, channel=task.channel,
                     queue_id=task.queue_id, customer_id=task.customer_id,
                     offered_at=datetime.now(UTC))


async def own_offer(request: web.Request, offer_id: str) -> AgentTask:
    user = current_user(request)
    async with ctx_of(request).db.session() as s:
        row = (await s.exec(select(AgentTask).where(AgentTask.offer_id == offer_id))).first()
    if row is None:
        row = _open_offer_row(request, offer_id)
    if row is None:
        raise http_error(404, f"offer {offer_id} not found")
    if row.agent_id != user.agent_id:
        raise http_error(403, "this offer was made to another agent")
    return row


async def own_task(request: web.Request, task_id: str) -> str:
    """The agent a task action is for: the user's own agent, or (supervisor) the agent
    the task is with."""
    user = current_user(request)
    ledger = state_of(request).ledger
    if user.agent_id and await ledger.may_handle_task(user.agent_id, task_id):
        return user.agent_id
    if user.at_least("supervisor"):
        async with ctx_of(request).db.session() as s:
            row = (await s.exec(select(AgentTask).where(AgentTask.task_id == task_id)
                                .order_by(col(AgentTask.offered_at).desc()))).first()
        if row is not None:
            return row.agent_id
        raise http_error(404, f"task {task_id} not found")
    raise http_error(403, "this task is not yours")


def task_view(row: AgentTask) -> dict[str, Any]:
    return {"task_id": row.task_id, "offer_id": row.offer_id, "agent_id": row.agent_id,
            "case_id": row.case_id, "customer_id": row.customer_id, "channel": row.channel,
            "queue_id": row.queue_id, "status": row.status,
            "offered_at": iso_utc(row.offered_at), "accepted_at": iso_utc(row.accepted_at),
            "completed_at": iso_utc(row.completed_at), "wrap_up_code": row.wrap_up_code,
            "wrap_up_ends_at": None}


def live_tasks(acd: Any, agent_id: str, rows: list[AgentTask]) -> list[dict[str, Any]]:
    """The agent's tasks as the ACD has them now. The ledger is written by a consumer
    group and may lag the ACD by a moment (or, after a lost event, for good); the page
    must not show "offered" for a call the agent's phone already answered, so the ACD's
    own view of the agent decides each status when it is there: offers still ringing,
    tasks in hand (accepted: a call connected, a conversation active), wrap-ups with
    their end time and code. What the ACD no longer holds is done."""
    views = [task_view(r) for r in rows]
    if acd is None or not hasattr(acd, "agent"):
        return views
    try:
        agent = acd.agent(agent_id)
    except Exception:  # an agent the ACD does not know: the ledger is all there is
        return views
    offers = set(getattr(agent, "offers", ()) or ())
    in_hand = set(getattr(agent, "tasks", ()) or ())
    wraps = {w.task_id: w for w in getattr(agent, "wrap_ups", ()) or ()}
    out = []
    for v in views:
        if v["task_id"] in wraps:
            w = wraps[v["task_id"]]
            v["status"] = "wrap_up"
            v["wrap_up_ends_at"] = iso_utc(w.ends_at)
            v["wrap_up_code"] = w.wrap_up_code or v["wrap_up_code"]
        elif v["task_id"] in in_hand:
            v["status"] = "accepted"
        elif v["status"] == "offered" and v["offer_id"] in offers:
            pass
        else:
            continue  # withdrawn, missed or done: the ACD no longer has it with this agent
        out.append(v)
    return out


# ---------------------------------------------------------------- me, tasks, offers

@routes.get("/api/me")
@requires("agent")
async def me(request: web.Request) -> web.Response:
    ident = identity_of(request)
    return web.json_response({**current_user(request).public(), "via": ident.via,
                              "csrf_token": ident.csrf_token})


@routes.get("/api/tasks")
@requires("agent")
async def tasks(request: web.Request) -> web.Response:
    user = current_user(request)
    ledger = state_of(request).ledger
    if user.at_least("supervisor") and request.query.get("mine") != "1":
        rows = await ledger.all_open()
    else:
        if not user.agent_id:
            return web.json_response({"tasks": []})
        include_done = request.query.get("all") == "1"
        rows = await ledger.tasks_of(user.agent_id, include_done=include_done)
        if not include_done:
            return web.json_response({"tasks": live_tasks(ctx_of(request).acd,
                                                          user.agent_id, rows)})
    return web.json_response({"tasks": [task_view(r) for r in rows]})


@routes.post("/api/offers/{offer_id}/accept")
@requires("agent", agent=True)
async def accept_offer(request: web.Request) -> web.Response:
    row = await own_offer(request, request.match_info["offer_id"])
    result = await acd_call(request, "accept", row.offer_id, row.agent_id)
    return web.json_response({"accepted": True, "task_id": row.task_id, "case_id": row.case_id,
                              "result": plain(result)})


@routes.post("/api/offers/{offer_id}/reject")
@requires("agent", agent=True)
async def reject_offer(request: web.Request) -> web.Response:
    row = await own_offer(request, request.match_info["offer_id"])
    await acd_call(request, "reject", row.offer_id, row.agent_id)
    return web.json_response({"rejected": True, "task_id": row.task_id})


@routes.post("/api/tasks/{task_id}/complete")
@requires("agent")
async def complete_task(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    agent_id = await own_task(request, task_id)
    data = await body(request, CompleteBody)
    check_wrap_up_code(request, data.wrap_up_code)
    await acd_call(request, "complete", task_id, agent_id, wrap_up_code=data.wrap_up_code,
                   notes=data.notes)
    return web.json_response({"completed": True, "task_id": task_id})


@routes.post("/api/tasks/{task_id}/wrap-up/end")
@requires("agent")
async def end_wrap_up(request: web.Request) -> web.Response:
    """End wrap-up, with the code and notes chosen during it (a call the customer hung
    up went into wrap-up without the agent: this is where its code is given)."""
    task_id = request.match_info["task_id"]
    agent_id = await own_task(request, task_id)
    data = await body(request, EndWrapUpBody) if request.can_read_body else EndWrapUpBody()
    check_wrap_up_code(request, data.wrap_up_code)
    given = {k: v for k, v in (("wrap_up_code", data.wrap_up_code), ("notes", data.notes))
             if v is not None}
    await acd_call(request, "end_wrap_up", agent_id, task_id, **given)
    return web.json_response({"wrap_up_ended": True, "task_id": task_id})


def check_wrap_up_code(request: web.Request, code: str | None) -> None:
    codes = {w.id for w in ctx_of(request).config.wrap_up_codes}
    if code and codes and code not in codes:
        raise http_error(422, f"unknown wrap-up code {code!r}; known: {', '.join(sorted(codes))}")


@routes.post("/api/tasks/{task_id}/wrap-up/extend")
@requires("agent")
async def extend_wrap_up(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    agent_id = await own_task(request, task_id)
    data = await body(request, ExtendBody)
    await acd_call(request, "extend_wrap_up", agent_id, seconds=data.seconds, task_id=task_id)
    return web.json_response({"extended": True, "task_id": task_id, "seconds": data.seconds})


# ---------------------------------------------------------------- agents, queues, stats

def _snapshot_section(snapshot: Any, name: str) -> list[dict[str, Any]]:
    data = plain(snapshot) or {}
    section = data.get(name) if isinstance(data, dict) else None
    if isinstance(section, dict):
        return [{"id": k, **v} if isinstance(v, dict) else {"id": k, "value": v}
                for k, v in section.items()]
    return [r for r in section or [] if isinstance(r, dict)]


@routes.get("/api/agents")
@requires("supervisor")
async def agents(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    live = {}
    if ctx.acd is not None and hasattr(ctx.acd, "snapshot"):
        live = {a.get("id"): a for a in _snapshot_section(await maybe_await(ctx.acd.snapshot()),
                                                         "agents")}
    out = []
    for a in ctx.config.agents:
        row = live.get(a.id, {})
        out.append({"id": a.id, "name": a.name, "queues": list(a.queues),
                    "state": row.get("state", "logged_out"), "reason": row.get("reason"),
                    "load": row.get("load", {})})
    return web.json_response({"agents": out})


@routes.post("/api/agents/{agent_id}/state")
@requires("agent")
async def set_agent_state(request: web.Request) -> web.Response:
    user = current_user(request)
    agent_id = request.match_info["agent_id"]
    ctx = ctx_of(request)
    if agent_id != user.agent_id and not user.at_least("supervisor"):
        raise http_error(403, "agents change only their own state")
    if agent_id not in {a.id for a in ctx.config.agents}:
        raise http_error(404, f"agent {agent_id} not found")
    data = await body(request, StateBody)
    if data.state == "not_ready":
        reasons = {r.id for r in ctx.config.reason_codes}
        if not data.reason or data.reason not in reasons:
            raise http_error(422, f"not_ready needs a reason code: {', '.join(sorted(reasons))}")
    if data.state == "logged_out":
        await acd_call(request, "agent_logout", agent_id)  # any session: a supervisor may
    else:
        await _ensure_logged_in(request, agent_id)
        await acd_call(request, "set_state", agent_id, data.state, data.reason)
    return web.json_response({"agent_id": agent_id, "state": data.state, "reason": data.reason})


async def _ensure_logged_in(request: web.Request, agent_id: str) -> None:
    """Going available logs the agent in to the ACD first; an agent already logged in
    (another tab, another node) is fine."""
    try:
        await acd_call(request, "agent_login", agent_id, acd_session_id(agent_id))
    except web.HTTPConflict:
        pass


def acd_session_id(agent_id: str) -> str:
    """One ACD session per agent for the web: every tab and node of the same agent is
    the same session, so a second tab does not lock the first one out."""
    return f"web-{agent_id}"


@routes.get("/api/queues")
@requires("agent")
async def queues(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    figures = {}
    if current_user(request).at_least("supervisor") and ctx.acd is not None \
            and hasattr(ctx.acd, "stats"):
        raw = state_of(request).cluster.current(await maybe_await(ctx.acd.stats()))
        figures = {q["id"]: q for q in normalise_stats(raw)["queues"]}
    return web.json_response({"queues": [
        {"id": q.id, "name": q.name, "channels": list(q.channels), "strategy": q.strategy,
         "service_level_seconds": q.service_level_seconds, "cti_url": q.cti_url,
         "figures": figures.get(q.id)} for q in ctx.config.queues]})


@routes.get("/api/stats")
@requires("supervisor")
async def stats(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    raw = await maybe_await(ctx.acd.stats()) if ctx.acd is not None and \
        hasattr(ctx.acd, "stats") else {}
    if isinstance(raw, dict) and raw.get("node_id") is not None:
        # This node's figures read now, merged with the other nodes' latest; the agent
        # rows come from this node's view (every node sees every agent).
        agents = raw.get("agents")
        raw = {**state_of(request).cluster.current(raw), "agents": agents}
    history = state_of(request).history
    return web.json_response({"figures": normalise_stats(raw),
                              "history": await history.today(site_zone(request))})


def _when(value: str | None, zone: tzinfo = UTC) -> datetime | None:
    """An ISO date or time; without an offset it is `zone`'s local time."""
    if not value:
        return None
    d = datetime.fromisoformat(value)
    return d if d.tzinfo else d.replace(tzinfo=zone)


def site_zone(request: web.Request) -> tzinfo:
    """The user's own time zone, else the site's (`server.timezone`)."""
    user = current_user(request) if request.get(IDENTITY) else None
    name = getattr(user, "timezone", None) or ctx_of(request).config.server.timezone
    return ZoneInfo(name)


# ---------------------------------------------------------------- customers and cases

@routes.get("/api/cases/{case_id}")
@requires("agent")
async def get_case(request: web.Request) -> web.Response:
    case_id = request.match_info["case_id"]
    await check_case(request, case_id)
    return web.json_response(await build_case_bundle(ctx_of(request), case_id), dumps=_dumps)


@routes.get("/api/cases/{case_id}/timeline")
@requires("agent")
async def get_timeline(request: web.Request) -> web.Response:
    case_id = request.match_info["case_id"]
    await check_case(request, case_id)
    ctx = ctx_of(request)
    entries = [entry_view(e) for e in await ctx.cases.timeline(case_id)]
    annotate_delivery(entries, await conversations_view(ctx, case_id))
    return web.json_response({"case_id": case_id, "entries": entries}, dumps=_dumps)


@routes.post("/api/cases/{case_id}/notes")
@requires("agent")
async def add_note(request: web.Request) -> web.Response:
    case_id = request.match_info["case_id"]
    await check_case(request, case_id)
    data = await body(request, NoteBody)
    user = current_user(request)
    entry, _ = await ctx_of(request).cases.add_timeline(
        case_id, kind="note", channel="internal", direction="internal", body=data.text,
        meta={"author": user.username})
    return web.json_response(entry_view(entry), status=201, dumps=_dumps)


@routes.post("/api/cases/{case_id}/close")
@requires("agent")
async def close_case(request: web.Request) -> web.Response:
    case_id = request.match_info["case_id"]
    await check_case(request, case_id)
    case = await ctx_of(request).cases.close_case(case_id)
    return web.json_response({"case_id": case.id, "status": case.status})


@routes.post("/api/cases/{case_id}/reopen")
@requires("agent")
async def reopen_case(request: web.Request) -> web.Response:
    case_id = request.match_info["case_id"]
    await check_case(request, case_id)
    case = await ctx_of(request).cases.reopen_case(case_id)
    return web.json_response({"case_id": case.id, "status": case.status})


@routes.get("/api/search")
@requires("agent")
async def search(request: web.Request) -> web.Response:
    """Customers and their cases by name, phone (national or international format),
    e-mail, WhatsApp id or case id. An agent sees only the customers of their tasks
    (the same rule as opening a case); a supervisor everyone."""
    from web.desktop.screenpop import case_view, customer_view

    q = request.query.get("q", "").strip()
    if len(q) < 2:
        raise http_error(400, "search needs at least 2 characters")
    ctx = ctx_of(request)
    user = current_user(request)
    ledger = state_of(request).ledger
    results = []
    for customer, cases in await ctx.cases.search(q[:200], limit=20):
        if not user.at_least("supervisor") and not (
                user.agent_id and await ledger.may_see_customer(
                    user.agent_id, customer.id, [c.id for c in cases])):
            continue
        view = customer_view(customer, await ctx.cases.identities(customer.id))
        view["cases"] = [case_view(c) for c in cases]
        results.append(view)
    return web.json_response({"query": q, "results": results}, dumps=_dumps)


@routes.post("/api/tasks/{task_id}/transfer")
@requires("agent", agent=True)
async def transfer_task(request: web.Request) -> web.Response:
    """Hand an accepted conversation to another queue (it keeps its place by its first
    arrival, and is not offered straight back to this agent), or to a named agent: it
    is offered to them only; not taken → back to this agent → the task's queue
    (`AcdEngine.transfer_to_agent`). The receiving agent's screen-pop shows who
    transferred it and why. Calls are transferred through /api/calls (call control)."""
    task_id = request.match_info["task_id"]
    agent_id = await own_task(request, task_id)
    data = await body(request, TransferBody)
    cfg = ctx_of(request).config
    if data.agent_id is not None:
        if data.agent_id not in {a.id for a in cfg.agents}:
            raise http_error(422, f"unknown agent {data.agent_id!r}")
        if data.agent_id == agent_id:
            raise http_error(422, f"task {task_id} is with {agent_id!r} already")
        await acd_call(request, "transfer_to_agent", task_id, data.agent_id, by=agent_id,
                       reason=data.reason)
        return web.json_response({"transferred": True, "task_id": task_id,
                                  "agent_id": data.agent_id})
    if data.queue_id not in {q.id for q in cfg.queues}:
        raise http_error(422, f"unknown queue {data.queue_id!r}")
    await acd_call(request, "transfer", task_id, agent_id, data.queue_id,
                   reason=data.reason)
    return web.json_response({"transferred": True, "task_id": task_id,
                              "queue_id": data.queue_id})


@routes.get("/api/customers/{customer_id}")
@requires("agent")
async def get_customer(request: web.Request) -> web.Response:
    from web.desktop.screenpop import case_view, customer_view

    customer_id = request.match_info["customer_id"]
    await check_customer(request, customer_id)
    ctx = ctx_of(request)
    customer = await ctx.cases.get_customer(customer_id)
    view = customer_view(customer, await ctx.cases.identities(customer_id))
    view["cases"] = [case_view(c) for c in await ctx.cases.cases_of(customer_id)]
    view["merges"] = [plain(m.model_dump()) for m in await ctx.merger.history(customer_id)]
    return web.json_response(view, dumps=_dumps)


@routes.patch("/api/customers/{customer_id}")
@requires("agent")
async def patch_customer(request: web.Request) -> web.Response:
    customer_id = request.match_info["customer_id"]
    await check_customer(request, customer_id)
    data = await body(request, CustomerPatch)
    customer = await ctx_of(request).cases.update_customer(
        customer_id, display_name=data.display_name, language=data.language, tags=data.tags)
    return web.json_response({"id": customer.id, "display_name": customer.display_name,
                              "language": customer.language, "tags": customer.tags})


@routes.post("/api/customers/merge")
@requires("agent")
async def merge_customers(request: web.Request) -> web.Response:
    data = await body(request, MergeBody)
    user = current_user(request)
    ctx = ctx_of(request)
    if not user.at_least("supervisor"):
        # An agent merges only what the system suggested for a customer on their task.
        await check_customer(request, data.target_customer_id)
        suggested = {(s.customer_id, s.candidate_customer_id)
                     for s in await ctx.cases.suggestions(data.target_customer_id)}
        suggested |= {(s.candidate_customer_id, s.customer_id)
                      for s in await ctx.cases.suggestions(data.source_customer_id)}
        pair = (data.target_customer_id, data.source_customer_id)
        if pair not in suggested and pair[::-1] not in suggested:
            raise http_error(403, "agents may merge only suggested customers; ask a supervisor")
    try:
        record = await ctx.merger.merge(data.source_customer_id, data.target_customer_id,
                                        actor=user.username, reason=data.reason)
    except NotFound as exc:
        raise http_error(404, str(exc)) from None
    except CaseError as exc:
        raise http_error(409, str(exc)) from None
    return web.json_response(plain(record.model_dump()), status=201)


@routes.post("/api/merges/{merge_id}/undo")
@requires("supervisor")
async def undo_merge(request: web.Request) -> web.Response:
    try:
        record = await ctx_of(request).merger.unmerge(request.match_info["merge_id"],
                                                      actor=current_user(request).username)
    except NotFound as exc:
        raise http_error(404, str(exc)) from None
    except CaseError as exc:
        raise http_error(409, str(exc)) from None
    return web.json_response(plain(record.model_dump()))


# ---------------------------------------------------------------- messages, calls

@routes.post("/api/conversations/{conversation_id}/messages")
@requires("agent", agent=True)
async def send_message(request: web.Request) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    data = await body(request, MessageBody)
    await check_case(request, data.case_id)
    ctx = ctx_of(request)
    service = ctx.services.get("conversations")
    if service is None:
        raise http_error(501, "digital conversations are not wired (services['conversations'])")
    convs = await maybe_await(service.conversations_for_case(data.case_id))
    ids = {(plain(c) or {}).get("id") or (plain(c) or {}).get("conversation_id")
           for c in convs or []}
    if conversation_id not in ids:
        raise http_error(404, f"conversation {conversation_id} is not on case {data.case_id}")
    user = current_user(request)
    try:
        result = await maybe_await(service.reply(conversation_id, user.agent_id, data.text))
    except (TypeError, AttributeError):
        raise
    except Exception as exc:  # window closed, channel down: the agent must see why
        raise http_error(409, str(exc) or type(exc).__name__) from None
    outcome = plain(result)
    if isinstance(outcome, dict) and outcome.get("ok") is False:
        raise http_error(409, outcome.get("reason") or "the message was not sent",
                         message_id=outcome.get("message_id"))
    return web.json_response({"sent": True, "result": outcome}, status=201, dumps=_dumps)


@routes.post("/api/calls")
@requires("agent", agent=True)
async def click_to_call(request: web.Request) -> web.Response:
    data = await body(request, CallBody)
    if data.case_id:
        await check_case(request, data.case_id)
    dialer = ctx_of(request).services.get("dialer")
    if dialer is None:
        raise http_error(501, "click-to-call is not wired (services['dialer'])")
    try:
        result = await maybe_await(dialer(current_user(request).agent_id, data.number))
    except (TypeError, AttributeError):
        raise
    except Exception as exc:
        raise http_error(409, str(exc) or type(exc).__name__) from None
    return web.json_response({"calling": data.number, "result": plain(result)}, status=202)


@routes.post("/api/callbacks")
@requires("agent", agent=True)
async def schedule_callback(request: web.Request) -> web.Response:
    data = await body(request, CallbackBody)
    await check_case(request, data.case_id)
    ctx = ctx_of(request)
    scheduler = ctx.services.get("callbacks")
    if scheduler is None:
        raise http_error(501, "callbacks are not wired (services['callbacks'])")
    if data.queue_id and data.queue_id not in {q.id for q in ctx.config.queues}:
        raise http_error(422, f"unknown queue {data.queue_id!r}")
    case = await ctx.cases.get_case(data.case_id)
    try:
        result = await maybe_await(scheduler(
            case_id=data.case_id, customer_id=case.customer_id, number=data.number,
            queue_id=data.queue_id, agent_id=current_user(request).agent_id, at=data.at))
    except (TypeError, AttributeError):
        raise
    except Exception as exc:
        raise http_error(409, str(exc) or type(exc).__name__) from None
    return web.json_response({"scheduled": True, "result": plain(result)}, status=201)


# ---------------------------------------------------------------- admin: webhooks, tokens

@routes.get("/api/webhooks")
@requires("admin")
async def list_webhooks(request: web.Request) -> web.Response:
    async with ctx_of(request).db.session() as s:
        subs = list(await s.exec(select(WebhookSubscription)))
    return web.json_response({"webhooks": [
        {"id": w.id, "url": w.url, "topics": w.topics, "active": w.active,
         "created_at": w.created_at.isoformat()} for w in subs]})


@routes.post("/api/webhooks")
@requires("admin")
async def add_webhook(request: web.Request) -> web.Response:
    data = await body(request, WebhookBody)
    sub = await create_webhook(request, data.url, data.secret, data.topics)
    return web.json_response({"id": sub.id, "url": sub.url, "topics": sub.topics,
                              "secret": sub.secret}, status=201)


async def create_webhook(request: web.Request, url: str, secret: str | None,
                         topics: list[str]) -> WebhookSubscription:
    sub = WebhookSubscription(id=new_id(), url=url, secret=secret or secrets.token_hex(32),
                              topics=topics, created_at=ctx_of(request).clock.now())
    async with ctx_of(request).db.session() as s:
        s.add(sub)
        await s.commit()
    state_of(request).webhooks.invalidate()
    return sub


@routes.delete("/api/webhooks/{webhook_id}")
@requires("admin")
async def delete_webhook(request: web.Request) -> web.Response:
    async with ctx_of(request).db.session() as s:
        sub = await s.get(WebhookSubscription, request.match_info["webhook_id"])
        if sub is None:
            raise http_error(404, "webhook not found")
        sub.active = False
        s.add(sub)
        await s.commit()
    state_of(request).webhooks.invalidate()
    return web.json_response({"id": sub.id, "active": False})


@routes.get("/api/webhooks/deliveries")
@requires("admin")
async def list_deliveries(request: web.Request) -> web.Response:
    async with ctx_of(request).db.session() as s:
        rows = list(await s.exec(select(WebhookDelivery)
                                 .order_by(col(WebhookDelivery.created_at).desc()).limit(200)))
    return web.json_response({"deliveries": [
        {"id": d.id, "subscription_id": d.subscription_id, "topic": d.topic,
         "status": d.status, "attempts": d.attempts, "last_error": d.last_error,
         "next_attempt_at": d.next_attempt_at.isoformat()} for d in rows]})


@routes.post("/api/tokens")
@requires("admin")
async def add_token(request: web.Request) -> web.Response:
    data = await body(request, TokenBody)
    token, row = await create_token(request, data.username, data.label)
    return web.json_response({"id": row.id, "token": token, "username": row.username,
                              "label": row.label}, status=201)


async def create_token(request: web.Request, username: str, label: str,
                       ) -> tuple[str, ApiToken]:
    if state_of(request).directory.get(username) is None:
        raise http_error(422, f"no user {username!r} in the config")
    token = "ctr_" + secrets.token_urlsafe(32)
    row = ApiToken(id=new_id(), token_hash=token_digest(token), username=username,
                   label=label, created_at=ctx_of(request).clock.now())
    async with ctx_of(request).db.session() as s:
        s.add(row)
        await s.commit()
    return token, row


@routes.delete("/api/tokens/{token_id}")
@requires("admin")
async def revoke_token(request: web.Request) -> web.Response:
    await revoke(request, request.match_info["token_id"])
    return web.json_response({"id": request.match_info["token_id"], "revoked": True})


async def revoke(request: web.Request, token_id: str) -> None:
    async with ctx_of(request).db.session() as s:
        row = await s.get(ApiToken, token_id)
        if row is None:
            raise http_error(404, "token not found")
        row.revoked_at = ctx_of(request).clock.now()
        s.add(row)
        await s.commit()


@routes.post("/api/admin/reload")
@requires("admin")
async def reload_config(request: web.Request) -> web.Response:
    errors = await run_reload(request)
    return web.json_response({"ok": not errors, "errors": errors},
                             status=200 if not errors else 422)


async def run_reload(request: web.Request) -> list[str]:
    hook = ctx_of(request).services.get("reload_config")
    if hook is None:
        raise http_error(501, "config reload is not wired (services['reload_config'])")
    errors = [str(e) for e in (await hook() or [])]
    state_of(request).config_errors = errors
    return errors


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


def user_public(user: AuthUser) -> dict[str, Any]:
    return user.public()
