"""Build a WebContext from the demo config with real CaseService, a real database and
the in-process bus, plus the fake ACD and conversations (tests/web/fakes.py).

The browser tests and the benchmark use the same builder; when the composition root
(`centrale.container`) lands the browser tests can be pointed at it instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cases import CaseService, CustomerMerger
from cases.follow_up import CaseFollowUp
from config.loader import load_config
from config.schema import CentraleConfig
from core.bus import InMemoryBus
from core.clock import Clock, SystemClock
from core.db import Database
from reports import ReportService
from tests.web.fakes import FakeAcd, FakeConversations
from web.context import WebContext

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo"


@dataclass
class Harness:
    ctx: WebContext
    acd: FakeAcd
    conversations: FakeConversations
    bus: InMemoryBus
    db: Database
    follow_up: CaseFollowUp  # cases' own consumer: last agent and wrap-up on the timeline
    reports: ReportService  # records contacts from the bus (started by make_web)


def demo_config(**overrides: Any) -> CentraleConfig:
    config = load_config(DEMO, env={})
    if overrides:
        config = config.model_copy(update=overrides)
    return config


def build_harness(db: Database, *, clock: Clock | None = None,
                  config: CentraleConfig | None = None,
                  services: dict[str, Any] | None = None) -> Harness:
    clock = clock or SystemClock()
    config = config or demo_config()
    bus = InMemoryBus()
    cases = CaseService(db, bus, clock, default_region=config.server.default_region)
    acd = FakeAcd(bus, clock)
    convs = FakeConversations(cases, clock)
    ctx = WebContext(config=config, db=db, bus=bus, clock=clock, cases=cases,
                     merger=CustomerMerger(db, bus, clock), acd=acd,
                     services={"conversations": convs, **(services or {})})
    reports = ReportService(db, bus, clock, lambda: ctx.config)
    reports.install(ctx)
    return Harness(ctx, acd, convs, bus, db, CaseFollowUp(cases, bus), reports)


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


def form_csrf(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no csrf_token field in the page"
    return m.group(1)


def meta_csrf(html: str) -> str:
    m = _META.search(html)
    assert m, "no csrf meta tag in the page"
    return m.group(1)
