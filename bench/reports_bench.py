"""Benchmark: a month's reports over 1,000,000 contacts and 200 agents on PostgreSQL.

Seeds `report_contact` (COPY) with October 2026 — the month summer time ends in
Europe/Amsterdam — 10 queues, 5 channels, 200 agents, 8 wrap-up codes, then times the
reports through `reports.ReportService.report` (SQL + the time-zone roll-up):

- before (the first wave's way, web/desktop/reports.py): every contact of the range
  read into Python and aggregated there;
- before (GROUP BY over the contacts): one GROUP BY bucket over `report_contact` (what
  `reports/` does when a report-only short-abandon threshold is configured);
- after (pre-aggregated): the same report read from `report_bucket_total`, built by the
  rollup (`reports.rollup.rebuild`, timed too) from the dirty buckets.

The issue's targets: monthly per-queue report <= 2 s, interval reports <= 5 s.

Run: .venv/bin/python bench/reports_bench.py [--contacts N] [--repeat 3]
     [--python-baseline]   (the first wave's way: minutes at 1M contacts)
Needs PostgreSQL (CENTRALE_TEST_POSTGRES_URL, default postgres@127.0.0.1:5432); it
creates and drops a database of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from sqlalchemy import select, text
from sqlmodel import SQLModel

from config.schema import CentraleConfig
from core.clock import SystemClock
from core.db import Database
from reports import ReportService, parse_query
from reports.rollup import rebuild
from reports.tables import (
    BUCKET_SECONDS,
    ReportBucketTotal,
    ReportContact,
    ReportDirtyBucket,
)

ADMIN = os.environ.get("CENTRALE_TEST_POSTGRES_URL",
                       "postgresql://postgres@127.0.0.1:5432/postgres")
QUEUES = [f"q{i}" for i in range(10)]
AGENTS = [f"agent{i:03d}" for i in range(200)]
CHANNELS = ["voice", "voice", "voice", "whatsapp", "webchat", "email", "sms"]
CODES = [f"code{i}" for i in range(8)]
MONTH_START = datetime(2026, 9, 30, 22, 0, tzinfo=UTC)  # 1 October 00:00 in Amsterdam
MONTH_END = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)  # 1 November 00:00 (after DST end)

COLUMNS = ("task_id", "case_id", "customer_id", "queue_id", "channel", "agent_id",
           "wrap_up_code", "entered_at", "bucket", "answered_at", "ended_at",
           "wait_seconds", "talk_seconds", "hold_seconds", "wrap_seconds", "answered",
           "answered_in_sl", "abandoned", "short_abandoned", "exited", "handled",
           "transferred")


def config(**reports: Any) -> CentraleConfig:
    return CentraleConfig.model_validate({
        "reports": reports,
        "server": {"timezone": "Europe/Amsterdam"},
        "queues": [{"id": q} for q in QUEUES],
        "agents": [{"id": a, "name": a, "queues": QUEUES[:3]} for a in AGENTS],
        "wrap_up_codes": [{"id": c} for c in CODES],
    })


def rows(n: int, rng: random.Random) -> io.StringIO:
    span = (MONTH_END - MONTH_START).total_seconds()
    buf = io.StringIO()
    for i in range(n):
        entered = MONTH_START + timedelta(seconds=rng.random() * span)
        wait = rng.expovariate(1 / 25)
        abandoned = rng.random() < 0.08
        case_id = f"k{rng.randrange(n // 3)}"
        fields: list[Any] = [f"t{i}", case_id, f"c{case_id[1:]}", rng.choice(QUEUES),
                             rng.choice(CHANNELS)]
        if abandoned:
            fields += ["\\N", "\\N", entered.isoformat(), int(entered.timestamp()) //
                       BUCKET_SECONDS, "\\N", (entered + timedelta(seconds=wait)).isoformat(),
                       wait, "\\N", 0.0, "\\N", 0, 0, 1, int(wait < 5), 0, 0, 0]
        else:
            answered = entered + timedelta(seconds=wait)
            talk = rng.expovariate(1 / 240)
            wrap = rng.expovariate(1 / 30)
            fields += [rng.choice(AGENTS), rng.choice(CODES), entered.isoformat(),
                       int(entered.timestamp()) // BUCKET_SECONDS, answered.isoformat(),
                       (answered + timedelta(seconds=talk + wrap)).isoformat(), wait, talk,
                       rng.random() * 20, wrap, 1, int(wait <= 20), 0, 0, 0, 1,
                       int(rng.random() < 0.05)]
        buf.write("\t".join(str(f) for f in fields) + "\n")
    buf.seek(0)
    return buf


def seed(url: str, n: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        data = rows(n, random.Random(24))
        with conn.cursor() as cur, cur.copy(
                f"COPY report_contact ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            while chunk := data.read(1 << 20):
                copy.write(chunk)
        conn.execute("ANALYZE report_contact")
    return time.perf_counter() - started


async def naive_month_by_queue(db: Database) -> dict[str, int]:
    """The first wave's report: read every contact of the range, aggregate in Python."""
    C = ReportContact
    out: dict[str, int] = defaultdict(int)
    async with db.engine.connect() as conn:
        result = await conn.stream(select(C.queue_id, C.entered_at, C.answered,
                                          C.abandoned, C.wait_seconds, C.talk_seconds)
                                   .where(C.entered_at >= MONTH_START,
                                          C.entered_at < MONTH_END))
        async for row in result:
            out[row[0]] += row[2] + row[3]
    return out


def same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 (sums added in another order differ in the last bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


async def run(url: str, n: int, repeat: int, python_baseline: bool) -> None:
    from centrale.tables import import_all

    import_all()
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all, tables=[
            t.__table__ for t in (ReportContact, ReportBucketTotal,  # type: ignore[attr-defined]
                                  ReportDirtyBucket)])
    print(f"seeding {n:,} contacts (COPY) ...", flush=True)
    print(f"  seeded in {await asyncio.to_thread(seed, url, n):.1f} s", flush=True)
    contacts_cfg = config(short_abandon_seconds=5)  # the seeded short flag is wait < 5
    totals_cfg = config()
    now = datetime(2026, 11, 2, tzinfo=UTC)
    cases = {
        "monthly per queue (month)": {"by": "queue", "granularity": "month",
                                      "from": "2026-10-01", "to": "2026-10-31"},
        "daily per channel (month)": {"by": "channel", "granularity": "day",
                                      "from": "2026-10-01", "to": "2026-10-31"},
        "monthly per wrap-up code": {"by": "wrap_up_code", "granularity": "month",
                                     "from": "2026-10-01", "to": "2026-10-31"},
        "interval 15min per queue (month)": {"by": "queue", "granularity": "15min",
                                             "from": "2026-10-01", "to": "2026-10-31"},
        "interval 60min per queue (week)": {"by": "queue", "granularity": "60min",
                                            "from": "2026-10-19", "to": "2026-10-25"},
        "interval 15min per agent (DST day)": {"by": "agent", "granularity": "15min",
                                               "from": "2026-10-25", "to": "2026-10-25"},
        "interval 60min per agent (month)": {"by": "agent", "granularity": "60min",
                                             "from": "2026-10-01", "to": "2026-10-31"},
        # what the screen asks for (25 agents a page) and a BI tool paging by 50
        "  same, page 1 of 25 agents": {"by": "agent", "granularity": "60min",
                                        "from": "2026-10-01", "to": "2026-10-31",
                                        "page_size": "25"},
        "  same, page 4 of 50 agents": {"by": "agent", "granularity": "60min",
                                        "from": "2026-10-01", "to": "2026-10-31",
                                        "page_size": "50", "page": "4"},
    }

    def reporter(cfg: CentraleConfig) -> Callable[[dict[str, str]], Awaitable[Any]]:
        svc = ReportService(db, None, SystemClock(), lambda: cfg)  # type: ignore[arg-type]
        return lambda params: svc.report(parse_query(params, cfg, now))

    results: dict[str, dict[str, float]] = defaultdict(dict)
    naive = None
    if python_baseline:  # minutes at 1M contacts: on request only
        seconds, naive = await timed(lambda: naive_month_by_queue(db), 1)
        print(f"  before (read all, aggregate in Python) monthly per queue: {seconds:.2f} s",
              flush=True)
        results["monthly per queue (month)"]["python"] = seconds
    before = reporter(contacts_cfg)
    outputs = {}
    for name, params in cases.items():
        results[name]["contacts"], outputs[name] = await timed(
            lambda p=params: before(p), repeat)
    async with db.engine.begin() as conn:
        await conn.execute(text("INSERT INTO report_dirty_bucket (bucket, version) "
                                "SELECT DISTINCT bucket, 1 FROM report_contact"))
    started, built = time.perf_counter(), 0
    while (n_built := await rebuild(db, limit=1000)):
        built += n_built
    print(f"  rollup of {built:,} buckets: {time.perf_counter() - started:.1f} s", flush=True)
    async with db.engine.begin() as conn:
        await conn.execute(text("ANALYZE report_bucket_total"))
    after = reporter(totals_cfg)
    for name, params in cases.items():
        results[name]["totals"], out = await timed(lambda p=params: after(p), repeat)
        assert same(out, outputs[name]), name  # the same figures either way
        if name.startswith("monthly per queue"):
            if naive is not None:
                assert {k: v["offered"] for k, v in out["totals"].items()} == dict(naive)
            assert sum(v["contacts"] for v in out["totals"].values()) == n
    await db.dispose()
    print(f"\n{'report (seconds, median)':<38}{'python':>8}{'contacts':>10}{'totals':>8}"
          "  target")
    for name, r in results.items():
        target = 2.0 if name.startswith("monthly") else 5.0
        python = f"{r['python']:.2f}" if "python" in r else "-"
        ok = "ok" if r["totals"] <= target else "MISSED"
        print(f"{name:<38}{python:>8}{r['contacts']:>10.2f}{r['totals']:>8.2f}  "
              f"<= {target:.0f} s {ok}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average (1, 5, 15 min) at the end: {load} on {os.cpu_count()} cores")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--python-baseline", action="store_true",
                    help="also time the first wave's read-everything report (slow)")
    args = ap.parse_args()
    name = f"centrale_bench_reports_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        asyncio.run(run(url, args.contacts, args.repeat, args.python_baseline))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
