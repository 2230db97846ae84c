"""One Centrale node's life cycle: start in dependency order, stop in reverse, reload
the config on SIGHUP (keeping the old one when the new one is invalid).

A reload on one node of a cluster (SIGHUP, `centrale reload`, the admin page's button,
which reaches only the node that served it) is followed by the others: each reloads its
own config directory when it sees another node's `config.reloaded`, so the nodes do not
route on different capacities and queues for long. A follower's own event names the
node it followed and is not followed again.

Shutdown on SIGTERM stops accepting new HTTP requests first, lets in-flight ones finish
(their writes are committed before they answer), then stops the services and closes
the database: nothing that was acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from aiohttp import web

from centrale.container import Container
from centrale.schema import SchemaError, check_schema, upgrade_async
from config import ConfigError, load_config_with_sources
from core import metrics
from core.bus import Subscription
from core.db import Database, redact_url
from core.events import Event
from core.settings import Settings
from web.app import create_app
from web.context import WebContext

log = logging.getLogger(__name__)


class RedisUnreachable(RuntimeError):
    """CENTRALE_REDIS_URL is set but Redis does not answer at start: the node refuses to
    start (routing without the shared state would let two nodes offer one task)."""


class Node:
    def __init__(self, container: Container) -> None:
        self.c = container
        self.runner: web.AppRunner | None = None
        self.ctx: WebContext | None = None
        self._stopping = asyncio.Event()
        self.port: int | None = None
        self._follow: Subscription | None = None

    async def start(self) -> None:
        c = self.c
        await self._prepare_database()
        try:
            await c.bus.start()
        except Exception as exc:
            if not c.settings.redis_url:
                raise
            # The client's own message names host and port, never the password.
            raise RedisUnreachable(
                f"cannot reach Redis at {redact_url(c.settings.redis_url)} "
                f"(CENTRALE_REDIS_URL): {exc}") from None
        self._follow = await c.bus.subscribe("config.reloaded", self._follow_reload)
        for name, service in c.services.items():
            if hasattr(service, "start"):
                log.info("starting %s", name)
                await service.start()
        self.ctx = WebContext(config=c.config, db=c.db, bus=c.bus, clock=c.clock, cases=c.cases,
                              merger=c.merger, node_id=c.settings.node_id,
                              acd=c.services.get("acd"), services=dict(c.services))
        self.ctx.services["reload_config"] = self.reload
        # `centrale migrate` writes its report into the config directory it produces;
        # the admin page shows it (or says none was written).
        self.ctx.services.setdefault("migration_report_path", str(
            Path(c.loaded.directory) / "migration-report.json"))
        for service in c.services.values():
            if hasattr(service, "install"):  # puts what web/ needs into the context
                service.install(self.ctx)
        app = create_app(self.ctx)
        self.runner = web.AppRunner(app, shutdown_timeout=10, access_log=None)
        await self.runner.setup()
        web_cfg = c.config.server.web
        site = web.TCPSite(self.runner, web_cfg.host, web_cfg.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else web_cfg.port
        own_url = f"http://{_connectable(web_cfg.host)}:{self.port}"
        self.ctx.services["web_url"] = own_url  # the demo simulator posts webhooks here
        for service in c.services.values():
            if hasattr(service, "web_listening"):
                service.web_listening(own_url)
        metrics.up_since.set(time.time())
        log.info("centrale listening", extra={"url": f"http://{web_cfg.host}:{self.port}",
                                              "node": c.settings.node_id})

    async def _prepare_database(self) -> None:
        await prepare_database(self.c.db)

    async def stop(self) -> None:
        if self._follow is not None:
            await self._follow.close()
            self._follow = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        for name, service in reversed(list(self.c.services.items())):
            if hasattr(service, "stop"):
                try:
                    await service.stop()
                except Exception:
                    log.exception("stopping %s failed", name)
        await self.c.cases.writer.drain()  # timeline entries still in a group commit
        await self.c.bus.stop()
        await self.c.db.dispose()
        log.info("centrale stopped")

    async def reload(self, *, following: str | None = None) -> list[str]:
        """Load the config again; apply it only if it is valid. Returns the errors.
        `following`: the node whose reload this one follows (see the module doc)."""
        me = self.c.settings.node_id
        try:
            loaded = load_config_with_sources(self.c.loaded.directory)
        except ConfigError as exc:
            metrics.config_reloads.labels("rejected").inc()
            for issue in exc.issues:
                log.error("config reload rejected: %s", issue)
            await self.c.bus.publish_topic(
                "config.rejected", directory=str(self.c.loaded.directory), node_id=me,
                following=following, errors=[str(i) for i in exc.issues][:50])
            return [str(i) for i in exc.issues]
        self.c.loaded = loaded
        if self.ctx is not None:
            self.ctx.replace_config(loaded.config)
        for name, service in self.c.services.items():
            if hasattr(service, "apply_config"):
                try:
                    await service.apply_config(loaded.config)
                except Exception:
                    log.exception("%s could not apply the new config", name)
        metrics.config_reloads.labels("applied").inc()
        await self.c.bus.publish_topic("config.reloaded", directory=str(loaded.directory),
                                       node_id=me, following=following)
        log.info("config reloaded", extra={"following": following} if following else None)
        return []

    async def _follow_reload(self, event: Event) -> None:
        origin = event.payload.get("node_id")
        if not origin or origin == self.c.settings.node_id or event.payload.get("following"):
            return
        log.info("node %s reloaded its config; reloading here too", origin)
        await self.reload(following=str(origin))

    def request_stop(self) -> None:
        self._stopping.set()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        pid_file = self.c.settings.pid_file
        if pid_file:
            _write_pid(pid_file)
        try:
            await self._stopping.wait()
        finally:
            log.info("shutting down")
            await self.stop()
            if pid_file:
                Path(pid_file).unlink(missing_ok=True)  # noqa: ASYNC240 - once, at exit


async def prepare_database(db: Database) -> None:
    """A brand-new embedded SQLite file is created at the current schema; any other
    database must already be at the code's schema (`centrale db upgrade`)."""
    path = db.url.split(":///", 1)[1] if db.is_sqlite else None
    if path and path != ":memory:" and not _exists(path):
        log.info("creating the embedded database", extra={"path": path})
        await upgrade_async(db.url)
    await check_schema(db)
    log.info("database ready", extra={"url": redact_url(db.url)})


def _connectable(host: str) -> str:
    """An address this node can reach itself on: a wildcard bind becomes loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _exists(path: str) -> bool:
    return Path(path).exists()


def _write_pid(pid_file: str) -> None:
    Path(pid_file).parent.mkdir(parents=True, exist_ok=True)
    Path(pid_file).write_text(str(os.getpid()))


async def serve(settings: Settings, loaded) -> int:  # type: ignore[no-untyped-def]
    from centrale.gc_tuning import tune_after_start, tune_before_start
    from centrale.wiring import wire

    container = Container.build(settings, loaded)
    wire(container)
    node = Node(container)
    tune_before_start()
    try:
        await node.start()
    except (SchemaError, RedisUnreachable) as exc:
        log.error("%s", exc)
        await container.bus.stop()
        await container.db.dispose()
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await node.stop()
        return 1
    tune_after_start()
    await node.run_until_stopped()
    return 0
