"""A voice offer rejected on the desktop stops the agent's phone at once on Asterisk too
(the originated agent channel is hung up: the backend's ring is cancelled), while a ring
that declines by itself (the phone is busy) is not cancelled from under its own feet.

One node, the real `AcdEngine`; the Asterisk backend is a stand-in whose ring blocks
until it is cancelled or told its outcome (the AMI side of that is tested against
recorded traffic in tests/pbx_bridge/asterisk)."""

from __future__ import annotations

import asyncio

from config.schema import CentraleConfig
from core.clock import ManualClock
from core.events import Event
from pbx_bridge.asterisk import AgentOffer, RingOutcome, RingResult
from pbx_bridge.voice import ActiveCall, VoiceService
from queues.engine import AcdEngine
from queues.ports import CollectingPublisher

SITE = CentraleConfig.model_validate({
    "queues": [{"id": "sales", "channels": ["voice"], "rona_seconds": 20}],
    "agents": [{"id": "anna", "name": "Anna", "queues": ["sales"],
                "sip": {"username": "1001", "password": "x"}}],
})


class Asterisk:
    """The surface of AsteriskBackend that rings an agent: each ring waits for its
    outcome; cancelling it is what hangs up the originated channel in the real one."""

    def __init__(self) -> None:
        self.outcome: asyncio.Future[RingResult] | None = None
        self.cancelled: list[str] = []

    def agent_endpoint(self, username: str) -> str:
        return f"PJSIP/{username}"

    async def ring_agent(self, offer: AgentOffer) -> RingResult:
        self.outcome = asyncio.get_running_loop().create_future()
        try:
            return await self.outcome
        except asyncio.CancelledError:
            self.cancelled.append(offer.offer_id)
            raise


class Site:
    def __init__(self) -> None:
        self.bus = CollectingPublisher()
        self.engine = AcdEngine(SITE, ManualClock(), self.bus, stats_interval_seconds=1e9)
        self.voice = VoiceService(config=SITE, cases=None, acd=self.engine,  # type: ignore[arg-type]
                                  bus=self.bus, clock=ManualClock())  # type: ignore[arg-type]
        self.asterisk = Asterisk()
        self.voice.asterisk = self.asterisk
        self.fed = 0

    async def call_waiting_for_anna(self) -> tuple[ActiveCall, str]:
        task = await self.engine.enqueue(queue_id="sales", channel="voice", case_id="k",
                                         customer_id="c", attributes={"call_id": "c1"})
        call = ActiveCall(call_id="c1", backend="asterisk", leg=None,  # type: ignore[arg-type]
                          case_id="k", customer_id="c", caller_number="+31201234567",
                          task_id=task.id)
        self.voice.calls_by_id["c1"] = call
        self.voice.calls_by_task[task.id] = call
        await self.engine.agent_login("anna", "s")
        await self.feed()
        (offered,) = self.bus.of("task.offered")
        await asyncio.sleep(0)  # the ring starts
        return call, offered.payload["offer_id"]

    async def feed(self) -> None:
        """What a running node's bus subscription hands the voice service."""
        while self.fed < len(self.bus.events):
            event: Event = self.bus.events[self.fed]
            self.fed += 1
            await self.voice.on_task_event(event)
        await asyncio.sleep(0)


async def test_rejecting_on_the_desktop_hangs_up_the_ringing_agent_channel() -> None:
    site = Site()
    call, offer_id = await site.call_waiting_for_anna()
    assert offer_id in call.rings and site.asterisk.outcome is not None
    await site.engine.reject(offer_id, "anna")  # the desktop's Reject button
    await site.feed()
    assert site.asterisk.cancelled == [offer_id]
    assert offer_id not in call.rings


async def test_a_busy_phone_declines_without_its_ring_being_cancelled() -> None:
    site = Site()
    call, offer_id = await site.call_waiting_for_anna()
    ring = call.rings[offer_id]
    assert site.asterisk.outcome is not None
    site.asterisk.outcome.set_result(RingResult(RingOutcome.BUSY, reason="busy"))
    await ring  # the ring rejects the offer itself and ends normally
    assert [e.payload["offer_id"] for e in site.bus.of("task.rejected")] == [offer_id]
    await site.feed()
    assert site.asterisk.cancelled == []
    assert not ring.cancelled()
