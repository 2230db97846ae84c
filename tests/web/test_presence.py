"""Presence follows the desktop (web/desktop/presence.py), against the real ACD engine:
a desktop gone for the short grace hands its ringing offer to the next agent; gone for
the longer one, the agent is not ready ("disconnected"); a reconnect in time changes
nothing; an agent on a break keeps their reason."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from core.bus import InMemoryBus
from core.clock import SystemClock
from queues.engine import AcdEngine
from tests.waiting import wait_until
from web.desktop.presence import Presence

from .harness import demo_config


def rig(offer_grace: float = 0.05, grace: float = 0.2) -> tuple[Presence, AcdEngine, dict]:
    config = demo_config()
    web = config.server.web.model_copy(update={"offer_disconnect_grace_seconds": offer_grace,
                                               "disconnect_grace_seconds": grace})
    config = config.model_copy(update={"server": config.server.model_copy(update={"web": web})})
    acd = AcdEngine(config, SystemClock(), InMemoryBus())
    sockets: dict = {}
    presence = Presence()
    presence.start(SimpleNamespace(ctx=SimpleNamespace(config=config, acd=acd),  # type: ignore[arg-type]
                                   hub=SimpleNamespace(agents=sockets)))
    return presence, acd, sockets


async def test_a_gone_desktop_hands_its_offer_on_then_goes_not_ready() -> None:
    presence, acd, _ = rig()
    await acd.agent_login("anna", "web-anna")
    task = await acd.enqueue(queue_id="sales", channel="whatsapp", case_id="k1",
                             customer_id="c1")
    assert [o.task_id for o in acd.offers_for("anna")] == [task.id]
    await acd.agent_login("bram", "web-bram")  # bram waits: the offer rings at anna's
    presence.disconnected("anna")
    await wait_until(lambda: [o.task_id for o in acd.offers_for("bram")] == [task.id],
                     timeout=5)
    assert acd.agent("anna").state == "available"  # the offer moved; anna not yet
    await wait_until(lambda: acd.agent("anna").reason == "disconnected", timeout=5)
    assert acd.agent("anna").state == "not_ready"
    await presence.stop()


async def test_a_reconnect_within_the_grace_changes_nothing() -> None:
    presence, acd, sockets = rig(offer_grace=0.2, grace=0.3)
    await acd.agent_login("anna", "web-anna")
    task = await acd.enqueue(queue_id="sales", channel="whatsapp", case_id="k1",
                             customer_id="c1")
    presence.disconnected("anna")
    await asyncio.sleep(0.05)
    sockets["anna"] = {object()}
    presence.connected("anna")
    await asyncio.sleep(0.5)
    assert [o.task_id for o in acd.offers_for("anna")] == [task.id]
    assert acd.agent("anna").state == "busy" and acd.agent("anna").reason is None
    await presence.stop()


async def test_an_offer_to_a_gone_desktop_is_handed_on_at_once() -> None:
    presence, acd, _ = rig(offer_grace=30, grace=60)
    await acd.agent_login("anna", "web-anna")
    presence.disconnected("anna")
    assert presence.is_gone("anna")
    task = await acd.enqueue(queue_id="sales", channel="whatsapp", case_id="k1",
                             customer_id="c1")
    (offer,) = acd.offers_for("anna")
    presence.offer_to_gone_agent("anna", offer.id)
    await wait_until(lambda: not acd.offers_for("anna"), timeout=5)
    assert acd.task(task.id).status in ("waiting", "offered")
    await presence.stop()


async def test_an_agent_on_a_break_keeps_their_reason() -> None:
    presence, acd, _ = rig(grace=0.05)
    await acd.agent_login("anna", "web-anna")
    await acd.set_state("anna", "not_ready", "lunch")
    presence.disconnected("anna")
    await asyncio.sleep(0.3)
    assert acd.agent("anna").reason == "lunch"
    await presence.stop()


class SlowDirectory:
    """A presence directory whose writes take a while, as Redis does under load: it
    keeps the set of agents this node is listed for, in the order writes land."""

    ttl_seconds = 30.0

    def __init__(self) -> None:
        self.listed: set[str] = set()
        self.marking = asyncio.Event()
        self.release = asyncio.Event()

    async def mark(self, agent_ids: list[str]) -> None:
        self.marking.set()
        await self.release.wait()
        self.listed.update(agent_ids)

    async def clear(self, agent_id: str) -> None:
        self.listed.discard(agent_id)

    async def connected_elsewhere(self, agent_id: str) -> bool:
        return False


async def test_a_mark_still_on_its_way_does_not_outlive_the_close() -> None:
    """A desktop that opens and closes while its mark is still on its way to Redis: the
    clear lands after the mark, so this node is not left listed for the agent (another
    node would take her for connected here and never put her not ready)."""
    config = demo_config()
    directory = SlowDirectory()
    sockets: dict = {"anna": {object()}}
    presence = Presence()
    presence.start(SimpleNamespace(  # type: ignore[arg-type]
        ctx=SimpleNamespace(config=config, acd=None,
                            services={"desktop_presence": directory}),
        hub=SimpleNamespace(agents=sockets)))
    presence.connected("anna")
    await asyncio.wait_for(directory.marking.wait(), 5)
    sockets["anna"] = set()
    presence.disconnected("anna")
    await asyncio.sleep(0)  # the clear's task runs up to the lock
    directory.release.set()
    await wait_until(lambda: not presence._tasks, timeout=5)
    assert directory.listed == set()
    await presence.stop()
