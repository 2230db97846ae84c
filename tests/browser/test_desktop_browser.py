"""The web app in a real browser (Debian chromium through Playwright): log-in, going
available, the WhatsApp screen-pop, a reply, wrap-up, the later real SIP call (sipp,
national caller ID, through the IVR) that pops the same case with the WhatsApp thread,
hostile message text shown as text, another agent's case refused, the wallboard updating
live, two conversations at once, delivery ticks moved by Meta's status webhooks, a
callback from a WhatsApp conversation, and the admin page's users, report and tokens."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from tests.browser.ringing_phone import RingingPhone

pytestmark = pytest.mark.browser

WA_ID = "31612345678"
EVIL = ('Hallo <script>window.__pwned = 1</script><b id="bold">vet</b>'
        '<img src=x onerror="window.__pwned=2">')


async def login(page, base: str, username: str, password: str = "demo") -> None:
    await page.goto(f"{base}/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-submit")


async def available_agent(browser, base: str, username: str = "anna"):  # type: ignore[no-untyped-def]
    """A fresh browser context with `username` logged in, desktop live, available."""
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await login(page, base, username)
    await page.wait_for_url(f"{base}/desktop")
    await page.wait_for_selector("#connection.live")
    await page.click("#go-available")
    await expect(page.locator("#agent-state")).to_have_text("available")
    return ctx, page


async def accept_pop(page, case_id: str):  # type: ignore[no-untyped-def]
    """Accept the case's screen-pop; returns the conversation pane it opens."""
    pop = page.locator(f".screenpop[data-case='{case_id}']")
    await pop.wait_for(timeout=5000)
    await pop.locator("button.accept").click()
    pane = page.locator(f".pane[data-case='{case_id}']")
    await pane.wait_for()
    return pane


async def test_agent_handles_whatsapp_then_a_call_on_the_same_case(site, browser, shot) -> None:
    site.needs_composition_root()
    base, driver = site.base_url, site.driver
    ctx, page = await available_agent(browser, base)
    await shot(page, "available")

    # A WhatsApp message arrives and pops, hostile HTML and all, as text.
    case_id = await driver.whatsapp_inbound(WA_ID, "Eva <i>de Boer</i>", EVIL)
    pop = page.locator(".screenpop").first
    await pop.wait_for(timeout=5000)
    assert await pop.get_attribute("data-case") == case_id
    assert await pop.locator(".customer-name").text_content() == "Eva <i>de Boer</i>"
    body = pop.locator(".timeline .body").first
    assert await body.text_content() == EVIL
    assert await page.locator("#bold").count() == 0
    assert await page.evaluate("window.__pwned === undefined")
    await shot(page, "whatsapp-pop")

    # Accept: the conversation opens with its 24-hour window; the agent replies.
    await pop.locator("button.accept").click()
    pane = page.locator(f".pane[data-case='{case_id}']")
    await pane.wait_for()
    assert "24-hour window open" in await pane.locator(".window").text_content()
    await pane.locator(".reply-text").fill("Dag Eva, ik zoek het voor u uit.")
    await pane.locator(".reply-send").click()
    await pane.locator(".timeline .body", has_text="ik zoek het voor u uit").wait_for()
    await shot(page, "replied")

    # Wrap-up with a disposition code and notes.
    await pane.locator(".wrap-code").select_option("follow_up")
    await pane.locator(".wrap-notes").fill("tracking number sent")
    await pane.locator(".wrap-complete").click()
    await pane.locator(".wrap-end").wait_for()
    await pane.locator(".wrap-extend").click()
    await expect(page.locator("#flash")).to_have_text("Wrap-up extended by 30 s.")
    await pane.locator(".wrap-end").click()
    await pane.wait_for(state="detached")

    # Later a real call from the same person, national format, through the embedded SIP
    # core and the demo IVR (2 = English, 1 = sales). anna's desk phone rings (and is
    # not picked up), her screen pops the same case with the WhatsApp thread.
    phone = RingingPhone(driver.sip_port(), "1001", "demo-sip")
    await phone.register()
    caller = asyncio.get_running_loop().create_task(driver.sip_call(
        "0612345678", service="100", digits="21", hold_ms=8000))
    try:
        pop = page.locator(".screenpop[data-channel='voice']")
        await pop.wait_for(timeout=15000)
        assert await pop.get_attribute("data-case") == case_id
        texts = await pop.locator(".timeline .body").all_text_contents()
        assert EVIL in texts and "Dag Eva, ik zoek het voor u uit." in texts
        facts = " ".join(await pop.locator(".timeline .facts").all_text_contents())
        assert "Menu main_menu: pressed 1 → to_sales" in texts  # the IVR path of this call
        assert "digits: 2" in facts and "digits: 1" in facts
        assert "wrap-up: Needs follow-up" in facts  # the code by its name
        assert any("tracking number sent" in t for t in texts)  # the wrap-up notes
        assert "delivery: read" in facts  # Meta's status webhooks reached the thread
        assert await page.locator(".pane").count() == 0  # the wrapped-up task stays closed
        href = await pop.locator("a.cti").get_attribute("href")
        assert href == "https://crm.example.com/search?phone=+31612345678"
        # The long timeline opens at its end: this call's IVR path is in view.
        await expect(pop.locator(".timeline li").last).to_be_in_viewport()
        await asyncio.wait_for(phone.ringing.wait(), 5)
        await shot(page, "call-pop-same-case")
        await pop.locator(".timeline").evaluate("list => { list.scrollTop = 0; }")
        await expect(pop.locator(".timeline li").first).to_be_in_viewport()
        await shot(page, "call-pop-whatsapp-thread")

        # anna rejects in the browser: the offer leaves her screen and her desk phone
        # stops ringing (CANCEL) while the caller still waits; then the caller hangs up
        # (a clean BYE, sipp's scenario complete).
        await pop.locator("button.reject").click()
        await pop.wait_for(state="detached")
        await asyncio.wait_for(phone.cancelled.wait(), 5)
        assert not caller.done()  # it was the reject, not the caller's hang-up
        result = await caller
        assert result.returncode == 0, result.stderr + result.errors
    finally:
        phone.close()
        if not caller.done():
            caller.cancel()
    await ctx.close()


async def test_agent_opening_another_agents_case_gets_403(site, browser, shot) -> None:
    base, driver = site.base_url, site.driver
    anna = await browser.new_context()
    page_a = await anna.new_page()
    await login(page_a, base, "anna")
    await page_a.wait_for_url(f"{base}/desktop")
    await page_a.wait_for_selector("#connection.live")
    await page_a.click("#go-available")
    case_id = await driver.whatsapp_inbound("31699999999", "Piet", "Ik wil opzeggen")
    await page_a.locator(".screenpop").first.wait_for()

    bram = await browser.new_context()
    page_b = await bram.new_page()
    await login(page_b, base, "bram")
    await page_b.wait_for_url(f"{base}/desktop")
    resp = await page_b.goto(f"{base}/cases/{case_id}")
    assert resp.status == 403
    assert "not one of your tasks" in await page_b.locator("#error-message").text_content()
    await shot(page_b, "403")
    resp = await page_a.goto(f"{base}/cases/{case_id}")
    assert resp.status == 200
    assert "Ik wil opzeggen" in await page_a.locator("#case-timeline").text_content()
    await anna.close()
    await bram.close()


async def test_wallboard_updates_live(site, browser, shot) -> None:
    base, driver = site.base_url, site.driver
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await login(page, base, "sam")
    await page.wait_for_url(f"{base}/wallboard")
    await page.wait_for_selector("#connection.live")
    row = page.locator("#queue-table tr[data-queue='support']")
    await driver.make_waiting("support", 3)  # nobody is logged in: they wait
    await expect(row.locator(".waiting")).to_have_text("3", timeout=5000)
    await expect(row.locator(".agents_by_state")).to_have_text("logged out: 3")
    await expect(page.locator("#chart-waiting polyline[data-queue='support']")).to_have_count(1)
    await driver.make_waiting("support", 1)
    await expect(row.locator(".waiting")).to_have_text("4", timeout=5000)
    # "Oldest" ticks while the contacts wait and nothing else happens (no new frame).
    oldest = row.locator(".oldest_wait")
    first = await oldest.text_content()
    assert first is not None and first.count(":") == 1, first
    await expect(oldest).not_to_have_text(first, timeout=5000)
    channel = page.locator("#channel-table tr[data-channel='voice']")
    await expect(channel.locator(".waiting")).to_have_text("4")
    voice_oldest = await channel.locator(".oldest_wait").text_content()
    await expect(channel.locator(".oldest_wait")).not_to_have_text(voice_oldest or "",
                                                                   timeout=5000)
    await shot(page, "wallboard")

    # The supervisor puts an agent on a break from the wallboard.
    await page.locator("#agent-table tr[data-agent='daan'] select.set-state").select_option(
        "available")
    state = page.locator("#agent-table tr[data-agent='daan'] .state")
    await expect(state).to_have_text("busy", timeout=5000)  # the ACD gave daan a call at once
    await expect(row.locator(".agents_by_state")).to_contain_text("busy: 1", timeout=5000)
    await page.locator("#agent-table tr[data-agent='bram'] select.set-state").select_option(
        "available")
    await expect(page.locator("#agent-table tr[data-agent='bram'] .state")).to_have_text(
        "available")
    await page.locator("#agent-table tr[data-agent='bram'] select.set-state").select_option(
        "not_ready:break")
    await expect(page.locator("#agent-table tr[data-agent='bram'] .state")).to_have_text(
        "not ready")
    await expect(page.locator("#agent-table tr[data-agent='bram'] .reason")).to_have_text(
        "Break")
    # Time in state starts at 0:00 on the change and ticks.
    in_state = page.locator("#agent-table tr[data-agent='bram'] .time_in_state")
    await expect(in_state).to_have_text("0:01", timeout=5000)
    await expect(in_state).to_have_text("0:02", timeout=5000)
    # daan's call shows as his load.
    await expect(page.locator("#agent-table tr[data-agent='daan'] .load")).to_have_text(
        "voice 1", timeout=8000)
    await ctx.close()


async def test_two_whatsapp_conversations_at_once(site, browser, shot) -> None:
    base, driver = site.base_url, site.driver
    ctx, page = await available_agent(browser, base)
    first = await driver.whatsapp_inbound("31611110001", "Joost", "Mijn factuur klopt niet")
    second = await driver.whatsapp_inbound("31611110002", "Sanne", "Kan ik ruilen?")
    for case_id in (first, second):
        pop = page.locator(f".screenpop[data-case='{case_id}']")
        await pop.wait_for(timeout=5000)
        await pop.locator("button.accept").click()
        await page.locator(f".pane[data-case='{case_id}']").wait_for(state="attached")
    assert await page.locator(".tabs .tab").count() == 2
    pane = page.locator(f".pane[data-case='{second}']")
    await expect(pane).to_be_visible()
    await pane.locator(".reply-text").fill("Ja hoor, binnen 30 dagen.")
    await pane.locator(".reply-send").click()
    await pane.locator(".timeline .body", has_text="binnen 30 dagen").wait_for()
    await page.locator(".tabs .tab", has_text="Joost").click()
    await expect(page.locator(f".pane[data-case='{first}']")).to_be_visible()
    await expect(pane).to_be_hidden()
    await shot(page, "two-conversations")
    await ctx.close()


async def test_delivery_ticks_of_a_reply_move_live(site, browser, shot) -> None:
    """Meta's status webhooks for the agent's reply (delivered, then read) change the
    reply's tick on the open desktop without a reload."""
    import aiohttp

    base, driver, graph = site.base_url, site.driver, site.graph
    graph.auto_statuses = False  # the test posts each status itself
    ctx, page = await available_agent(browser, base)
    case_id = await driver.whatsapp_inbound("31622223333", "Lotte", "Waar blijft mijn bestelling?")
    pane = await accept_pop(page, case_id)
    await page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    await pane.locator(".reply-text").fill("Hij is onderweg, morgen in huis.")
    await pane.locator(".reply-send").click()
    reply = pane.locator("li.entry.outbound", has_text="morgen in huis")
    await reply.wait_for()
    assert len(graph.wamids) == 1
    # Meta took the message (the send's answer); no status webhook yet.
    await expect(reply.locator(".delivery")).to_have_attribute("data-delivery", "sent")

    async with aiohttp.ClientSession() as http:
        assert await graph.post_status(http, graph.wamids[0], "delivered", "31622223333") == 200
        await expect(reply.locator(".delivery")).to_have_attribute("data-delivery", "delivered",
                                                                   timeout=5000)
        await expect(reply.locator(".delivery")).to_contain_text("delivery: delivered ✓✓")
        await shot(page, "delivered")
        assert await graph.post_status(http, graph.wamids[0], "read", "31622223333") == 200
        await expect(reply.locator(".delivery")).to_have_attribute("data-delivery", "read",
                                                                   timeout=5000)
        # A late, out-of-order "delivered" report does not move the tick back.
        assert await graph.post_status(http, graph.wamids[0], "delivered", "31622223333") == 200
        await expect(reply.locator(".delivery")).to_have_attribute("data-delivery", "read")
    assert await page.evaluate("window.__sameDocument === true")
    await shot(page, "read")
    await ctx.close()


async def test_callback_scheduled_from_a_whatsapp_conversation(site, browser, shot) -> None:
    """Click-to-call and "schedule callback" are on every task whose customer has a
    number, not only on calls: the WhatsApp customer is called back through the queue."""
    site.needs_composition_root()
    base, driver = site.base_url, site.driver
    ctx, page = await available_agent(browser, base)
    case_id = await driver.whatsapp_inbound("31633334444", "Bas", "Kunt u mij bellen?")
    pane = await accept_pop(page, case_id)
    await expect(pane.locator(".call-number")).to_have_value("+31633334444")
    await pane.locator("button.callback").click()
    await expect(page.locator("#flash")).to_have_text("Callback scheduled.")
    # The request lands on the case's timeline, live in the open tab.
    await pane.locator(".timeline .body",
                       has_text="Callback to +31633334444 queued in sales").wait_for()
    await shot(page, "callback-scheduled")
    await ctx.close()


async def test_admin_page_users_migration_report_and_a_token_for_the_crm(site, browser,
                                                                         shot) -> None:
    """The admin page of a running node: the users, where the importers' report is read
    from (the config directory; the demo was never migrated), and an API token issued
    in the browser, shown once, that then works as a Bearer token and can be revoked."""
    import aiohttp

    site.needs_composition_root()

    base = site.base_url
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await login(page, base, "admin")
    await page.goto(f"{base}/admin")
    users = await page.locator("#users tbody td:first-child").all_text_contents()
    assert {"anna", "bram", "sam", "admin"} <= set(users)
    report = page.locator("section.panel", has_text="Migration report")
    await expect(report).to_contain_text("examples/demo/migration-report.json: "
                                         "no report written yet")
    await page.locator("select[name='username']").select_option("sam")
    await page.fill("input[name='label']", "CRM")
    await page.click("form[action='/admin/tokens'] button")
    token = (await page.locator("#new-token").text_content() or "").strip()
    assert len(token) >= 32
    await shot(page, "token-issued")
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{base}/api/me", headers=auth) as r:
            assert r.status == 200 and (await r.json())["username"] == "sam"
        await page.reload()  # a GET after the redirect: no second token, none shown
        assert token not in await page.content()
        await expect(page.locator("tr", has_text="CRM")).to_have_count(1)
        await page.locator("tr", has_text="CRM").locator("button", has_text="Revoke").click()
        await expect(page.locator("#admin-message")).to_have_text("Token revoked.")
        async with http.get(f"{base}/api/me", headers=auth) as r:
            assert r.status == 401
    await ctx.close()
