"""Two SIP cores sharing registrations through the real Redis: a phone that registered
at node A is rung by node B (the node that holds the caller), unregistering at A is
seen by B, and a malformed entry is skipped rather than breaking the ring."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sip_testkit import ANSWERING_PHONE, free_udp_port, register_scenario, run_sipp

from pbx_bridge.sip.directory import SharedRegistrations
from tests.waiting import wait_until

pytestmark = [pytest.mark.sipp, pytest.mark.redis]


async def _never_called(leg) -> None:  # type: ignore[no-untyped-def]
    raise AssertionError("no inbound call expected")


async def test_a_phone_registered_at_node_a_rings_from_node_b(
        make_server, redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    def shared(node: str) -> SharedRegistrations:
        return SharedRegistrations.from_url(redis_url, node_id=node, prefix=redis_prefix)

    a = await make_server(_never_called, shared_registrations=shared("node-a"))
    b = await make_server(_never_called, shared_registrations=shared("node-b"))
    phone_port = free_udp_port()
    # The phone registers at node A, with digest, from phone_port (sipp) ...
    registered = await run_sipp(register_scenario("alice", "alice-secret", expect_final=200),
                                tmp_path, a.port, local_port=phone_port, timeout=10)
    assert registered.returncode == 0, registered.stderr + registered.errors
    assert a.registrar.is_registered("alice")
    assert not b.registrar.is_registered("alice")  # B never saw the REGISTER
    await wait_until(lambda: b.shared_registrations.lookup("alice"), timeout=5)
    (binding,) = await b.shared_registrations.lookup("alice")
    assert binding.peer.port == phone_port
    assert await a.shared_registrations.lookup("alice") == []  # A rings its own binding

    # A malformed entry (another version, a hand edit) is skipped, not fatal.
    await b.shared_registrations.redis.hset(
        b.shared_registrations.key("alice"), "sip:junk@127.0.0.1", "{not json")
    # ... and answers, on the same port, the INVITE node B sends it.
    (tmp_path / "phone").mkdir()
    answering = asyncio.ensure_future(run_sipp(ANSWERING_PHONE, tmp_path / "phone", 0,
                                               local_port=phone_port, timeout=15))
    await asyncio.sleep(0.5)  # sipp binds its port
    result = await b.ring_agent("alice", caller_id="+31612345678", timeout=8)
    assert result.answered and result.leg is not None, result
    await result.leg.hangup()
    phone = await answering
    assert phone.returncode == 0, phone.stderr + phone.errors  # INVITE, ACK, BYE from B

    # Unregistering at A (Expires: 0) is seen by B at once.
    unregistered = await run_sipp(
        register_scenario("alice", "alice-secret", expect_final=200, expires=0),
        tmp_path, a.port, local_port=phone_port, timeout=10)
    assert unregistered.returncode == 0, unregistered.stderr + unregistered.errors
    async def gone() -> bool:
        return not await b.shared_registrations.lookup("alice")

    await wait_until(gone, timeout=5)
    assert (await b.ring_agent("alice", timeout=1)).status == "unregistered"


async def test_publish_keeps_other_nodes_bindings_and_expires_the_key(
        redis_url: str, redis_prefix: str) -> None:
    from pbx_bridge.sip.registrar import Binding
    from pbx_bridge.sip.transport import Peer

    clock = [100.0]
    a = SharedRegistrations.from_url(redis_url, node_id="node-a", prefix=redis_prefix,
                                     clock=lambda: clock[0])
    b = SharedRegistrations.from_url(redis_url, node_id="node-b", prefix=redis_prefix,
                                     clock=lambda: clock[0])
    c = SharedRegistrations.from_url(redis_url, node_id="node-c", prefix=redis_prefix,
                                     clock=lambda: clock[0])
    try:
        desk = Binding("sip:desk@10.0.0.5:5060", 160.0, Peer("UDP", "10.0.0.5", 5060), "x", 1,
                       100.0)
        soft = Binding("sip:soft@10.0.0.6:5062", 400.0, Peer("UDP", "10.0.0.6", 5062), "y", 1,
                       100.0)
        tcp = Binding("sip:tcp@10.0.0.7:5060", 400.0, Peer("TCP", "10.0.0.7", 5060), "z", 1,
                      100.0)
        await a.publish("bob", [desk, tcp])  # TCP bindings are the node's own
        await b.publish("bob", [soft])
        seen = await c.lookup("bob")
        assert [x.contact for x in seen] == [soft.contact, desk.contact]  # longest-lived first
        ttl = await c.redis.pttl(c.key("bob"))
        assert 295_000 < ttl <= 302_000  # the soft phone's 300 s, plus a second
        await a.publish("bob", [])  # the desk phone unregistered at A
        assert [x.contact for x in await c.lookup("bob")] == [soft.contact]
        raw = json.loads(await c.redis.hget(c.key("bob"), soft.contact))
        assert raw["node"] == "node-b" and raw["port"] == 5062
        await b.publish("bob", [])
        assert not await c.redis.exists(c.key("bob"))
    finally:
        for s in (a, b, c):
            await s.close()
