"""A live Centrale web server for Playwright, and Debian's chromium.

By default the site is the web app on the demo config with a SQLite file, the
in-process bus and the real CaseService, ACD engine (queues.AcdEngine) and digital
channels (digital.build: WhatsApp webhook, inbox, ConversationService), with a local
stand-in for Meta's Graph API (`LocalDriver`). To run the same scenarios against
the real wiring, set `CENTRALE_BROWSER_SITE=module:function`: an async context manager
factory taking
`tmp_path` and yielding an object with `base_url` and `driver` (see `Driver`) — e.g.
the composition root's `build_app` plus a driver that posts signed WhatsApp webhooks and
lets the real ACD offer the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
from aiohttp import web

from cases import IdentityRef
from core.db import Database, sqlite_url
from core.ids import new_id
from queues.engine import AcdEngine
from tests.web.harness import Harness, build_harness, demo_config
from web.app import create_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
PHONE_NUMBER_ID = "106540352242922"  # the demo config's WhatsApp number
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


class Driver(Protocol):
    """What the scenarios make happen outside the browser."""

    async def whatsapp_inbound(self, wa_id: str, name: str, text: str) -> str:
        """A WhatsApp message arrives and is queued; returns the case id."""

    async def call_inbound(self, number: str) -> str:
        """A call from `number` comes through the IVR into a queue; returns the case id."""

    async def make_waiting(self, queue_id: str, count: int) -> None:
        """`count` new voice contacts wait in `queue_id`."""


class FakeGraph:
    """Meta's Graph API as far as a reply needs it: accepts the send, answers a wamid,
    then posts signed `sent`, `delivered`, `read` status webhooks back to Centrale."""

    def __init__(self, app_secret: str) -> None:
        self.app_secret = app_secret
        self.sent: list[dict[str, Any]] = []
        self.webhook_url = ""
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{version}/{pnid}/messages", self._send)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        wamid = f"wamid.out.{len(self.sent) + 1}"
        self.sent.append(body)
        task = asyncio.get_running_loop().create_task(self._statuses(wamid, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"messaging_product": "whatsapp",
                                  "contacts": [{"input": body.get("to"),
                                                "wa_id": str(body.get("to")).lstrip("+")}],
                                  "messages": [{"id": wamid}]})

    async def _statuses(self, wamid: str, body: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http:
            for name in ("sent", "delivered", "read"):
                payload = wa_payload(statuses=[{"id": wamid, "status": name,
                                                "timestamp": str(int(time.time())),
                                                "recipient_id": str(body.get("to", ""))}])
                await post_signed(http, self.webhook_url, self.app_secret, payload)


def wa_payload(*, messages: list[dict[str, Any]] | None = None,
               statuses: list[dict[str, Any]] | None = None,
               name: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "31201234567",
                                          "phone_number_id": PHONE_NUMBER_ID}}
    if messages is not None:
        value["messages"] = messages
        value["contacts"] = [{"profile": {"name": name or ""}, "wa_id": m["from"]}
                             for m in messages]
    if statuses is not None:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}]}


async def post_signed(http: aiohttp.ClientSession, url: str, secret: str,
                      payload: dict[str, Any]) -> int:
    from digital.whatsapp.signature import sign

    raw = json.dumps(payload).encode()
    async with http.post(url, data=raw, headers={"Content-Type": "application/json",
                                                 "X-Hub-Signature-256": sign(secret, raw)}) as r:
        return r.status


class EngineForDigital:
    """digital's AcdPort (enqueue a TaskRequest) over queues.AcdEngine — what the
    composition root does for production."""

    def __init__(self, engine: AcdEngine) -> None:
        self.engine = engine

    async def enqueue(self, request: Any) -> str:
        task = await self.engine.enqueue(
            queue_id=request.queue_id, channel=request.channel, case_id=request.case_id,
            customer_id=request.customer_id, preferred_agent_id=request.preferred_agent_id,
            attributes={**request.attributes, "conversation_id": request.conversation_id})
        return task.id


@dataclass
class LocalDriver:
    """Inbound contacts the way production receives them: WhatsApp through the signed
    webhook (digital/ stores, resolves, queues); a call as the voice bridge hands it
    over (CaseService.resolve, the IVR path on the timeline, the ACD's enqueue)."""

    h: Harness
    acd: AcdEngine
    base_url: str
    app_secret: str

    async def whatsapp_inbound(self, wa_id: str, name: str, text: str) -> str:
        arrived: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_message(event: Any) -> None:
            p = event.payload
            if p.get("direction") == "inbound" and p.get("body") == text[:1000] \
                    and not arrived.done():
                arrived.set_result(p["case_id"])

        sub = await self.h.bus.subscribe("conversation.message", on_message)
        try:
            message = {"from": wa_id, "id": f"wamid.in.{new_id()}",
                       "timestamp": str(int(time.time())), "type": "text",
                       "text": {"body": text}}
            async with aiohttp.ClientSession() as http:
                status = await post_signed(http, f"{self.base_url}/webhooks/whatsapp",
                                           self.app_secret,
                                           wa_payload(messages=[message], name=name))
            assert status == 200, status
            async with asyncio.timeout(5):
                return await arrived
        finally:
            await sub.close()

    async def call_inbound(self, number: str) -> str:
        cases = self.h.ctx.cases
        res = await cases.resolve(IdentityRef("phone", number))
        await cases.add_timeline(res.case.id, kind="ivr", channel="voice",
                                 direction="inbound", body=None,
                                 meta={"path": ["welcome", "language", "sales"],
                                       "digits": ["1", "2"]})
        await self.acd.enqueue(queue_id="sales", channel="voice", case_id=res.case.id,
                               customer_id=res.customer.id, attributes={"caller": number})
        return res.case.id

    async def make_waiting(self, queue_id: str, count: int) -> None:
        for i in range(count):
            res = await self.h.ctx.cases.resolve(IdentityRef("phone", f"+3120555{i:04d}"))
            await self.acd.enqueue(queue_id=queue_id, channel="voice", case_id=res.case.id,
                                   customer_id=res.customer.id)


@dataclass
class Site:
    base_url: str
    driver: Any


@contextlib.asynccontextmanager
async def local_site(tmp_path: Path) -> AsyncIterator[Site]:
    from centrale.tables import import_all
    from digital import build as build_digital

    import_all()
    db = Database(sqlite_url(tmp_path / "browser.db"))
    await db.create_all()
    config = demo_config()
    wa = config.channels.whatsapp
    assert wa is not None
    app_secret = wa.app_secret.get_secret_value()
    graph = FakeGraph(app_secret)
    await graph.start()
    # WhatsApp lands in `sales` here so the demo's agent anna (sales skill) gets it.
    wa = wa.model_copy(update={"queue": "sales", "graph_base_url": graph.base_url})
    config = config.model_copy(update={"channels": config.channels.model_copy(
        update={"whatsapp": wa})})
    harness = build_harness(db, config=config)
    acd = AcdEngine(config, harness.ctx.clock, harness.bus)
    harness.ctx.acd = acd
    digital = build_digital(config, db, harness.bus, harness.ctx.clock, harness.ctx.cases,
                            EngineForDigital(acd), media_dir=tmp_path / "media")
    digital.install(harness.ctx)
    await digital.start()
    loop = asyncio.get_running_loop().create_task(acd.run())
    runner = web.AppRunner(create_app(harness.ctx))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    graph.webhook_url = f"{base}/webhooks/whatsapp"
    try:
        yield Site(base, LocalDriver(harness, acd, base, app_secret))
    finally:
        await acd.stop()
        await loop
        await runner.cleanup()
        await digital.stop()
        await graph.stop()
        await db.dispose()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    spec = os.environ.get("CENTRALE_BROWSER_SITE")
    factory = local_site
    if spec:
        module, _, name = spec.partition(":")
        factory = getattr(importlib.import_module(module), name)
    async with factory(tmp_path) as s:
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    assert os.access(CHROMIUM, os.X_OK), "Debian chromium is needed: apt install chromium"
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Save a screenshot under test-artifacts/<test name>/NN-<label>.png."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 100))

    async def take(page: Any, label: str) -> Path:
        path = folder / f"{next(counter):02d}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
