"""Handing a WhatsApp conversation to a colleague by name, as agents do it: anna picks
bram in the transfer menu with a reason; bram's desktop pops the same case with
"Transferred by anna: reason" (escaped as text), and he accepts it."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.test_desktop_browser import accept_pop, available_agent

pytestmark = pytest.mark.browser


async def test_a_conversation_is_transferred_to_a_named_agent(site, browser, shot) -> None:
    base, driver = site.base_url, site.driver
    ctx, page = await available_agent(browser, base, "anna")
    case_id = await driver.whatsapp_inbound("31612340055", "Sanne Visser",
                                            "Mijn factuur klopt niet")
    pane = await accept_pop(page, case_id)
    bram_ctx, bram = await available_agent(browser, base, "bram")

    await pane.locator(".transfer-agent").select_option("bram")
    await pane.locator(".transfer-reason").fill("factuur <b>vraag</b>")
    await pane.locator(".transfer-go").click()
    await pane.wait_for(state="detached", timeout=5000)  # anna's tab closes: handed on

    pop = bram.locator(f".screenpop[data-case='{case_id}']")
    await pop.wait_for(timeout=5000)
    note = pop.locator(".transfer-note")
    await expect(note).to_have_text("Transferred by anna: factuur <b>vraag</b>")
    assert await note.locator("b").count() == 0  # customer/agent text is never markup
    await shot(bram, "transferred-offer")
    await pop.locator("button.accept").click()
    await bram.locator(f".pane[data-case='{case_id}']").wait_for()
    await ctx.close()
    await bram_ctx.close()
