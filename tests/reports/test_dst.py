"""Reports in the site's time zone on the days Europe/Amsterdam changes its clocks:
29 March 2026 has 23 hours, 25 October 2026 has 25 (02:00–03:00 twice)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from seed import History, config, service

from reports import parse_query
from reports.intervals import intervals

AMS = ZoneInfo("Europe/Amsterdam")


def utc(month: int, d: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, d, hour, minute, tzinfo=UTC)


def test_a_dst_day_has_23_or_25_hours() -> None:
    cfg = config()
    for d, hours in (("2026-03-29", 23), ("2026-10-25", 25), ("2026-10-26", 24)):
        q = parse_query({"from": d, "to": d}, cfg, utc(1, 1, 0))
        assert len(intervals(q.start, q.end, "60min", AMS)) == hours
        assert len(intervals(q.start, q.end, "15min", AMS)) == hours * 4
        assert len(intervals(q.start, q.end, "day", AMS)) == 1


async def test_the_repeated_hour_is_two_rows_and_one_day(database) -> None:
    cfg = config()
    svc = service(database, cfg, utc(11, 1, 0))
    h = History(svc)
    await h.contact(utc(10, 24, 23, 30))  # 01:30 CEST on the 25th
    await h.contact(utc(10, 25, 0, 30))  # 02:30 CEST (the first 02:00–03:00)
    await h.contact(utc(10, 25, 1, 30))  # 02:30 CET (the second)
    await h.contact(utc(10, 25, 1, 50))  # 02:50 CET
    await h.contact(utc(10, 25, 22, 30))  # 23:30 CET, still the 25th
    await h.contact(utc(10, 25, 23, 10))  # 00:10 on the 26th
    await h.contact(utc(10, 24, 21, 59))  # 23:59 CEST on the 24th
    q = parse_query({"from": "2026-10-25", "to": "2026-10-25", "granularity": "60min"},
                    cfg, utc(11, 1, 0))
    hourly = await svc.report(q)
    assert [(r["interval_start"], r["offered"]) for r in hourly["rows"]] == [
        ("2026-10-25T01:00:00+02:00", 1), ("2026-10-25T02:00:00+02:00", 1),
        ("2026-10-25T02:00:00+01:00", 2), ("2026-10-25T23:00:00+01:00", 1)]
    daily = await svc.report(parse_query(
        {"from": "2026-10-24", "to": "2026-10-26", "granularity": "day"}, cfg, utc(11, 1, 0)))
    assert [(r["interval_start"], r["offered"]) for r in daily["rows"]] == [
        ("2026-10-24T00:00:00+02:00", 1), ("2026-10-25T00:00:00+02:00", 5),
        ("2026-10-26T00:00:00+01:00", 1)]


async def test_spring_forward_weeks_and_months(database) -> None:
    cfg = config()
    svc = service(database, cfg, utc(5, 1, 0))
    h = History(svc)
    await h.contact(utc(3, 29, 0, 30))  # 01:30 CET
    await h.contact(utc(3, 29, 1, 15))  # 03:15 CEST: 02:00–03:00 does not exist
    await h.contact(utc(3, 29, 22, 30))  # 00:30 CEST on Monday 30 March: next week
    await h.contact(utc(3, 31, 22, 30))  # 00:30 on 1 April: next month
    q = parse_query({"from": "2026-03-29", "to": "2026-03-29", "granularity": "30min"},
                    cfg, utc(5, 1, 0))
    rows = (await svc.report(q))["rows"]
    assert [r["interval_start"] for r in rows] == ["2026-03-29T01:30:00+01:00",
                                                   "2026-03-29T03:00:00+02:00"]
    q = parse_query({"from": "2026-03-01", "to": "2026-04-30", "granularity": "week"},
                    cfg, utc(5, 1, 0))
    weeks = {r["interval_start"]: r["offered"] for r in (await svc.report(q))["rows"]}
    assert weeks == {"2026-03-23T00:00:00+01:00": 2, "2026-03-30T00:00:00+02:00": 2}
    q = parse_query({"from": "2026-03-01", "to": "2026-04-30", "granularity": "month"},
                    cfg, utc(5, 1, 0))
    months = {r["interval_start"]: r["offered"] for r in (await svc.report(q))["rows"]}
    assert months == {"2026-03-01T00:00:00+01:00": 3, "2026-04-01T00:00:00+02:00": 1}
