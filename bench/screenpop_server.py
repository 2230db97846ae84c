"""The server side of bench/screenpop_bench.py: one Centrale web node as production
wires it — real WhatsApp webhook, digital inbox and ConversationService, CaseService,
AcdEngine, in-process bus, web desktop with its websocket hub — on a config with N
agents in one queue. Prints `READY <port>` and runs until stdin closes.

    .venv/bin/python bench/screenpop_server.py --agents 500 --db sqlite|postgres
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web
from pydantic import SecretStr

from cases import CaseService, CustomerMerger
from config.loader import load_config
from config.schema import Agent, Queue, User
from config.schema.acd import Capacity
from core.bus import InMemoryBus
from core.clock import SystemClock
from core.db import Database, sqlite_url
from queues.engine import AcdEngine
from web.app import create_app
from web.context import WebContext

REPO = Path(__file__).resolve().parents[1]
APP_SECRET = "bench-app-secret"
PHONE_NUMBER_ID = "106540352242922"


def bench_config(agents: int) -> Any:
    demo = load_config(REPO / "examples" / "demo", env={})
    queue = Queue(id="bench", name="Bench", channels=["whatsapp", "voice"],
                  rona_seconds=3600, wrap_up_seconds=0)
    agent_list = [Agent(id=f"a{i:04d}", name=f"Agent {i}", queues=["bench"],
                        capacity=Capacity(whatsapp=50)) for i in range(agents)]
    users = [User(username=f"u{i:04d}", role="agent", agent=f"a{i:04d}",
                  api_token=SecretStr(f"bench-token-{i:04d}")) for i in range(agents)]
    wa = demo.channels.whatsapp.model_copy(update={
        "queue": "bench", "app_secret": SecretStr(APP_SECRET),
        "graph_base_url": "http://127.0.0.1:9"})
    return demo.model_copy(update={
        "queues": [queue], "agents": agent_list, "users": users, "flows": [], "numbers": [],
        "channels": demo.channels.model_copy(update={"whatsapp": wa, "webchat": None})})


def instrument(app: web.Application, bus: InMemoryBus, digital: Any) -> dict[str, list[float]]:
    """Where the time goes on the server: inbox row written -> the processor takes it
    (`inbox_wait`), the processor's handling of one message (`route`: resolve, timeline,
    conversation, ACD), conversation created -> `task.offered` published, and
    `task.offered` -> pop frame written (the web hub)."""
    import time

    from web.desktop.state import DESKTOP

    marks: dict[str, float] = {}
    out: dict[str, list[float]] = {"inbox_wait": [], "route": [], "ingest_to_offer": [],
                                   "offer_to_frame": []}
    original_handle = digital.processor.handle

    async def timed_handle(row: Any) -> None:
        start = time.perf_counter()
        if row.received_seq:
            out["inbox_wait"].append(max(0.0, time.time() - row.received_seq / 1e9))
        await original_handle(row)
        out["route"].append(time.perf_counter() - start)

    digital.processor.handle = timed_handle
    hub = app[DESKTOP].hub
    original_pop = hub._pop

    async def on_event(event: Any) -> None:
        now = time.perf_counter()
        if event.topic == "conversation.created":
            marks["c:" + event.payload["case_id"]] = now
        elif event.topic == "task.offered":
            start = marks.pop("c:" + event.payload.get("case_id", ""), None)
            if start is not None:
                out["ingest_to_offer"].append(now - start)

    async def timed_pop(agent_id: str, payload: dict[str, Any]) -> None:
        start = time.perf_counter()
        await original_pop(agent_id, payload)
        out["offer_to_frame"].append(time.perf_counter() - start)

    hub._pop = timed_pop  # type: ignore[method-assign]
    asyncio.get_event_loop().create_task(bus.subscribe("*", on_event))
    return out


def report(out: dict[str, list[float]]) -> None:
    for name, values in out.items():
        if values:
            ordered = sorted(values)
            p50, p95, p99 = (ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))] * 1000
                             for q in (0.5, 0.95, 0.99))
            print(f"  server {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                  f"p99 {p99:.1f} ms (n={len(ordered)})", file=sys.stderr, flush=True)


def _pg_admin(admin_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    from centrale.tables import import_all
    from digital import build as build_digital

    import_all()
    tmp = Path(tempfile.mkdtemp(prefix="screenpop-bench-"))
    pg_name = None
    if args.db == "sqlite":
        db = Database(sqlite_url(tmp / "bench.db"))
    else:
        # A database of its own: never drop tables in a database others may be using.
        pg_name = f"centrale_bench_{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(_pg_admin, args.postgres_url, f'CREATE DATABASE "{pg_name}"')
        db = Database(args.postgres_url.rsplit("/", 1)[0] + "/" + pg_name)
    await db.create_all()
    config = bench_config(args.agents)
    clock = SystemClock()
    bus = InMemoryBus()
    cases = CaseService(db, bus, clock, default_region="NL")
    acd = AcdEngine(config, clock, bus)
    ctx = WebContext(config=config, db=db, bus=bus, clock=clock, cases=cases,
                     merger=CustomerMerger(db, bus, clock), acd=acd)
    digital = build_digital(config, db, bus, clock, cases, acd,
                            media_dir=tmp / "media")
    digital.install(ctx)
    await digital.start()
    loop_task = asyncio.create_task(acd.run())
    app = create_app(ctx)
    breakdown = instrument(app, bus, digital)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    report(breakdown)
    await acd.stop()
    await loop_task
    await runner.cleanup()
    await digital.stop()
    await db.dispose()
    if pg_name is not None:
        await asyncio.to_thread(_pg_admin, args.postgres_url,
                                f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


if __name__ == "__main__":
    if "--profile" in sys.argv:  # cProfile of the whole server, top 25 by own time
        import cProfile
        import pstats

        sys.argv.remove("--profile")
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, main())
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        asyncio.run(main())
