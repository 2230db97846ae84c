"""The cyclic garbage collector, tuned for a node that has started (issue 21).

Measured in process (`bench/call_path_bench.py`, 500 calls, CPU of the loop's thread
inside `gc.callbacks`): with CPython's defaults the collector took ~0.8 ms per call,
~8 % of the loop's CPU — mostly the full collections, each walking the ~200,000
objects a started node holds for good (modules, the config, SQLAlchemy's metadata and
compiled statements), ~130 ms apiece, a stall for every call in flight; the young
collections ran every 700 net allocations, ~3 times per call.

Before it opens its ports, the node frees start-up's garbage and moves what is left
into the permanent generation (`gc.freeze()`: never walked again, never freed — it
lives as long as the process anyway; what starting adds is frozen once started), and
collects the young generation every 10,000 net allocations instead of 700 (a few
hundred KB of cycles at most wait a little longer to be freed). Together: ~0.07 ms
per call, full collections ~5 ms.

What freezing costs: a frozen object that later becomes garbage is still freed by
reference counting, but a reference cycle among frozen objects is never collected
(say, an old config replaced by a hot reload, if it held cycles): rare and bounded.

`CENTRALE_GC_TUNE=0` keeps CPython's defaults (for an A/B).
"""

from __future__ import annotations

import gc
import logging
import os

log = logging.getLogger(__name__)

GEN0_THRESHOLD = 10_000


def tune_before_start() -> None:
    """Free start-up's garbage, freeze what is left and widen the young generation,
    before the node opens its ports: the full collection (~0.1 s of CPU) holds up no
    call."""
    if not _enabled():
        return
    gc.collect()  # start-up's garbage freed first: only what is live is frozen
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


def tune_after_start() -> None:
    """Freeze what starting built too (connections, compiled statements, tasks); no
    collection here — calls may already be arriving, and freezing is a list splice."""
    if not _enabled():
        return
    gc.freeze()
    log.debug("gc: %d objects frozen, young threshold %d", gc.get_freeze_count(),
              gc.get_threshold()[0])


def _enabled() -> bool:
    return os.environ.get("CENTRALE_GC_TUNE", "1") != "0"
