"""What the web layer needs from the rest of Centrale, handed in by the composition root.

`web` never builds a service itself; `centrale.container` builds them once and passes
this context to `create_app`. Handlers read it with `request.app[CONTEXT]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cases import CaseService, CustomerMerger
from config.schema import CentraleConfig
from core.bus import EventBus
from core.clock import Clock
from core.db import Database


@dataclass
class WebContext:
    config: CentraleConfig
    db: Database
    bus: EventBus
    clock: Clock
    cases: CaseService
    merger: CustomerMerger
    node_id: str = "node-1"
    acd: Any = None  # queues.AcdEngine
    channels: dict[str, Any] = field(default_factory=dict)  # digital adapters by name
    services: dict[str, Any] = field(default_factory=dict)  # further services by name
    health_checks: dict[str, Any] = field(default_factory=dict)  # name -> async () -> None

    def replace_config(self, config: CentraleConfig) -> None:
        self.config = config


CONTEXT: web.AppKey[WebContext] = web.AppKey("centrale_context", WebContext)
