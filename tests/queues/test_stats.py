"""Live statistics, position and estimated wait, persisted life cycle."""

from __future__ import annotations

import json

import pytest
from acd_helpers import Rig, agent

from queues.store import SqlAcdStore

pytestmark = pytest.mark.asyncio


def config() -> dict:
    return {
        "queues": [{"id": "q", "service_level_seconds": 20, "short_abandon_seconds": 5,
                    "wrap_up_seconds": 10}],
        "agents": [agent("a1", ["q"]), agent("a2", ["q"])],
        "wrap_up_codes": [{"id": "sale"}],
    }


async def test_service_level_asa_aht_and_abandons() -> None:
    r = Rig(config())
    # answered in 10 s, answered in 30 s, abandoned after 2 s (short), after 40 s
    t1 = await r.enqueue(case_id="k1")
    t2 = await r.enqueue(case_id="k2")
    t3 = await r.enqueue(case_id="k3")
    await r.advance(2)
    await r.engine.abandon(t3.id)
    t4 = await r.enqueue(case_id="k4")
    await r.advance(8)
    await r.login("a1")
    await r.answer(t1.id)
    await r.advance(20)
    await r.login("a2")
    await r.answer(t2.id)
    await r.advance(20)
    await r.engine.abandon(t4.id)
    await r.engine.complete(t1.id, "a1", wrap_up_code="sale")
    await r.advance(10)
    q = r.engine.stats()["queues"]["q"]
    assert (q["answered"], q["abandoned"], q["short_abandoned"]) == (2, 2, 1)
    assert q["offered"] == 4
    assert q["answered_in_sl"] == 1
    assert q["service_level"] == pytest.approx(1 / 4)
    assert q["service_level_excl_short"] == pytest.approx(1 / 3)
    assert q["asa"] == pytest.approx((10 + 30) / 2)
    assert q["aht"] == pytest.approx(40 + 10)  # accepted at 10, completed at 50, +10 wrap-up
    assert q["waiting"] == 0
    assert q["agents"]["busy"] == 1 and q["agents"]["available"] == 1
    voice = r.engine.stats()["channels"]["voice"]
    assert voice["answered"] == 2 and voice["abandoned"] == 2


async def test_waiting_oldest_age_and_agent_occupancy() -> None:
    r = Rig(config())
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.advance(30)
    await r.enqueue(case_id="k2")
    await r.enqueue(case_id="k3")
    await r.advance(30)
    s = r.engine.stats()
    assert s["queues"]["q"]["oldest_wait_seconds"] == 30
    assert s["agents"]["a1"]["occupancy"] == 1.0
    await r.engine.complete(t.id, "a1")
    await r.advance(10)  # wrap-up ends, a1 takes k2 at once
    assert r.engine.stats()["agents"]["a1"]["state"] == "busy"
    json.dumps(r.engine.snapshot())  # JSON-serialisable


async def test_occupancy_counts_available_time() -> None:
    r = Rig(config())
    await r.login("a1")
    await r.advance(30)
    t = await r.enqueue()
    await r.answer(t.id)
    await r.advance(10)
    assert r.engine.stats()["agents"]["a1"]["occupancy"] == pytest.approx(10 / 40)


async def test_position_and_estimated_wait() -> None:
    r = Rig(config())
    await r.login("a1", "a2")
    busy = [await r.enqueue(case_id=f"b{i}") for i in range(2)]
    for t in busy:
        await r.answer(t.id)
    waiting = [await r.enqueue(case_id=f"w{i}") for i in range(3)]
    assert [await r.engine.position(t.id) for t in waiting] == [1, 2, 3]
    # no history yet: default AHT 180 s over 2 staffed voice slots
    assert await r.engine.estimated_wait(waiting[2].id) == pytest.approx(3 * 180 / 2)
    assert await r.engine.queue_estimated_wait("q", "voice") == pytest.approx(4 * 180 / 2)
    await r.advance(50)
    await r.engine.complete(busy[0].id, r.engine.task(busy[0].id).agent_id)
    await r.advance(10)  # handle 60 s
    assert await r.engine.position(waiting[0].id) == 0  # being offered
    assert await r.engine.position(waiting[1].id) == 1
    assert await r.engine.estimated_wait(waiting[1].id) == pytest.approx(60 / 2)


async def test_estimated_wait_unknown_without_staff() -> None:
    r = Rig(config())
    t = await r.enqueue()
    assert await r.engine.estimated_wait(t.id) is None


async def test_stats_updated_is_throttled() -> None:
    r = Rig(config())
    await r.login("a1")
    for _ in range(10):
        await r.enqueue()
        await r.advance(0.1)
    assert r.topics().count("stats.updated") == 1
    await r.advance(1)
    assert r.topics().count("stats.updated") == 2


async def test_life_cycle_is_persisted_in_order() -> None:
    r = Rig(config())
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1", wrap_up_code="sale", notes="n")
    await r.advance(10)
    events = [rec.event for rec in await r.store.task_history(t.id)]
    assert events == ["enqueued", "offered", "accepted", "completed", "wrap_up_ended"]
    assert r.store.agent_events[0].state == "available"


async def test_sql_store_round_trip(database) -> None:
    """Against a real SQLite file and a real PostgreSQL (the shared `database` fixture)."""
    store = SqlAcdStore(database)
    r = Rig(config(), store=store)
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1", wrap_up_code="sale")
    await r.advance(10)
    history = await store.task_history(t.id)
    assert [h.event for h in history] == [
        "enqueued", "offered", "accepted", "completed", "wrap_up_ended"]
    assert history[-1].wrap_up_code == "sale" and history[-1].handle_seconds == 10
    assert [s.state for s in await store.agent_history("a1")] == [
        "available", "busy", "wrap_up", "available"]
