"""What `/metrics` and `/healthz` read about this node, gathered where every service is
known (the composition root) so no package has to know about monitoring.

The gauges are set by refreshers that run just before each scrape (core.metrics); the
health checks are named after what they check (`database` is web/health.py's own):
`redis`, `voice.sip`, `voice.asterisk`, `channels`. A check that fails says what is
degraded in one line that holds no secret.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from redis.exceptions import RedisError

from core import metrics
from core.db import Database, redact_url
from core.health import Degraded

# A channel whose last this-many sends all failed is degraded (a success resets it).
SEND_FAILURES_DEGRADED = 3


class Observability:
    def __init__(self, services: dict[str, Any], db: Database, bus: Any,
                 redis_configured: bool) -> None:
        self.services, self.db, self.bus = services, db, bus
        self.redis_configured = redis_configured

    async def start(self) -> None:
        metrics.add_refresher("acd", self._acd)
        metrics.add_refresher("voice", self._voice)
        metrics.add_refresher("bus", self._bus)
        metrics.add_refresher("db", self._db)

    async def stop(self) -> None:
        for name in ("acd", "voice", "bus", "db"):
            metrics.remove_refresher(name)

    def install(self, ctx: Any) -> None:
        if self.redis_configured:
            ctx.health_checks["redis"] = self.check_redis
            if self.services.get("acd") is not None:
                ctx.health_checks["acd"] = self.check_acd
        if self.services.get("sip") is not None:
            ctx.health_checks["voice.sip"] = self.check_sip
        if self.services.get("asterisk") is not None:
            ctx.health_checks["voice.asterisk"] = self.check_asterisk
        ctx.health_checks["channels"] = self.check_channels

    # ---- health ----------------------------------------------------------------------

    async def check_redis(self) -> None:
        client = getattr(self.bus, "redis", None)
        if client is None:
            raise Degraded("the bus has no Redis client")
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            # Said plainly, with the URL (never its password): while Redis is away the
            # node keeps its calls and websockets but offers no new work.
            raise Degraded(f"Redis at {redact_url(str(getattr(self.bus, 'url', '?')))} "
                           f"does not answer ({type(exc).__name__}): no new offers until "
                           "it is back") from None
        waiting = getattr(self.bus, "backlog", 0)
        if waiting:  # Redis answers again, the events of the outage are on their way
            raise Degraded(f"{waiting} event(s) wait to be published")

    async def check_acd(self) -> None:
        if getattr(self.services["acd"], "routing_paused", False):
            raise Degraded("routing paused: the shared ACD state (Redis) does not answer; "
                           "calls and chats in hand go on, no new offers")

    async def check_sip(self) -> None:
        if not getattr(self.services["sip"], "_started", False):
            raise Degraded("the SIP server is not listening")

    async def check_asterisk(self) -> None:
        ami = getattr(self.services["asterisk"], "ami", None)
        if ami is None or not ami.ready:
            raise Degraded("AMI is not connected and logged in")

    async def check_channels(self) -> None:
        conversations = getattr(self.services.get("digital"), "conversations", None)
        failures: dict[str, int] = getattr(conversations, "send_failures", {})
        failing = sorted(ch for ch, n in failures.items() if n >= SEND_FAILURES_DEGRADED)
        if failing:
            raise Degraded(", ".join(f"{ch}: last {failures[ch]} sends failed"
                                     for ch in failing))

    # ---- gauges ----------------------------------------------------------------------

    async def _acd(self) -> None:
        acd = self.services.get("acd")
        if acd is None:
            return
        stats = acd.stats()
        for qid, q in (stats.get("queues") or {}).items():
            metrics.queue_waiting.labels(qid).set(q.get("waiting") or 0)
            metrics.queue_oldest_wait.labels(qid).set(q.get("oldest_wait_seconds") or 0.0)
            sl = q.get("service_level")
            metrics.queue_service_level.labels(qid).set(math.nan if sl is None else sl)
        states = Counter(a.get("state") for a in (stats.get("agents") or {}).values())
        for state in ("logged_out", "available", "not_ready", "busy", "wrap_up"):
            metrics.agents_by_state.labels(state).set(states.get(state, 0))

    async def _voice(self) -> None:
        voice = self.services.get("voice")
        calls = Counter(c.backend for c in getattr(voice, "calls_by_id", {}).values())
        for backend in ("sip", "asterisk"):
            metrics.calls_in_progress.labels(backend).set(calls.get(backend, 0))
        for backend, check in (("sip", self.check_sip), ("asterisk", self.check_asterisk)):
            if self.services.get(backend) is None:
                continue
            try:
                await check()
                metrics.voice_backend_up.labels(backend).set(1)
            except Degraded:
                metrics.voice_backend_up.labels(backend).set(0)

    async def _bus(self) -> None:
        for group, lag in (await self.bus.lag()).items():
            metrics.bus_lag.labels(group).set(lag)

    async def _db(self) -> None:
        pool = self.db.engine.pool
        for use, read in (("checked_out", "checkedout"), ("idle", "checkedin"),
                          ("size", "size"), ("overflow", "overflow")):
            fn = getattr(pool, read, None)
            if callable(fn):
                metrics.db_pool.labels(use).set(max(0, fn()))
