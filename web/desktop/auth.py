"""Sessions, CSRF, log-in rate limiting, API tokens and the role check every handler has.

- Session cookie: a random 256-bit value, HttpOnly, SameSite=Lax, Secure behind https;
  the database keeps only its SHA-256, with an idle and an absolute expiry.
- CSRF: each session has its own token; every state-changing request made with the
  cookie must carry it (form field `csrf_token` or header `X-CSRF-Token`). The log-in
  form, before any session exists, uses a double-submit cookie.
- Bearer API tokens (config `api_token` or admin-issued, stored hashed) need no CSRF:
  a browser never sends them by itself.
- Rate limiting: failed log-ins counted per user name and per remote address in SQL.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

from aiohttp import web
from sqlmodel import col, delete, func, select

from core.compare import same_secret
from core.ids import new_id
from web.desktop.state import DesktopState, ctx_of, state_of
from web.desktop.users import AuthUser, token_digest
from web.middleware import json_error
from web.tables import ApiToken, LoginAttempt, WebSession

SESSION_COOKIE = "centrale_session"
LOGIN_CSRF_COOKIE = "centrale_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Identity:
    user: AuthUser
    via: str  # "session" | "token"
    session_id: str | None = None
    csrf_token: str | None = None


IDENTITY: web.RequestKey[Identity | None] = web.RequestKey("centrale_identity", object)  # type: ignore[arg-type]
USER: web.RequestKey[AuthUser] = web.RequestKey("centrale_user", AuthUser)


def aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# ---------------------------------------------------------------- sessions

async def create_session(st: DesktopState, user: AuthUser, remote: str | None) -> tuple[str, str]:
    """A new session for `user`; returns (cookie value, csrf token)."""
    now = st.ctx.clock.now()
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    row = WebSession(id=token_digest(cookie), username=user.username, csrf_token=csrf,
                     created_at=now, last_seen_at=now,
                     expires_at=now + min(st.settings.session_idle, st.settings.session_absolute),
                     remote=(remote or "")[:64])
    async with st.ctx.db.session() as s:
        s.add(row)
        await s.commit()
    return cookie, csrf


async def end_session(st: DesktopState, session_id: str) -> None:
    async with st.ctx.db.session() as s:
        await s.exec(delete(WebSession).where(col(WebSession.id) == session_id))  # type: ignore[call-overload]
        await s.commit()


def set_session_cookie(st: DesktopState, response: web.StreamResponse, cookie: str) -> None:
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="Lax",
                        secure=st.secure_cookies, path="/",
                        max_age=int(st.settings.session_absolute.total_seconds()))


async def _session_identity(st: DesktopState, cookie: str) -> Identity | None:
    now = st.ctx.clock.now()
    sid = token_digest(cookie)
    async with st.ctx.db.session() as s:
        row = await s.get(WebSession, sid)
        if row is None:
            return None
        if aware(row.expires_at) <= now:
            await s.delete(row)
            await s.commit()
            return None
        user = st.directory.get(row.username)
        if user is None:  # removed from the config since
            await s.delete(row)
            await s.commit()
            return None
        if now - aware(row.last_seen_at) > timedelta(minutes=1):
            row.last_seen_at = now
            row.expires_at = min(now + st.settings.session_idle,
                                 aware(row.created_at) + st.settings.session_absolute)
            s.add(row)
            await s.commit()
        return Identity(user, "session", sid, row.csrf_token)


async def _token_identity(st: DesktopState, token: str) -> Identity | None:
    user = st.directory.config_token_user(token)
    if user is not None:
        return Identity(user, "token")
    async with st.ctx.db.session() as s:
        row = (await s.exec(select(ApiToken).where(
            ApiToken.token_hash == token_digest(token)))).first()
        if row is None or row.revoked_at is not None:
            return None
        user = st.directory.get(row.username)
        if user is None:
            return None
        now = st.ctx.clock.now()
        if row.last_used_at is None or now - aware(row.last_used_at) > timedelta(minutes=1):
            row.last_used_at = now
            s.add(row)
            await s.commit()
    return Identity(user, "token")


async def authenticate(request: web.Request) -> Identity | None:
    if IDENTITY in request:
        return request[IDENTITY]
    st = state_of(request)
    ident: Identity | None = None
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        ident = await _token_identity(st, header[7:].strip())
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            ident = await _session_identity(st, cookie)
    request[IDENTITY] = ident
    return ident


# ---------------------------------------------------------------- CSRF

async def csrf_ok(request: web.Request, ident: Identity) -> bool:
    if ident.via != "session" or request.method in SAFE_METHODS:
        return True
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                 "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    return ident.csrf_token is not None and same_secret(ident.csrf_token, sent)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def login_csrf_ok(request: web.Request, sent: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    return bool(cookie) and same_secret(str(cookie), None if sent is None else str(sent))


# ---------------------------------------------------------------- rate limiting

async def login_blocked(st: DesktopState, username: str, remote: str) -> bool:
    since = st.ctx.clock.now() - st.settings.login_window
    async with st.ctx.db.session() as s:
        per_user = (await s.exec(select(func.count()).select_from(LoginAttempt).where(
            LoginAttempt.username == username, col(LoginAttempt.at) >= since))).one()
        per_remote = (await s.exec(select(func.count()).select_from(LoginAttempt).where(
            LoginAttempt.remote == remote, col(LoginAttempt.at) >= since))).one()
    return per_user >= st.settings.login_max_failures_per_user or \
        per_remote >= st.settings.login_max_failures_per_remote


async def record_failure(st: DesktopState, username: str, remote: str) -> None:
    async with st.ctx.db.session() as s:
        s.add(LoginAttempt(id=new_id(), username=username[:64], remote=remote[:64],
                           at=st.ctx.clock.now()))
        await s.commit()


async def clear_failures(st: DesktopState, username: str) -> None:
    async with st.ctx.db.session() as s:
        await s.exec(delete(LoginAttempt).where(col(LoginAttempt.username) == username))  # type: ignore[call-overload]
        await s.commit()


# ---------------------------------------------------------------- the role check

JSON_PREFIXES = ("/api/", "/demo/api/")  # the demo simulator's page API is JSON too


def wants_html(request: web.Request) -> bool:
    return not request.path.startswith(JSON_PREFIXES) and request.path != "/ws"


def html_error(request: web.Request, status: int, message: str) -> web.Response:
    from web.desktop.state import render_page

    body = render_page(request, "error.html", status=status, message=message)
    return web.Response(status=status, text=body, content_type="text/html")


def deny(request: web.Request, status: int, message: str) -> web.Response:
    return html_error(request, status, message) if wants_html(request) \
        else json_error(status, message)


def requires(role: str, *, agent: bool = False) -> Callable[[Handler], Handler]:
    """Wrap a handler: authenticated, at least `role`, CSRF checked on writes made with
    a session. `agent=True` also needs the user to be linked to an ACD agent."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            ident = await authenticate(request)
            if ident is None:
                if wants_html(request) and request.method in SAFE_METHODS:
                    raise web.HTTPFound(f"/login?next={_safe_next(request.path_qs)}")
                return deny(request, 401, "not logged in or session expired; log in again")
            if not ident.user.at_least(role):
                return deny(request, 403, f"this needs the {role} role; you are "
                                          f"{ident.user.role}")
            if agent and not ident.user.agent_id:
                return deny(request, 403, "this user is not linked to an agent")
            if not await csrf_ok(request, ident):
                return deny(request, 403, "CSRF token missing or invalid; reload the page")
            request[USER] = ident.user
            return await handler(request)

        return wrapper

    return decorate


def local_redirect_target(value: str | None) -> str:
    """`value` if it is a path on this site, else "" (the log-in form is no open redirect).

    Browsers drop tab, CR and LF anywhere in a URL and trim spaces and control
    characters at its ends (WHATWG URL), and read `\\` like `/`: so `/\t/evil.example`
    arrives as `//evil.example`, another host. Any such character is refused outright,
    and the target must still be a rooted path with no scheme or host after that."""
    if not value or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value):
        return ""
    if "\\" in value or not value.startswith("/") or value.startswith("//"):
        return ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return ""
    return value


def _safe_next(path: str) -> str:
    return quote(local_redirect_target(path) or "/", safe="")


def current_user(request: web.Request) -> AuthUser:
    return request[USER]


def identity_of(request: web.Request) -> Identity:
    ident = request[IDENTITY]
    assert ident is not None
    return ident


def ctx(request: web.Request):  # type: ignore[no-untyped-def]
    return ctx_of(request)
