"""Business hours and holidays (config.calendar): DST, midnight-spanning and
year-specific holidays, zones other than the server's."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from config.calendar import ScheduleState, active_holiday, is_open, next_opening
from config.schema import HolidayCalendar, Schedule

AMS = ZoneInfo("Europe/Amsterdam")
OPEN, CLOSED, HOLIDAY = ScheduleState.OPEN, ScheduleState.CLOSED, ScheduleState.HOLIDAY


def office(**kw) -> Schedule:
    data = {"id": "office", "timezone": "Europe/Amsterdam",
            "hours": {d: ["08:30-17:30"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holiday_calendars": ["nl"]}
    return Schedule.model_validate({**data, **kw})


def calendar(*holidays: dict) -> list[HolidayCalendar]:
    return [HolidayCalendar.model_validate({"id": "nl", "holidays": list(holidays)})]


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


def test_weekly_hours_edges():
    s, cals = office(), calendar()
    assert is_open(s, cals, ams(2026, 1, 6, 8, 29, 59)) == CLOSED
    assert is_open(s, cals, ams(2026, 1, 6, 8, 30)) == OPEN
    assert is_open(s, cals, ams(2026, 1, 6, 17, 29, 59)) == OPEN
    assert is_open(s, cals, ams(2026, 1, 6, 17, 30)) == CLOSED  # end is exclusive
    assert is_open(s, cals, ams(2026, 1, 10, 12, 0)) == CLOSED  # Saturday: not listed


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        # spring forward: Sun 29 Mar 2026 02:00 CET -> 03:00 CEST; Monday after
        (datetime(2026, 3, 30, 6, 30, tzinfo=UTC), OPEN),  # 08:30 CEST
        (datetime(2026, 3, 30, 6, 29, tzinfo=UTC), CLOSED),  # 08:29 CEST
        (datetime(2026, 3, 27, 7, 30, tzinfo=UTC), OPEN),  # Fri before: 08:30 CET
        (datetime(2026, 3, 27, 7, 29, tzinfo=UTC), CLOSED),
        # fall back: Sun 25 Oct 2026 03:00 CEST -> 02:00 CET; Monday after
        (datetime(2026, 10, 26, 7, 30, tzinfo=UTC), OPEN),  # 08:30 CET
        (datetime(2026, 10, 26, 6, 30, tzinfo=UTC), CLOSED),  # 07:30 CET (08:30 in UTC+2!)
        (datetime(2026, 10, 26, 16, 29, tzinfo=UTC), OPEN),  # 17:29 CET
        (datetime(2026, 10, 23, 15, 29, tzinfo=UTC), OPEN),  # Fri before: 17:29 CEST
        (datetime(2026, 10, 23, 15, 30, tzinfo=UTC), CLOSED),
    ],
)
def test_dst_changes_in_amsterdam_follow_wall_clock(utc, expected):
    assert is_open(office(), calendar(), utc) == expected


def test_dst_night_spans_on_the_change_days():
    # a night line open 00:00-06:00 on Sundays: 6 wall hours, but 5 (spring) / 7 (fall)
    night = office(hours={"sun": ["00:00-06:00"]})
    cals = calendar()
    spring_start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # Sun 00:00 CET
    spring_open = [spring_start + timedelta(minutes=15 * i) for i in range(40)]
    assert sum(is_open(night, cals, t) == OPEN for t in spring_open) == 5 * 4
    fall_start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # Sun 00:00 CEST
    fall_open = [fall_start + timedelta(minutes=15 * i) for i in range(40)]
    assert sum(is_open(night, cals, t) == OPEN for t in fall_open) == 7 * 4
    # the repeated hour 02:00-03:00 is open both times
    assert is_open(night, cals, datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == OPEN  # CEST
    assert is_open(night, cals, datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == OPEN  # CET


def test_holiday_spanning_midnight():
    cals = calendar({"name": "Oudejaarsavond", "start": "2026-12-31T16:00:00+01:00",
                     "end": "2027-01-01T09:00:00+01:00"})
    night_line = office(hours={d: ["00:00-24:00"] for d in ("thu", "fri")})
    assert is_open(night_line, cals, ams(2026, 12, 31, 15, 59)) == OPEN
    assert is_open(night_line, cals, ams(2026, 12, 31, 16, 0)) == HOLIDAY
    assert is_open(night_line, cals, ams(2026, 12, 31, 23, 59)) == HOLIDAY
    assert is_open(night_line, cals, ams(2027, 1, 1, 0, 0)) == HOLIDAY  # past midnight
    assert is_open(night_line, cals, ams(2027, 1, 1, 8, 59)) == HOLIDAY
    assert is_open(night_line, cals, ams(2027, 1, 1, 9, 0)) == OPEN
    hol = active_holiday(night_line, cals, ams(2027, 1, 1, 3, 0))
    assert hol is not None and hol[0].name == "Oudejaarsavond"
    assert hol[1] == ams(2027, 1, 1, 9, 0)


def test_naive_holiday_range_is_local_time_of_the_schedule():
    cals = calendar({"name": "Stocktake", "start": "2026-03-03T12:00:00",
                     "end": "2026-03-03T14:00:00"})
    s = office()
    assert is_open(s, cals, datetime(2026, 3, 3, 11, 30, tzinfo=UTC)) == HOLIDAY  # 12:30 CET
    assert is_open(s, cals, datetime(2026, 3, 3, 10, 59, tzinfo=UTC)) == OPEN


def test_year_specific_holiday_only_that_year():
    cals = calendar({"name": "Tweede Paasdag", "date": "2026-04-06"})
    s = office()
    assert is_open(s, cals, ams(2026, 4, 6, 10, 0)) == HOLIDAY  # Monday
    assert is_open(s, cals, ams(2026, 4, 6, 0, 0)) == HOLIDAY
    assert is_open(s, cals, ams(2026, 4, 7, 0, 0)) == CLOSED
    assert is_open(s, cals, ams(2026, 4, 7, 10, 0)) == OPEN
    assert is_open(s, cals, ams(2027, 4, 6, 10, 0)) == OPEN  # a Tuesday, not a holiday


def test_every_year_holiday_and_leap_day():
    cals = calendar({"name": "Kerst", "month_day": "12-25"},
                    {"name": "Leap", "month_day": "02-29"})
    s = office()
    assert is_open(s, cals, ams(2026, 12, 25, 10, 0)) == HOLIDAY
    assert is_open(s, cals, ams(2030, 12, 25, 10, 0)) == HOLIDAY
    assert is_open(s, cals, ams(2028, 2, 29, 10, 0)) == HOLIDAY
    assert is_open(s, cals, ams(2027, 3, 1, 10, 0)) == OPEN  # no 29 Feb in 2027
    # a holiday is whole local days: 23:30 UTC on the 24th is already Christmas in NL
    assert is_open(s, cals, datetime(2026, 12, 24, 23, 30, tzinfo=UTC)) == HOLIDAY


def test_schedule_in_another_zone_than_the_server(monkeypatch):
    ny = Schedule.model_validate({"id": "ny", "timezone": "America/New_York",
                                  "hours": {"mon": ["09:00-17:00"]}})
    # 14:30 UTC on a Monday in January is 09:30 in New York, 15:30 in Amsterdam
    at = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    results = set()
    for server_tz in ("Europe/Amsterdam", "Asia/Tokyo", "UTC"):
        monkeypatch.setenv("TZ", server_tz)
        if hasattr(time, "tzset"):
            time.tzset()
        results.add(is_open(ny, [], at))
        results.add(is_open(ny, [], at.astimezone(AMS)))  # same instant, other offset
    monkeypatch.undo()
    if hasattr(time, "tzset"):
        time.tzset()
    assert results == {OPEN}
    assert is_open(ny, [], datetime(2026, 1, 5, 13, 59, tzinfo=UTC)) == CLOSED
    # 18:30 UTC: 13:30 in New York (open), 19:30 in Amsterdam: the zone decides
    evening = datetime(2026, 1, 5, 18, 30, tzinfo=UTC)
    assert is_open(ny, [], evening) == OPEN
    assert is_open(ny, [], evening, timezone="Europe/Amsterdam") == CLOSED


def test_next_opening():
    cals = calendar({"name": "Kerst", "month_day": "12-25"},
                    {"name": "Tweede Kerstdag", "month_day": "12-26"})
    s = office()
    # Thursday 24 Dec 2026 18:00 -> Fri 25 and Sat 26 closed -> Monday 28 08:30
    assert next_opening(s, cals, ams(2026, 12, 24, 18, 0)) == ams(2026, 12, 28, 8, 30)
    # already open: now
    assert next_opening(s, cals, ams(2026, 12, 23, 10, 0)) == ams(2026, 12, 23, 10, 0)
    # a holiday range ending mid-span opens at the range end
    cals2 = calendar({"name": "Training", "start": "2026-03-03T08:00:00",
                      "end": "2026-03-03T13:00:00"})
    assert next_opening(s, cals2, ams(2026, 3, 3, 8, 0)) == ams(2026, 3, 3, 13, 0)
    # spring-forward: a span starting in the skipped hour opens when the clocks jump
    gap = office(hours={"sun": ["02:30-05:00"]}, holiday_calendars=[])
    got = next_opening(gap, [], ams(2026, 3, 28, 12, 0))
    assert got == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert next_opening(office(hours={}), cals, ams(2026, 1, 1, 0, 0)) is None


def test_bad_input_gets_clear_errors():
    s = office()
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(s, calendar(), datetime(2026, 1, 6, 10, 0))
    with pytest.raises(ValueError, match="unknown holiday calendar 'nl'"):
        is_open(s, [], ams(2026, 1, 6, 10, 0))
    with pytest.raises(ValueError, match="unknown time zone"):
        is_open(s, calendar(), ams(2026, 1, 6, 10, 0), timezone="Mars/Olympus")
