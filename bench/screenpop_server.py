"""The server side of bench/screenpop_bench.py: one Centrale web node as production
wires it — real WhatsApp webhook, digital inbox and ConversationService, CaseService,
AcdEngine, in-process bus, web desktop with its websocket hub — on a config with N
agents in one queue. Prints `READY <port>` and runs until stdin closes.

    .venv/bin/python bench/screenpop_server.py --agents 500 --phones 20 --db sqlite|postgres

The embedded SIP core listens on an ephemeral UDP port (`READY <web port> <sip port>`):
number 100 runs a one-node flow that queues the caller at once in `bench_voice`.
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
from config.schema.acd import AgentSip, Capacity
from core.bus import InMemoryBus
from core.clock import SystemClock
from core.db import Database, sqlite_url
from queues.engine import AcdEngine
from queues.store import SqlAcdStore
from web.app import create_app
from web.context import WebContext
from web.desktop.state import DESKTOP

REPO = Path(__file__).resolve().parents[1]
APP_SECRET = "bench-app-secret"
PHONE_NUMBER_ID = "106540352242922"
BENCH_NUMBER = "100"  # the called number of the SIP benchmark
PROFILER: Any = None  # cProfile.Profile with --profile


def bench_config(agents: int, phones: int = 0) -> Any:
    """N agents: the first `phones` serve a voice queue (each with a SIP account: the
    bench registers a desk phone that rings) that number `BENCH_NUMBER` reaches through
    a one-node flow — the caller is queued at once; the others a WhatsApp queue. Apart,
    because an agent with an unanswered chat offer is not offered a call."""
    from config.schema.ivr import Flow, QueueNode
    from config.schema.server import SipSettings, SipTrunk
    from config.schema.users import NumberRoute

    demo = load_config(REPO / "examples" / "demo", env={})
    queue = Queue(id="bench", name="Bench", channels=["whatsapp"],
                  rona_seconds=3600, wrap_up_seconds=0)
    voice_queue = Queue(id="bench_voice", name="Bench voice", channels=["voice"],
                        rona_seconds=30, wrap_up_seconds=0, rona_action="stay_available")
    agent_list = [Agent(id=f"a{i:04d}", name=f"Agent {i}",
                        queues=["bench_voice"] if i < phones else ["bench"],
                        capacity=Capacity(whatsapp=50),
                        sip=AgentSip(username=f"ph{i:04d}",
                                     password=SecretStr(f"bench-sip-{i:04d}"))
                        if i < phones else None) for i in range(agents)]
    users = [User(username=f"u{i:04d}", role="agent", agent=f"a{i:04d}",
                  api_token=SecretStr(f"bench-token-{i:04d}")) for i in range(agents)]
    wa = demo.channels.whatsapp.model_copy(update={
        "queue": "bench", "app_secret": SecretStr(APP_SECRET),
        "graph_base_url": "http://127.0.0.1:9"})
    sip = SipSettings(enabled=True, host="127.0.0.1", port=0, transports=["udp"],
                      rtp_port_min=30000, rtp_port_max=39999,
                      trunks=[SipTrunk(name="bench", allowed_ips=["127.0.0.1"], trusted=True)])
    flow = Flow(id="bench_voice", languages=[demo.server.default_language], start="queue",
                nodes={"queue": QueueNode(type="queue", queue="bench_voice",
                                          announce_position=False, announce_wait=False)})
    return demo.model_copy(update={
        "queues": [queue, voice_queue], "agents": agent_list, "users": users,
        "flows": [flow], "numbers": [NumberRoute(number=BENCH_NUMBER, flow="bench_voice")],
        "server": demo.server.model_copy(update={"sip": sip}),
        "channels": demo.channels.model_copy(update={"whatsapp": wa, "webchat": None})})


async def start_voice(config: Any, cases: CaseService, acd: AcdEngine, bus: InMemoryBus,
                      clock: SystemClock, cache: Path) -> tuple[Any, Any]:
    """The embedded SIP core and the voice service, wired as centrale/wiring.py does."""
    from ivr.prompts import PromptLibrary
    from pbx_bridge.sip.ports import TrunkConfig
    from pbx_bridge.sip.server import SipServer
    from pbx_bridge.voice import VoiceService

    voice = VoiceService(config=config, cases=cases, acd=acd, bus=bus, clock=clock)
    accounts = {a.sip.username: a.sip.password.get_secret_value()
                for a in config.agents if a.sip is not None}
    prompts = PromptLibrary(REPO / "examples" / "demo" / config.server.prompts_dir, cache)
    trunks = [TrunkConfig(name=t.name, allowed_ips=frozenset(t.allowed_ips),
                          trusted=t.trusted) for t in config.server.sip.trunks]
    sip = SipServer(config.server.sip, inbound_handler=voice.handle_sip_call,
                    credentials=accounts, trunks=trunks, prompts=prompts,
                    music=lambda _cls: None)
    voice.sip = sip
    await voice.start()
    await sip.start()
    return voice, sip


async def start_consumers(config: Any, db: Database, bus: InMemoryBus, clock: SystemClock,
                          cases: CaseService, ctx: WebContext) -> list[Any]:
    """The other bus consumers a production node runs on the same loop and database
    (centrale/wiring.py): the reports recorder and agent assist (its learning)."""
    from assist import AssistService
    from reports import ReportService

    reports = ReportService(db, bus, clock, lambda: config)
    await reports.start()
    started: list[Any] = [reports]
    if config.assist.enabled:
        assist = AssistService.from_config(config, config_dir=REPO / "examples" / "demo",
                                           cases=cases, db=db, bus=bus, clock=clock,
                                           node_id="bench", model=None)
        await assist.start()
        started.append(assist)
    return started


def instrument(app: web.Application, bus: InMemoryBus, digital: Any,
               voice: Any, sql_counts: dict[str, int] | None = None,
               ) -> dict[str, list[float]]:
    """Where the time goes on the server: inbox row written -> the processor takes it
    (`inbox_wait`), the processor's handling of one message (`route`: resolve, timeline,
    conversation, ACD), conversation created -> `task.offered` published, and
    `task.offered` -> pop frame written (the web hub). Calls: the voice handler's start
    (the INVITE accepted by the SIP core) -> caller identified (resolve + timeline), and
    -> `task.offered`."""
    import contextvars
    import time

    from web.desktop.state import DESKTOP

    marks: dict[str, float] = {}
    # CPU seconds of the process (every thread) at the first message and at the last
    # pop, and the pops between: the run's CPU per pop without the agents' log-in and
    # the sockets' closing. Latencies on a shared machine measure the neighbours too.
    cpu_marks: list[float] = []
    pops = [0]
    out: dict[str, list[float]] = {"inbox_wait": [], "route": [], "route_to_offer": [],
                                   "ingest_to_offer": [], "offer_to_frame": [],
                                   "call_identify": [], "call_to_offer": []}
    original_handle = digital.processor.handle
    voice_topics = out["voice_events"] = {}  # type: ignore[assignment]
    handling: contextvars.ContextVar[float] = contextvars.ContextVar("handling")

    async def timed_handle(row: Any) -> None:
        start = time.perf_counter()
        if not cpu_marks:
            cpu_marks.append(_cpu_seconds())  # the first message: CPU per pop from here
            if sql_counts is not None:  # and statements: not the agents' log-in
                sql_counts.clear()
            if PROFILER is not None:  # --profile: the run, not the log-ins
                PROFILER.enable()
        if row.received_seq:
            out["inbox_wait"].append(max(0.0, time.time() - row.received_seq / 1e9))
        handling.set(start)  # the ACD publishes `task.offered` inline, in this context
        await original_handle(row)
        out["route"].append(time.perf_counter() - start)

    digital.processor.handle = timed_handle
    call_started: contextvars.ContextVar[float] = contextvars.ContextVar("call_started")
    original_call, original_identify = voice.handle_sip_call, voice._identify

    async def timed_call(leg: Any) -> None:
        call_started.set(time.perf_counter())
        await original_call(leg)

    async def timed_identify(leg: Any, backend: str) -> Any:
        start = time.perf_counter()
        call = await original_identify(leg, backend)
        out["call_identify"].append(time.perf_counter() - start)
        return call

    voice.sip.inbound_handler = timed_call
    voice._identify = timed_identify
    hub = app[DESKTOP].hub
    original_pop = hub._pop

    async def on_event(event: Any) -> None:
        now = time.perf_counter()
        if event.payload.get("channel") == "voice" and event.topic.startswith("task."):
            voice_topics[event.topic] = voice_topics.get(event.topic, 0) + 1
        if event.topic == "conversation.created":
            marks["c:" + event.payload["case_id"]] = now
        elif event.topic == "task.offered":
            begun = handling.get(None)
            if begun is not None:
                out["route_to_offer"].append(now - begun)
            called = call_started.get(None)
            if called is not None and event.payload.get("channel") == "voice":
                out["call_to_offer"].append(now - called)
            start = marks.pop("c:" + event.payload.get("case_id", ""), None)
            if start is not None:
                out["ingest_to_offer"].append(now - start)

    async def timed_pop(agent_id: str, payload: dict[str, Any]) -> None:
        start = time.perf_counter()
        await original_pop(agent_id, payload)
        out["offer_to_frame"].append(time.perf_counter() - start)
        cpu_marks[1:] = [_cpu_seconds()]  # the last pop so far
        pops[0] += 1

    hub._pop = timed_pop  # type: ignore[method-assign]
    out["cpu_per_pop"] = (cpu_marks, pops)  # type: ignore[assignment]
    asyncio.get_event_loop().create_task(bus.subscribe("*", on_event))
    return out


def report(out: dict[str, list[float]]) -> None:
    for name, values in out.items():
        if name == "cpu_per_pop":
            (marks, (pops,)) = values  # type: ignore[misc]
            if len(marks) == 2 and pops:
                print(f"  server CPU per pop (first message to last pop, every thread): "
                      f"{(marks[1] - marks[0]) / pops * 1000:.2f} ms over {pops} pops",
                      file=sys.stderr, flush=True)
            continue
        if isinstance(values, dict):
            print(f"  server {name}: {values}", file=sys.stderr, flush=True)
        elif values:
            ordered = sorted(values)
            p50, p95, p99 = (ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))] * 1000
                             for q in (0.5, 0.95, 0.99))
            print(f"  server {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                  f"p99 {p99:.1f} ms (n={len(ordered)})", file=sys.stderr, flush=True)


def count_statements(db: Database) -> dict[str, int]:
    """Every SQL statement the engine runs, counted by its text (the first 110
    characters): how many statements, and which, one inbound message costs."""
    from sqlalchemy import event

    counts: dict[str, int] = {}

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        key = " ".join(statement.split())[:110]
        counts[key] = counts.get(key, 0) + 1

    @event.listens_for(db.engine.sync_engine, "commit")
    def _commit(_conn: Any) -> None:  # each one an fsync on SQLite (synchronous=FULL)
        counts["(COMMIT)"] = counts.get("(COMMIT)", 0) + 1

    return counts


def report_statements(counts: dict[str, int], pops: int) -> None:
    statements = sum(n for k, n in counts.items() if k != "(COMMIT)")
    commits = counts.get("(COMMIT)", 0)
    per = f"; per pop {statements / pops:.1f} and {commits / pops:.2f}" if pops else ""
    print(f"  server SQL statements: {statements}, commits {commits}{per}",
          file=sys.stderr, flush=True)
    for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:40]:
        print(f"    {n:6d}  {key}", file=sys.stderr, flush=True)


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pg_admin(admin_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--phones", type=int, default=0,
                        help="agents that also take calls (SIP accounts ph0000...)")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pool-size", type=int, default=0,
                        help="PostgreSQL pool size (default: core.db's, as production)")
    parser.add_argument("--no-consumers", action="store_true",
                        help="leave out the reports recorder and agent assist (the bus "
                             "consumers production runs beside the pop), to measure apart")
    parser.add_argument("--sql-stats", action="store_true",
                        help="count the SQL statements the server ran, by statement")
    parser.add_argument("--acd-store", choices=["sql", "memory"], default="sql",
                        help="the ACD's task and agent history: in SQL as a node keeps "
                             "it (default), or nowhere (the bench before 7 Dec 2026)")
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
        db = Database(args.postgres_url.rsplit("/", 1)[0] + "/" + pg_name,
                      **({"pool_size": args.pool_size} if args.pool_size else {}))
    await db.create_all()
    sql_counts = count_statements(db) if args.sql_stats else None
    config = bench_config(args.agents, args.phones)
    clock = SystemClock()
    bus = InMemoryBus()
    cases = CaseService(db, bus, clock, default_region="NL")
    # The ACD's history in SQL as centrale/wiring.py keeps it (one transaction per
    # routing batch, on the database the pop reads); `--acd-store memory` leaves it out.
    store = SqlAcdStore(db) if args.acd_store == "sql" else None
    acd = AcdEngine(config, clock, bus, store)
    ctx = WebContext(config=config, db=db, bus=bus, clock=clock, cases=cases,
                     merger=CustomerMerger(db, bus, clock), acd=acd)
    digital = build_digital(config, db, bus, clock, cases, acd,
                            media_dir=tmp / "media")
    digital.install(ctx)
    await digital.start()
    voice, sip = await start_voice(config, cases, acd, bus, clock, tmp / "prompt-cache")
    consumers = [] if args.no_consumers else await start_consumers(config, db, bus, clock,
                                                                   cases, ctx)
    loop_task = asyncio.create_task(acd.run())
    app = create_app(ctx)
    breakdown = instrument(app, bus, digital, voice, sql_counts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {port} {sip.port}", flush=True)
    cpu_ready = _cpu_seconds()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    # CPU the server spent (all its threads) from READY to the end of the run: on a
    # loaded machine latencies measure the neighbours too, CPU per message does not.
    print(f"  server CPU from READY to the end: {_cpu_seconds() - cpu_ready:.2f} s "
          f"(user + system, every thread)", file=sys.stderr, flush=True)
    report(breakdown)
    if sql_counts is not None:
        report_statements(sql_counts, app[DESKTOP].hub.pops_sent)
    for service in reversed(consumers):
        await service.stop()
    await sip.stop()
    await voice.stop()
    await acd.stop()
    await loop_task
    await runner.cleanup()
    await digital.stop()
    await db.dispose()
    if pg_name is not None:
        await asyncio.to_thread(_pg_admin, args.postgres_url,
                                f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


if __name__ == "__main__":
    if "--profile" in sys.argv:  # cProfile of the event loop's thread, top 25 by own time
        import cProfile
        import pstats

        sys.argv.remove("--profile")
        PROFILER = cProfile.Profile()  # enabled at the first message (see instrument)
        asyncio.run(main())
        PROFILER.disable()
        PROFILER.dump_stats(str(Path(tempfile.gettempdir()) / "screenpop_server.prof"))
        pstats.Stats(PROFILER, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        asyncio.run(main())
