"""The load-independent figures of `bench/recording_bench.py`: the interleaved windows
really run both kinds, cost the recorded one with its writer thread's CPU and write
every recording whole (a measurement of recordings that silently failed would read
cheap), and the callgrind workload runs on its own."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.recording_bench import _process_cpu, _thread_cpu, interleaved, workload


def test_interleaved_windows_cost_both_kinds_and_write_every_recording(
        tmp_path: Path) -> None:
    calls, windows, ticks = 6, 4, 10
    r = asyncio.run(interleaved(calls, "relay", "recorded", windows, ticks, str(tmp_path)))
    assert r["base"] > 0 and r["rec"] > 0
    assert r["rec_loop"] > 0 and r["base_loop"] == r["base"]  # unrecorded: no writer
    assert r["writer"] > 0  # the writer thread's CPU is counted for the recorded kind
    assert r["min"] <= r["q1"] <= r["ratio"] <= r["q3"] <= r["max"]
    files = sorted(tmp_path.glob("*.wav"))
    assert len(files) == calls
    for path in files:  # warm-up (50 ticks) and every recorded window, whole
        with wave.open(str(path)) as w:
            assert w.getnchannels() == 2 and w.getsampwidth() == 2
            assert w.getnframes() == (50 + windows * ticks) * 160


def test_the_callgrind_workload_runs_alone(tmp_path: Path) -> None:
    asyncio.run(workload("recorded", 3, 60, str(tmp_path)))
    files = sorted(tmp_path.glob("*.wav"))
    assert len(files) == 3  # written and drained, not finished (the header lags)
    assert all(f.stat().st_size >= 44 + 50 * 160 * 4 for f in files)


def test_thread_and_process_cpu_read_proc() -> None:
    user, system = _thread_cpu(None)
    assert (user, system) == (0.0, 0.0)
    sum(range(2_000_000))
    assert _process_cpu(os.getpid()) > 0
    assert _process_cpu(2**22 + 7) == 0.0  # gone (no such pid): zero, not an error
