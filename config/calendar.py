"""Business hours and holidays: the one implementation IVR, queues and reports share.

A `Schedule` lists weekly opening spans in *local wall time* of its time zone; a
`HolidayCalendar` lists days or ranges on which the schedule is closed. Everything here
works on timezone-aware datetimes and converts them to the schedule's zone, so the
answer never depends on the server's own time zone, and DST changes are handled by
comparing wall-clock times (a 08:30-17:30 span is 08:30-17:30 local on the day the
clocks change, whatever the UTC offset).

Holiday forms (see `config.schema.schedules.Holiday`):

- `month_day: "12-25"`: the whole local day, every year;
- `date: 2026-04-06`: the whole local day, that year only;
- `start`/`end`: an instant range ``start <= t < end``; may span midnight or several
  days. A naive `start`/`end` is read as local time in the schedule's zone.

A holiday wins over opening hours: during a holiday the state is `HOLIDAY` even at an
hour the schedule would be closed anyway, so announcements can say *why*.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.schema.schedules import DAYS, Holiday, HolidayCalendar, Schedule

__all__ = [
    "ScheduleState",
    "active_holiday",
    "is_open",
    "next_opening",
    "parse_span",
    "zone",
]

_SEARCH_DAYS = 400  # next_opening looks at most this far ahead


class ScheduleState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    HOLIDAY = "holiday"


def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for `name`, with an error that names the bad zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_span(span: str) -> tuple[dt.timedelta, dt.timedelta]:
    """'08:30-17:30' -> (8h30m, 17h30m) as offsets from local midnight; '24:00' allowed."""
    try:
        start, end = span.split("-")
        sh, sm = (int(x) for x in start.split(":"))
        eh, em = (int(x) for x in end.split(":"))
    except ValueError as exc:
        raise ValueError(f"{span!r} is not HH:MM-HH:MM") from exc
    a, b = dt.timedelta(hours=sh, minutes=sm), dt.timedelta(hours=eh, minutes=em)
    if not (dt.timedelta(0) <= a < b <= dt.timedelta(hours=24)):
        raise ValueError(f"{span!r} is not a span within one day")
    return a, b


def _require_aware(at: dt.datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("schedule evaluation needs a timezone-aware datetime")


def _calendars_for(
    schedule: Schedule, calendars: Mapping[str, HolidayCalendar] | Iterable[HolidayCalendar]
) -> list[HolidayCalendar]:
    by_id = (
        dict(calendars) if isinstance(calendars, Mapping) else {c.id: c for c in calendars}
    )
    out = []
    for cal_id in schedule.holiday_calendars:
        if cal_id not in by_id:
            raise ValueError(f"schedule {schedule.id!r} names unknown holiday calendar {cal_id!r}")
        out.append(by_id[cal_id])
    return out


def _local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz)


def _wall_to_instant(day: dt.date, offset: dt.timedelta, tz: ZoneInfo) -> dt.datetime:
    """The aware instant for local wall time `day + offset`.

    A wall time that does not exist (the hour skipped at spring-forward) maps to the
    first instant after the gap; an ambiguous one (fall-back) to its first occurrence.
    """
    naive = dt.datetime.combine(day, dt.time(0)) + offset
    local = naive.replace(tzinfo=tz, fold=0)
    if local.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) == naive:
        return local
    # inside a DST gap: the transition lies between the two readings of `naive`
    lo = naive.replace(tzinfo=tz, fold=1).astimezone(dt.UTC)
    hi = local.astimezone(dt.UTC)
    lo, hi = min(lo, hi), max(lo, hi)
    while hi - lo > dt.timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0).astimezone(tz)


def _holiday_range(
    holiday: Holiday, tz: ZoneInfo, year: int
) -> tuple[dt.datetime, dt.datetime] | None:
    """The instant range [start, end) of `holiday` in `year` (for month_day) or its own
    date; None when a month_day does not exist that year (02-29)."""
    if holiday.start is not None and holiday.end is not None:
        start = holiday.start if holiday.start.tzinfo else holiday.start.replace(tzinfo=tz)
        end = holiday.end if holiday.end.tzinfo else holiday.end.replace(tzinfo=tz)
        return start, end
    if holiday.date is not None:
        day = holiday.date
    else:
        assert holiday.month_day is not None
        month, mday = (int(x) for x in holiday.month_day.split("-"))
        try:
            day = dt.date(year, month, mday)
        except ValueError:
            return None
    return _local_midnight(day, tz), _local_midnight(day + dt.timedelta(days=1), tz)


def active_holiday(
    schedule: Schedule,
    calendars: Mapping[str, HolidayCalendar] | Iterable[HolidayCalendar],
    at: dt.datetime,
    *,
    timezone: str | None = None,
) -> tuple[Holiday, dt.datetime] | None:
    """The holiday in force at `at` and the instant it ends, or None."""
    _require_aware(at)
    tz = zone(timezone or schedule.timezone)
    local_year = at.astimezone(tz).year
    best: tuple[Holiday, dt.datetime] | None = None
    for cal in _calendars_for(schedule, calendars):
        for holiday in cal.holidays:
            years = (local_year,) if holiday.month_day is None else (local_year - 1, local_year)
            for year in years:
                span = _holiday_range(holiday, tz, year)
                if span is None:
                    continue
                start, end = span
                if start <= at < end and (best is None or end > best[1]):
                    best = (holiday, end)
    return best


def _spans_on(schedule: Schedule, day: dt.date) -> list[tuple[dt.timedelta, dt.timedelta]]:
    return sorted(parse_span(s) for s in schedule.hours.get(DAYS[day.weekday()], []))


def _in_hours(schedule: Schedule, at: dt.datetime, tz: ZoneInfo) -> bool:
    local = at.astimezone(tz)
    # wall-clock offset, not elapsed time: DST days have 23 or 25 elapsed hours
    wall = dt.timedelta(
        hours=local.hour,
        minutes=local.minute,
        seconds=local.second,
        microseconds=local.microsecond,
    )
    return any(a <= wall < b for a, b in _spans_on(schedule, local.date()))


def is_open(
    schedule: Schedule,
    calendars: Mapping[str, HolidayCalendar] | Iterable[HolidayCalendar],
    at: dt.datetime,
    *,
    timezone: str | None = None,
) -> ScheduleState:
    """OPEN, CLOSED or HOLIDAY at the aware instant `at`.

    `timezone` overrides the schedule's zone (the IVR passes the flow's zone when the
    schedule does not name one explicitly, see docs/ivr.md).
    """
    _require_aware(at)
    tz = zone(timezone or schedule.timezone)
    if active_holiday(schedule, calendars, at, timezone=timezone) is not None:
        return ScheduleState.HOLIDAY
    return ScheduleState.OPEN if _in_hours(schedule, at, tz) else ScheduleState.CLOSED


def next_opening(
    schedule: Schedule,
    calendars: Mapping[str, HolidayCalendar] | Iterable[HolidayCalendar],
    at: dt.datetime,
    *,
    timezone: str | None = None,
) -> dt.datetime | None:
    """The first instant at or after `at` when the schedule is OPEN (None if never within
    about a year). Used for "we open again at ..." announcements and callback slots."""
    _require_aware(at)
    tz = zone(timezone or schedule.timezone)
    if not schedule.hours:
        return None
    start_day = at.astimezone(tz).date()
    for i in range(_SEARCH_DAYS):
        day = start_day + dt.timedelta(days=i)
        for a, b in _spans_on(schedule, day):
            span_start = _wall_to_instant(day, a, tz)
            span_end = _wall_to_instant(day, b, tz)
            candidate = max(span_start, at)
            # step past holidays that cover the candidate, staying inside the span
            for _ in range(50):
                if candidate >= span_end:
                    break
                hol = active_holiday(schedule, calendars, candidate, timezone=timezone)
                if hol is None:
                    if _in_hours(schedule, candidate, tz):
                        return candidate.astimezone(at.tzinfo)
                    break
                candidate = hol[1]
    return None
