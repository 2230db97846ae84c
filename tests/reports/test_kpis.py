"""The omnichannel KPIs from seeded histories, against hand-computed values: FCR (both
readings), channel switching, repeat contacts, AHT with concurrency, occupancy and
utilisation, CSAT and NPS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from seed import History, config, service

from core.events import Event
from reports import parse_query


def day(d: int, hour: int = 10, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2026, month, d, hour, minute, tzinfo=UTC)


NOW = day(1, month=2)  # 1 February: the window of a contact on 30 January is still open


async def seed_cases(h: History) -> None:
    await h.contact(day(5), case="k1", customer="c1", channel="whatsapp")
    await h.contact(day(6), case="k1", customer="c1", channel="voice")  # switched, repeat
    await h.contact(day(5), case="k2", customer="c2")  # resolved at first contact
    await h.contact(day(5), case="k3", customer="c3", channel="webchat")
    await h.contact(day(20), case="k3", customer="c3", channel="webchat")  # 15 days later
    await h.contact(day(4), case="k4", customer="c4")  # began before the period
    await h.contact(day(6), case="k4", customer="c4", channel="sms")
    await h.contact(day(30), case="k5", customer="c5")  # window still open: pending


def period(cfg):
    q = parse_query({"from": "2026-01-05", "to": "2026-01-31"}, cfg, NOW)
    return q.start, q.end


async def test_fcr_switching_and_repeat_contacts(database) -> None:
    cfg = config(fcr_window_days=7, repeat_window_days=7)
    svc = service(database, cfg, NOW)
    await seed_cases(History(svc))
    k = await svc.kpis(*period(cfg))
    # Episodes beginning in the period: k1 (2 contacts), k2, k3 on the 5th, k3 on the
    # 20th, k5 (pending). k4's contact on the 6th follows its 4 January one: no episode.
    assert k["fcr"]["episodes"] == 4 and k["fcr"]["pending"] == 1
    assert k["fcr"]["resolved_first_contact"] == 3
    assert k["fcr"]["fcr"] == pytest.approx(3 / 4)
    assert k["channel_switching"]["episodes"] == 5
    assert k["channel_switching"]["switched"] == 1
    assert k["channel_switching"]["switching_rate"] == pytest.approx(1 / 5)
    assert k["channel_switching"]["switches"] == {"whatsapp->voice": 1}
    # Contacts in the period: c1×2, c2, c3×2, c4 (6th), c5 (pending); one repeat (c1).
    assert k["repeat_contacts"] == {"contacts": 6, "repeated": 1, "pending": 1,
                                    "repeat_rate": pytest.approx(1 / 6)}


async def test_fcr_as_cases_closed_after_one_contact(database) -> None:
    cfg = config(fcr_mode="closed_after_one")
    svc = service(database, cfg, NOW)
    h = History(svc)
    await seed_cases(h)
    for case, at in (("k2", day(5, 12)), ("k1", day(7)), ("k3", day(21))):
        await h.emit("case.closed", at, case_id=case)
    await h.emit("case.closed", day(8), case_id="k2")  # a second close keeps the first
    k = await svc.kpis(*period(cfg))
    assert k["fcr"] == {"mode": "closed_after_one", "cases_closed": 3,
                        "resolved_first_contact": 1, "fcr": pytest.approx(1 / 3)}


async def test_aht_per_channel_with_concurrent_conversations(database) -> None:
    cfg = config()
    svc = service(database, cfg, NOW)
    h = History(svc)
    await h.contact(day(5, 9), wait=0, talk=100, hold=30, wrap=20)  # voice: 100 + 20
    # two chats of bram overlap from 10:02 to 10:05: that time counts half for each
    await h.contact(day(5), channel="webchat", agent="bram", wait=0, talk=300, case="k2")
    await h.contact(day(5, 10, 2), channel="webchat", agent="bram", wait=0, talk=300,
                    case="k3")
    k = await svc.kpis(*period(cfg))
    assert k["aht_by_channel"]["voice"] == {"handled": 1, "aht_seconds": 120.0,
                                            "effective_aht_seconds": 120.0}
    chat = k["aht_by_channel"]["webchat"]
    assert chat["aht_seconds"] == 300.0
    assert chat["effective_aht_seconds"] == pytest.approx((120 + 90 + 90 + 120) / 2)
    assert k["channels"]["webchat"]["aht_seconds"] == 300.0


async def test_occupancy_and_utilisation(database) -> None:
    cfg = config()
    svc = service(database, cfg, NOW)
    h = History(svc)
    for agent, state, at in (
            ("bram", "available", day(4, 22)),  # before the period: its state at the start
            ("bram", "busy", day(5, 0)), ("bram", "logged_out", day(5, 1)),
            ("anna", "available", day(5, 9)), ("anna", "busy", day(5, 9, 10)),
            ("anna", "wrap_up", day(5, 9, 20)), ("anna", "available", day(5, 9, 25)),
            ("anna", "not_ready", day(5, 9, 30)), ("anna", "logged_out", day(5, 9, 40))):
        await h.emit("agent.state_changed", at, agent_id=agent, state=state)
    q = parse_query({"from": "2026-01-05", "to": "2026-01-05"}, cfg, NOW)
    agents = (await svc.kpis(q.start, q.end))["agents"]
    anna = agents["anna"]
    assert anna["handling_seconds"] == 15 * 60
    assert anna["occupancy"] == pytest.approx(15 / (15 + 15))
    assert anna["utilisation"] == pytest.approx(15 / (15 + 15 + 10))
    # bram: available from local midnight (23:00 UTC) for 1 h, then busy for 1 h
    assert agents["bram"]["seconds"]["available"] == 3600
    assert agents["bram"]["occupancy"] == 0.5 and agents["bram"]["utilisation"] == 0.5


async def test_csat_and_nps(database) -> None:
    cfg = config()
    svc = service(database, cfg, NOW)
    at = day(5)
    answers = [("csat", 5), ("csat", 4), ("csat", 2), ("csat", None), ("csat", 7),
               ("nps", 10), ("nps", 9), ("nps", 7), ("nps", 3), ("nps", 11), ("nps", "9")]
    for i, (kind, score) in enumerate(answers):
        event = Event("survey.answered", {"kind": kind, "score": score, "case_id": "k1"},
                      occurred_at=at + timedelta(seconds=i))
        await svc.recorder.handle(event)
        await svc.recorder.handle(event)  # delivered twice, counted once
    k = await svc.kpis(*period(cfg))
    # 7 is outside 1–5: no answer, never a figure
    assert k["csat"] == {"answers": 3, "no_answer": 2, "csat": pytest.approx(2 / 3),
                         "average": pytest.approx(11 / 3)}
    # promoters 10, 9; passive 7; detractor 3; 11 and "9" are not answers
    assert k["nps"]["answers"] == 4 and k["nps"]["no_answer"] == 2
    assert k["nps"]["nps"] == pytest.approx(100 * (2 - 1) / 4)
