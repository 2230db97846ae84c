"""Agent assist in a real browser (Debian chromium through Playwright) on the node's
own wiring: beside a WhatsApp conversation the desktop shows the reply of a similar
resolved case and the knowledge-base section; the agent inserts one, sends it (the
customer gets exactly that text through the Graph API stand-in), inserts and edits the
other; the feedback lands in the use rate per queue; a returning customer's pop shows
the case summary."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import expect

from cases import IdentityRef
from tests.browser.test_desktop_browser import accept_pop, available_agent, login
from tests.waiting import wait_until

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
                                  "Call me on +31 6 5550 0001")
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
    await expect(origin).to_contain_text("tracking is stuck. Call me on [phone]")
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

