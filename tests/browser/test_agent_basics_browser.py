"""The agent basics on the desktop, as an agent uses them: the offer alert (tab title)
and Alt+A to accept, a canned reply with the customer's and the agent's names, a failed
WhatsApp send that stays visible with Meta's reason (also after a reload), a note,
closing and reopening the case, search by a national-format phone number and by case
id, and handing the conversation to another queue."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.browser.test_desktop_browser import available_agent

pytestmark = pytest.mark.browser


async def test_agent_basics(site, browser, shot) -> None:
    base, driver = site.base_url, site.driver
    ctx, page = await available_agent(browser, base)

    # The offer is seen in the tab title; Alt+A accepts it.
    case_id = await driver.whatsapp_inbound("31612340077", "Eva de Boer",
                                            "Is mijn bestelling al verstuurd?")
    pop = page.locator(f".screenpop[data-case='{case_id}']")
    await pop.wait_for(timeout=5000)
    await expect(page).to_have_title(re.compile(r"^\(1\) Offer · "))
    await page.keyboard.press("Alt+a")
    pane = page.locator(f".pane[data-case='{case_id}']")
    await pane.wait_for()
    await expect(pop).to_have_count(0)
    await expect(page).not_to_have_title(re.compile(r"Offer"))

    # A canned reply, its variables filled in.
    await pane.locator(".canned-reply").select_option(label="Greeting")
    await expect(pane.locator(".reply-text")).to_have_value(
        "Hello Eva de Boer, this is Anna de Vries. How can I help you?")

    # Meta refuses the send: it stays in view as failed, with the reason.
    site.graph.refuse_next = (131026, "Message undeliverable")
    await pane.locator(".reply-text").press("Control+Enter")
    failed = pane.locator(".outbox li.outgoing.failed")
    await expect(failed).to_have_count(1, timeout=5000)
    await expect(failed).to_contain_text("Hello Eva de Boer")
    await expect(failed.locator(".failed-reason")).to_contain_text("131026")
    await expect(failed.locator(".failed-reason")).to_contain_text("Message undeliverable")
    await shot(page, "failed-send")
    await page.reload()
    await page.wait_for_selector("#connection.live")
    pane = page.locator(f".pane[data-case='{case_id}']")
    failed = pane.locator(".outbox li.outgoing.failed")
    await expect(failed).to_have_count(1, timeout=5000)
    await expect(failed.locator(".failed-reason")).to_contain_text("Message undeliverable")

    # A note on the case, then close and reopen it.
    await pane.locator(".notes-box summary").click()
    await pane.locator(".note-text").fill("Klant belt morgen terug")
    await pane.locator(".note-add").click()
    await pane.locator(".timeline li.note .body", has_text="Klant belt morgen terug").wait_for()
    await pane.locator(".case-close").click()
    await expect(pane.locator(".case-status")).to_have_text("closed")
    assert (await driver.ctx.cases.get_case(case_id)).status == "closed"
    await pane.locator(".case-reopen").click()
    await expect(pane.locator(".case-status")).to_have_text("open")
    assert (await driver.ctx.cases.get_case(case_id)).status == "open"

    # Search by the number as people say it (national format), and by the case id.
    await page.fill("#search-q", "06 1234 0077")
    await page.click("#search-go")
    result = page.locator("#search-results .search-result")
    await expect(result).to_have_count(1)
    await expect(result).to_contain_text("Eva de Boer")
    await expect(result.locator("a.case-link")).to_have_text(case_id)
    await page.fill("#search-q", case_id)
    await page.click("#search-go")
    await expect(page.locator("#search-results .search-result")).to_contain_text("Eva de Boer")
    await page.fill("#search-q", "Nobody Here")
    await page.click("#search-go")
    await expect(page.locator("#search-results")).to_contain_text("Nothing found")
    await shot(page, "search")

    # Handed to the support queue: the tab closes, the task waits there.
    await pane.locator(".transfer-queue").select_option("support")
    await pane.locator(".transfer-go").click()
    await pane.wait_for(state="detached", timeout=5000)
    await expect(page.locator("#task-list li.task")).to_have_count(0)
    await ctx.close()


async def test_an_agent_finds_only_the_customers_of_their_tasks(site, browser) -> None:
    base, driver = site.base_url, site.driver
    ctx, page = await available_agent(browser, base, "anna")
    await driver.whatsapp_inbound("31612340088", "Joost Smit", "Hallo")
    await page.locator(".screenpop").first.wait_for(timeout=5000)
    bram_ctx, bram = await available_agent(browser, base, "bram")
    await bram.fill("#search-q", "Joost")
    await bram.click("#search-go")
    await expect(bram.locator("#search-results")).to_contain_text("Nothing found")
    await page.fill("#search-q", "Joost")
    await page.click("#search-go")
    await expect(page.locator("#search-results .search-result")).to_contain_text("Joost Smit")
    await ctx.close()
    await bram_ctx.close()
