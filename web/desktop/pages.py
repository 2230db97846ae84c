"""Server-rendered pages: log-in, the agent desktop, a case, the wallboard, reports and
admin. Every template is autoescaped; the JavaScript adds only live updates and writes
customer text with textContent."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import SecretStr
from sqlmodel import col, select

from cases import NotFound
from web.desktop import api
from web.desktop.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    authenticate,
    clear_failures,
    create_session,
    current_user,
    end_session,
    html_error,
    identity_of,
    local_redirect_target,
    login_blocked,
    login_csrf_ok,
    new_login_csrf,
    record_failure,
    requires,
    set_session_cookie,
)
from web.desktop.client_address import client_address
from web.desktop.screenpop import build_case_bundle
from web.desktop.state import ctx_of, render_page, state_of
from web.tables import ApiToken, WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def render(request: web.Request, template: str, *, status: int = 200,
           **values: Any) -> web.Response:
    text = render_page(request, template, **values)
    return web.Response(status=status, text=text, content_type="text/html")


def home_of(role: str) -> str:
    return {"agent": "/desktop", "supervisor": "/wallboard", "admin": "/admin"}[role]


# ---------------------------------------------------------------- log in / out

@routes.get("/")
async def index(request: web.Request) -> web.StreamResponse:
    ident = await authenticate(request)
    raise web.HTTPFound(home_of(ident.user.role) if ident else "/login")


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    token = new_login_csrf()
    resp = render(request, "login.html", login_csrf=token, error=None,
                  next=_next(request.query.get("next")), username="")
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict",
                    secure=state_of(request).secure_cookies, path="/login")
    return resp


@routes.post("/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    form = await request.post()
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:1024]
    nxt = _next(str(form.get("next", "")))
    remote = client_address(request, st.ctx.config.server.web.trusted_proxies)

    def again(error: str, status: int) -> web.Response:
        token = new_login_csrf()
        resp = render(request, "login.html", status=status, login_csrf=token, error=error,
                      next=nxt, username=username)
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict",
                        secure=st.secure_cookies, path="/login")
        return resp

    if not login_csrf_ok(request, form.get("csrf_token")):  # type: ignore[arg-type]
        return again("The form expired or was not sent by this site; try again.", 403)
    if await login_blocked(st, username, remote):
        resp = again("Too many failed log-ins; wait a few minutes and try again.", 429)
        resp.headers["Retry-After"] = str(int(st.settings.login_window.total_seconds()))
        return resp
    user = st.directory.verify(username, password)
    if user is None:
        await record_failure(st, username, remote)
        return again("Wrong user name or password.", 401)
    await clear_failures(st, username)
    cookie, _ = await create_session(st, user, remote)
    resp = web.HTTPFound(nxt or home_of(user.role))
    set_session_cookie(st, resp, cookie)
    resp.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    raise resp


def _next(value: str | None) -> str:
    """Only local paths: the log-in form is not an open redirect."""
    return local_redirect_target(value)


@routes.post("/logout")
@requires("agent")
async def logout(request: web.Request) -> web.StreamResponse:
    ident = identity_of(request)
    user = current_user(request)
    if ident.session_id:
        await end_session(state_of(request), ident.session_id)
    ctx = ctx_of(request)
    if user.agent_id and ctx.acd is not None and hasattr(ctx.acd, "agent_logout") \
            and request.query.get("acd") != "keep":
        try:
            await api.maybe_await(ctx.acd.agent_logout(user.agent_id))
        except Exception:  # logging out of the web must work even if the ACD refuses
            log.warning("ACD logout of %s failed", user.agent_id, exc_info=True)
    resp = web.HTTPFound("/login")
    resp.del_cookie(SESSION_COOKIE, path="/")
    raise resp


# ---------------------------------------------------------------- agent

@routes.get("/desktop")
@requires("agent", agent=True)
async def desktop(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    cfg = ctx.config
    agent_id = current_user(request).agent_id
    agent = next((a for a in cfg.agents if a.id == agent_id), None)
    # The browser phone's panel, for an agent whose voice device includes the page.
    browser_phone = ctx.services.get("browser_phone") is not None and agent is not None \
        and getattr(agent, "voice_device", "sip") != "sip"
    return render(request, "desktop.html",
                  reason_codes=[r for r in cfg.reason_codes if r.id != cfg.acd.missed_reason],
                  wrap_up_codes=cfg.wrap_up_codes, queues=cfg.queues,
                  agents=[a for a in cfg.agents
                          if a.id != getattr(current_user(request), "agent_id", None)],
                  canned_replies=cfg.server.web.canned_replies, browser_phone=browser_phone)


@routes.get("/cases/{case_id}")
@requires("agent")
async def case_page(request: web.Request) -> web.Response:
    case_id = request.match_info["case_id"]
    user = current_user(request)
    ctx = ctx_of(request)
    try:
        await ctx.cases.get_case(case_id)
    except NotFound:
        return html_error(request, 404, "No such case.")
    if not user.at_least("supervisor") and not (
            user.agent_id and await state_of(request).ledger.may_open_case(user.agent_id,
                                                                           case_id)):
        return html_error(request, 403, "This case is not one of your tasks.")
    bundle = await build_case_bundle(ctx, case_id, limit=CASE_PAGE_READ_LIMIT)
    entries = bundle["timeline"]
    pages = max(1, -(-len(entries) // CASE_PAGE_SIZE))
    try:
        page = min(max(1, int(request.query.get("page", pages))), pages)
    except ValueError:
        page = pages  # the newest entries: what an agent opens a case for
    shown = entries[(page - 1) * CASE_PAGE_SIZE:page * CASE_PAGE_SIZE]
    return render(request, "case.html", bundle=bundle, entries=shown, page=page, pages=pages,
                  facts=entry_facts,
                  wrap_up_names={w.id: w.name or w.id for w in ctx.config.wrap_up_codes})


CASE_PAGE_SIZE = 50
CASE_PAGE_READ_LIMIT = 10_000

# Meta keys a person reads, with their label; the rest (ids, internal flags) stay out.
_FACT_LABELS = {"digits": "Digits", "node": "IVR step", "path": "Path", "outcome": "Outcome",
                "talk_seconds": "Talk time (s)", "duration_seconds": "Duration (s)",
                "wrap_up_code": "Wrap-up code", "notes": "Notes", "agent_id": "Agent",
                "author": "Author", "delivery": "Delivery", "cause": "Cause",
                "queue_id": "Queue", "error": "Error", "reason": "Reason"}


def entry_facts(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """A timeline entry's metadata as (label, text) pairs for people, in a fixed order."""
    out = []
    for key, label in _FACT_LABELS.items():
        value = meta.get(key)
        if value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            value = " → ".join(str(v.get("node", v)) if isinstance(v, dict) else str(v)
                               for v in value)
        out.append((label, str(value)))
    return out


# ---------------------------------------------------------------- supervisor

@routes.get("/wallboard")
@requires("supervisor")
async def wallboard(request: web.Request) -> web.Response:
    cfg = ctx_of(request).config
    from queues.model import CHANNELS

    return render(request, "wallboard.html", queues=cfg.queues, agents=cfg.agents,
                  reason_codes=cfg.reason_codes, channels=CHANNELS)


# ---------------------------------------------------------------- admin

def masked_config(config: Any) -> str:
    def walk(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return "********" if v.get_secret_value() else ""
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return json.dumps(walk(config.model_dump()), indent=2, default=str)


def migration_report(request: web.Request) -> tuple[str | None, Any, str | None]:
    path = ctx_of(request).services.get("migration_report_path")
    if not path:
        return None, None, None
    p = Path(str(path))
    try:
        return str(p), json.loads(p.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return str(p), None, "no report written yet"
    except (OSError, ValueError) as exc:
        return str(p), None, f"cannot read the report: {exc}"


NEW_TOKEN_COOKIE = "centrale_new_token"


@routes.get("/admin")
@requires("admin")
async def admin_page(request: web.Request) -> web.Response:
    """A token just issued arrives here once, in a short-lived cookie scoped to this
    page (Post/Redirect/Get): reloading the page then shows it no more and cannot
    resubmit the form and issue a second token."""
    token = request.cookies.get(NEW_TOKEN_COOKIE, "")
    if not (0 < len(token) <= 100 and token.replace("-", "").replace("_", "").isalnum()):
        return await admin(request)
    resp = await admin(request, message="Token created: copy it now, it is not shown again.",
                       new_token=token)
    resp.del_cookie(NEW_TOKEN_COOKIE, path="/admin")
    return resp


async def admin(request: web.Request, *, message: str | None = None,
                new_token: str | None = None, status: int = 200) -> web.Response:
    st = state_of(request)
    ctx = ctx_of(request)
    async with ctx.db.session() as s:
        tokens = list(await s.exec(select(ApiToken).order_by(col(ApiToken.created_at))))
        hooks = list(await s.exec(select(WebhookSubscription)))
        deliveries = list(await s.exec(select(WebhookDelivery).order_by(
            col(WebhookDelivery.created_at).desc()).limit(50)))
    report_path, report_data, report_error = migration_report(request)
    errors = list(ctx.services.get("config_errors") or []) + st.config_errors
    return render(request, "admin.html", status=status, config_text=masked_config(ctx.config),
                  errors=errors, users=list(st.directory.users.values()), tokens=tokens,
                  hooks=hooks, deliveries=deliveries, report_path=report_path,
                  report=report_data, report_error=report_error, message=message,
                  new_token=new_token, reload_wired="reload_config" in ctx.services)


@routes.post("/admin/reload")
@requires("admin")
async def admin_reload(request: web.Request) -> web.Response:
    try:
        errors = await api.run_reload(request)
    except web.HTTPException:
        return await admin(request, message="Reload is not wired in this process.", status=501)
    msg = "Config reloaded." if not errors else f"Reload refused: {len(errors)} error(s)."
    return await admin(request, message=msg, status=200 if not errors else 422)


@routes.post("/admin/tokens")
@requires("admin")
async def admin_token(request: web.Request) -> web.Response:
    form = await request.post()
    username, label = str(form.get("username", "")), str(form.get("label", ""))[:100]
    if not label:
        return await admin(request, message="A token needs a label.", status=422)
    try:
        token, _ = await api.create_token(request, username, label)
    except web.HTTPException as exc:
        return await admin(request, message=json.loads(exc.text or "{}").get("error"),
                           status=exc.status)
    resp = web.HTTPSeeOther("/admin")
    resp.set_cookie(NEW_TOKEN_COOKIE, token, max_age=60, path="/admin", httponly=True,
                    samesite="Strict", secure=state_of(request).secure_cookies)
    raise resp


@routes.post("/admin/tokens/{token_id}/revoke")
@requires("admin")
async def admin_revoke(request: web.Request) -> web.Response:
    await api.revoke(request, request.match_info["token_id"])
    return await admin(request, message="Token revoked.")


@routes.post("/admin/webhooks")
@requires("admin")
async def admin_webhook(request: web.Request) -> web.Response:
    form = await request.post()
    url = str(form.get("url", ""))
    topics = [t.strip() for t in str(form.get("topics", "case.*,task.*")).split(",") if t.strip()]
    if not url.startswith(("http://", "https://")) or len(url) > 500:
        return await admin(request, message="The webhook URL must be http(s).", status=422)
    sub = await api.create_webhook(request, url, None, topics)
    return await admin(request, message=f"Webhook added; its signing secret is {sub.secret}")
