"""Collects the Centrale config an importer produces, section by section.

Importers add plain dicts (the YAML shape); `sections()` returns them in schema order
and `validate()` runs them through `CentraleConfig`, so an importer bug shows up as a
failed import rather than as a config directory that `centrale check-config` rejects.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from config.importers.report import MigrationReport, Recording, SourceRef
from config.schema import CentraleConfig

WEEK_MINUTES = 7 * 1440
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def slug(text: str, *, limit: int = 40) -> str:
    """'Ventes Été / Nord' -> 'ventes_ete_nord' (ASCII, safe in ids)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    out = re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_").lower()
    return out[:limit].rstrip("_")


class ConfigBuilder:
    def __init__(self, report: MigrationReport, *, timezone: str = "Europe/Amsterdam",
                 reference_year: int | None = None) -> None:
        import datetime as dt

        self.report = report
        self.timezone = timezone
        # first year of dated ranges for recurring things the schema cannot repeat
        # (part-day holidays, movable feasts)
        self.reference_year = reference_year or dt.date.today().year
        self.skills: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.calendars: dict[str, dict[str, Any]] = {}
        self.flows: dict[str, dict[str, Any]] = {}
        self.numbers: dict[str, dict[str, Any]] = {}
        self.recordings: dict[str, Recording] = {}
        self.prompt_users: dict[str, list[str]] = {}
        self.generated_prompts: set[str] = set()
        self._schedule_by_hours: dict[tuple[Any, ...], str] = {}

    # -- prompts ---------------------------------------------------------------------
    def use_prompt(self, prompt: str, used_by: str) -> str:
        users = self.prompt_users.setdefault(prompt, [])
        if used_by not in users:
            users.append(used_by)
        return prompt

    def tone(self, kind: str, seconds: int) -> str:
        name = f"{kind}_{seconds}s"
        self.generated_prompts.add(name)
        return name

    def add_recording(self, prompt: str, source_name: str, detail: str, src: SourceRef) -> None:
        self.recordings[prompt] = Recording(prompt, f"{prompt}.wav", source_name, detail, src)

    def finish_report(self) -> None:
        """Copy prompt usage into the report: every referenced announcement is listed,
        also those no `list announcement` capture described."""
        recordings = []
        for prompt, rec in sorted(self.recordings.items()):
            rec.used_by.extend(self.prompt_users.get(prompt, []))
            recordings.append(rec)
        for prompt, users in sorted(self.prompt_users.items()):
            if prompt in self.recordings or prompt in self.generated_prompts:
                continue
            recordings.append(
                Recording(prompt, f"{prompt}.wav", "?", "referenced but not in any "
                          "announcement list of the input", SourceRef("-"), list(users))
            )
        self.report.recordings = recordings
        self.report.generated_prompts = sorted(self.generated_prompts)

    # -- schedules -------------------------------------------------------------------
    def schedule_from_minutes(
        self, prefix: str, open_minutes: Iterable[tuple[int, int]],
        calendars: list[str] | None = None,
    ) -> str:
        """A schedule open during the given week-minute intervals (0 = Monday 00:00);
        identical schedules are shared."""
        intervals = tuple(sorted(open_minutes))
        key = (intervals, tuple(calendars or ()))
        if key in self._schedule_by_hours:
            return self._schedule_by_hours[key]
        hours = week_intervals_to_hours(intervals)
        ident = prefix
        n = 2
        while ident in self.schedules:
            ident = f"{prefix}_{n}"
            n += 1
        self.add_schedule(ident, hours, calendars or [])
        self._schedule_by_hours[key] = ident
        return ident

    def add_schedule(self, ident: str, hours: dict[str, list[str]], calendars: list[str]) -> None:
        entry: dict[str, Any] = {"id": ident, "timezone": self.timezone, "hours": hours}
        if calendars:
            entry["holiday_calendars"] = calendars
        self.schedules[ident] = entry

    # -- output ----------------------------------------------------------------------
    def sections(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for name, table in (
            ("skills", self.skills),
            ("queues", self.queues),
            ("agents", self.agents),
            ("holiday_calendars", self.calendars),
            ("schedules", self.schedules),
            ("flows", self.flows),
            ("numbers", self.numbers),
        ):
            if table:
                out[name] = list(table.values())
        return out

    def validate(self) -> CentraleConfig:
        return CentraleConfig.model_validate(self.sections())


def week_intervals_to_hours(intervals: Iterable[tuple[int, int]]) -> dict[str, list[str]]:
    """Week-minute intervals [start, end) (may wrap past Sunday) -> {day: ["HH:MM-HH:MM"]}."""
    marks = bytearray(WEEK_MINUTES)
    for start, end in intervals:
        start %= WEEK_MINUTES
        end %= WEEK_MINUTES
        length = end - start if end > start else end + WEEK_MINUTES - start
        for m in range(start, start + length):
            marks[m % WEEK_MINUTES] = 1
    hours: dict[str, list[str]] = {}
    for day, name in enumerate(DAY_NAMES):
        base = day * 1440
        spans = []
        m = 0
        while m < 1440:
            if marks[base + m]:
                s = m
                while m < 1440 and marks[base + m]:
                    m += 1
                spans.append(f"{_hhmm(s)}-{_hhmm(m)}")
            else:
                m += 1
        if spans:
            hours[name] = spans
    return hours


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
