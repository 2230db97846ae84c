"""Benchmark: import a 5,000-user Mitel MiVoice Business export and a 5,000-user Avaya
IP Office export, as `centrale migrate` does (parse, map, validate, users.yaml,
server.yaml, placeholder prompts, write, check-config on the output).

The target of issue 23: each <= 5 s on this machine. The exports are generated with
the forms' documented headers (see docs/migration.md), members one per row.

Run: .venv/bin/python bench/import_csv_bench.py [--users N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.importers import run_import
from config.importers.site import site_files, users_section
from config.importers.writer import write_output

TARGET_SECONDS = 5.0


def mivb_export(directory: Path, users: int) -> int:
    groups = max(10, users // 25)
    rows = 0

    def write(name: str, header: str, lines: list[str]) -> None:
        nonlocal rows
        rows += len(lines)
        (directory / name).write_text(header + "\n" + "\n".join(lines) + "\n")

    write("skill_groups.csv", "Group Number,Name,Directory Number,Work Timer,"
          "Skill Level Routing",
          [f"{g},Group {g},{60000 + g},{g % 30},{'Yes' if g % 2 else 'No'}"
           for g in range(1, groups + 1)])
    write("agents.csv", "Agent ID,Name",
          [f"{10000 + a},Agent {a}" for a in range(users)])
    write("members.csv", "Agent Skill Group Number,Agent ID,Skill Level,Present",
          [f"{1 + (a + k * 7) % groups},{10000 + a},{1 + k},Yes"
           for a in range(users) for k in range(2)])
    write("paths.csv", "Path Number,Directory Number,Name,Primary Agent Skill Group,"
          "Path Priority,Overflow Agent Skill Group 1,Overflow Timer 1",
          [f"{p},{61000 + p},Path {p},{1 + p % groups},{1 + p % 64},"
           f"{1 + (p + 1) % groups},30" for p in range(1, groups + 1)])
    write("schedules.csv", "Schedule Number,Schedule Name,Day,Start Time,End Time",
          [f"{s},Hours {s},Mon-Fri,08:00,{17 + s % 3}:00" for s in range(1, 11)])
    write("dids.csv", "DID Number,Name,Day Answer Point,Night 1 Answer Point,"
          "Business Schedule",
          [f"0201{d:06d},DID {d},{61000 + 1 + d % groups},{61000 + 1 + (d + 3) % groups},"
           f"{1 + d % 10}" for d in range(users // 5)])
    return rows


def ipo_export(directory: Path, users: int) -> int:
    groups = max(10, users // 25)
    rows = 0

    def write(name: str, header: str, lines: list[str]) -> None:
        nonlocal rows
        rows += len(lines)
        (directory / name).write_text(header + "\n" + "\n".join(lines) + "\n")

    write("users.csv", "Name,Full Name,Extension",
          [f"user{u},User {u},{2000 + u}" for u in range(users)])
    modes = ("Collective", "Sequential", "Rotary", "Longest Waiting")
    write("hunt_groups.csv", "Name,Extension,Ring Mode,No Answer Time,Queue Limit,"
          "Overflow Time,Overflow Group List",
          [f"HG{g},{9000 + g},{modes[g % 4]},15,20,30,HG{1 + (g + 1) % groups}"
           for g in range(groups)])
    write("hunt_group_members.csv", "Hunt Group,Member,Enabled",
          [f"HG{(u + k) % groups},user{u},true" for u in range(users) for k in range(2)])
    write("time_profiles.csv", "Name,Time Entry List,Calendar Entry List",
          [f"Profile {p},08:30-17:30 Mon-Fri; 10:00-14:00 Sat,2026-12-24;2026-12-31"
           for p in range(20)])
    write("incoming_call_routes.csv", "Incoming Number,Destination,Fallback Extension,"
          "Time Profile,Time Profile Destination",
          [f"0201{r:06d},HG{r % groups},user{r % users},Profile {r % 20},VoiceMail"
           for r in range(users // 5)])
    return rows


def migrate(system: str, directory: Path, out: Path) -> tuple[float, float, float, object]:
    paths = sorted(directory.iterdir())
    c0 = time.process_time()
    t0 = time.perf_counter()
    result = run_import(system, paths, timezone="Europe/Amsterdam")
    t1 = time.perf_counter()
    sections = result.builder.sections()
    sections["users"] = users_section(sections.get("agents", []))
    files = site_files(system, "Europe/Amsterdam", result.config)
    write_output(out, sections, result.report, "benchmark", force=True, site_files=files,
                 config=result.config)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, time.process_time() - c0, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="csv-import-bench-"))
    worst = 0.0
    try:
        for system, make in (("mitel-mivb", mivb_export), ("avaya-ipo", ipo_export)):
            src = work / system
            src.mkdir()
            rows = make(src, args.users)
            parse, write, cpu, result = migrate(system, src, work / f"{system}-out")
            total = parse + write
            worst = max(worst, total)
            b = result.builder  # type: ignore[attr-defined]
            print(f"{system}: {args.users:,} users, {rows:,} CSV rows -> {len(b.agents):,} "
                  f"agents, {len(b.queues)} queues, {len(b.flows)} flows, "
                  f"{len(b.numbers)} numbers; report {result.report.counts()}")  # type: ignore[attr-defined]
            print(f"  parse+map+validate {parse:5.2f} s, write+check-config {write:5.2f} s, "
                  f"total {total:5.2f} s (target <= {TARGET_SECONDS:.0f} s: "
                  f"{'OK' if total <= TARGET_SECONDS else 'MISSED'}); cpu {cpu:5.2f} s")
        return 0 if worst <= TARGET_SECONDS else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
