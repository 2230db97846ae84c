"""Call control's rings reach browser phones: transfers, consults, conferences and a
supervisor's listen / whisper / barge.

`sip.control.SipCallControl` rings every target through its SIP server's
`ring_agent(username, ...)` — an agent's SIP user name. `BrowserFirstRinger` stands in
for that server (everything else is the server's own): when the user name is an
agent's whose voice device is the browser (or both, with a page open on this node),
the page rings instead, and the answered `BrowserLeg` goes where a phone's leg would
(a mixer party, the new agent side). Call control itself is unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from config.schema.acd import BROWSER_PHONE_PREFIX
from core.ids import new_id
from pbx_bridge.sip.leg import AgentRingResult


class BrowserFirstRinger:
    def __init__(self, server: Any, phone: Any, config: Callable[[], Any]) -> None:
        self._server = server  # pbx_bridge.sip.server.SipServer
        self._phone = phone  # pbx_bridge.webrtc.phone.BrowserPhone
        self._config = config  # the config now (reloads included)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)

    def browser_agent(self, username: str) -> str | None:
        """The agent whose SIP user name this is, when their page is their phone; or
        the agent named by `browser:<id>` (one with no SIP account,
        `Agent.phone_address`)."""
        if username.startswith(BROWSER_PHONE_PREFIX):
            agent_id = username.removeprefix(BROWSER_PHONE_PREFIX)
            agent = next((a for a in self._config().agents if a.id == agent_id), None)
            if agent is not None and getattr(agent, "voice_device", "sip") != "sip":
                return agent.id
            return None
        for agent in self._config().agents:
            if agent.sip is None or agent.sip.username != username:
                continue
            device = getattr(agent, "voice_device", "sip")
            if device == "browser" or (device == "both" and self._phone.reachable(agent.id)):
                return agent.id
        return None

    async def ring_agent(self, username: str, *, caller_id: str | None = None,
                         display_name: str | None = None, timeout: float = 20.0,
                         stop: asyncio.Event | None = None) -> AgentRingResult:
        agent_id = self.browser_agent(username)
        if agent_id is None:
            return await self._server.ring_agent(username, caller_id=caller_id,
                                                 display_name=display_name,
                                                 timeout=timeout, stop=stop)
        ref = f"cc-{new_id()}"
        return await self._phone.ring(agent_id, offer_id=ref, call_id=ref,
                                      caller_id=caller_id, timeout=timeout, stop=stop)
