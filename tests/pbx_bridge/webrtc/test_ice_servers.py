"""STUN/TURN for remote agents (issue 15, "Behind NAT"): `server.webrtc.ice_servers`
from the config file (the TURN secret from the environment) reaches both ends — the
server's own peer connections and the page's `phone.ring` — in a form Debian's
chromium accepts; a TURN entry a browser would refuse is an error at load time."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, load_config
from pbx_bridge.webrtc.phone import BrowserPhone, PhoneSettings
from tests.waiting import wait_until

SERVERS = """\
    server:
      webrtc:
        ice_servers:
          - urls: ["stun:stun.example.org:3478"]
          - urls: ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]
            username: centrale
            credential: ${CENTRALE_TURN_PASSWORD}
    """


def loaded(tmp_path: Path, text: str, env: dict[str, str]) -> Any:
    (tmp_path / "server.yaml").write_text(textwrap.dedent(text))
    return load_config(tmp_path, env=env)


def test_a_turn_server_without_credentials_is_refused_with_file_and_line(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        loaded(tmp_path, """\
            server:
              webrtc:
                ice_servers:
                  - urls: ["stun:stun.example.org:3478"]
                  - urls: ["turn:turn.example.org:3478"]
                    username: centrale
            """, {})
    errors = [str(i) for i in info.value.issues]
    assert any("server.yaml:5:" in e and "needs username and credential" in e
               for e in errors), errors


class Pages:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def send(self, agent_id: str, frame: dict[str, Any]) -> None:
        self.frames.append(frame)


async def test_the_configured_servers_reach_the_server_and_the_ringing_page(
        tmp_path: Path) -> None:
    config = loaded(tmp_path, SERVERS, {"CENTRALE_TURN_PASSWORD": "s3cret-turn"})
    settings = PhoneSettings.from_config(config.server.webrtc)
    phone = BrowserPhone(engine=None, settings=settings)
    pages = Pages()
    phone.attach_pages(pages.send, lambda agent_id: True)
    ring = asyncio.ensure_future(phone.ring("anna", offer_id="o1", call_id="c1",
                                            caller_id=None, timeout=5))
    await wait_until(lambda: bool(pages.frames))
    frame = pages.frames[0]
    assert frame["type"] == "phone.ring"
    # STUN without username/credential keys (a browser reads null as the text "null")
    assert frame["ice_servers"] == [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
         "username": "centrale", "credential": "s3cret-turn"}]
    servers = phone._configuration().iceServers
    assert [s.urls for s in servers] == [["stun:stun.example.org:3478"],
                                         ["turn:turn.example.org:3478?transport=udp",
                                          "turns:turn.example.org:5349"]]
    assert servers[1].username == "centrale" and servers[1].credential == "s3cret-turn"
    await phone.handle("anna", {"type": "phone.reject", "offer_id": "o1"})
    assert (await ring).status == "rejected"


@pytest.mark.browser
async def test_chromium_takes_the_ring_frames_servers_as_its_configuration(
        tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    chromium = "/usr/bin/chromium"
    assert os.access(chromium, os.X_OK), "Debian chromium is needed: apt install chromium"
    config = loaded(tmp_path, SERVERS, {"CENTRALE_TURN_PASSWORD": "s3cret-turn"})
    servers = BrowserPhone(None, PhoneSettings.from_config(config.server.webrtc)) \
        .page_configuration()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True,
                                           args=["--no-sandbox", "--disable-gpu"])
        page = await browser.new_page()
        # what phone.js does with a ring's ice_servers (new RTCPeerConnection)
        got = await page.evaluate("""(servers) => {
            try {
                return new RTCPeerConnection({iceServers: servers}).getConfiguration()
                    .iceServers;
            } catch (e) { return e.name + ": " + e.message; }
        }""", servers)
        await browser.close()
    # chromium reports absent fields as "" (had they been null: the text "null")
    assert got == [{"urls": s["urls"], "username": s.get("username", ""),
                    "credential": s.get("credential", "")} for s in servers], got
