"""Fixtures for the web tests: an app on the demo config with a SQLite database (the
storage tests that matter per backend also run on PostgreSQL via `database`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.db import Database, sqlite_url
from tests.web.harness import Harness, build_harness, form_csrf, meta_csrf
from web.app import create_app


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    from centrale.tables import import_all

    import_all()
    db = Database(sqlite_url(tmp_path / "web.db"))
    await db.create_all()
    yield db
    await db.dispose()


class Web:
    """A test client plus the harness, with log-in helpers."""

    def __init__(self, client: TestClient, harness: Harness) -> None:
        self.client, self.h = client, harness

    async def login(self, username: str, password: str = "demo") -> str:
        """Log in through the form; returns the session's CSRF token."""
        page = await self.client.get("/login")
        token = form_csrf(await page.text())
        resp = await self.client.post("/login", data={"username": username,
                                                      "password": password,
                                                      "csrf_token": token, "next": ""},
                                      allow_redirects=False)
        assert resp.status == 302, await resp.text()
        home = await self.client.get(resp.headers["Location"])
        return meta_csrf(await home.text())

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until the web's consumer groups (task ledger, reports, webhooks) have
        handled every event published so far — instead of sleeping a guessed time."""
        await settle(self.h.bus, timeout)

    async def post_json(self, path: str, body: Any, csrf: str | None) -> Any:
        headers = {"X-CSRF-Token": csrf} if csrf else {}
        return await self.client.post(path, json=body, headers=headers)


async def settle(bus: Any, timeout: float = 5.0) -> None:
    from reports.service import GROUP

    groups = ("web.ledger", "web.webhooks", GROUP)
    async with asyncio.timeout(timeout):
        while True:
            await asyncio.sleep(0)
            states = [bus._groups.get(g) for g in groups]
            if all(st is None or (st.cursor == bus._end and not st.pending)
                   for st in states):
                return
            await asyncio.sleep(0.005)


@pytest.fixture
async def make_web(aiohttp_client: Callable[..., Any], sqlite_db: Database,
                   ) -> AsyncIterator[Callable[..., Any]]:
    started: list[Harness] = []

    async def make(db: Database | None = None, **kw: Any) -> Web:
        harness = build_harness(db or sqlite_db, **kw)
        await harness.follow_up.start()
        await harness.reports.start()
        started.append(harness)
        client = await aiohttp_client(create_app(harness.ctx))
        return Web(client, harness)

    yield make
    for harness in started:  # the reports' consumer and rollup loop end with the test
        await harness.reports.stop()


@pytest.fixture
async def web_env(make_web: Callable[..., Any]) -> Web:
    return await make_web()
