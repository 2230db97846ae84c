"""A live Centrale web server for Playwright, and Debian's chromium.

By default the app is wired here (`local_app`): the demo config with a SQLite file,
the in-process bus and the real CaseService, ACD engine (queues.AcdEngine) and digital
channels (digital.build: WhatsApp webhook, inbox, ConversationService). To run the same
scenarios against another wiring, set `CENTRALE_BROWSER_APP=module:function`
(default: the composition root in tests/browser/lead_wiring.py; `local`: the one below):
`function(tmp_path, graph_base_url)` returns an async context manager yielding the
wired `aiohttp.web.Application` (services started), or `(app, base_url)` when it serves
the app itself (tests/browser/lead_wiring.py does so for `centrale.node.Node`), with
the demo users and agents,
WhatsApp enabled with `graph_base_url` (a local Graph API stand-in that accepts sends
and posts signed statuses back), WhatsApp routed to a queue anna serves (`sales`) and
`ctx.acd` an AcdEngine. Inbound contacts come through the signed webhook (`LocalDriver`).
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
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
from aiohttp import web

from cases import IdentityRef
from core.db import Database, sqlite_url
from core.ids import new_id
from queues.engine import AcdEngine
from tests.web.harness import build_harness, demo_config
from web.app import create_app
from web.context import CONTEXT, WebContext

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
        self.wamids: list[str] = []  # the ids answered to each send, in order
        self.auto_statuses = True  # post sent/delivered/read back by itself
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
        self.wamids.append(wamid)
        if self.auto_statuses:
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
                await self.post_status(http, wamid, name, str(body.get("to", "")))

    async def post_status(self, http: aiohttp.ClientSession, wamid: str, name: str,
                          recipient: str) -> int:
        """Meta's status webhook for one sent message, signed with the app secret."""
        payload = wa_payload(statuses=[{"id": wamid, "status": name,
                                        "timestamp": str(int(time.time())),
                                        "recipient_id": recipient}])
        return await post_signed(http, self.webhook_url, self.app_secret, payload)


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


@dataclass
class LocalDriver:
    """Inbound contacts the way production receives them: WhatsApp through the signed
    webhook (digital/ stores, resolves, queues); a call as the voice bridge hands it
    over (CaseService.resolve, the IVR path on the timeline, the ACD's enqueue). Works
    on any wired app: it only uses the app's WebContext."""

    ctx: WebContext
    base_url: str
    app_secret: str
    workdir: Path

    async def whatsapp_inbound(self, wa_id: str, name: str, text: str) -> str:
        arrived: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_message(event: Any) -> None:
            p = event.payload
            if p.get("direction") == "inbound" and p.get("body") == text[:1000] \
                    and not arrived.done():
                arrived.set_result(p["case_id"])

        sub = await self.ctx.bus.subscribe("conversation.message", on_message)
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
        cases = self.ctx.cases
        res = await cases.resolve(IdentityRef("phone", number))
        # What ivr.Interpreter writes for this path (one entry per step, then the end).
        await cases.add_timeline(res.case.id, kind="ivr_step", channel="voice",
                                 direction="inbound", body="Menu language: pressed 1 → menu",
                                 meta={"node": "language", "type": "menu", "digits": "1"})
        await cases.add_timeline(res.case.id, kind="ivr_step", channel="voice",
                                 direction="inbound", body="Menu main: pressed 2 → sales",
                                 meta={"node": "main", "type": "menu", "digits": "2"})
        await cases.add_timeline(res.case.id, kind="ivr_end", channel="voice",
                                 direction="inbound", body="Queued in sales",
                                 meta={"path": ["main.welcome", "main.language", "main.sales"],
                                       "outcome": "connected"})
        await self.ctx.acd.enqueue(queue_id="sales", channel="voice", case_id=res.case.id,
                                   customer_id=res.customer.id,
                                   attributes={"caller": number})
        return res.case.id

    def sip_port(self) -> int:
        """The node's embedded SIP core (UDP), for real calls with sipp."""
        sip = self.ctx.services.get("sip")
        assert sip is not None, ("this scenario calls in over SIP: it needs a wiring with "
                                 "the embedded SIP core (the default, lead_wiring:node_app)")
        return int(sip.port)

    async def sip_call(self, caller: str, *, service: str, digits: str = "",
                       hold_ms: int = 5000) -> Any:
        """A real call with sipp (Debian sip-tester) from `caller` to `service`: DTMF
        `digits` (RFC 2833) 1.5 s apart, then `hold_ms` waiting in the queue, then BYE.
        Returns sipp's result (returncode 0 = the whole scenario ran)."""
        from tests.pbx_bridge.sip.sip_testkit import run_sipp, uac_scenario

        scenario = uac_scenario(digits=digits, wait_before_dtmf_ms=1500, hold_ms=hold_ms,
                                from_hdr=f'"Caller" <sip:{caller}@[local_ip]:[local_port]>')
        scenario = scenario.replace('<pause milliseconds="400"/>',
                                    '<pause milliseconds="1500"/>')
        workdir = self.workdir / f"sipp-{new_id()}"
        workdir.mkdir(parents=True)
        return await run_sipp(scenario, workdir, self.sip_port(), service=service,
                              timeout=30 + hold_ms / 1000)

    async def make_waiting(self, queue_id: str, count: int) -> None:
        for i in range(count):
            res = await self.ctx.cases.resolve(IdentityRef("phone", f"+3120555{i:04d}"))
            await self.ctx.acd.enqueue(queue_id=queue_id, channel="voice",
                                       case_id=res.case.id, customer_id=res.customer.id)


@dataclass
class Site:
    base_url: str
    driver: LocalDriver
    graph: FakeGraph
    spec: str  # which wiring serves it (CENTRALE_BROWSER_APP)

    def needs_composition_root(self) -> None:
        """Scenarios of what only a node wires (embedded SIP, callbacks, the admin's
        migration report) say so plainly instead of failing somewhere inside."""
        assert self.spec != "local", ("this scenario tests the node's own wiring; run it "
                                      "with the default CENTRALE_BROWSER_APP")


@contextlib.asynccontextmanager
async def local_app(tmp_path: Path, graph_base_url: str) -> AsyncIterator[web.Application]:
    """The app wired here: demo config, SQLite, in-process bus, CaseService with its
    CaseFollowUp, AcdEngine and digital.build (WhatsApp to the `sales` queue, where the
    demo's anna works)."""
    from centrale.tables import import_all
    from digital import build as build_digital

    import_all()
    db = Database(sqlite_url(tmp_path / "browser.db"))
    await db.create_all()
    config = demo_config()
    wa = config.channels.whatsapp
    assert wa is not None
    wa = wa.model_copy(update={"queue": "sales", "graph_base_url": graph_base_url})
    config = config.model_copy(update={"channels": config.channels.model_copy(
        update={"whatsapp": wa})})
    harness = build_harness(db, config=config)
    acd = AcdEngine(config, harness.ctx.clock, harness.bus)
    harness.ctx.acd = acd
    digital = build_digital(config, db, harness.bus, harness.ctx.clock, harness.ctx.cases,
                            acd, media_dir=tmp_path / "media")
    digital.install(harness.ctx)
    await digital.start()
    await harness.follow_up.start()
    loop = asyncio.get_running_loop().create_task(acd.run())
    try:
        yield create_app(harness.ctx)
    finally:
        await harness.follow_up.stop()
        await acd.stop()
        await loop
        await digital.stop()
        await db.dispose()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """The app (ours, or `CENTRALE_BROWSER_APP`'s) served on an ephemeral port, with a
    Graph API stand-in for its WhatsApp replies and the driver for inbound contacts."""
    spec = os.environ.get("CENTRALE_BROWSER_APP", "tests.browser.lead_wiring:node_app")
    factory = local_app
    if spec != "local":
        module, _, name = spec.partition(":")
        factory = getattr(importlib.import_module(module), name)
    graph = FakeGraph("")
    await graph.start()
    try:
        async with factory(tmp_path, graph.base_url) as made:
            runner: web.AppRunner | None = None
            if isinstance(made, tuple):  # (app, base_url): the factory serves it itself
                app, base = made
            else:
                app = made
                runner = web.AppRunner(app)
                await runner.setup()
                tcp = web.TCPSite(runner, "127.0.0.1", 0)
                await tcp.start()
                port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                base = f"http://127.0.0.1:{port}"
            ctx = app[CONTEXT]
            wa = ctx.config.channels.whatsapp
            assert wa is not None, "the browser scenarios need the WhatsApp channel"
            graph.app_secret = wa.app_secret.get_secret_value()
            graph.webhook_url = f"{base}/webhooks/whatsapp"
            try:
                yield Site(base, LocalDriver(ctx, base, graph.app_secret, tmp_path), graph,
                           spec)
            finally:
                if runner is not None:
                    await runner.cleanup()
    finally:
        await graph.stop()


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
    for stale in folder.glob("*.png"):  # a run's screenshots, not an earlier run's too
        stale.unlink(missing_ok=True)  # a parallel run may have removed it
    counter = iter(range(1, 100))

    async def take(page: Any, label: str) -> Path:
        path = folder / f"{next(counter):02d}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take
