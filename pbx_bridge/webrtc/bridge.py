"""A customer's SIP leg and an agent's browser leg, bridged for an outbound call.

Inbound calls are bridged by call control (`sip.control.SipCallControl.run_connected`),
which takes a browser leg like a phone's. Outbound calls (click-to-call, callbacks) are
a plain two-party bridge; the SIP server's own `bridge` ends the other side with a SIP
BYE, which a browser leg has not, so this one ends each side its own way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pbx_bridge.media.rtp import bridge_sessions
from pbx_bridge.webrtc.leg import BrowserLeg


async def bridge_customer(customer: Any, agent: BrowserLeg) -> None:
    """Relay media between the two legs until either ends; then end the other.
    `customer` is a `sip.leg.SipCallLeg` (answered)."""
    if customer.ended or agent.ended:
        await customer.hangup("bridge failed")
        await agent.hangup("bridge failed")
        return
    assert customer.call.rtp is not None
    bridge_sessions(customer.call.rtp, agent.media)
    customer.call.record.agent_username = agent.agent_id
    waits = [asyncio.ensure_future(customer.wait_ended()),
             asyncio.ensure_future(agent.wait_ended())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    if not customer.ended:
        await customer.hangup("agent hung up")
    if not agent.ended:
        await agent.hangup("customer hung up")
