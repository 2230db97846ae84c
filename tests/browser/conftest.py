"""A live Centrale web server for Playwright, and Debian's chromium.

By default the site is the web app on the demo config with a SQLite file, the
in-process bus, the real CaseService, the real ACD engine (queues.AcdEngine) and the fake
conversation service of tests/web (`LocalDriver`). To run the same scenarios against
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
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiohttp import web

from cases import IdentityRef
from core.db import Database, sqlite_url
from queues.engine import AcdEngine
from tests.web.harness import Harness, build_harness
from web.app import create_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
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


@dataclass
class LocalDriver:
    """Inbound contacts as the channel adapters hand them over: CaseService.resolve, the
    message or IVR path on the timeline, then the real ACD's enqueue."""

    h: Harness
    acd: AcdEngine

    async def whatsapp_inbound(self, wa_id: str, name: str, text: str) -> str:
        cases = self.h.ctx.cases
        res = await cases.resolve(IdentityRef("whatsapp", wa_id), display_name=name)
        await cases.add_timeline(res.case.id, kind="message", channel="whatsapp",
                                 direction="inbound", body=text,
                                 meta={"status": "received"}, dedup_key=f"wamid.{text}")
        if not self.h.conversations.by_case.get(res.case.id):
            self.h.conversations.open(res.case.id)
        await self.acd.enqueue(queue_id="sales", channel="whatsapp", case_id=res.case.id,
                               customer_id=res.customer.id)
        return res.case.id

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

    import_all()
    db = Database(sqlite_url(tmp_path / "browser.db"))
    await db.create_all()
    harness = build_harness(db)
    acd = AcdEngine(harness.ctx.config, harness.ctx.clock, harness.bus)
    harness.ctx.acd = acd
    loop = asyncio.get_running_loop().create_task(acd.run())
    runner = web.AppRunner(create_app(harness.ctx))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Site(f"http://127.0.0.1:{port}", LocalDriver(harness, acd))
    finally:
        await acd.stop()
        await loop
        await runner.cleanup()
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
