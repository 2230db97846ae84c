"""A started node freezes what start-up built and widens the young generation; the
switch keeps CPython's defaults. In a child process: freezing is for the life of a
process, and the test runner's own objects must not be frozen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import gc, json
built = [[] for _ in range(1000)]  # what "start-up" left alive
from centrale.gc_tuning import tune_after_start, tune_before_start
before = gc.get_threshold()
tune_before_start()
started = [[] for _ in range(500)]  # what starting built
frozen_before_start = gc.get_freeze_count()
tune_after_start()
print(json.dumps({"before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(),
                  "frozen_before_start": frozen_before_start}))
"""


def probe(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    return json.loads(out.stdout)


def test_tuned_after_start() -> None:
    from centrale.gc_tuning import GEN0_THRESHOLD

    got = probe()
    assert got["after"][0] == GEN0_THRESHOLD and got["after"][1:] == got["before"][1:]
    assert got["frozen_before_start"] >= 1000
    assert got["frozen"] >= got["frozen_before_start"] + 500


def test_switch_keeps_cpython_defaults() -> None:
    got = probe(CENTRALE_GC_TUNE="0")
    assert got["after"] == got["before"] and got["frozen"] == 0
