"""The desktop's per-app state: the user directory, settings, the jinja environment,
the websocket hub and the background workers, under one app key."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from web.context import CONTEXT, WebContext
from web.desktop.users import UserDirectory

if TYPE_CHECKING:
    from web.desktop.access import TaskLedger
    from web.desktop.cluster_stats import ClusterStats
    from web.desktop.figures import History
    from web.desktop.hub import Hub
    from web.desktop.webhooks import WebhookDispatcher

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"


@dataclass
class DesktopSettings:
    """Knobs with safe defaults; `ctx.services["desktop_settings"]` may override them."""

    session_idle: timedelta = timedelta(hours=2)
    session_absolute: timedelta = timedelta(hours=12)
    login_window: timedelta = timedelta(minutes=5)
    login_max_failures_per_user: int = 5
    login_max_failures_per_remote: int = 20
    api_max_body_bytes: int = 64 * 1024
    message_max_chars: int = 4096
    webhook_max_attempts: int = 8
    webhook_base_delay: float = 2.0
    webhook_max_delay: float = 600.0
    webhook_timeout: float = 10.0
    webhook_poll_interval: float = 1.0
    timeline_limit: int = 300
    stats_node_stale_seconds: float = 300.0  # a node silent this long leaves the wallboard


@dataclass
class DesktopState:
    ctx: WebContext
    settings: DesktopSettings
    templates: jinja2.Environment
    hub: Hub
    ledger: TaskLedger
    webhooks: WebhookDispatcher
    history: History
    cluster: ClusterStats
    _directory: UserDirectory | None = None
    config_errors: list[str] = field(default_factory=list)
    background: list[Any] = field(default_factory=list)

    @property
    def directory(self) -> UserDirectory:
        if self._directory is None or self._directory.config is not self.ctx.config:
            self._directory = UserDirectory(self.ctx.config)
        return self._directory

    @property
    def secure_cookies(self) -> bool:
        public = self.ctx.config.server.web.public_url or ""
        return public.lower().startswith("https://")


DESKTOP: web.AppKey[DesktopState] = web.AppKey("centrale_desktop", DesktopState)


def make_templates() -> jinja2.Environment:
    """Autoescape on for every template: customer text is never trusted."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True,
                             extensions=["jinja2.ext.i18n"])
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return env


def render_page(request: web.Request, template: str, **values: Any) -> str:
    """A template in the user's language and time zone (web/i18n): the user's own
    choice, else the browser's language and the site's time zone."""
    from web.desktop.auth import IDENTITY
    from web.i18n import catalogue, choose_language

    st = state_of(request)
    ident = request.get(IDENTITY)
    user = values.setdefault("user", ident.user if ident else None)
    values.setdefault("csrf_token", ident.csrf_token if ident and ident.csrf_token else "")
    values.setdefault("server_name", st.ctx.config.server.name)
    server = st.ctx.config.server
    language = choose_language(getattr(user, "language", None),
                               request.headers.get("Accept-Language"), server.default_language)
    cat = catalogue(language)
    values["lang"] = language
    values["timezone"] = getattr(user, "timezone", None) or server.timezone
    values["catalogue"] = cat.messages
    # Rendering is synchronous: installing this request's translations cannot leak
    # into another request's render.
    st.templates.install_gettext_translations(cat.translations,  # type: ignore[attr-defined]
                                              newstyle=True)
    return st.templates.get_template(template).render(**values)


def state_of(request: web.Request) -> DesktopState:
    return request.app[DESKTOP]


def ctx_of(request: web.Request) -> WebContext:
    return request.app[CONTEXT]
