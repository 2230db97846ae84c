"""The browser phone's signalling through the desktop's real websocket, on the real
node, with bad input: a sipp caller rings anna's page (an aiortc peer behind anna's
logged-in websocket); bram's socket sends signalling for anna's offer and call, a
supervisor's for anything, anna's own a malformed SDP and candidate — each is refused
with an error to that page (and logged), and anna's call is not harmed: she answers,
the caller hears her, she hangs up."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from pbx_bridge.webrtc.client import PagePeer
from tests.e2e.test_browser_phone_browser import BROWSER, PhoneScene, browser_site
from tests.e2e.test_call_control_e2e import Desk
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp


class Socket:
    """A logged-in desktop's websocket: frames in a list, `send` a frame."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.frames: list[dict[str, Any]] = []
        self.ws: Any = None
        self.on_frame: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> Socket:
        self.ws = await self.desk.http.ws_connect(f"{self.desk.base.replace('http', 'ws')}/ws")
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        async for msg in self.ws:
            frame = json.loads(msg.data)
            self.frames.append(frame)
            if self.on_frame is not None and frame.get("type", "").startswith("phone."):
                await self.on_frame(frame)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    def errors(self) -> list[str]:
        return [f["error"] for f in self.frames if f.get("type") == "phone.error"]

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()


async def test_signalling_not_yours_or_malformed_is_refused_and_the_call_goes_on(
        site_dir, make_node, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    node = await make_node(browser_site(site_dir))
    scene = PhoneScene(node, tmp_path)
    desks = [await Desk(scene.base, user).login() for user in ("anna", "bram", "sam")]
    anna, bram, sam = [await Socket(d).open() for d in desks]
    page = PagePeer("anna", lambda agent_id, frame: anna.send(frame), BROWSER,
                    auto_answer=False)
    anna.on_frame = page.on_frame
    try:
        status, body = await desks[0].post("/api/agents/anna/state", {"state": "available"})
        assert status == 200, body
        await wait_until(lambda: scene.acd.agent("anna").state == "available", timeout=10)
        await scene.call_in("1")
        await wait_until(lambda: any(f.get("type") == "phone.ring" for f in anna.frames),
                         timeout=30)
        ring = next(f for f in anna.frames if f.get("type") == "phone.ring")
        offer_id = ring["offer_id"]
        sdp = await page.make_offer()

        # bram answers / rejects anna's offer: refused, logged; the offer still rings.
        await bram.send({"type": "phone.offer", "offer_id": offer_id, "sdp": sdp})
        await bram.send({"type": "phone.reject", "offer_id": offer_id})
        await wait_until(lambda: len(bram.errors()) == 2, timeout=10)
        assert all("ringing for you" in e for e in bram.errors()), bram.errors()
        assert f"bram sent phone.offer for offer {offer_id} of anna: refused" in caplog.text
        # a supervisor who is no agent has no phone at all
        await sam.send({"type": "phone.offer", "offer_id": offer_id, "sdp": sdp})
        await wait_until(lambda: sam.errors() == ["only agents have a browser phone"])
        # anna's own malformed input: errors to her page, nothing else
        await anna.send({"type": "phone.offer", "offer_id": offer_id, "sdp": "v=0\r\nx"})
        await anna.send({"type": "phone.candidate", "offer_id": offer_id,
                         "candidate": "candidate:0 1 UDP 1 ::: 70000 typ host"})
        await anna.send({"type": "phone.offer", "offer_id": offer_id})
        await wait_until(lambda: len(anna.errors()) == 3, timeout=10)
        assert scene.acd.task(next(iter(scene.voice.calls_by_task))).status == "offered"

        # The good answer still connects: the caller hears anna's page.
        await anna.send({"type": "phone.offer", "offer_id": offer_id, "sdp": sdp})
        await asyncio.wait_for(page.connected.wait(), 20)
        await scene.caller_hears(BROWSER)
        # bram cannot hang up anna's call either
        await bram.send({"type": "phone.hangup", "call_id": page.call_id})
        await wait_until(lambda: len(bram.errors()) == 3, timeout=10)
        await scene.caller_hears(BROWSER)
        await anna.send({"type": "phone.hangup", "call_id": page.call_id})
        result = await scene.sipp  # type: ignore[misc]
        assert result.returncode == 0, result.stderr + result.errors
    finally:
        await page.close()
        for s in (anna, bram, sam):
            await s.close()
        for d in desks:
            await d.close()
        await scene.close()


async def test_a_page_that_never_completes_ice_loses_the_offer_to_the_next_agent(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """anna's page answers (its offer reaches the node, the node's answer goes back)
    but its media never comes up — the answer is never applied, as when UDP is blocked
    between the agent and the node: after `ice_timeout_seconds` the offer is declined,
    the page is told, and the call goes to bram, whose SIP phone answers it."""
    from tests.e2e.test_browser_phone_browser import BRAM
    from tests.e2e.tone_parties import TonePhone

    cfg = browser_site(site_dir)
    yaml = (cfg / "site.yaml").read_text()
    assert "ice_timeout_seconds: 10" in yaml
    (cfg / "site.yaml").write_text(yaml.replace("ice_timeout_seconds: 10",
                                                "ice_timeout_seconds: 3", 1))
    node = await make_node(cfg)
    scene = PhoneScene(node, tmp_path)
    bram_phone = TonePhone(scene.sip.port, "1002", "bram-secret", BRAM)
    await bram_phone.start()
    scene.phones.append(bram_phone)
    desk = await Desk(scene.base, "anna").login()
    anna = await Socket(desk).open()
    page = PagePeer("anna", lambda agent_id, frame: anna.send(frame), BROWSER,
                    auto_answer=False)
    try:
        await wait_until(lambda: scene.sip.registrar.is_registered("1002"))
        status, body = await desk.post("/api/agents/anna/state", {"state": "available"})
        assert status == 200, body
        await wait_until(lambda: scene.acd.agent("anna").state == "available", timeout=10)
        await scene.call_in("2")
        await wait_until(lambda: any(f.get("type") == "phone.ring" for f in anna.frames),
                         timeout=30)
        await scene.acd.agent_login("bram", "desk-bram")
        await scene.acd.set_state("bram", "available")
        ring = next(f for f in anna.frames if f.get("type") == "phone.ring")
        await anna.send({"type": "phone.offer", "offer_id": ring["offer_id"],
                         "sdp": await page.make_offer()})
        await wait_until(lambda: any(f.get("type") == "phone.answer" for f in anna.frames),
                         timeout=10)
        # ... and the page never applies it: no ICE checks, no DTLS.
        await wait_until(lambda: any(f.get("type") == "phone.stop_ringing"
                                     and f.get("reason") == "no media connection"
                                     for f in anna.frames), timeout=15)
        assert not page.connected.is_set()
        await wait_until(lambda: bool(bram_phone.calls), timeout=30)
        await scene.caller_hears(BRAM)
        task_id = next(iter(scene.voice.calls_by_task))
        assert scene.acd.task(task_id).agent_id == "bram"
    finally:
        await page.close()
        await anna.close()
        await desk.close()
        await scene.close()


async def test_a_browser_only_agent_is_a_consult_and_conference_target(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """sven has no SIP account, only the browser phone (his page: an aiortc peer behind
    the websocket of sam, the supervisor linked to him). anna (desk phone) consults
    him: his page rings and answers, anna and sven hear each other, the caller does
    not hear sven; turned into a conference, the caller hears him too."""
    from tests.e2e.test_call_control_e2e import ANNA, CALLER, MUSIC, SVEN, Scene, site
    from tests.tones import hears

    cfg = site(site_dir)
    yaml = (cfg / "site.yaml").read_text()
    assert '    sip: {username: "1003", password: sven-secret}\n' in yaml
    (cfg / "site.yaml").write_text(yaml.replace(
        '    sip: {username: "1003", password: sven-secret}\n', "    voice_device: browser\n",
        1))
    scene = Scene(await make_node(cfg), tmp_path)
    sam_socket: Socket | None = None
    page = None
    try:
        anna_phone = await scene.phone("1001", "anna-secret", ANNA)
        sam_socket = await Socket(await scene.desk("sam")).open()
        page = PagePeer("sven", lambda agent_id, frame: sam_socket.send(frame), SVEN)
        sam_socket.on_frame = page.on_frame
        call_id = await scene.call_in()
        anna = await scene.desk("anna")
        caller = scene.caller
        assert caller is not None
        status, body = await anna.post(f"/api/calls/{call_id}/consult",
                                       {"kind": "agent", "target": "sven"})
        assert status == 200 and body["call"]["state"] == "consulting", body
        await asyncio.wait_for(page.connected.wait(), 20)
        heard_at = len(page.heard)
        await wait_until(lambda: len(page.heard_since(heard_at)) >= 8000, timeout=20)
        assert hears(page.heard_since(heard_at)[-8000:], ANNA)
        assert not hears(page.heard_since(heard_at)[-8000:], CALLER)
        assert hears(await anna_phone.listen(), SVEN)
        consulting = await caller.listen()
        assert hears(consulting, MUSIC) and not hears(consulting, SVEN, 0.01)

        status, body = await anna.post(f"/api/calls/{call_id}/conference", {})
        assert status == 200 and body["call"]["state"] == "conference", body
        for _ in range(10):
            if hears(await caller.listen(), SVEN):
                break
        else:
            raise AssertionError("in the conference the caller does not hear sven's page")
        heard_at = len(page.heard)
        await wait_until(lambda: len(page.heard_since(heard_at)) >= 8000, timeout=20)
        assert hears(page.heard_since(heard_at)[-8000:], CALLER)
    finally:
        if page is not None:
            await page.close()
        if sam_socket is not None:
            await sam_socket.close()
        await scene.close()


async def test_an_accepted_callback_rings_the_browser_phone_then_the_customer(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Outbound through the ACD: a callback for anna (voice device: the browser) is
    offered and accepted; her page rings (the customer's number as the caller),
    answers, then the customer (a sipp UAS behind the trunk) is called and bridged —
    both hear each other by content; the page hangs up, the customer gets BYE, the
    callback task is completed and the timeline says the browser took it."""
    from sip_testkit import start_sipp_peer

    from cases import IdentityRef
    from tests.e2e.test_browser_phone_browser import CALLER, CARRIER_UAS
    from tests.e2e.tone_parties import ToneCallerMedia
    from tests.tones import hears, tone_levels

    customer = await ToneCallerMedia.open(CALLER)
    port, carrier = await start_sipp_peer(
        CARRIER_UAS.replace("MEDIAPORT", str(customer.port)), tmp_path, timeout=90)
    node = await make_node(browser_site(site_dir, trunk_port=port))
    scene = PhoneScene(node, tmp_path)
    desk = await Desk(scene.base, "anna").login()
    anna = await Socket(desk).open()
    page = PagePeer("anna", lambda agent_id, frame: anna.send(frame), BROWSER)
    anna.on_frame = page.on_frame
    offers: list[Any] = []

    async def grab(e: Any) -> None:
        offers.append(e)

    try:
        await node.c.bus.subscribe("task.offered", grab)
        status, body = await desk.post("/api/agents/anna/state", {"state": "available"})
        assert status == 200, body
        found = await node.c.cases.resolve(IdentityRef("phone", "020 765 4321"))
        task_id = await scene.voice.schedule_callback(
            case_id=found.case.id, customer_id=found.customer.id, number="020 765 4321",
            queue_id="sales", agent_id="anna")
        await wait_until(lambda: bool(offers), timeout=20)
        assert offers[0].payload["task_id"] == task_id
        await scene.acd.accept(offers[0].payload["offer_id"], "anna")
        await asyncio.wait_for(page.connected.wait(), 20)
        ring = next(f for f in anna.frames if f.get("type") == "phone.ring")
        assert ring["caller"] == "+31207654321"
        await wait_until(lambda: customer.remote is not None, timeout=20)
        for _ in range(10):
            if tone_levels(await customer.listen(50), [BROWSER])[BROWSER] > 0.05:
                break
        else:
            raise AssertionError("the customer does not hear anna's page")
        heard_at = len(page.heard)
        await wait_until(lambda: len(page.heard_since(heard_at)) >= 8000, timeout=20)
        assert hears(page.heard_since(heard_at)[-8000:], CALLER)

        await anna.send({"type": "phone.hangup", "call_id": page.call_id})
        result = await carrier
        assert result.returncode == 0, result.stderr + result.errors
        await wait_until(lambda: scene.acd.task(task_id).status in ("wrap_up", "completed"),
                         timeout=10)

        async def on_the_timeline() -> bool:
            return any((e.meta or {}).get("event") == "outbound_connected"
                       and (e.meta or {}).get("device") == "browser"
                       for e in await node.c.cases.timeline(found.case.id))

        await wait_until(on_the_timeline, timeout=10)
    finally:
        customer.close()
        if not carrier.done():
            carrier.cancel()
        await page.close()
        await anna.close()
        await desk.close()
        await scene.close()


async def test_voice_device_both_rings_the_desk_phone_without_a_page_else_the_page(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """anna's voice device is `both` and her desk phone (pyVoIP, 1750 Hz) is
    registered. Logged in without a desktop, a call rings the desk phone; once her
    desktop is open, the next call rings the page (the browser first) and the desk
    phone stays silent. (A desktop that closes makes her not-ready, docs/web.md:
    "both" falls back to the desk phone only for an agent with no page at all.)"""
    from tests.e2e.test_browser_phone_browser import BRAM as desk_tone
    from tests.e2e.tone_parties import TonePhone

    cfg = browser_site(site_dir)
    yaml = (cfg / "site.yaml").read_text()
    assert yaml.count("voice_device: browser\n") == 1
    (cfg / "site.yaml").write_text(yaml.replace("voice_device: browser\n",
                                                "voice_device: both\n"))
    scene = PhoneScene(await make_node(cfg), tmp_path)
    desk_phone = TonePhone(scene.sip.port, "1001", "anna-secret", desk_tone)
    await desk_phone.start()
    scene.phones.append(desk_phone)
    desk: Desk | None = None
    anna: Socket | None = None
    page: PagePeer | None = None
    try:
        await wait_until(lambda: scene.sip.registrar.is_registered("1001"))
        await scene.acd.agent_login("anna", "desk-anna")
        await scene.acd.set_state("anna", "available")
        await scene.call_in("1")
        await wait_until(lambda: bool(desk_phone.calls), timeout=30)
        await scene.caller_hears(desk_tone)
        await asyncio.to_thread(desk_phone.calls[0].hangup)
        result = await scene.sipp  # type: ignore[misc]
        assert result.returncode == 0, result.stderr + result.errors

        desk = await Desk(scene.base, "anna").login()
        anna = await Socket(desk).open()
        page = PagePeer("anna", lambda agent_id, frame: anna.send(frame), BROWSER)
        anna.on_frame = page.on_frame
        await wait_until(lambda: scene.phone.reachable("anna"), timeout=10)
        await wait_until(lambda: scene.acd.agent("anna").state != "talking", timeout=10)
        await scene.acd.set_state("anna", "available")
        assert scene.caller is not None
        scene.caller.close()
        await scene.call_in("1")
        await asyncio.wait_for(page.connected.wait(), 30)
        await scene.caller_hears(BROWSER)
        assert len(desk_phone.calls) == 1  # the desk phone did not ring again
        await anna.send({"type": "phone.hangup", "call_id": page.call_id})
        result = await scene.sipp  # type: ignore[misc]
        assert result.returncode == 0, result.stderr + result.errors
    finally:
        if page is not None:
            await page.close()
        if anna is not None:
            await anna.close()
        if desk is not None:
            await desk.close()
        await scene.close()


async def test_a_page_that_does_not_come_back_ends_the_call_after_the_grace_period(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """anna talks from her page; the page dies (socket and media gone, no reload).
    The call is kept for `grace_seconds` (2 here), then ends cleanly: the caller gets
    BYE, the task goes to wrap-up, the timeline has the call's end with anna."""
    cfg = browser_site(site_dir)
    yaml = (cfg / "site.yaml").read_text()
    assert "grace_seconds: 10," in yaml
    (cfg / "site.yaml").write_text(yaml.replace("grace_seconds: 10,", "grace_seconds: 2,", 1))
    scene = PhoneScene(await make_node(cfg), tmp_path)
    desk = await Desk(scene.base, "anna").login()
    anna = await Socket(desk).open()
    page = PagePeer("anna", lambda agent_id, frame: anna.send(frame), BROWSER)
    anna.on_frame = page.on_frame
    try:
        status, body = await desk.post("/api/agents/anna/state", {"state": "available"})
        assert status == 200, body
        await scene.call_in("1")
        await asyncio.wait_for(page.connected.wait(), 30)
        await scene.caller_hears(BROWSER)
        task_id = next(iter(scene.voice.calls_by_task))
        case_id = scene.voice.calls_by_task[task_id].case_id
        lost_at = asyncio.get_running_loop().time()
        await anna.close()
        await page.close()
        result = await asyncio.wait_for(scene.sipp, 30)  # type: ignore[arg-type]
        assert result.returncode == 0, result.stderr + result.errors
        assert asyncio.get_running_loop().time() - lost_at >= 1.5  # the grace was kept
        await wait_until(lambda: scene.acd.task(task_id).status in ("wrap_up", "completed"),
                         timeout=10)

        async def ended() -> bool:
            return any(e.kind == "call" and (e.meta or {}).get("event") == "ended"
                       and (e.meta or {}).get("agent_id") == "anna"
                       for e in await scene.c.cases.timeline(case_id))

        await wait_until(ended, timeout=10)
    finally:
        await page.close()
        await anna.close()
        await desk.close()
        await scene.close()


async def test_hold_and_resume_with_a_browser_agent(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Call control holds a browser leg like a desk phone's: on hold the caller hears
    the music and not anna's page, and the page no longer hears the caller; resumed,
    both hear each other again."""
    from tests.e2e.test_browser_phone_browser import CALLER
    from tests.e2e.test_call_control_e2e import MUSIC
    from tests.tones import hears, tone_levels

    scene = PhoneScene(await make_node(browser_site(site_dir)), tmp_path)
    desk = await Desk(scene.base, "anna").login()
    anna = await Socket(desk).open()
    page = PagePeer("anna", lambda agent_id, frame: anna.send(frame), BROWSER)
    anna.on_frame = page.on_frame
    try:
        status, body = await desk.post("/api/agents/anna/state", {"state": "available"})
        assert status == 200, body
        await scene.call_in("1")
        await asyncio.wait_for(page.connected.wait(), 30)
        await scene.caller_hears(BROWSER)
        task_id = next(iter(scene.voice.calls_by_task))
        assert scene.caller is not None
        status, body = await desk.post(f"/api/calls/{task_id}/hold")
        assert status == 200 and body["call"]["held"], body
        for _ in range(10):
            levels = tone_levels(await scene.caller.listen(50), [MUSIC, BROWSER])
            if levels[MUSIC] > 0.05 and levels[BROWSER] < 0.01:
                break
        else:
            raise AssertionError(f"on hold the caller hears {levels}")
        heard_at = len(page.heard)
        await wait_until(lambda: len(page.heard_since(heard_at)) >= 8000, timeout=20)
        assert not hears(page.heard_since(heard_at)[-8000:], CALLER, 0.01)
        status, body = await desk.post(f"/api/calls/{task_id}/resume")
        assert status == 200 and not body["call"]["held"], body
        await scene.caller_hears(BROWSER)
        heard_at = len(page.heard)
        await wait_until(lambda: len(page.heard_since(heard_at)) >= 8000, timeout=20)
        assert hears(page.heard_since(heard_at)[-8000:], CALLER)
        await anna.send({"type": "phone.hangup", "call_id": page.call_id})
        result = await scene.sipp  # type: ignore[misc]
        assert result.returncode == 0, result.stderr + result.errors
    finally:
        await page.close()
        await anna.close()
        await desk.close()
        await scene.close()


async def test_a_browser_agents_call_is_recorded_like_a_desk_phones(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Recording `always`, anna on the browser phone (the fast path both ways): the
    file's left channel holds the caller's tone, the right one the page's."""
    from tests.e2e.test_browser_phone_browser import CALLER
    from tests.e2e.test_call_control_e2e import Scene
    from tests.e2e.test_recording_e2e import channels, finished_recording, recorded_site, share

    cfg = recorded_site(site_dir)
    yaml = (cfg / "site.yaml").read_text()
    assert '    sip: {username: "1001", password: anna-secret}\n' in yaml
    (cfg / "site.yaml").write_text(yaml.replace(
        '    sip: {username: "1001", password: anna-secret}\n',
        '    sip: {username: "1001", password: anna-secret}\n    voice_device: browser\n', 1))
    scene = Scene(await make_node(cfg), tmp_path)
    anna_desk = await scene.desk("anna")
    anna = await Socket(anna_desk).open()
    page = PagePeer("anna", lambda agent_id, frame: anna.send(frame), BROWSER)
    anna.on_frame = page.on_frame
    try:
        status, body = await anna_desk.post("/api/agents/anna/state", {"state": "available"})
        assert status == 200, body
        call_id = await scene.call_in(login_agent=False)
        await asyncio.wait_for(page.connected.wait(), 30)
        case_id = scene.voice.calls_by_id[call_id].case_id
        assert scene.caller is not None
        await wait_until(lambda: call_id in scene.voice.sip_control.recorder.live, timeout=10)
        await scene.caller.listen(150)  # 3 s of talk
        await anna.send({"type": "phone.hangup", "call_id": page.call_id})
        result = await asyncio.wait_for(scene.sipp, 30)  # type: ignore[arg-type]
        assert result.returncode == 0, result.stderr + result.errors
        rec = await finished_recording(scene, case_id)
        assert rec.status == "complete"
        left, right = channels(scene.c.services["recordings"].absolute(rec))
        assert share(left, CALLER) > 0.3 and share(left, BROWSER) < 0.05
        assert share(right, BROWSER) > 0.3 and share(right, CALLER) < 0.05
    finally:
        await page.close()
        await anna.close()
        await scene.close()


async def test_a_browser_agent_transfers_blind_to_a_desk_phone(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """anna talks from her page and transfers the caller to bram (desk phone): the
    caller hears bram, anna's page is told the call ended for her (`phone.ended`)."""
    from tests.e2e.test_browser_phone_browser import BRAM
    from tests.e2e.tone_parties import TonePhone

    scene = PhoneScene(await make_node(browser_site(site_dir)), tmp_path)
    bram_phone = TonePhone(scene.sip.port, "1002", "bram-secret", BRAM)
    await bram_phone.start()
    scene.phones.append(bram_phone)
    desk = await Desk(scene.base, "anna").login()
    anna = await Socket(desk).open()
    page = PagePeer("anna", lambda agent_id, frame: anna.send(frame), BROWSER)
    anna.on_frame = page.on_frame
    try:
        await wait_until(lambda: scene.sip.registrar.is_registered("1002"))
        status, body = await desk.post("/api/agents/anna/state", {"state": "available"})
        assert status == 200, body
        await scene.call_in("1")
        await asyncio.wait_for(page.connected.wait(), 30)
        await scene.caller_hears(BROWSER)
        await scene.acd.agent_login("bram", "desk-bram")
        await scene.acd.set_state("bram", "available")
        task_id = next(iter(scene.voice.calls_by_task))
        status, body = await desk.post(f"/api/calls/{task_id}/transfer",
                                       {"kind": "agent", "target": "bram"})
        assert status == 200, body
        await wait_until(lambda: bool(bram_phone.calls), timeout=30)
        await scene.caller_hears(BRAM)
        await asyncio.wait_for(page.ended.wait(), 10)
        assert not scene.phone.calls  # the browser leg is gone on the server too
    finally:
        await page.close()
        await anna.close()
        await desk.close()
        await scene.close()
