"""The simulator on the real demo node (examples/demo, unmodified but for ports): its
SIP caller against the embedded SIP core and the demo's IVR, and its WhatsApp side
against the node's own webhook and WhatsApp adapter.

The closed message is in the caller's language when Centrale knows it (Sophie, seeded
as an English speaker, hears English only) and in Dutch then English when it does not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cases import IdentityRef
from tests.browser.demo_wiring import demo_node
from tests.waiting import wait_until
from web.demo.personas import SEEDED, WALKTHROUGH
from web.demo.routes import SIMULATOR

SOPHIE = SEEDED[1]


async def _ivr_end(node: Any, mobile: str) -> dict[str, Any]:
    """The IVR's last entry: written once the call is over, so wait for it to land."""
    res = await node.ctx.cases.resolve(IdentityRef("phone", mobile))

    async def ends() -> list[Any]:
        return [e for e in await node.ctx.cases.timeline(res.case.id) if e.kind == "ivr_end"]

    await wait_until(ends, timeout=10)
    return (await ends())[-1].meta


async def _call_101(node: Any, mobile: str, name: str) -> Any:
    simulator = node.runner.app[SIMULATOR]
    call = await simulator.call(mobile, name, "101")
    async with asyncio.timeout(30):
        await call.wait_ended()
    assert call.reason == "Centrale hung up", call.summary()
    return call


async def test_after_hours_line_speaks_the_known_language_only(tmp_path: Path) -> None:
    assert SOPHIE.language == "en"
    async with demo_node(tmp_path) as (node, _):
        call = await _call_101(node, SOPHIE.mobile, SOPHIE.name)
        end = await _ivr_end(node, SOPHIE.mobile)
        assert end["flow"] == "main" and end["language"] == "en"
        assert "main.closed_known" in end["path"] and "main.closed_nl" not in end["path"]
        assert call.packets_received > 0 and call.seconds_heard > 1  # the prompts played


async def test_after_hours_line_speaks_dutch_then_english_to_an_unknown_caller(
        tmp_path: Path) -> None:
    assert WALKTHROUGH.language is None
    async with demo_node(tmp_path) as (node, _):
        await _call_101(node, WALKTHROUGH.mobile, WALKTHROUGH.name)
        end = await _ivr_end(node, WALKTHROUGH.mobile)
        path = end["path"]
        assert path.index("main.closed_nl") < path.index("main.closed_en") \
            < path.index("main.closed_known")


async def test_a_reply_reaches_the_simulator_with_statuses_up_to_read(tmp_path: Path) -> None:
    """Inbound through the signed webhook; the agent's reply through the node's WhatsApp
    adapter to the simulator's Graph API; `sent` and `delivered` by themselves, `read`
    when the customer's page showed it — each a signed status webhook the node records."""
    async with demo_node(tmp_path) as (node, _):
        simulator = node.runner.app[SIMULATOR]
        acd = node.ctx.acd
        offered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def on_offer(event: Any) -> None:
            if event.payload.get("channel") == "whatsapp" and not offered.done():
                offered.set_result(event.payload)

        sub = await node.ctx.bus.subscribe("task.offered", on_offer)
        try:
            await acd.agent_login("anna", "test-session")
            await acd.set_state("anna", "available")
            inbound = await simulator.customer_sends("31699887766", "Kim <b>Test</b>",
                                                     "Is mijn pakket onderweg?")
            assert inbound.status == "posted", inbound.detail
            async with asyncio.timeout(10):
                offer = await offered
        finally:
            await sub.close()
        assert offer["agent_id"] == "anna"  # WhatsApp reaches anna on the demo as shipped
        await acd.accept(offer["offer_id"], "anna")
        conversations = node.ctx.services["conversations"]
        [conv] = await conversations.conversations_for_case(offer["case_id"])
        async def assigned() -> bool:  # the accept reaches the conversation as an event
            return (await conversations.get(conv.id)).agent_id == "anna"

        await wait_until(assigned, timeout=10)
        result = await conversations.reply(conv.id, "anna", "Ja, morgen <i>bezorgd</i>.")
        assert result.ok, result.reason
        out = [m for m in simulator.threads["31699887766"].messages if m.direction == "out"]
        assert [m.text for m in out] == ["Ja, morgen <i>bezorgd</i>."]
        await wait_until(lambda: out[0].status == "delivered", timeout=10)
        assert await simulator.customer_reads("31699887766") == 1
        assert out[0].status == "read"
        [sent] = [m for m in await conversations.messages(conv.id)
                  if m["direction"] == "outbound"]
        assert sent["provider_message_id"] == out[0].id
        assert sent["delivery"] == "read"
