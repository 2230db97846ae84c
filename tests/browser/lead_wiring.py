"""The browser scenarios against the composition root (`centrale.container` +
`centrale.wiring` + `centrale.node.Node`), instead of the wiring in conftest.py:

    CENTRALE_BROWSER_APP=tests.browser.lead_wiring:node_app \\
        .venv/bin/pytest tests/browser

The demo config with: a throw-away SQLite file (created by the alembic migrations, as
`centrale run` does), the web server on an ephemeral port, the embedded SIP core on an
ephemeral UDP port (calls from 127.0.0.1 are the demo's trusted trunk), office hours
around the clock (the scenarios must not depend on when they run), and WhatsApp routed
to `sales` (anna's queue) with replies going to the tests' Graph API stand-in.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from config.schema.schedules import DAYS
from core.db import sqlite_url
from core.settings import Settings

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


@contextlib.asynccontextmanager
async def node_app(tmp_path: Path, graph_base_url: str,
                   ) -> AsyncIterator[tuple[web.Application, str]]:
    from centrale.container import Container
    from centrale.node import Node
    from centrale.wiring import wire
    from config import load_config_with_sources

    loaded = load_config_with_sources(DEMO, env={})
    cfg = loaded.config
    wa = cfg.channels.whatsapp
    assert wa is not None
    server = cfg.server.model_copy(update={
        # A closed desktop hands on its offers / goes not ready quicker than in
        # production, so the presence scenario does not sit out the 10 s default.
        "web": cfg.server.web.model_copy(update={"port": 0, "disconnect_grace_seconds": 3,
                                                 "offer_disconnect_grace_seconds": 1}),
        "sip": cfg.server.sip.model_copy(update={"enabled": True, "port": 0,
                                                 "transports": ["udp"]})})
    always = {day: ["00:00-24:00"] for day in DAYS}
    cfg = cfg.model_copy(update={
        "server": server,
        "schedules": [s.model_copy(update={"hours": always, "holiday_calendars": []})
                      for s in cfg.schedules],
        "channels": cfg.channels.model_copy(update={"whatsapp": wa.model_copy(update={
            "queue": "sales", "graph_base_url": graph_base_url})})})
    loaded = dataclasses.replace(loaded, config=cfg)
    settings = Settings(database_url=sqlite_url(tmp_path / "node.db"), node_id="browser",
                        log_format="text")
    container = Container.build(settings, loaded)
    wire(container)
    node = Node(container)
    await node.start()
    assert node.runner is not None
    try:
        yield node.runner.app, f"http://127.0.0.1:{node.port}"
    finally:
        await node.stop()
