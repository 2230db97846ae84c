"""The widget in Debian's chromium (Playwright): one script tag on a customer's page,
a message out, the agent's reply shown as text (markup stays inert), and a reload that
resumes the thread without duplicates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page, async_playwright
from sqlmodel import select

from centrale.tables import import_all
from core.db import Database, sqlite_url
from digital.tables import Conversation
from tests.waiting import wait_until

from .conftest import Stack, make_config, make_stack

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
HOSTILE = '<img src=x onerror="window.pwned=1">hello'


@pytest.fixture
async def page_stack(tmp_path: Path) -> AsyncIterator[tuple[Stack, str]]:
    import_all()
    db = Database(sqlite_url(tmp_path / "browser.db"))
    await db.create_all()
    st, client = await make_stack(db, tmp_path, make_config(webchat_origins=()))
    widget = str(client.make_url("/webchat/widget.js"))
    site = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><html><head><title>Shop</title></head>"
                                 f"<body><h1>Shop</h1><script src=\"{widget}\"></script>"
                                 "</body></html>", content_type="text/html")

    site.router.add_get("/", page)
    runner = web.AppRunner(site)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    url = f"http://127.0.0.1:{tcp._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]
    try:
        yield st, url
    finally:
        await runner.cleanup()
        await client.close()
        await st.digital.stop()
        await db.dispose()


async def messages(page: Page) -> list[str]:
    return await page.eval_on_selector_all(".cw-log .cw-msg", "els => els.map(e => e.textContent)")


async def wait_messages(page: Page, count: int) -> list[str]:
    for _ in range(250):
        got = await messages(page)
        if len(got) >= count:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} messages, saw {await messages(page)}")


async def test_widget_in_chromium(page_stack: tuple[Stack, str]) -> None:
    stack, url = page_stack
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                           args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page()
            await page.goto(url)
            await page.fill(".cw-form input", "Do you ship to Belgium?")
            await page.click(".cw-form button")
            await page.wait_for_selector(".cw-visitor:not(.cw-pending)", timeout=5000)
            await stack.drain()
            async with stack.db.session() as s:
                conv = (await s.exec(select(Conversation))).one()
            await stack.acd.accept(conv.task_id, "agent-ann")
            await stack.conversation_state(conv.id, "assigned")
            assert (await stack.conversations.reply(conv.id, "agent-ann", HOSTILE)).ok
            shown = await wait_messages(page, 2)
            assert shown == ["Do you ship to Belgium?", HOSTILE]
            assert await page.eval_on_selector_all(".cw-log img", "els => els.length") == 0
            assert await page.evaluate("window.pwned === undefined")
            # a reload resumes the same session: the thread once, nothing twice
            await page.reload()
            shown = await wait_messages(page, 2)
            await asyncio.sleep(0.2)
            assert await messages(page) == ["Do you ship to Belgium?", HOSTILE]
            await page.fill(".cw-form input", "Great, thanks")
            await page.click(".cw-form button")
            await page.wait_for_selector(".cw-visitor:not(.cw-pending) >> nth=1", timeout=5000)
            await stack.drain()
            thread = await stack.conversations.messages(conv.id)
            assert [m["body"] for m in thread] == ["Do you ship to Belgium?", HOSTILE,
                                                   "Great, thanks"]
        finally:
            await browser.close()


async def test_visitor_taps_a_survey_button_in_chromium(tmp_path: Path) -> None:
    """The survey after a webchat conversation as the visitor sees it: the question with
    a button per answer under it; a tap sends the answer (title and id), the buttons go,
    the answer is on the case timeline and the thanks arrives."""
    from config.schema.reports import ConversationSurvey, ReportsSettings
    from core.events import Event

    import_all()
    db = Database(sqlite_url(tmp_path / "survey.db"))
    await db.create_all()
    config = make_config(webchat_origins=()).model_copy(update={"reports": ReportsSettings(
        conversation_survey=ConversationSurvey(channels=["webchat"]))})
    st, client = await make_stack(db, tmp_path, config)
    answers: list[Event] = []

    async def keep(event: Event) -> None:
        answers.append(event)

    await st.bus.subscribe("survey.answered", keep)
    widget = str(client.make_url("/webchat/widget.js"))
    site = web.Application()

    async def shop(_: web.Request) -> web.Response:
        return web.Response(text=f"<!doctype html><html><head><title>Shop</title></head>"
                                 f"<body><script src=\"{widget}\"></script></body></html>",
                            content_type="text/html")

    site.router.add_get("/", shop)
    runner = web.AppRunner(site)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    url = f"http://127.0.0.1:{tcp._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                               args=["--no-sandbox", "--disable-gpu"])
            try:
                page = await browser.new_page()
                await page.goto(url)
                await page.fill(".cw-form input", "Is my order on its way?")
                await page.click(".cw-form button")
                await page.wait_for_selector(".cw-visitor:not(.cw-pending)", timeout=5000)
                await st.drain()
                async with st.db.session() as s:
                    conv = (await s.exec(select(Conversation))).one()
                await st.acd.accept(conv.task_id, "agent-ann")
                await st.conversation_state(conv.id, "assigned")
                await st.acd.complete(conv.task_id, "resolved")
                await st.conversation_state(conv.id, "ended")
                await page.wait_for_selector(".cw-quick button", timeout=10000)
                titles = await page.eval_on_selector_all(
                    ".cw-quick button", "els => els.map(e => e.textContent)")
                assert titles == ["5", "4", "3", "2", "1"]
                await page.click('.cw-quick button[data-reply="survey:4"]')
                await page.wait_for_selector(".cw-quick", state="detached", timeout=5000)
                await st.drain()
                await wait_until(lambda: bool(answers))
                assert [(a.payload["score"], a.payload["channel"]) for a in answers] == \
                    [(4, "webchat")]
                shown = await wait_messages(page, 4)
                assert shown[-2:] == ["4", "Thank you for your answer."]
                timeline = await st.cases.timeline(conv.case_id)
                assert any(t.body == "Survey (CSAT): 4" for t in timeline)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
        await client.close()
        await st.digital.stop()
        await db.dispose()
