"""The recording controls and the player in Debian's chromium, on the real node: a
sipp caller reaches anna's (pyVoIP) phone on a recorded queue; anna pauses the
recording from the call panel (a card number) and resumes it; after the call the
case timeline shows the recording with a player that loads the file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.e2e.test_call_control_e2e import ANNA, Scene
from tests.e2e.test_recording_e2e import recorded_site
from tests.waiting import wait_until

pytestmark = [pytest.mark.sipp, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
async def scene(site_dir, make_node, tmp_path: Path):  # type: ignore[no-untyped-def]
    node = await make_node(recorded_site(site_dir))
    s = Scene(node, tmp_path)
    yield s
    await s.close()


async def test_pause_from_the_call_panel_and_play_on_the_timeline(scene: Scene) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
    from playwright.async_api import async_playwright, expect

    assert os.access(CHROMIUM, os.X_OK), "Debian chromium is needed: apt install chromium"
    await scene.phone("1001", "anna-secret", ANNA)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{scene.base}/login")
            await page.fill("#username", "anna")
            await page.fill("#password", "demo")
            await page.click("#login-submit")
            await page.wait_for_url(f"{scene.base}/desktop")
            await page.wait_for_selector("#connection.live")
            await page.click("#go-available")
            await expect(page.locator("#agent-state")).to_have_text("available")

            call_id = await scene.call_in(login_agent=False)
            task_id = scene.task_of(call_id)
            panel = page.locator(f".pane#task-{task_id} .call-controls")
            desk = await scene.desk("anna")

            async def accepted() -> bool:
                _, tasks = await desk.get("/api/tasks")
                return any(t["task_id"] == task_id and t["status"] == "accepted"
                           for t in tasks["tasks"])

            await wait_until(accepted, timeout=20)
            try:
                await panel.wait_for(timeout=3000)
            except PlaywrightTimeout:
                await page.reload()
                await panel.wait_for(timeout=20000)
            recording = panel.locator(".call-recording")
            await expect(recording.locator(".recording-state")).to_contain_text("recording",
                                                                                timeout=15000)
            await recording.locator('button[data-op="recording/pause"]').click()
            await expect(recording.locator(".recording-state")).to_contain_text("paused")
            live = scene.voice.sip_control.recorder.live[call_id]
            assert live.tap.paused and live.tap.pauses[0]["by"] == "anna"
            assert scene.caller is not None
            await scene.caller.listen(50)
            await recording.locator('button[data-op="recording/resume"]').click()
            await expect(recording.locator('button[data-op="recording/pause"]')).to_be_visible()
            assert not live.tap.paused

            await panel.locator('button[data-op="hangup"]').click()
            result = await asyncio.wait_for(scene.sipp, 30)  # type: ignore[arg-type]
            assert result.returncode == 0, result.stderr + result.errors

            # the case page shows the recording on the timeline with a player; the
            # browser loads the file through the audited endpoint
            case_id = scene.voice.calls_by_id[call_id].case_id if call_id in \
                scene.voice.calls_by_id else None
            recordings = scene.c.services["recordings"]
            if case_id is None:
                from sqlmodel import select

                from cases.recording_tables import Recording

                async with scene.c.db.session() as s:
                    case_id = (await s.exec(select(Recording))).first().case_id

            async def finished() -> bool:
                return any(r.status == "complete" for r in await recordings.for_case(case_id))

            await wait_until(finished, timeout=30)
            await page.goto(f"{scene.base}/cases/{case_id}")
            player = page.locator("#case-timeline .recording-player audio")
            await player.first.wait_for(state="attached", timeout=20000)
            src = await player.first.get_attribute("src")
            assert src and src.startswith("/api/recordings/")
            status = await page.evaluate("(src) => fetch(src).then(r => r.status)", src)
            assert status == 200
            [rec] = await recordings.for_case(case_id)
            assert [a.action for a in await recordings.accesses(rec.id)][-1] == "play"
        finally:
            await browser.close()
