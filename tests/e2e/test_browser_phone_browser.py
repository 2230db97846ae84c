"""The browser phone in Debian's chromium, on the real node: a sipp caller (its media a
600 Hz tone) comes through the IVR into the queue, anna's desktop rings, anna clicks
Answer; chromium's microphone is a WAV of a 1000 Hz tone. Both directions are checked
by content: the caller's received RTP holds 1000 Hz, the page's received audio (a
WebAudio AnalyserNode) peaks at 600 Hz. The dial pad's keys reach the caller as RFC
4733 events; mute silences the microphone; hanging up in the page ends the call, the
timeline says so and the task goes to wrap-up. Also: Reject in the page; the page
closed while ringing (the offer goes to the next agent); the page reloaded mid-call
(the call waits out the grace period, the page brings the audio back)."""

from __future__ import annotations

import asyncio
import math
import os
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.tone_parties import ToneCallerMedia, TonePhone, caller_scenario
from tests.tones import tone_levels
from tests.waiting import wait_until

pytestmark = [pytest.mark.sipp, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
CALLER, BROWSER, BRAM = 600.0, 1000.0, 1750.0
PRESENT, ABSENT = 0.05, 0.01


def tone_wav(path: Path, frequency: float, seconds: float = 20.0, rate: int = 48000) -> Path:
    """The microphone chromium fakes (it loops the file)."""
    n = int(rate * seconds)
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * frequency * i / rate)))
                      for i in range(n))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def browser_site(site_dir, **kw: Any) -> Path:  # type: ignore[no-untyped-def]
    """The e2e site with anna's voice device the browser (bram keeps a SIP phone)."""
    cfg = site_dir(**kw)
    yaml = (cfg / "site.yaml").read_text()
    yaml = yaml.replace('    sip: {username: "1001", password: anna-secret}\n',
                        '    sip: {username: "1001", password: anna-secret}\n'
                        '    voice_device: browser\n', 1)
    yaml = yaml.replace("  prompts_dir: prompts\n",
                        "  prompts_dir: prompts\n"
                        "  webrtc: {grace_seconds: 10, ice_timeout_seconds: 10}\n", 1)
    (cfg / "site.yaml").write_text(yaml)
    return cfg


class PhoneScene:
    def __init__(self, node: Any, tmp_path: Path) -> None:
        self.node, self.tmp_path = node, tmp_path
        self.c = node.c
        self.sip = node.c.services["sip"]
        self.acd = node.c.services["acd"]
        self.voice = node.c.services["voice"]
        self.phone = node.c.services["browser_phone"]
        self.base = f"http://127.0.0.1:{node.port}"
        self.caller: ToneCallerMedia | None = None
        self.sipp: asyncio.Task[Any] | None = None
        self.phones: list[TonePhone] = []

    async def call_in(self, digit: str = "1") -> None:
        """The caller dials 100 and presses `digit` (1 sales: anna; 2 support)."""
        from sip_testkit import run_sipp

        self.caller = await ToneCallerMedia.open(CALLER)
        self.sipp = asyncio.ensure_future(run_sipp(
            caller_scenario(self.caller.port), self.tmp_path, self.sip.port, service="100",
            timeout=120))
        await wait_until(lambda: self.caller.remote is not None, timeout=20)
        await asyncio.sleep(0.5)  # the menu prompt is playing
        self.caller.press(digit)

    def caller_levels(self, samples: Any) -> dict[float, float]:
        return tone_levels(samples, [CALLER, BROWSER, BRAM])

    async def caller_hears(self, frequency: float, tries: int = 10) -> dict[float, float]:
        """Windows of 1 s of what the caller receives until one holds `frequency` (the
        first ones after an answer or a reload may still be silence)."""
        assert self.caller is not None
        for _ in range(tries):
            heard = self.caller_levels(await self.caller.listen(50))
            if heard[frequency] > PRESENT:
                return heard
        raise AssertionError(f"the caller does not hear {frequency} Hz: {heard}")

    async def caller_stops_hearing(self, frequency: float, tries: int = 10) -> None:
        assert self.caller is not None
        for _ in range(tries):
            heard = self.caller_levels(await self.caller.listen(50))
            if heard[frequency] < ABSENT:
                return
        raise AssertionError(f"the caller still hears {frequency} Hz: {heard}")

    async def close(self) -> None:
        if self.caller is not None:
            self.caller.close()
        for phone in self.phones:
            await phone.stop()
        if self.sipp is not None and not self.sipp.done():
            self.sipp.cancel()


@pytest.fixture
async def scene(site_dir, make_node, tmp_path: Path) -> AsyncIterator[PhoneScene]:  # type: ignore[no-untyped-def]
    node = await make_node(browser_site(site_dir))
    s = PhoneScene(node, tmp_path)
    yield s
    await s.close()


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    assert os.access(CHROMIUM, os.X_OK), "Debian chromium is needed: apt install chromium"
    wav = tone_wav(tmp_path / "microphone.wav", BROWSER)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
            # host candidates as addresses (not mDNS names) between two local peers
            "--disable-features=WebRtcHideLocalIpsWithMdns"])
        yield browser
        await browser.close()


async def available(browser: Any, base: str, user: str = "anna") -> tuple[Any, Any]:
    from playwright.async_api import expect

    ctx = await browser.new_context(locale="en-GB")
    page = await ctx.new_page()
    await page.goto(f"{base}/login")
    await page.fill("#username", user)
    await page.fill("#password", "demo")
    await page.click("#login-submit")
    await page.wait_for_url(f"{base}/desktop")
    await page.wait_for_selector("#connection.live")
    await page.click("#go-available")
    await expect(page.locator("#agent-state")).to_have_text("available")
    return ctx, page


async def page_peak(page: Any) -> dict[str, float] | None:
    return await page.evaluate("window.CentralePhone && window.CentralePhone.peakFrequency()")


async def page_hears(page: Any, frequency: float) -> None:
    """The page's received audio peaks at `frequency` (WebAudio AnalyserNode)."""
    async def peaks() -> bool:
        peak = await page_peak(page)
        return peak is not None and abs(peak["hz"] - frequency) < 30 and peak["db"] > -80

    await wait_until(peaks, timeout=20, step=0.2)


async def test_answer_in_the_page_talk_both_ways_dial_pad_mute_and_hang_up(
        scene: PhoneScene, chromium: Any) -> None:
    from playwright.async_api import expect

    ctx, page = await available(chromium, scene.base)
    phone = page.locator("#phone")
    await scene.call_in("1")
    # The page rings (the phone panel) while the screen-pop shows the caller's case.
    await expect(phone).to_have_attribute("data-state", "ringing", timeout=30000)
    await page.locator(".screenpop[data-channel='voice']").wait_for(timeout=10000)
    await page.click("#phone-answer")
    await expect(phone).to_have_attribute("data-state", "talking", timeout=20000)
    await expect(page.locator("#phone-codec")).to_have_text("(PCMU)")
    await expect(page.locator("#phone-net")).to_have_attribute("data-net", "connected")
    await expect(page.locator("#phone-timer")).to_have_text("0:02", timeout=10000)
    # The input level meter moves with the (fake) microphone's tone; the microphone
    # choice lists the devices the browser has.
    await wait_until(lambda: page.evaluate("document.getElementById('phone-level').value > 0.1"),
                     timeout=10, step=0.2)
    assert await page.locator("#phone-mic option").count() >= 1
    call_id = next(iter(scene.voice.sip_control.sessions))
    active = scene.voice.calls_by_id[call_id]
    case_id, task_id = active.case_id, active.task_id
    assert scene.acd.task(task_id).status == "assigned"

    # Both directions, by content.
    assert scene.caller is not None
    heard = await scene.caller_hears(BROWSER)
    assert heard[CALLER] < ABSENT, heard
    await page_hears(page, CALLER)
    # ... carried both ways by the fast path (webrtc.fastpath): chromium takes its RTP
    # (the MID header extension, the sender's SSRC) as it took aiortc's
    media = next(iter(scene.phone.calls.values())).leg.media
    assert media.fast is not None and media.fast.errors == 0
    assert media.fast.packets_in >= 50 and media.fast.packets_out >= 50

    # The dial pad: RFC 4733 events on the caller's leg.
    for key in "5#":
        await page.click(f"#phone-pad [data-digit='{key}']")
    await wait_until(lambda: scene.caller.digits_heard.endswith("5#"), timeout=10)

    # Mute: the caller no longer hears the microphone; unmute brings it back.
    await page.click("#phone-mute")
    await expect(page.locator("#phone-mute")).to_have_attribute("aria-pressed", "true")
    await scene.caller_stops_hearing(BROWSER)  # what was on its way drains first
    await page.click("#phone-mute")
    await scene.caller_hears(BROWSER)

    # Hang up in the page: the caller gets BYE, the task goes to wrap-up, the timeline
    # has the call's end.
    await page.click("#phone-hangup")
    await expect(phone).to_have_attribute("data-state", "idle", timeout=10000)
    result = await scene.sipp  # type: ignore[misc]
    assert result.returncode == 0, result.stderr + result.errors

    async def ended_on_the_timeline() -> bool:
        return any(e.kind == "call" and (e.meta or {}).get("event") == "ended"
                   and (e.meta or {}).get("agent_id") == "anna"
                   for e in await scene.c.cases.timeline(case_id))

    await wait_until(ended_on_the_timeline, timeout=10)
    await wait_until(lambda: scene.acd.task(task_id).status in ("wrap_up", "completed"),
                     timeout=10)
    assert scene.acd.agent("anna").state in ("wrap_up", "available")
    await ctx.close()


async def test_reject_in_the_page_declines_the_offer(scene: PhoneScene, chromium: Any) -> None:
    from playwright.async_api import expect

    ctx, page = await available(chromium, scene.base)
    rejected: list[Any] = []

    async def grab(event: Any) -> None:
        rejected.append(event)

    await scene.c.bus.subscribe("task.rejected", grab)
    await scene.call_in("1")
    phone = page.locator("#phone")
    await expect(phone).to_have_attribute("data-state", "ringing", timeout=30000)
    await page.click("#phone-reject")
    await expect(phone).to_have_attribute("data-state", "idle")
    await wait_until(lambda: any(e.payload.get("agent_id") == "anna" for e in rejected),
                     timeout=10)
    await ctx.close()


async def test_page_closed_while_ringing_hands_the_call_to_the_next_agent(
        scene: PhoneScene, chromium: Any) -> None:
    """anna (browser) and bram (a SIP phone) serve support; anna's page closes while
    the call rings in it: the offer goes to bram, whose phone answers the caller."""
    from playwright.async_api import expect

    cfg_bram = TonePhone(scene.sip.port, "1002", "bram-secret", BRAM)
    await cfg_bram.start()
    scene.phones.append(cfg_bram)
    await wait_until(lambda: scene.sip.registrar.is_registered("1002"))
    ctx, page = await available(chromium, scene.base, "anna")
    await scene.call_in("2")
    await expect(page.locator("#phone")).to_have_attribute("data-state", "ringing",
                                                           timeout=30000)
    bram_ctx, _ = await available(chromium, scene.base, "bram")
    await ctx.close()  # anna's desktop goes while her page rings
    await wait_until(lambda: bool(cfg_bram.calls), timeout=30)
    await scene.caller_hears(BRAM)
    # After server.web.disconnect_grace_seconds without a desktop: not ready.
    await wait_until(lambda: scene.acd.agent("anna").state == "not_ready", timeout=45)
    view = scene.acd.agent("anna")
    assert view.reason == "disconnected", (view.state, view.reason)
    await bram_ctx.close()


async def test_reload_mid_call_keeps_the_call_through_the_grace_period(
        scene: PhoneScene, chromium: Any) -> None:
    from playwright.async_api import expect

    ctx, page = await available(chromium, scene.base)
    await scene.call_in("1")
    phone = page.locator("#phone")
    await expect(phone).to_have_attribute("data-state", "ringing", timeout=30000)
    await page.click("#phone-answer")
    await expect(phone).to_have_attribute("data-state", "talking", timeout=20000)
    await scene.caller_hears(BROWSER)

    await page.reload()
    await page.wait_for_selector("#connection.live")
    # The server says a call waits for this page; the page brings it back.
    phone = page.locator("#phone")
    await expect(phone).to_have_attribute("data-state", "talking", timeout=20000)
    await scene.caller_hears(BROWSER)
    await page_hears(page, CALLER)
    assert scene.sipp is not None and not scene.sipp.done()  # the caller never left
    await page.click("#phone-hangup")
    result = await scene.sipp
    assert result.returncode == 0, result.stderr + result.errors
    await ctx.close()


CARRIER_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier: the customer answers, media at a tone endpoint">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <pause milliseconds="500"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=customer 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio MEDIAPORT RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15

]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""


async def test_click_to_call_rings_the_page_first_and_the_dial_pad_reaches_the_customer(
        site_dir, make_node, tmp_path: Path, chromium: Any) -> None:  # type: ignore[no-untyped-def]
    """Outbound: the agent dials from the desktop; the page rings, Answer; then the
    customer (a sipp UAS behind the trunk) is called and bridged. The dial pad's keys
    reach the customer as RFC 4733 events; both hear each other's tone."""
    from playwright.async_api import expect
    from sip_testkit import start_sipp_peer

    customer = await ToneCallerMedia.open(CALLER)
    port, carrier = await start_sipp_peer(
        CARRIER_UAS.replace("MEDIAPORT", str(customer.port)), tmp_path, timeout=90)
    node = await make_node(browser_site(site_dir, trunk_port=port))
    base = f"http://127.0.0.1:{node.port}"
    try:
        ctx, page = await available(chromium, base)
        placed = await page.evaluate(
            "Centrale.api('POST', '/api/calls', {number: '0207654321'})"
            ".then((r) => ({ok: r.ok, status: r.status, data: r.data}))")
        assert placed["ok"], placed
        phone = page.locator("#phone")
        await expect(phone).to_have_attribute("data-state", "ringing", timeout=20000)
        await expect(page.locator("#phone-caller")).to_have_text("+31207654321")
        await page.click("#phone-answer")
        await expect(phone).to_have_attribute("data-state", "talking", timeout=20000)
        await wait_until(lambda: customer.remote is not None, timeout=20)
        for _ in range(10):
            if tone_levels(await customer.listen(50), [BROWSER])[BROWSER] > PRESENT:
                break
        else:
            raise AssertionError("the customer does not hear the agent's microphone")
        await page_hears(page, CALLER)
        for key in "7*":
            await page.click(f"#phone-pad [data-digit='{key}']")
        await wait_until(lambda: customer.digits_heard.endswith("7*"), timeout=10)
        await page.click("#phone-hangup")
        await expect(phone).to_have_attribute("data-state", "idle", timeout=10000)
        result = await carrier
        assert result.returncode == 0, result.stderr + result.errors
        await ctx.close()
    finally:
        customer.close()
        if not carrier.done():
            carrier.cancel()


SUPERVISOR = 2500.0


async def test_supervisor_listens_whispers_then_barges_from_the_browser_phone(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """anna talks on her desk phone (pyVoIP, 1000 Hz); sam, a supervisor whose linked
    agent (sven) has the browser as his only phone (no SIP account), monitors from the
    desktop: his page rings, Answer; in listen mode he hears the caller and anna and
    neither hears him (his microphone: 2500 Hz); whisper, and anna hears him but not
    the caller; barge, and the caller does."""
    from playwright.async_api import async_playwright, expect

    from tests.e2e.test_call_control_e2e import site

    cfg = site(site_dir)
    yaml = (cfg / "site.yaml").read_text()
    assert '    sip: {username: "1003", password: sven-secret}\n' in yaml
    yaml = yaml.replace('    sip: {username: "1003", password: sven-secret}\n',
                        '    voice_device: browser\n', 1)
    (cfg / "site.yaml").write_text(yaml)
    node = await make_node(cfg)
    scene = PhoneScene(node, tmp_path)
    anna = TonePhone(scene.sip.port, "1001", "anna-secret", BROWSER)
    await anna.start()
    scene.phones.append(anna)
    await wait_until(lambda: scene.sip.registrar.is_registered("1001"))
    await scene.acd.agent_login("anna", "desk-anna")
    await scene.acd.set_state("anna", "available")
    wav = tone_wav(tmp_path / "sam.wav", SUPERVISOR)
    try:
        await scene.call_in("1")
        await wait_until(lambda: bool(scene.voice.sip_control.sessions), timeout=30)
        call_id = next(iter(scene.voice.sip_control.sessions))
        task_id = scene.voice.calls_by_id[call_id].task_id
        await scene.caller_hears(BROWSER)  # anna's phone
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--disable-features=WebRtcHideLocalIpsWithMdns"])
            page = await (await browser.new_context(locale="en-GB")).new_page()
            await page.goto(f"{scene.base}/login")
            await page.fill("#username", "sam")
            await page.fill("#password", "demo")
            await page.click("#login-submit")
            await page.goto(f"{scene.base}/desktop")
            await page.wait_for_selector("#connection.live")
            monitor = asyncio.ensure_future(page.evaluate(
                f"Centrale.api('POST', '/api/calls/{task_id}/monitor', {{mode: 'listen'}})"
                ".then((r) => ({ok: r.ok, status: r.status, data: r.data}))"))
            phone = page.locator("#phone")
            await expect(phone).to_have_attribute("data-state", "ringing", timeout=20000)
            await expect(page.locator("#phone-caller")).to_have_text("monitor")
            await page.click("#phone-answer")
            await expect(phone).to_have_attribute("data-state", "talking", timeout=20000)
            answered = await monitor
            assert answered["ok"], answered

            async def hears_both() -> bool:
                levels = await page.evaluate(
                    f"[CentralePhone.levelAt({CALLER}), CentralePhone.levelAt({BROWSER})]")
                return None not in levels and all(level > -70 for level in levels)

            await wait_until(hears_both, timeout=20, step=0.2)
            assert scene.caller is not None
            listening = scene.caller_levels(await scene.caller.listen(60))
            assert tone_levels(await scene.caller.listen(60), [SUPERVISOR])[SUPERVISOR] \
                < ABSENT, listening
            assert tone_levels(await anna.listen(60), [SUPERVISOR])[SUPERVISOR] < ABSENT
            whispering = await page.evaluate(
                f"Centrale.api('POST', '/api/calls/{task_id}/monitor', {{mode: 'whisper'}})"
                ".then((r) => r.ok)")
            assert whispering
            for _ in range(10):
                if tone_levels(await anna.listen(50), [SUPERVISOR])[SUPERVISOR] > PRESENT:
                    break
            else:
                raise AssertionError("in whisper mode anna does not hear the supervisor")
            assert tone_levels(await scene.caller.listen(60), [SUPERVISOR])[SUPERVISOR] \
                < ABSENT
            barged = await page.evaluate(
                f"Centrale.api('POST', '/api/calls/{task_id}/monitor', {{mode: 'barge'}})"
                ".then((r) => r.ok)")
            assert barged
            for _ in range(10):
                if tone_levels(await scene.caller.listen(50), [SUPERVISOR])[SUPERVISOR] \
                        > PRESENT:
                    break
            else:
                raise AssertionError("after barge the caller does not hear the supervisor")
            await browser.close()
    finally:
        await scene.close()
