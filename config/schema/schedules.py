"""`schedules:` and `holiday_calendars:` — one implementation for IVR, queues, reports."""

from __future__ import annotations

import datetime as dt
import re

from pydantic import Field, field_validator, model_validator

from config.schema.base import Ident, Strict

_SPAN = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Holiday(Strict):
    """One of: `month_day: "12-25"` (every year), `date: 2026-04-06` (that day), or
    `start`/`end` datetimes (a range, may span midnight or several days)."""

    name: str
    month_day: str | None = Field(None, pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
    date: dt.date | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Holiday:
        forms = [self.month_day is not None, self.date is not None, self.start is not None]
        if sum(forms) != 1:
            raise ValueError("a holiday needs exactly one of month_day, date, or start/end")
        if (self.start is None) != (self.end is None):
            raise ValueError("a holiday range needs both start and end")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("holiday end must be after start")
        return self


class HolidayCalendar(Strict):
    id: Ident
    name: str | None = None
    holidays: list[Holiday] = []


class Schedule(Strict):
    """Weekly opening hours in a time zone, closed on the calendars' holidays.

    `hours` maps a day (mon..sun) to spans "HH:MM-HH:MM"; a day not listed is closed.
    """

    id: Ident
    timezone: str = "Europe/Amsterdam"
    hours: dict[str, list[str]] = {}
    holiday_calendars: list[Ident] = []

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, spans in value.items():
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r}; use one of {', '.join(DAYS)}")
            for span in spans:
                m = _SPAN.match(span)
                if not m:
                    raise ValueError(f"{day}: {span!r} is not HH:MM-HH:MM")
                if (m.group(1), m.group(2)) >= (m.group(3), m.group(4)):
                    raise ValueError(f"{day}: {span!r} ends before it starts")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value
