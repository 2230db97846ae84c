"""Outbound voice through the real wiring: an agent queues a callback for a customer,
the ACD offers it, the agent accepts, Centrale rings the agent's phone (pyVoIP) first and
then the customer through the trunk (sipp as the carrier's far end), and bridges them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sip_testkit import SIPP, PyVoipAgentPhone, free_udp_port

from cases import IdentityRef
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp


async def test_callback_rings_agent_then_customer_and_bridges(site_dir, make_node,
                                                              tmp_path: Path) -> None:
    carrier_port = free_udp_port()
    carrier = await asyncio.create_subprocess_exec(
        SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(carrier_port), "-m", "1",
        "-nostdin", "-timeout", "40s", "-mp", str(free_udp_port(even=True)), cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    node = await make_node(site_dir(trunk_port=carrier_port))
    c = node.c
    acd, voice, sip = c.services["acd"], c.services["voice"], c.services["sip"]
    events: list = []

    async def grab(e) -> None:  # type: ignore[no-untyped-def]
        events.append(e)

    await c.bus.subscribe("task.*", grab)
    phone = PyVoipAgentPhone(sip.port, "1001", "anna-secret")
    await phone.start()
    try:
        await acd.agent_login("anna", "desk-1")
        await acd.set_state("anna", "available")
        customer = await c.cases.resolve(IdentityRef("phone", "020 765 4321"))
        with pytest.raises(ValueError, match="not supported yet"):
            await voice.schedule_callback(case_id=customer.case.id,
                                          customer_id=customer.customer.id,
                                          number="0207654321", queue_id="sales",
                                          agent_id="anna", at="2030-01-01T10:00:00Z")
        with pytest.raises(ValueError):
            await voice.schedule_callback(case_id=customer.case.id,
                                          customer_id=customer.customer.id, number="bogus",
                                          queue_id="sales", agent_id="anna")
        task_id = await voice.schedule_callback(case_id=customer.case.id,
                                                customer_id=customer.customer.id,
                                                number="020 765 4321", queue_id="sales",
                                                agent_id="anna")
        await wait_until(lambda: any(e.topic == "task.offered" for e in events), timeout=20)
        offer = next(e.payload for e in events if e.topic == "task.offered")
        assert offer["task_id"] == task_id and offer["callback_number"] == "+31207654321"
        await acd.accept(offer["offer_id"], "anna")
        await wait_until(lambda: phone.call_states() == ["ANSWERED"], timeout=20)

        async def bridged() -> bool:
            tl = await c.cases.timeline(customer.case.id)
            return any(t.meta.get("event") == "outbound_connected" for t in tl)

        deadline = asyncio.get_running_loop().time() + 20
        while not await bridged():
            assert asyncio.get_running_loop().time() < deadline, "customer never connected"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(phone.calls[0].hangup)  # the agent hangs up
        await wait_until(lambda: any(e.topic == "task.completed" for e in events), timeout=20)
    finally:
        await phone.stop()
        try:
            await asyncio.wait_for(carrier.wait(), 15)
        except TimeoutError:
            carrier.kill()
            await carrier.wait()
    assert carrier.returncode == 0, (await carrier.stderr.read()).decode()
    timeline = await c.cases.timeline(customer.case.id)
    bodies = [t.body for t in timeline]
    assert any(b.startswith("Callback to +31207654321 queued in sales") for b in bodies)
    assert any(b == "Call to +31207654321" for b in bodies)
    assert any(b.startswith("Call to +31207654321 ended after") for b in bodies)
