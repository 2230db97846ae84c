"""What one call costs the node beyond SIP and RTP: identification, the demo's IVR, the
case timeline, the ACD and every bus consumer (reports, desktop, assist), in process.

A whole node (the real wiring, `examples/demo` with its SIP port taken from the OS) runs
`calls` calls through `VoiceService.handle_sip_call` with a scripted leg instead of a SIP
dialog, `concurrency` at a time: each from a number of its own, 1 in the language menu,
1 in the main menu, then a hang-up in the sales queue. It counts, per call, database
transactions (commits) and statements, events published, and the CPU time of the whole
process (every thread: aiosqlite's included) until the bus consumers have caught up.
Counts do not depend on the machine's load; CPU time depends on it less than wall time.

    .venv/bin/python bench/call_path_bench.py --calls 1000 --concurrency 100
    .venv/bin/python bench/call_path_bench.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


async def run(calls: int, concurrency: int, db_url: str | None, work: Path) -> dict:
    from sqlalchemy import event

    from centrale.container import Container
    from centrale.node import Node
    from centrale.wiring import wire
    from config import load_config_with_sources
    from core.settings import Settings
    from ivr.call_leg import CallerData
    from ivr.testing import Barge, Hangup, ScriptedCallLeg

    cfg = work / "site"
    shutil.copytree(ROOT / "examples" / "demo", cfg)
    main = cfg / "centrale.yaml"
    main.write_text(re.sub(r"(\n    port: )5060\b", r"\g<1>0", main.read_text()).replace(
        "    port: 8080", "    port: 0"))
    os.chdir(work)
    loaded = load_config_with_sources(cfg, env={})
    settings = Settings(config_dir=str(cfg), node_id="bench", database_url=db_url)
    container = Container.build(settings, loaded)
    wire(container)
    node = Node(container)
    try:  # as `centrale run` does (CENTRALE_GC_TUNE=0: CPython's defaults)
        from centrale import gc_tuning
    except ImportError:  # a commit from before it
        gc_tuning = None
    if gc_tuning is not None:
        gc_tuning.tune_before_start()
    await node.start()
    if gc_tuning is not None:
        gc_tuning.tune_after_start()
    voice = container.services["voice"]
    counts: collections.Counter[str] = collections.Counter()

    def on_commit(_conn) -> None:  # type: ignore[no-untyped-def]
        counts["commits"] += 1

    def on_statement(_conn, _cursor, statement, _params, _context, executemany) -> None:  # type: ignore[no-untyped-def]
        verb = statement.lstrip().split(None, 1)[0].upper()
        counts["statements"] += 1
        counts[f"stmt_{verb}"] += 1
        table = re.search(r"(?:INTO|FROM|UPDATE)\s+\"?(\w+)", statement, re.I)
        counts[f"table_{verb} {table.group(1) if table else '?'}"] += 1

    engines = [container.db.engine.sync_engine]
    writer = getattr(container.db, "_writer_engine", None)  # SQLite's writer thread
    if writer is not None:
        engines.append(writer)
    for engine in engines:
        event.listen(engine, "commit", on_commit)
        event.listen(engine, "before_cursor_execute", on_statement)
    published: collections.Counter[str] = collections.Counter()
    original = container.bus.publish

    async def counting_publish(ev):  # type: ignore[no-untyped-def]
        published[ev.topic] += 1
        return await original(ev)

    container.bus.publish = counting_publish  # type: ignore[method-assign]
    # the cases' writer and the ACD hold their own reference to publish: count at the bus
    if hasattr(container.cases, "writer"):
        container.cases.writer._publish = counting_publish  # type: ignore[attr-defined]

    async def one(i: int) -> None:
        leg = ScriptedCallLeg([Barge("1"), Barge("1"), Hangup()], caller=CallerData(
            call_id=f"bench-{i}", caller_id=f"+3120{3000000 + i:07d}", dialled="+31201234567"))
        await voice.handle_sip_call(leg)

    async def warm() -> None:
        for i in range(5):
            await one(10_000_000 - i - 1)

    await warm()
    await settle(container)
    counts.clear()
    published.clear()
    sem = asyncio.Semaphore(concurrency)

    async def limited(i: int) -> None:
        async with sem:
            await one(i)

    profiler = None
    if os.environ.get("CALL_PATH_CPROFILE"):  # main thread's CPU by function
        import cProfile

        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
    cpu0, t0, loop0 = time.process_time(), time.monotonic(), time.thread_time()
    await asyncio.gather(*(limited(i) for i in range(calls)))
    calls_done = time.monotonic() - t0
    await settle(container)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ["CALL_PATH_CPROFILE"])
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    loop_cpu = time.thread_time() - loop0  # the event loop's thread alone
    acd = container.services["acd"]
    entered = acd.stats()["queues"]["sales"]
    await node.stop()
    return {"cpu_ms_per_call": cpu * 1000 / calls,
            "loop_cpu_ms_per_call": loop_cpu * 1000 / calls, "calls_per_s_wall": calls / calls_done,
            "wall": wall, "counts": counts, "published": published, "sales": entered}


async def settle(container) -> None:  # type: ignore[no-untyped-def]
    """Until every consumer group has caught up and the timeline writer is idle."""
    for _ in range(600):
        lag = await container.bus.lag()
        if not any(lag.values()):
            if hasattr(container.cases, "writer"):
                await container.cases.writer.drain()
            return
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--postgres", help="admin URL: a fresh database is made for the run")
    args = parser.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    db_url = None
    name = f"bench_call_path_{os.getpid()}"
    if args.postgres:
        from whole_path_bench import drop_postgres_database, postgres_database

        db_url = postgres_database(args.postgres, name)
        env = {**os.environ, "CENTRALE_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "centrale", "db", "upgrade", "--config",
                        str(ROOT / "examples" / "demo")], env=env, check=True,
                       capture_output=True)
    try:
        with tempfile.TemporaryDirectory(prefix="call-path-") as tmp:
            r = asyncio.run(run(args.calls, args.concurrency, db_url, Path(tmp)))
    finally:
        if args.postgres:
            drop_postgres_database(args.postgres, name)
    n = args.calls
    c, p = r["counts"], r["published"]
    print(f"call path ({'postgres' if db_url else 'sqlite'}), {n} calls, {args.concurrency} "
          f"at a time; `uptime`: {uptime}")
    print(f"  per call: cpu {r['cpu_ms_per_call']:.2f} ms (event loop's thread "
          f"{r['loop_cpu_ms_per_call']:.2f}), commits {c['commits'] / n:.2f}, "
          f"statements {c['statements'] / n:.2f} ("
          + ", ".join(f"{k[5:]} {v / n:.2f}" for k, v in sorted(c.items())
                      if k.startswith("stmt_")) + f"), events {sum(p.values()) / n:.2f}")
    print("  statements per call by table: " + ", ".join(
        f"{k[6:]} {v / n:.2f}" for k, v in c.most_common() if k.startswith("table_")))
    print("  events per call: " + ", ".join(f"{k} {v / n:.2f}" for k, v in p.most_common()))
    print(f"  calls done at {r['calls_per_s_wall']:.0f}/s wall; consumers caught up after "
          f"{r['wall']:.1f} s; sales queue: entered {r['sales'].get('entered')}, abandoned "
          f"{r['sales'].get('abandoned')}")


if __name__ == "__main__":
    main()
