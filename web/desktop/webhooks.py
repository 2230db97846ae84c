"""Outgoing webhooks: case and task events POSTed to integrations (a CRM), signed and
retried.

- Durable: the consumer group `web.webhooks` turns each matching bus event into one
  `web_webhook_delivery` row per subscription (UNIQUE per event, so a redelivered event
  is stored once) before any attempt; a restart picks up the rows still pending.
- Signed: `X-Centrale-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
  with `X-Centrale-Timestamp`, so a receiver can check origin and reject replays.
- Retried with exponential backoff (base * 2^attempt, capped) up to `max_attempts`;
  then `failed`, visible on the admin page. 2xx is success; anything else is retried.
- Several nodes may run the dispatcher: a row is leased (`locked_until`) by a
  conditional UPDATE before it is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from core.events import Event
from core.ids import new_id
from web.tables import WebhookDelivery, WebhookSubscription

if TYPE_CHECKING:
    from web.context import WebContext
    from web.desktop.state import DesktopSettings

log = logging.getLogger(__name__)

WEBHOOK_TOPICS = ("case.*", "task.*", "customer.merged", "customer.unmerged")
# topic -> whether a webhook may want it: every event of the node passes here (a call's
# 9 timeline.added too), and four pattern matches per event were 4 % of the in-process
# call path's loop time (issue 21)
_WEBHOOK_TOPIC: dict[str, bool] = {}


def _webhook_topic(event: Event) -> bool:
    hit = _WEBHOOK_TOPIC.get(event.topic)
    if hit is None:
        hit = _WEBHOOK_TOPIC[event.topic] = any(event.matches(p) for p in WEBHOOK_TOPICS)
    return hit


def sign(secret: str, timestamp: str, body: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def topic_matches(topic: str, patterns: list[str]) -> bool:
    """The bus's topic patterns (`Event.matches`) without making an event per check."""
    if not patterns:
        return True
    return any(p == "*" or (p[:-1] == topic[:len(p) - 1] if p.endswith(".*") else p == topic)
               for p in patterns)


def _aware(d: datetime | None) -> datetime | None:
    return d if d is None or d.tzinfo else d.replace(tzinfo=UTC)


class WebhookDispatcher:
    def __init__(self, ctx: WebContext, settings: DesktopSettings) -> None:
        self.ctx, self.settings = ctx, settings
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._subs_cache: tuple[float, list[WebhookSubscription]] | None = None

    # ---- from the bus to rows ------------------------------------------------------

    def invalidate(self) -> None:
        self._subs_cache = None

    async def _subscriptions(self) -> list[WebhookSubscription]:
        """Active subscriptions, read at most once a second: every task event asks, and
        a new subscription may take a second to see its first event."""
        now = time.monotonic()
        if self._subs_cache is None or now - self._subs_cache[0] > 1.0:
            async with self.ctx.db.session() as s:
                subs = list(await s.exec(select(WebhookSubscription).where(
                    WebhookSubscription.active == True)))  # noqa: E712
            self._subs_cache = (now, subs)
        return self._subs_cache[1]

    async def enqueue(self, event: Event) -> None:
        if not _webhook_topic(event):
            return
        subs = [sub for sub in await self._subscriptions()
                if topic_matches(event.topic, sub.topics)]
        if not subs:  # the usual case: no one subscribed, nothing to serialise
            return
        now = self.ctx.clock.now()
        body = json.dumps({"id": event.event_id, "topic": event.topic,
                           "occurred_at": event.occurred_at.isoformat(),
                           "payload": event.payload}, default=str, separators=(",", ":"))
        added = False
        for sub in subs:
            try:
                async with self.ctx.db.session() as s:
                    s.add(WebhookDelivery(id=new_id(), subscription_id=sub.id,
                                          event_id=event.event_id, topic=event.topic,
                                          body=body, next_attempt_at=now, created_at=now))
                    await s.commit()
                added = True
            except IntegrityError:
                continue  # this event was stored for this subscription already
        if added:
            self._wake.set()

    # ---- the sender --------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook dispatcher round failed")
                sent = 0
            if sent == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_interval)
                except TimeoutError:
                    pass

    async def run_once(self, limit: int = 50) -> int:
        """Send the deliveries that are due; returns how many were attempted."""
        now = self.ctx.clock.now()
        async with self.ctx.db.session() as s:
            due = list(await s.exec(select(WebhookDelivery).where(
                WebhookDelivery.status == "pending", col(WebhookDelivery.next_attempt_at) <= now,
                or_(col(WebhookDelivery.locked_until).is_(None),
                    col(WebhookDelivery.locked_until) < now))
                .order_by(col(WebhookDelivery.created_at)).limit(limit)))
        count = 0
        for row in due:
            if await self._lease(row, now):
                await self._attempt(row)
                count += 1
        return count

    async def _lease(self, row: WebhookDelivery, now: datetime) -> bool:
        lease = now + timedelta(seconds=self.settings.webhook_timeout * 3)
        async with self.ctx.db.session() as s:
            result = await s.exec(update(WebhookDelivery).where(  # type: ignore[call-overload]
                col(WebhookDelivery.id) == row.id, col(WebhookDelivery.status) == "pending",
                or_(col(WebhookDelivery.locked_until).is_(None),
                    col(WebhookDelivery.locked_until) < now)).values(locked_until=lease))
            await s.commit()
        return bool(result.rowcount == 1)

    async def _attempt(self, row: WebhookDelivery) -> None:
        async with self.ctx.db.session() as s:
            sub = await s.get(WebhookSubscription, row.subscription_id)
        error: str | None = None
        if sub is None or not sub.active:
            error = "subscription removed"
        else:
            ts = str(int(time.time()))
            headers = {"Content-Type": "application/json", "X-Centrale-Event": row.topic,
                       "X-Centrale-Delivery": row.id, "X-Centrale-Timestamp": ts,
                       "X-Centrale-Signature": sign(sub.secret, ts, row.body),
                       "User-Agent": "Centrale-Webhooks/1"}
            assert self._session is not None
            try:
                async with self._session.post(sub.url, data=row.body.encode(),
                                              headers=headers) as resp:
                    if not 200 <= resp.status < 300:
                        error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
        now = self.ctx.clock.now()
        async with self.ctx.db.session() as s:
            fresh = await s.get(WebhookDelivery, row.id)
            if fresh is None:
                return
            fresh.attempts += 1
            fresh.locked_until = None
            if error is None:
                fresh.status, fresh.delivered_at, fresh.last_error = "delivered", now, None
            else:
                fresh.last_error = error
                if fresh.attempts >= self.settings.webhook_max_attempts or sub is None:
                    fresh.status = "failed"
                else:
                    delay = min(self.settings.webhook_base_delay * 2 ** (fresh.attempts - 1),
                                self.settings.webhook_max_delay)
                    fresh.next_attempt_at = now + timedelta(seconds=delay)
            s.add(fresh)
            await s.commit()
