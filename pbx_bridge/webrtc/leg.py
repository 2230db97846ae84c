"""`BrowserLeg`: an agent's browser phone as the agent side of a call.

Call control (`sip.control.SipCallControl`) and the voice service hold an agent's
answered phone as a leg with `.call.rtp` (its media), `.call.ended`, `.ended` and
`hangup(cause)`. A browser leg offers the same, so hold, transfer, conference,
recording and monitoring run unchanged when the agent's phone is the page. Its
`call` is a `BrowserCall`, not a SIP dialog: there is no BYE to send, the page is
told over the websocket instead (by `phone.BrowserPhone`, which owns the leg).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pbx_bridge.webrtc.media import BrowserMedia

log = logging.getLogger(__name__)


@dataclass
class BrowserCall:
    """What the SIP layers read of a leg's `call`: media, state, who it is."""

    call_id: str
    rtp: BrowserMedia
    agent_username: str  # the agent id: the call record names the agent by it
    answered: bool = True
    direction: str = "outbound"
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    bridged_to: object | None = None


class BrowserLeg:
    """The agent side of one call, carried by the agent's page."""

    def __init__(self, call_id: str, agent_id: str, media: BrowserMedia,
                 on_hangup: Callable[[BrowserLeg, str], Awaitable[None]]) -> None:
        self.agent_id = agent_id
        self.media = media
        self.call = BrowserCall(call_id, media, agent_id)
        self.cause: str | None = None
        self._on_hangup = on_hangup

    @property
    def call_id(self) -> str:
        return self.call.call_id

    @property
    def ended(self) -> bool:
        return self.call.ended.is_set()

    @property
    def answered(self) -> bool:
        return True

    async def wait_ended(self) -> None:
        await self.call.ended.wait()

    def end(self, cause: str) -> bool:
        """Mark the leg over and close its media; False if it was over already."""
        if self.ended:
            return False
        self.cause = cause
        self.call.ended.set()
        self.media.close()
        log.info("browser leg %s of %s ended: %s", self.call_id, self.agent_id, cause)
        return True

    async def hangup(self, cause: str = "normal") -> None:
        """Ended from the server's side (the caller left, a transfer, a teardown)."""
        if self.end(cause):
            await self._on_hangup(self, cause)

    def __repr__(self) -> str:
        return f"<BrowserLeg {self.call_id} {self.agent_id}>"
