"""Time zones: timestamps leave the server in UTC with their offset (SQLite's naive
values are UTC); reports cut the site's local days and 15 / 30 / 60 minute intervals,
the 23- and 25-hour DST days included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from reports.intervals import interval_start
from web.desktop.screenpop import iso_utc, plain

AMS = ZoneInfo("Europe/Amsterdam")


def local_bucket(at: datetime, interval: str, tz: ZoneInfo) -> datetime:
    """The interval's local start, as reports/ cuts it ("hour" is its "60min")."""
    return interval_start(at, {"hour": "60min"}.get(interval, interval), tz)


def test_naive_timestamps_are_sent_as_utc_with_their_offset() -> None:
    naive = datetime(2026, 3, 29, 0, 30)
    assert iso_utc(naive) == "2026-03-29T00:30:00+00:00"
    assert plain({"at": naive}) == {"at": "2026-03-29T00:30:00+00:00"}
    aware = datetime(2026, 3, 29, 2, 30, tzinfo=AMS)
    assert iso_utc(aware) == aware.isoformat()  # an aware value keeps its own offset


def test_a_local_day_is_not_a_utc_day() -> None:
    # 23:30 UTC on 1 June is 01:30 on 2 June in Amsterdam: it counts on the 2nd.
    at = datetime(2026, 6, 1, 23, 30, tzinfo=UTC)
    assert local_bucket(at, "day", AMS) == datetime(2026, 6, 2, tzinfo=AMS)
    assert local_bucket(at, "day", UTC) == datetime(2026, 6, 1, tzinfo=UTC)


def test_the_spring_dst_day_has_23_hours_of_hourly_buckets() -> None:
    day_start = datetime(2026, 3, 29, tzinfo=AMS).astimezone(UTC)
    day_end = datetime(2026, 3, 30, tzinfo=AMS).astimezone(UTC)
    assert day_end - day_start == timedelta(hours=23)
    buckets = {local_bucket(day_start + timedelta(minutes=m), "hour", AMS)
               for m in range(0, 23 * 60, 10)}
    assert len(buckets) == 23
    assert {local_bucket(day_start + timedelta(minutes=m), "day", AMS)
            for m in range(0, 23 * 60, 10)} == {datetime(2026, 3, 29, tzinfo=AMS)}


def test_the_autumn_dst_day_keeps_the_twice_lived_hour_as_two_buckets() -> None:
    day_start = datetime(2026, 10, 25, tzinfo=AMS).astimezone(UTC)
    points = [day_start + timedelta(minutes=m) for m in range(0, 25 * 60, 10)]
    hours = {local_bucket(p, "hour", AMS).isoformat() for p in points}
    assert len(hours) == 25
    assert "2026-10-25T02:00:00+02:00" in hours and "2026-10-25T02:00:00+01:00" in hours
    assert len({local_bucket(p, "day", AMS) for p in points}) == 1


def test_quarter_and_half_hour_intervals_start_on_the_local_clock() -> None:
    at = datetime(2026, 6, 1, 10, 44, 59, tzinfo=UTC)  # 12:44:59 in Amsterdam
    assert local_bucket(at, "15min", AMS).strftime("%H:%M") == "12:30"
    assert local_bucket(at, "30min", AMS).strftime("%H:%M") == "12:30"
    assert local_bucket(at, "hour", AMS).strftime("%H:%M") == "12:00"


async def test_report_counts_the_autumn_hours_apart_and_the_day_locally(tmp_path) -> None:
    from centrale.tables import import_all
    from config.schema import CentraleConfig
    from core.clock import ManualClock
    from core.db import Database, sqlite_url
    from core.events import Event
    from reports import ReportService, parse_query

    import_all()
    db = Database(sqlite_url(tmp_path / "r.db"))
    await db.create_all()
    config = CentraleConfig.model_validate({"server": {"timezone": "Europe/Amsterdam"}})
    now = datetime(2026, 11, 1, tzinfo=UTC)
    svc = ReportService(db, None, ManualClock(now), lambda: config)  # type: ignore[arg-type]
    first_two = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)   # 02:30 CEST
    second_two = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, an hour later
    late = datetime(2026, 10, 25, 23, 30, tzinfo=UTC)       # 00:30 on the 26th locally
    for i, at in enumerate((first_two, second_two, late)):
        await svc.recorder.handle(Event("task.enqueued", {
            "task_id": f"t{i}", "queue_id": "sales", "channel": "voice"}, occurred_at=at))
    period = {"by": "queue", "from": "2026-10-25", "to": "2026-10-26"}
    hours = (await svc.report(parse_query({**period, "granularity": "60min"}, config,
                                          now)))["rows"]
    assert [(r["interval_start"], r["contacts"]) for r in hours] == [
        ("2026-10-25T02:00:00+02:00", 1), ("2026-10-25T02:00:00+01:00", 1),
        ("2026-10-26T00:00:00+01:00", 1)]
    days = (await svc.report(parse_query({**period, "granularity": "day"}, config,
                                         now)))["rows"]
    assert [(r["interval_start"], r["contacts"]) for r in days] == [
        ("2026-10-25T00:00:00+02:00", 2), ("2026-10-26T00:00:00+01:00", 1)]
    await db.dispose()
