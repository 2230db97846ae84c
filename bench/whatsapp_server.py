"""The web app with the WhatsApp channel on SQLite, as one server process, for the
ingest benchmark (`centrale run` is the composition root's; until it exists this builds
the same objects the way the tests do).

    python bench/whatsapp_server.py --db var/bench.db --port 0 [--no-processing]

Prints `PORT <n>` once it listens. The ACD is the real engine (in-memory store); no
agent is logged in, so the tasks wait.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from cases import CaseService, CustomerMerger
from centrale.tables import import_all
from config.schema import CentraleConfig, Queue
from config.schema.channels import Channels, WhatsAppChannel
from core.bus import InMemoryBus
from core.clock import SystemClock
from core.db import Database, sqlite_url
from digital import build

APP_SECRET = "bench-app-secret"
PHONE_NUMBER_ID = "1000000001"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-processing", action="store_true",
                        help="only ingest (the inbox processor stays off)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from web.app import create_app
    from web.context import WebContext

    config = CentraleConfig(
        queues=[Queue(id="support")],
        channels=Channels(whatsapp=WhatsAppChannel(
            queue="support", phone_number_id=PHONE_NUMBER_ID, access_token="x",
            app_secret=APP_SECRET, verify_token="v", graph_base_url="http://127.0.0.1:9")))
    import_all()
    db = Database(sqlite_url(args.db))
    await db.create_all()
    bus, clock = InMemoryBus(), SystemClock()
    cases = CaseService(db, bus, clock, default_region="NL")
    from queues import AcdEngine

    acd = AcdEngine(config, clock, bus)
    acd_loop = asyncio.create_task(acd.run())
    digital = build(config, db, bus, clock, cases, acd,
                    media_dir=Path(args.db).parent / "media")
    ctx = WebContext(config=config, db=db, bus=bus, clock=clock, cases=cases,
                     merger=CustomerMerger(db, bus, clock))
    digital.install(ctx)
    await digital.writer.start()
    for adapter in digital.adapters.values():
        await adapter.start()
    await digital.conversations.start()
    if not args.no_processing:
        await digital.processor.start()
    runner = web.AppRunner(create_app(ctx), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    loop.call_later(20, os._exit, 3)  # a shutdown that hangs must not outlive the bench
    await runner.cleanup()
    await digital.stop()
    await acd.stop()
    acd_loop.cancel()
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
