"""The report of a period agrees with the ACD's live figures for the same contacts: the
real engine runs a scenario, its published events go through the reports recorder, and
SL (both ACD variants), ASA, AHT, offered, answered and abandons are compared."""

from __future__ import annotations

import pytest
from seed import service

from config.schema import CentraleConfig
from reports import parse_query
from tests.queues.acd_helpers import Rig, agent


def acd_config() -> dict:
    return {
        "server": {"timezone": "Europe/Amsterdam"},
        "queues": [{"id": "q", "service_level_seconds": 20, "short_abandon_seconds": 5,
                    "wrap_up_seconds": 10}],
        "agents": [agent("a1", ["q"]), agent("a2", ["q"])],
        "wrap_up_codes": [{"id": "sale"}],
    }


# Delivered one event at a time (`handle`), or in batches as the bus's batch consumer
# hands them over (`handle_batch`, one transaction per batch): the same figures.
@pytest.mark.parametrize("batch", [0, 1, 4, 1000], ids=["one-by-one", "batches-of-1",
                                                        "batches-of-4", "one-batch"])
async def test_report_equals_the_wallboard_figures(database, batch: int) -> None:
    r = Rig(acd_config())
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
    await r.engine.complete(t2.id, "a2")
    await r.advance(10)
    live = r.engine.stats()["queues"]["q"]

    cfg = CentraleConfig.model_validate(acd_config())
    svc = service(database, cfg, r.clock.now())
    if batch == 0:
        for event in r.bus.events:
            await svc.recorder.handle(event)
    else:
        events = list(r.bus.events)
        for start in range(0, len(events), batch):
            await svc.recorder.handle_batch(events[start:start + batch])
    day = r.clock.now().date().isoformat()
    report = await svc.report(parse_query({"from": day, "to": day, "granularity": "day"},
                                          cfg, r.clock.now()))
    row = report["totals"]["q"]
    for name, live_name in (("offered", "offered"), ("answered", "answered"),
                            ("abandoned", "abandoned"), ("short_abandoned", "short_abandoned"),
                            ("handled", "handled"), ("answered_in_sl", "answered_in_sl")):
        assert row[name] == live[live_name], name
    assert row["service_level_offered"] == pytest.approx(live["service_level"])
    assert row["service_level_offered_excl_short"] == pytest.approx(
        live["service_level_excl_short"])
    assert row["asa_seconds"] == pytest.approx(live["asa"])
    assert row["aht_seconds"] == pytest.approx(live["aht"])
    assert (row["offered"], row["handled"]) == (4, 2)  # the scenario did what it says
