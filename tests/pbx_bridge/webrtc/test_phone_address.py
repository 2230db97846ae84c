"""What call control rings for an agent (`Agent.phone_address`) and how the browser
ringer reads it back: an agent whose only phone is the page is `browser:<id>`, so
transfers, consults, conferences and a supervisor's monitoring reach them too."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from config.schema.acd import Agent
from pbx_bridge.sip.leg import AgentRingResult
from pbx_bridge.webrtc.ringer import BrowserFirstRinger


def agent(agent_id: str, device: str, sip: bool) -> Agent:
    return Agent.model_validate({
        "id": agent_id, "name": agent_id.title(), "voice_device": device,
        **({"sip": {"username": f"u-{agent_id}", "password": "x"}} if sip else {})})


def test_phone_address_is_the_sip_user_else_the_browser_phone_else_none() -> None:
    assert agent("anna", "sip", sip=True).phone_address() == "u-anna"
    assert agent("bram", "browser", sip=True).phone_address() == "u-bram"
    assert agent("sven", "browser", sip=False).phone_address() == "browser:sven"
    assert agent("saar", "both", sip=False).phone_address() == "browser:saar"
    assert agent("piet", "sip", sip=False).phone_address() is None


class Phone:
    def __init__(self) -> None:
        self.rang: list[str] = []

    def reachable(self, agent_id: str) -> bool:
        return True

    async def ring(self, agent_id: str, **kw: Any) -> AgentRingResult:
        self.rang.append(agent_id)
        return AgentRingResult("rejected")


class Server:
    def __init__(self) -> None:
        self.rang: list[str] = []

    async def ring_agent(self, username: str, **kw: Any) -> AgentRingResult:
        self.rang.append(username)
        return AgentRingResult("unregistered")


async def test_the_ringer_rings_the_page_of_a_browser_only_agent() -> None:
    config = SimpleNamespace(agents=[agent("sven", "browser", sip=False),
                                     agent("piet", "sip", sip=True)])
    phone, server = Phone(), Server()
    ringer = BrowserFirstRinger(server, phone, lambda: config)
    assert (await ringer.ring_agent("browser:sven")).status == "rejected"
    assert phone.rang == ["sven"]
    # a made-up or SIP-only agent's "browser:" address rings no page
    await ringer.ring_agent("browser:piet")
    await ringer.ring_agent("browser:nobody")
    assert phone.rang == ["sven"]
    assert server.rang == ["browser:piet", "browser:nobody"]
