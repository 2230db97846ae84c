"""Shared builders for the IVR tests: a small site config and the test doubles."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from config.schema import CentraleConfig
from core.clock import ManualClock
from ivr.interpreter import Interpreter
from ivr.testing import FakeQueue, RecordingTimeline

# A Tuesday, 10:00 in Amsterdam (CET, UTC+1): the office is open.
OPEN_TIME = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)

BASE: dict[str, Any] = {
    "skills": [{"id": "dutch"}, {"id": "billing"}],
    "queues": [{"id": "sales"}, {"id": "support", "exit": {"voicemail": True}}],
    "schedules": [
        {
            "id": "office",
            "timezone": "Europe/Amsterdam",
            "hours": {d: ["08:30-17:30"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holiday_calendars": ["nl"],
        }
    ],
    "holiday_calendars": [
        {"id": "nl", "holidays": [{"name": "Kerst", "month_day": "12-25"}]}
    ],
}


def build_config(nodes: dict[str, Any], *, start: str | None = None,
                 languages: list[str] | None = None, extra_flows: list[dict[str, Any]] | None
                 = None, **overrides: Any) -> CentraleConfig:
    flow = {
        "id": "main",
        "languages": languages or ["nl", "en"],
        "start": start or next(iter(nodes)),
        "nodes": nodes,
    }
    data = {**BASE, **overrides, "flows": [flow, *(extra_flows or [])]}
    return CentraleConfig.model_validate(data)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(OPEN_TIME)


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def timeline() -> RecordingTimeline:
    return RecordingTimeline()


@pytest.fixture
def make_interpreter(
    clock: ManualClock, queue: FakeQueue, timeline: RecordingTimeline
) -> Callable[..., Interpreter]:
    def make(nodes: dict[str, Any], **kw: Any) -> Interpreter:
        return Interpreter(build_config(nodes, **kw), queues=queue, timeline=timeline,
                           clock=clock)

    return make


@pytest.fixture
def config_for() -> Callable[..., CentraleConfig]:
    """The `build_config` helper (test modules cannot import conftest under importlib)."""
    return build_config
