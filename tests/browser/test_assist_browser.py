"""Agent assist in a real browser (Debian chromium through Playwright) on the node's
own wiring: beside a WhatsApp conversation the desktop shows the reply of a similar
resolved case and the knowledge-base section; the agent inserts one, sends it (the
customer gets exactly that text through the Graph API stand-in), inserts and edits the
other; the feedback lands in the use rate per queue (and on the reports page); the
wrap-up code is suggested; a returning customer's pop shows the case summary. And with
a model (a local chat-completions server): one that never answers leaves a quiet note
and the suggestions; one that answers gives a draft citing its sources, inserted, not
sent."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import expect

from cases import IdentityRef
from config.schema import AssistModel
from config.schema.schedules import DAYS
from core.db import sqlite_url
from core.settings import Settings
from tests.assist.chat_server import ChatServer
from tests.browser.conftest import FakeGraph, LocalDriver
from tests.browser.lead_wiring import DEMO
from tests.browser.test_desktop_browser import accept_pop, available_agent, login
from tests.waiting import wait_until
from web.context import CONTEXT

pytestmark = pytest.mark.browser

EARLIER_REPLY = ("Sorry for the delay! Your parcel is at the depot and will be delivered "
                 "tomorrow. You'll get a new tracking link tonight.")


async def test_agent_inserts_a_suggestion_and_the_knowledge_base_snippet(
        site, browser, shot) -> None:
    site.needs_composition_root()
    base, driver = site.base_url, site.driver
    ctx = driver.ctx
    assist = ctx.services["assist"]
    cases = ctx.cases

    # A resolved case in the sales queue: the customer's question and bert's reply.
    res = await cases.resolve(IdentityRef("whatsapp", "31655500001"), display_name="Tom")
    await cases.update_customer(res.customer.id, language="en")
    await assist.remember_queue(res.case.id, "sales")
    await cases.add_timeline(res.case.id, kind="message", channel="whatsapp",
                             direction="inbound",
                             body="My parcel has not been delivered yet, tracking is stuck. "
                                  "Call me on +31 6 5550 0001 "
                                  '<img src=x onerror="window.__pwned=1">')
    await cases.add_timeline(res.case.id, kind="message", channel="whatsapp",
                             direction="outbound", body=EARLIER_REPLY,
                             meta={"agent_id": "bert", "message_id": "earlier-1"})
    await cases.add_timeline(res.case.id, kind="wrap_up", channel="whatsapp",
                             direction="internal", body="Wrap-up: follow_up",
                             meta={"code": "follow_up", "agent_id": "bert"})
    await cases.close_case(res.case.id)  # the bus carries it to assist, which learns it
    await wait_until(lambda: len(assist.replies.index) == 1, timeout=10)

    browser_ctx, page = await available_agent(browser, base)
    case_id = await driver.whatsapp_inbound("31655500002", "Eva",
                                            "Where is my parcel? It has not been delivered.")
    pane = await accept_pop(page, case_id)
    panel = pane.locator(".assist")
    reply = panel.locator(".assist-reply").first
    await expect(reply.locator(".assist-text")).to_have_text(EARLIER_REPLY)
    # the case it came from, one click away (that customer's number masked)
    await reply.locator(".assist-source").click()
    origin = reply.locator(".assist-origin")
    await expect(origin).to_be_visible()
    await expect(origin).to_contain_text("tracking is stuck. Call me on [phone] "
                                         '<img src=x onerror="window.__pwned=1">')
    assert await origin.locator("img").count() == 0  # customer text shown as text
    assert await page.evaluate("window.__pwned === undefined")
    assert await origin.locator("a").get_attribute("href") == f"/cases/{res.case.id}"
    article = panel.locator(".assist-article").first
    assert await article.get_attribute("data-article") == "en/delivery"
    await shot(page, "suggestions-beside-the-conversation")

    # Insert the earlier reply: it fills the reply box, nothing is sent yet.
    sent_before = len(site.graph.sent)
    await reply.locator(".assist-insert").click()
    box = pane.locator(".conversation .reply-text")
    await expect(box).to_have_value(EARLIER_REPLY)
    assert len(site.graph.sent) == sent_before
    await pane.locator(".reply-send").click()
    await pane.locator(".timeline .body", has_text="Your parcel is at the depot").wait_for()
    await wait_until(lambda: len(site.graph.sent) == sent_before + 1)
    assert site.graph.sent[-1]["text"]["body"] == EARLIER_REPLY

    # Insert the knowledge-base snippet, edit it, send.
    await article.locator(".assist-insert").click()
    snippet = await box.input_value()
    assert snippet == await article.locator(".assist-text").text_content()
    assert snippet == ("Most parcels arrive within 2 working days. Check the tracking link in "
                       "the order confirmation first.")
    await box.fill(snippet + " Kind regards, Anna")
    await shot(page, "snippet-inserted-and-edited")
    await pane.locator(".reply-send").click()
    await wait_until(lambda: len(site.graph.sent) == sent_before + 2)
    assert site.graph.sent[-1]["text"]["body"].endswith("Kind regards, Anna")

    # The wrap-up code, as the similar case ended.
    await pane.locator(".assist-wrap-suggest").click()
    await expect(pane.locator(".wrap-code")).to_have_value("follow_up")
    await expect(pane.locator(".assist-wrap-hint")).to_have_text("(as similar cases)")

    # What anna did is the use rate of the sales queue.
    async def recorded() -> list:
        now = ctx.clock.now()
        return await assist.use_rate(start=now - timedelta(hours=1),
                                     end=now + timedelta(hours=1))

    async def both_recorded() -> bool:
        return sum(r["suggestions"] for r in await recorded()) == 2

    await wait_until(both_recorded, timeout=10)
    rows = await recorded()
    assert rows == [{"queue_id": "sales", "suggestions": 2, "used": 1, "edited": 1,
                     "ignored": 0, "use_rate": 1.0}]

    # ... and what the supervisor's reports page shows for the day.
    sup_ctx = await browser.new_context()
    sup = await sup_ctx.new_page()
    await login(sup, base, "sam")
    await sup.wait_for_url(f"{base}/wallboard")
    await sup.goto(f"{base}/reports")
    row = sup.locator("#assist-use-rate tr[data-queue='sales']")
    await expect(row.locator(".use-rate")).to_have_text("100%")
    await expect(row.locator("td").nth(1)).to_have_text("2")
    await shot(sup, "use-rate-on-the-reports-page")
    await sup_ctx.close()

    # The earlier customer writes again: their case reopens, and the pop shows its
    # summary (what was asked, what was done).
    again = await driver.whatsapp_inbound("31655500001", "Tom", "Still nothing arrived!")
    assert again == res.case.id
    pop = page.locator(f".screenpop[data-case='{again}']")
    summary = pop.locator(".assist-summary")
    await expect(summary).to_contain_text("Customer asked:")
    await expect(summary).to_contain_text("1 agent reply on whatsapp")
    await shot(page, "summary-on-the-pop")
    await browser_ctx.close()



@contextlib.asynccontextmanager
async def node_with_model(tmp_path: Path, graph_base_url: str, model_url: str,
                          ) -> AsyncIterator[tuple[web.Application, str]]:
    """tests/browser/lead_wiring.node_app with `assist.model` pointing at a local
    chat-completions server (and no SIP: this scenario needs none)."""
    from centrale.container import Container
    from centrale.node import Node
    from centrale.wiring import wire
    from config import load_config_with_sources

    loaded = load_config_with_sources(DEMO, env={})
    cfg = loaded.config
    wa = cfg.channels.whatsapp
    assert wa is not None
    always = {day: ["00:00-24:00"] for day in DAYS}
    model = AssistModel(enabled=True, base_url=model_url, model="local-test",
                        timeout_seconds=1.0, cooldown_seconds=0, stream=True)
    cfg = cfg.model_copy(update={
        "server": cfg.server.model_copy(update={
            "web": cfg.server.web.model_copy(update={"port": 0}),
            "sip": cfg.server.sip.model_copy(update={"enabled": False}),
            "asterisk": cfg.server.asterisk.model_copy(update={"enabled": False})}),
        "schedules": [s.model_copy(update={"hours": always, "holiday_calendars": []})
                      for s in cfg.schedules],
        "channels": cfg.channels.model_copy(update={"whatsapp": wa.model_copy(update={
            "queue": "sales", "graph_base_url": graph_base_url})}),
        "assist": cfg.assist.model_copy(update={"model": model})})
    loaded = dataclasses.replace(loaded, config=cfg)
    container = Container.build(Settings(database_url=sqlite_url(tmp_path / "node.db"),
                                         node_id="browser", log_format="text"), loaded)
    wire(container)
    node = Node(container)
    await node.start()
    assert node.runner is not None
    try:
        yield node.runner.app, f"http://127.0.0.1:{node.port}"
    finally:
        await node.stop()


async def test_a_model_that_hangs_leaves_a_quiet_note_then_its_draft_cites_sources(
        tmp_path, browser, shot) -> None:
    chat = ChatServer()
    await chat.start()
    graph = FakeGraph("")
    await graph.start()
    try:
        async with node_with_model(tmp_path, graph.base_url, chat.base_url) as (app, base):
            ctx = app[CONTEXT]
            graph.app_secret = ctx.config.channels.whatsapp.app_secret.get_secret_value()
            graph.webhook_url = f"{base}/webhooks/whatsapp"
            driver = LocalDriver(ctx, base, graph.app_secret, tmp_path)
            browser_ctx, page = await available_agent(browser, base)
            case_id = await driver.whatsapp_inbound(
                "31655500003", "Eva", "Waar blijft mijn pakket? Het is te laat. Bel 0612345678")
            pane = await accept_pop(page, case_id)
            panel = pane.locator(".assist")
            await expect(panel.locator(".assist-article").first).to_have_attribute(
                "data-article", "nl/bezorging")

            chat.mode = "hang"  # the model never answers: 1 s, then the note
            await panel.locator(".assist-ask-draft").click()
            await expect(panel.locator(".assist-note")).to_have_text(
                "The assistant model did not answer (no answer within 1 s); "
                "showing suggestions from earlier cases.", timeout=10000)
            assert await panel.locator(".assist-draft").is_hidden()
            assert await panel.locator(".assist-article").count() >= 1
            await shot(page, "model-did-not-answer")

            chat.mode = "stream"
            chat.answer = ("Excuses! Staat de track & trace 3 werkdagen stil, dan sturen we "
                           "een nieuw pakket [K1].")
            await panel.locator(".assist-ask-draft").click()
            draft = panel.locator(".assist-draft")
            await expect(draft.locator(".assist-draft-text")).to_have_text(chat.answer)
            await expect(draft.locator(".assist-cites")).to_contain_text("K1: Pakket niet bezorgd")
            assert "0612345678" not in chat.last_prompt and "[phone]" in chat.last_prompt
            await draft.locator(".assist-insert-draft").click()
            await expect(pane.locator(".conversation .reply-text")).to_have_value(chat.answer)
            assert graph.sent == []  # inserted, not sent
            await shot(page, "model-draft-inserted")
            await browser_ctx.close()
    finally:
        await graph.stop()
        await chat.stop()
