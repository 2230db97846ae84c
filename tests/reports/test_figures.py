"""Queue figures from a seeded hour, checked against hand-computed values: SL in its
three variants, ASA, abandon rate without short abandons, AHT = talk + hold + wrap-up,
transfer rate; per queue, agent and wrap-up code; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from seed import History, config, service

from reports import parse_query

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Amsterdam (winter, UTC+1)


async def seed_hour(h: History) -> None:
    at = T0.replace
    await h.contact(at(minute=0), wait=10, talk=100, hold=30, wrap=20, code="sale")
    await h.contact(at(minute=5), agent="bram", wait=30, talk=200, wrap=10, transfer=True,
                    case="k2", customer="c2")
    await h.contact(at(minute=10), wait=3, abandon=True, short=True, case="k3")
    await h.contact(at(minute=20), wait=40, abandon=True, case="k4")
    await h.contact(at(minute=40), wait=20, talk=60, code="info", case="k5")
    # another queue, another day: must not leak into the figures above
    await h.contact(datetime(2026, 1, 6, 9, 0, tzinfo=UTC), queue="support", wait=5)


def query(cfg, **params: str):
    return parse_query({"from": "2026-01-05", "to": "2026-01-05", **params}, cfg, T0)


async def test_queue_figures_by_hand(database) -> None:
    cfg = config()
    svc = service(database, cfg, T0)
    await seed_hour(History(svc))
    report = await svc.report(query(cfg, by="queue", granularity="day"))
    assert [r["key"] for r in report["rows"]] == ["sales"]
    row = report["rows"][0]
    assert row["interval_start"] == "2026-01-05T00:00:00+01:00"
    assert (row["offered"], row["answered"], row["abandoned"], row["short_abandoned"]) \
        == (5, 3, 2, 1)
    assert row["answered_in_sl"] == 2  # 10 s and 20 s (the threshold is inclusive), not 30 s
    assert row["service_level_offered"] == pytest.approx(2 / 5)
    assert row["service_level_offered_excl_short"] == pytest.approx(2 / 4)
    assert row["service_level_answered"] == pytest.approx(2 / 3)
    assert row["service_level"] == pytest.approx(2 / 5)  # the configured headline variant
    assert row["asa_seconds"] == pytest.approx((10 + 30 + 20) / 3)
    assert row["abandon_rate"] == pytest.approx(1 / 4)  # the 3 s abandon is not counted
    assert row["aht_seconds"] == pytest.approx(((100 + 20) + (200 + 10) + (60 + 0)) / 3)
    assert row["avg_hold_seconds"] == pytest.approx(30 / 3)
    assert row["avg_talk_seconds"] == pytest.approx((100 - 30 + 200 + 60) / 3)
    assert row["avg_wrap_seconds"] == pytest.approx(30 / 3)
    assert row["transfer_rate"] == pytest.approx(1 / 3)
    assert report["overall"]["offered"] == 5


async def test_intervals_agents_and_wrap_up_codes(database) -> None:
    cfg = config(service_level_variant="answered")
    svc = service(database, cfg, T0)
    await seed_hour(History(svc))
    half_hours = await svc.report(query(cfg, by="queue", granularity="30min"))
    assert [(r["interval_start"], r["offered"]) for r in half_hours["rows"]] == [
        ("2026-01-05T10:00:00+01:00", 4), ("2026-01-05T10:30:00+01:00", 1)]
    assert half_hours["rows"][1]["service_level"] == 1.0  # answered variant: 1 of 1
    agents = await svc.report(query(cfg, by="agent", granularity="day"))
    by_agent = agents["totals"]
    assert by_agent["anna"]["answered"] == 2 and by_agent["bram"]["answered"] == 1
    assert by_agent["anna"]["aht_seconds"] == pytest.approx((120 + 60) / 2)
    assert by_agent["-"]["abandoned"] == 2  # abandons have no agent
    codes = await svc.report(query(cfg, by="wrap_up_code", granularity="day"))
    assert codes["totals"]["sale"]["handled"] == 1 and codes["totals"]["info"]["handled"] == 1
    only_anna = await svc.report(query(cfg, by="agent", granularity="day", agent="anna"))
    assert list(only_anna["totals"]) == ["anna"]


async def test_short_abandon_threshold_from_the_reports_config(database) -> None:
    cfg = config(short_abandon_seconds=50)  # both abandons (3 s and 40 s) are short now
    svc = service(database, cfg, T0)
    await seed_hour(History(svc))
    row = (await svc.report(query(cfg, granularity="day")))["rows"][0]
    assert row["short_abandoned"] == 2
    assert row["abandon_rate"] == 0.0
    assert row["service_level_offered_excl_short"] == pytest.approx(2 / 3)


async def test_a_replayed_event_changes_nothing(database) -> None:
    cfg = config()
    svc = service(database, cfg, T0)
    h = History(svc)
    await seed_hour(h)
    before = await svc.report(query(cfg, granularity="day"))
    # at-least-once delivery: the whole history once more, with the same task ids
    h.n = 0
    await seed_hour(h)
    assert await svc.report(query(cfg, granularity="day")) == before


async def test_pre_aggregated_totals_give_the_same_report(database) -> None:
    """Before the rollup every bucket is read from the contacts; after it, from the
    totals; a contact that changes afterwards makes its bucket live again."""

    from reports.rollup import rebuild
    cfg = config()
    svc = service(database, cfg, T0)
    h = History(svc)
    await seed_hour(h)
    # one still waiting at the end of the hour: answered later, after the rollup
    waiting = await h.contact(T0.replace(minute=50), wait=0, talk=None, agent="cleo")
    params = [dict(by=by, granularity=g) for by in ("queue", "agent", "wrap_up_code")
              for g in ("15min", "60min", "day")]
    live = [await svc.report(query(cfg, **p)) for p in params]
    assert await rebuild(database) > 0
    assert await rebuild(database) == 0  # nothing left dirty
    assert [await svc.report(query(cfg, **p)) for p in params] == live
    await h.emit("task.wrap_up_ended", T0.replace(minute=58), task_id=waiting,
                 queue_id="sales", channel="voice", agent_id="cleo",
                 handle_seconds=120.0)
    after = await svc.report(query(cfg, by="agent", granularity="day"))
    assert after["totals"]["cleo"]["handled"] == 1
    await rebuild(database)
    assert await svc.report(query(cfg, by="agent", granularity="day")) == after


async def test_hold_time_comes_from_call_controls_resume_events(database) -> None:
    """Call control publishes `call.resume` with the call's running hold total; the
    contact's hold time is that total (two holds of 10 s and 15 s → 25 s), not the
    last hold alone, and AHT still counts talk + wrap-up."""
    cfg = config()
    svc = service(database, cfg, T0)
    h = History(svc)
    task = await h.contact(T0, wait=10, talk=None)
    base = {"task_id": task, "call_id": "call-1", "operation": "resume"}
    await h.emit("call.resume", T0.replace(minute=1), **base, hold_seconds=10.0,
                 hold_total_seconds=10.0)
    await h.emit("call.resume", T0.replace(minute=2), **base, hold_seconds=15.0,
                 hold_total_seconds=25.0)
    await h.emit("task.completed", T0.replace(minute=3), task_id=task, agent_id="anna",
                 talk_seconds=170.0, wrap_up_code=None)
    await h.emit("task.wrap_up_ended", T0.replace(minute=4), task_id=task, agent_id="anna",
                 wrap_up_code=None, handle_seconds=170.0)
    report = await svc.report(query(cfg, by="queue", granularity="day"))
    row = report["rows"][0]
    assert row["avg_hold_seconds"] == pytest.approx(25.0)
    assert row["avg_talk_seconds"] == pytest.approx(170.0 - 25.0)
