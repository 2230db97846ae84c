"""The demo exactly as `./scripts/run-demo` runs it — examples/demo, unmodified — with
only what a test must change: the web server and the embedded SIP core on ports the OS
picks, a throw-away SQLite file, UDP for SIP. `centrale demo seed` runs first, as the
script does. The demo's WhatsApp replies go to its own simulator (`/demo/graph`), so
there is no Graph API stand-in here: the simulator is the one under test.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.db import sqlite_url
from core.settings import Settings

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


@contextlib.asynccontextmanager
async def demo_node(tmp_path: Path) -> AsyncIterator[tuple[Any, str]]:
    from centrale.container import Container
    from centrale.node import Node, prepare_database
    from centrale.wiring import wire
    from config import load_config_with_sources
    from web.demo.seed import seed_demo

    loaded = load_config_with_sources(DEMO, env={})
    cfg = loaded.config
    server = cfg.server.model_copy(update={
        "web": cfg.server.web.model_copy(update={"port": 0}),
        "sip": cfg.server.sip.model_copy(update={"port": 0, "transports": ["udp"]})})
    loaded = dataclasses.replace(loaded, config=cfg.model_copy(update={"server": server}))
    settings = Settings(database_url=sqlite_url(tmp_path / "demo.db"), node_id="demo",
                        log_format="text")
    container = Container.build(settings, loaded)
    await prepare_database(container.db)
    seeded = await seed_demo(container.config, container.db, container.bus, container.clock)
    assert seeded.created
    wire(container)
    node = Node(container)
    await node.start()
    try:
        yield node, f"http://127.0.0.1:{node.port}"
    finally:
        await node.stop()
