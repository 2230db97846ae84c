"""Calls a registered phone places to a colleague's extension, through the core.

Why they run through Centrale and not phone to phone: an attended transfer from a desk
phone (REFER with `Replaces`, RFC 3891) joins the caller to the consulted colleague by
naming the consult call's dialog; Centrale can only do that when that dialog is one of
its own. So a phone dialling another phone's user name (`1002`) reaches the server
(`SipServer.extension_handler`), which rings that user's registered phones and relays
the media between the two legs, as a B2BUA.

An extension call is no ACD task and no case (nobody's customer is on it); its callee
leg can be *taken* by call control (`take`) when the caller's phone refers its
customer call to it: the callee then talks to the customer, and the caller's leg is
hung up once the phone has been told (NOTIFY) that the transfer succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from pbx_bridge.media.rtp import bridge_sessions, unbridge_sessions
from pbx_bridge.sip.leg import SipCallLeg

log = logging.getLogger(__name__)

# what the calling phone is told when the colleague's phone does not take the call
FAILURE_STATUS = {"unregistered": 480, "timeout": 480, "busy": 486, "rejected": 603,
                  "cancelled": 487, "failed": 502}


@dataclass
class ExtensionCall:
    """One phone-to-phone call: `caller` is the dialling phone's dialog with us,
    `callee` our dialog with the dialled phone once it answered."""

    caller: SipCallLeg
    from_user: str
    to_user: str
    callee: SipCallLeg | None = None
    taken: asyncio.Event = field(default_factory=asyncio.Event)  # callee moved away
    released: asyncio.Event = field(default_factory=asyncio.Event)  # caller may go


class ExtensionCalls:
    """The node's extension calls (`SipServer.extension_handler`)."""

    def __init__(self, server: Any, *, ring_timeout: float = 30.0) -> None:
        self.server = server  # pbx_bridge.sip.server.SipServer
        self.ring_timeout = ring_timeout
        self.calls: dict[int, ExtensionCall] = {}  # id(caller's Call) → the call

    def by_caller_dialog(self, dialog: Any) -> ExtensionCall | None:
        return self.calls.get(id(dialog))

    async def run_extension_call(self, leg: SipCallLeg, from_user: str, to_user: str) -> None:
        """Ring `to_user`'s phones, answer the caller when one answers, relay the media
        until either side hangs up (or the callee is taken by an attended transfer)."""
        call = leg.call
        ext = ExtensionCall(leg, from_user, to_user)
        self.calls[id(call)] = ext
        try:
            self.server.send_provisional(call, 180)
            result = await self.server.ring_agent(to_user, caller_id=from_user,
                                                  timeout=self.ring_timeout, stop=call.ended)
            if not result.answered or result.leg is None:
                await self.server.hangup_call(call, f"extension {result.status}",
                                              status=FAILURE_STATUS.get(result.status, 480))
                return
            callee = result.leg
            if call.ended.is_set():
                await callee.hangup("caller gone")
                return
            ext.callee = callee
            await self.server.answer_call(call)
            assert call.rtp is not None and callee.call.rtp is not None
            bridge_sessions(call.rtp, callee.call.rtp)
            waits = [asyncio.ensure_future(call.ended.wait()),
                     asyncio.ensure_future(callee.call.ended.wait()),
                     asyncio.ensure_future(ext.taken.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if ext.taken.is_set():
                # The caller's phone waits for the transfer's NOTIFY before our BYE.
                await ext.released.wait()
                await leg.hangup("transferred")
                return
            await leg.hangup("normal")
            await callee.hangup("normal")
        finally:
            self.calls.pop(id(call), None)

    def take(self, ext: ExtensionCall) -> SipCallLeg:
        """Hand the answered callee leg over (to a customer call); the caller's leg is
        hung up once `ext.released` is set."""
        callee = ext.callee
        assert callee is not None and callee.call.rtp is not None
        unbridge_sessions(callee.call.rtp)
        ext.taken.set()
        return callee
