"""Every main screen passes axe-core with no serious or critical violation (labels,
names, contrast, landmarks), in English and in Dutch: the log-in page, the desktop with
an offer and with a conversation open, the case page, the wallboard, reports, admin."""

from __future__ import annotations

import pytest

from tests.browser.accessibility import assert_accessible
from tests.browser.test_desktop_browser import login

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("locale", ["en-GB", "nl-NL"])
async def test_main_screens_have_no_serious_accessibility_violations(site, browser, shot,
                                                                     locale) -> None:
    base, driver = site.base_url, site.driver
    # axe is injected as a script: the page's CSP (script-src 'self') would refuse it.
    ctx = await browser.new_context(bypass_csp=True, locale=locale)
    page = await ctx.new_page()
    await page.goto(f"{base}/login")
    await assert_accessible(page)

    await login(page, base, "anna")
    await page.wait_for_url(f"{base}/desktop")
    await page.wait_for_selector("#connection.live")
    await page.click("#go-available")
    await assert_accessible(page)
    case_id = await driver.whatsapp_inbound("31655500033", "Sanne", "Kan ik ruilen?")
    pop = page.locator(f".screenpop[data-case='{case_id}']")
    await pop.wait_for(timeout=5000)
    await assert_accessible(page)
    await pop.locator("button.accept").click()
    await page.locator(f".pane[data-case='{case_id}']").wait_for()
    await assert_accessible(page)
    await shot(page, "desktop-conversation")
    await page.goto(f"{base}/cases/{case_id}")
    await assert_accessible(page)
    await shot(page, "case-page")
    await ctx.close()

    ctx = await browser.new_context(bypass_csp=True, locale=locale)
    page = await ctx.new_page()
    await login(page, base, "sam")
    await page.wait_for_url(f"{base}/wallboard")
    await page.wait_for_selector("#connection.live")
    await assert_accessible(page)
    await shot(page, "wallboard")
    await page.goto(f"{base}/reports")
    await assert_accessible(page)
    await shot(page, "reports")
    await ctx.close()
