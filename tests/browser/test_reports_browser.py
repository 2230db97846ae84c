"""The reports page in a real browser (Debian chromium): a supervisor sees today's
contacts per queue in the table, the uPlot chart drawn under the page's CSP (no
violation), switches the charted figure, downloads the CSV, and a bad date is shown
beside the form."""

from __future__ import annotations

import csv
import io

import pytest
from playwright.async_api import expect

from tests.browser.test_desktop_browser import login
from tests.waiting import wait_until

pytestmark = pytest.mark.browser


async def test_supervisor_reads_the_report_chart_and_csv(site, browser, shot) -> None:
    base, driver = site.base_url, site.driver
    await driver.make_waiting("support", 2)
    ctx = await browser.new_context(accept_downloads=True)
    page = await ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and "Failed to load resource" not in m.text else None)  # statuses: below
    page.on("pageerror", lambda e: problems.append(str(e)))
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    await login(page, base, "sam")
    await page.wait_for_url(f"{base}/wallboard")

    row = page.locator("#report-table tbody tr", has_text="support")

    async def support_row_shown() -> bool:
        await page.goto(f"{base}/reports?by=queue&granularity=60min")
        return await row.count() == 1

    await wait_until(support_row_shown, timeout=10)  # the recorder is a bus consumer
    canvas = page.locator("#report-chart canvas")
    await expect(canvas.first).to_be_visible()
    await expect(page.locator("#report-chart .u-legend")).to_contain_text("support")
    await page.select_option("#chart-figure", "contacts")
    await expect(canvas).to_have_count(1)  # redrawn, not stacked
    await shot(page, "reports")

    async with page.expect_download() as info:
        await page.click("#csv-link")
    download = await info.value
    rows = list(csv.DictReader(io.StringIO((await download.path()).read_text())))
    assert any(r["key"] == "support" and int(r["contacts"]) >= 2 for r in rows)

    assert problems == [], problems  # no CSP violation, no script error
    assert [u for u in missing if "favicon" not in u] == []  # uPlot and reports.js served

    resp = await page.goto(f"{base}/reports?from=2026-02-30")
    assert resp is not None and resp.status == 422
    await expect(page.locator("#report-error")).to_contain_text("from")
    await ctx.close()
