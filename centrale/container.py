"""The composition root: builds every service once, in dependency order, and hands each
its dependencies explicitly. Nothing else in Centrale constructs a service.

`Container.build()` only constructs; `Node` (centrale/node.py) starts and stops them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cases import CaseService, CustomerMerger
from config import LoadedConfig
from core.bus import EventBus, InMemoryBus
from core.clock import Clock, SystemClock
from core.db import Database, sqlite_url
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    loaded: LoadedConfig
    db: Database
    bus: EventBus
    clock: Clock
    cases: CaseService
    merger: CustomerMerger
    services: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self):  # type: ignore[no-untyped-def]
        return self.loaded.config

    @classmethod
    def build(cls, settings: Settings, loaded: LoadedConfig, *,
              clock: Clock | None = None) -> Container:
        config = loaded.config
        clock = clock or SystemClock()
        db = Database(database_url(settings, loaded))
        bus: EventBus
        if settings.redis_url:
            from core.bus.redis import RedisStreamsBus

            bus = RedisStreamsBus(settings.redis_url, prefix=settings.redis_prefix,
                                  node_id=settings.node_id)
        else:
            bus = InMemoryBus()
        cases = CaseService(db, bus, clock, default_region=config.server.default_region,
                            reopen_window=timedelta(
                                days=config.server.continuity.reopen_window_days))
        merger = CustomerMerger(db, bus, clock)
        return cls(settings, loaded, db, bus, clock, cases, merger)


def database_url(settings: Settings, loaded: LoadedConfig) -> str:
    """CENTRALE_DATABASE_URL, else server.database.url, else the SQLite file, relative to
    the directory Centrale runs in (so `var/` sits beside the checkout, not the config)."""
    if settings.database_url:
        return settings.database_url
    db_cfg = loaded.config.server.database
    if db_cfg.url is not None:
        return db_cfg.url.get_secret_value()
    return sqlite_url(Path(db_cfg.path))
