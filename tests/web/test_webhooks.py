"""Outgoing webhooks: signed, retried with backoff, durable across a restart, and each
event stored once per subscription — against a real local HTTP receiver, on SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlmodel import select

from core.clock import ManualClock
from core.events import Event
from core.ids import new_id
from web.desktop.state import DesktopSettings
from web.desktop.webhooks import WebhookDispatcher
from web.tables import WebhookDelivery, WebhookSubscription


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.got: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append((dict(request.headers), body))
        if len(self.got) <= self.fail_first:
            return web.Response(status=503)
        return web.Response(status=204)


async def _setup(database, receiver: Receiver, clock: ManualClock):
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app)
    await server.start_server()
    from tests.web.harness import build_harness

    h = build_harness(database, clock=clock)
    async with database.session() as s:
        s.add(WebhookSubscription(id=new_id(), url=str(server.make_url("/hook")),
                                  secret="s3cret-s3cret-s3cret", topics=["case.*"],
                                  created_at=clock.now()))
        await s.commit()
    settings = DesktopSettings(webhook_base_delay=2.0, webhook_max_attempts=3)
    dispatcher = WebhookDispatcher(h.ctx, settings)
    await dispatcher.start()
    dispatcher._task.cancel()  # drive it by hand: run_once
    return server, dispatcher


async def test_signed_delivery_with_retry_and_backoff(database) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    receiver = Receiver(fail_first=1)
    server, dispatcher = await _setup(database, receiver, clock)
    try:
        event = Event("case.opened", {"case_id": "k1", "customer_id": "c1"})
        await dispatcher.enqueue(event)
        await dispatcher.enqueue(Event("timeline.added", {"case_id": "k1"}))  # not subscribed
        assert await dispatcher.run_once() == 1  # 503
        assert await dispatcher.run_once() == 0  # backing off
        clock.advance(2.1)
        assert await dispatcher.run_once() == 1  # delivered
        headers, body = receiver.got[-1]
        ts = headers["X-Centrale-Timestamp"]
        expected = hmac.new(b"s3cret-s3cret-s3cret", f"{ts}.".encode() + body,
                            hashlib.sha256).hexdigest()
        assert headers["X-Centrale-Signature"] == f"sha256={expected}"
        assert json.loads(body)["payload"] == {"case_id": "k1", "customer_id": "c1"}
        assert headers["X-Centrale-Event"] == "case.opened"
        async with database.session() as s:
            row = (await s.exec(select(WebhookDelivery))).one()
        assert (row.status, row.attempts) == ("delivered", 2)
    finally:
        await dispatcher.stop()
        await server.close()


async def test_gives_up_after_max_attempts(database) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    receiver = Receiver(fail_first=99)
    server, dispatcher = await _setup(database, receiver, clock)
    try:
        await dispatcher.enqueue(Event("case.closed", {"case_id": "k1"}))
        for _ in range(5):
            await dispatcher.run_once()
            clock.advance(600)
        async with database.session() as s:
            row = (await s.exec(select(WebhookDelivery))).one()
        assert (row.status, row.attempts) == ("failed", 3)
        assert row.last_error == "HTTP 503"
        assert len(receiver.got) == 3
    finally:
        await dispatcher.stop()
        await server.close()


async def test_redelivered_event_is_stored_once_and_survives_a_restart(database) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    receiver = Receiver()
    server, first = await _setup(database, receiver, clock)
    try:
        event = Event("case.reopened", {"case_id": "k2"})
        await first.enqueue(event)
        await first.enqueue(event)  # at-least-once bus: the same event again
        await first.stop()  # the node stops before sending
        from tests.web.harness import build_harness

        second = WebhookDispatcher(build_harness(database, clock=clock).ctx,
                                   DesktopSettings())
        await second.start()
        second._task.cancel()
        assert await second.run_once() == 1
        assert len(receiver.got) == 1
        await second.stop()
    finally:
        await server.close()


async def test_unreachable_receiver_is_retried_not_crashed(database) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    receiver = Receiver()
    server, dispatcher = await _setup(database, receiver, clock)
    await server.close()  # nobody listens any more
    try:
        await dispatcher.enqueue(Event("case.opened", {"case_id": "k3"}))
        assert await dispatcher.run_once() == 1
        async with database.session() as s:
            row = (await s.exec(select(WebhookDelivery))).one()
        assert row.status == "pending" and row.attempts == 1
        assert "Connect" in (row.last_error or "") or "Error" in (row.last_error or "")
    finally:
        await dispatcher.stop()
