"""Report intervals in the site's time zone.

A report row's interval is labelled by its local start *with its UTC offset*
(`2026-10-25T02:00:00+02:00` and `2026-10-25T02:00:00+01:00` are two different hours on
the day summer time ends), so a DST day has 23 or 25 hourly rows, 92 or 100 quarter-hour
rows, and one daily row. Weeks start on Monday (ISO 8601); months are calendar months.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from reports.tables import BUCKET_SECONDS

GRANULARITIES = ("15min", "30min", "60min", "day", "week", "month")
SUB_DAILY = {"15min": 15, "30min": 30, "60min": 60}


def bucket_start(bucket: int) -> datetime:
    return datetime.fromtimestamp(bucket * BUCKET_SECONDS, UTC)


def interval_start(at: datetime, granularity: str, tz: ZoneInfo) -> datetime:
    """The local start (aware, in `tz`) of the interval that contains instant `at`."""
    local = at.astimezone(tz)
    if granularity in SUB_DAILY:
        minutes = SUB_DAILY[granularity]
        # Floor in UTC then convert: stays right in the repeated hour of a DST end,
        # where local wall-clock arithmetic would merge two different hours.
        offset = local.utcoffset() or timedelta(0)
        wall = at.astimezone(UTC) + offset
        floored = wall.replace(minute=wall.minute - wall.minute % minutes, second=0,
                               microsecond=0)
        return (floored - offset).astimezone(tz)
    day = local.date()
    if granularity == "week":
        day -= timedelta(days=day.weekday())
    elif granularity == "month":
        day = day.replace(day=1)
    return local_midnight(day, tz)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC).astimezone(tz)


def next_interval(start: datetime, granularity: str, tz: ZoneInfo) -> datetime:
    if granularity in SUB_DAILY:
        return (start.astimezone(UTC) + timedelta(minutes=SUB_DAILY[granularity])
                ).astimezone(tz)
    day = start.astimezone(tz).date()
    if granularity == "day":
        return local_midnight(day + timedelta(days=1), tz)
    if granularity == "week":
        return local_midnight(day + timedelta(days=7), tz)
    month = day.month % 12 + 1
    year = day.year + (day.month == 12)
    return local_midnight(date(year, month, 1), tz)


def intervals(start: datetime, end: datetime, granularity: str, tz: ZoneInfo) -> list[datetime]:
    """Every interval start from the one containing `start` up to `end` (exclusive)."""
    out = []
    at = interval_start(start, granularity, tz)
    while at < end:
        out.append(at)
        at = next_interval(at, granularity, tz)
    return out
