"""A live call on the desktop, as an agent works it: a real caller (sipp, through the
demo IVR) is answered on the agent's registered desk phone (pyVoIP) while the desktop
is open. The offer card goes when the phone answers, the call tab opens with the talk
timer, a reload and a second tab show the same call, the caller's hang-up puts the tab
in wrap-up, which a reload keeps, and "Done" with a code chosen by its name ends it.
Also: a desktop closed while available hands its offer to the next agent at once and
the agent goes not ready ("disconnected"); times are the site's (Europe/Amsterdam)
whatever the browser's zone; the desktop in Dutch and in English."""

from __future__ import annotations

import asyncio
import re
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect

from cases import IdentityRef
from tests.browser.answering_phone import AnsweringPhone
from tests.browser.test_desktop_browser import available_agent, login
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.sipp]


async def test_call_answered_on_the_desk_phone_runs_its_life_cycle_on_the_page(
        site, browser, shot) -> None:
    site.needs_composition_root()
    base, driver = site.base_url, site.driver
    ctx, page = await available_agent(browser, base)
    phone = AnsweringPhone(driver.sip_port(), "1001", "demo-sip")
    await phone.start()
    caller = asyncio.get_running_loop().create_task(driver.sip_call(
        "0612345678", service="100", digits="21", hold_ms=20000))
    try:
        # The offer pops while the desk phone rings; anna picks up the phone (not the
        # browser's Accept): the card goes, the call tab opens with the talk timer.
        pop = page.locator(".screenpop[data-channel='voice']")
        await pop.wait_for(timeout=15000)
        await phone.ringing()
        await shot(page, "ringing")
        phone.answer()
        await pop.wait_for(state="detached", timeout=10000)
        pane = page.locator(".pane[data-channel='voice']")
        await expect(pane).to_have_attribute("data-status", "accepted", timeout=5000)
        await expect(pane.locator(".talk-timer")).to_have_text(re.compile(r"^0:0[1-9]$"),
                                                               timeout=5000)
        # Issue 14's call controls sit in the in-call panel's slot.
        hold = pane.locator("#call-controls .call-controls [data-op='hold']")
        await expect(hold).to_have_count(1)
        await expect(pane.locator(".call-ivr")).to_contain_text("[2]")  # the digits pressed
        task = page.locator("#task-list li.task")
        await expect(task).to_have_count(1)
        await expect(task).to_have_attribute("data-status", "accepted")
        await expect(task).to_contain_text("connected")
        await expect(pane.locator(".wrapup")).to_be_hidden()  # no wrap-up while talking
        await shot(page, "in-call")

        # Reloaded mid-call: the same call, its timer still counting from the answer.
        await page.reload()
        await page.wait_for_selector("#connection.live")
        pane = page.locator(".pane[data-channel='voice']")
        await expect(pane).to_have_attribute("data-status", "accepted", timeout=5000)
        await expect(pane.locator(".talk-timer")).not_to_have_text(re.compile(r"^0:0[0-1]$"))
        assert await page.locator(".screenpop").count() == 0

        # A second tab shows the same truth.
        second = await ctx.new_page()
        await second.goto(f"{base}/desktop")
        await second.wait_for_selector("#connection.live")
        await expect(second.locator(".pane[data-channel='voice']")).to_have_attribute(
            "data-status", "accepted", timeout=5000)
        await expect(second.locator("#agent-state")).to_have_text("busy")

        # The caller hangs up: wrap-up, with its timer, in both tabs.
        result = await caller
        assert result.returncode == 0, result.stderr + result.errors
        for p in (page, second):
            wrap_pane = p.locator(".pane[data-channel='voice']")
            await expect(wrap_pane).to_have_attribute("data-status", "wrap_up", timeout=10000)
            await expect(wrap_pane.locator(".wrap-timer")).to_contain_text("Wrap-up")
        await expect(page.locator("#task-list li.task")).to_contain_text("wrap-up")
        await shot(page, "wrap-up")

        # Reloaded mid-wrap-up: still in wrap-up, the code list shows names, not ids.
        await page.reload()
        await page.wait_for_selector("#connection.live")
        pane = page.locator(".pane[data-channel='voice']")
        await expect(pane).to_have_attribute("data-status", "wrap_up", timeout=5000)
        options = await pane.locator(".wrap-code option").all_text_contents()
        assert "Needs follow-up" in options and "follow_up" not in options
        await pane.locator(".wrap-code").select_option(label="Needs follow-up")
        await pane.locator(".wrap-notes").fill("called about the order")
        await pane.locator(".wrap-end").click()
        for p in (page, second):
            await p.locator(".pane[data-channel='voice']").wait_for(state="detached",
                                                                    timeout=5000)
        await expect(page.locator("#task-list li.task")).to_have_count(0)

        assert driver.ctx.acd.agent("anna").state == "available"

        # The case's timeline has the code and the notes given at "Done".
        res = await driver.ctx.cases.resolve(IdentityRef("phone", "+31612345678"))

        async def wrapped_up() -> bool:
            return any(e.kind == "wrap_up" and (e.meta or {}).get("code") == "follow_up"
                       and "called about the order" in ((e.meta or {}).get("notes") or "")
                       for e in await driver.ctx.cases.timeline(res.case.id))

        await wait_until(wrapped_up)
    finally:
        if not caller.done():
            caller.cancel()
        await phone.stop()
    await ctx.close()


async def test_closed_desktop_hands_its_offer_on_and_goes_not_ready(site, browser,
                                                                    shot) -> None:
    base, driver = site.base_url, site.driver
    anna_ctx, anna = await available_agent(browser, base, "anna")
    case_id = await driver.whatsapp_inbound("31655500011", "Joris", "Waar blijft mijn pakket?")
    await anna.locator(f".screenpop[data-case='{case_id}']").wait_for(timeout=5000)

    bram_ctx, bram = await available_agent(browser, base, "bram")
    assert await bram.locator(".screenpop").count() == 0  # the offer rings at anna's

    await anna_ctx.close()  # browser closed while available, offer on screen
    # The offer goes to bram within the short grace, long before anna's no-answer timer.
    rona = next(q.rona_seconds for q in driver.ctx.config.queues if q.id == "sales")
    await bram.locator(f".screenpop[data-case='{case_id}']").wait_for(
        timeout=1000 * (rona - 5))
    await shot(bram, "offer-moved-to-bram")

    # And anna is not ready, reason "disconnected", on the supervisor's wallboard.
    sam_ctx = await browser.new_context()
    board = await sam_ctx.new_page()
    await login(board, base, "sam")
    await board.wait_for_url(f"{base}/wallboard")
    row = board.locator("#agent-table tr[data-agent='anna']")
    await expect(row.locator(".state")).to_have_text("not ready", timeout=10000)
    await expect(row.locator(".reason")).to_have_text("disconnected")
    assert driver.ctx.acd.agent("anna").reason == "disconnected"
    await shot(board, "anna-disconnected")
    await bram_ctx.close()
    await sam_ctx.close()


async def test_times_are_the_sites_whatever_the_browsers_zone(site, browser, shot) -> None:
    base, driver = site.base_url, site.driver
    ctx = await browser.new_context(timezone_id="America/New_York", locale="en-US")
    page = await ctx.new_page()
    await login(page, base, "anna")
    await page.wait_for_url(f"{base}/desktop")
    await page.wait_for_selector("#connection.live")
    await page.click("#go-available")
    case_id = await driver.whatsapp_inbound("31655500022", "Femke", "Hoe laat sluiten jullie?")
    pop = page.locator(f".screenpop[data-case='{case_id}']")
    await pop.wait_for(timeout=5000)
    entry = next(e for e in await driver.ctx.cases.timeline(case_id) if e.kind == "message")
    arrived = entry.occurred_at
    if arrived.tzinfo is None:  # SQLite: stored as UTC
        from datetime import UTC
        arrived = arrived.replace(tzinfo=UTC)
    amsterdam = arrived.astimezone(ZoneInfo("Europe/Amsterdam")).strftime("%H:%M:%S")
    new_york = arrived.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M:%S")
    when = await pop.locator(".timeline li.message .when").first.text_content()
    assert amsterdam in when and new_york not in when, (when, amsterdam)
    await expect(page.locator("#timezone")).to_have_text("Europe/Amsterdam")
    await shot(page, "amsterdam-time")
    await ctx.close()


@pytest.mark.parametrize(("locale", "available", "my_tasks"), [
    ("nl-NL", "Beschikbaar", "Mijn taken"), ("en-GB", "Available", "My tasks")])
async def test_the_desktop_in_dutch_and_in_english(site, browser, shot, locale, available,
                                                   my_tasks) -> None:
    """The browser's language chooses (the user has none set in the demo config)."""
    ctx = await browser.new_context(locale=locale)
    page = await ctx.new_page()
    await login(page, site.base_url, "anna")
    await page.wait_for_url(f"{site.base_url}/desktop")
    await page.wait_for_selector("#connection.live")
    await expect(page.locator("#go-available")).to_have_text(available)
    await expect(page.locator("#my-tasks-title")).to_have_text(my_tasks)
    assert await page.locator("html").get_attribute("lang") == locale[:2]
    await page.click("#go-available")
    state = "beschikbaar" if locale.startswith("nl") else "available"
    await expect(page.locator("#agent-state")).to_have_text(state)
    await shot(page, "desktop-" + locale[:2])
    await ctx.close()
