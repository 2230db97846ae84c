"""A cheap id source for the engine's hot path (task, offer and event ids).

core.ids.new_id costs ~3 µs (urandom + 26 divmods); the engine makes ~8 ids per routed
task. These ids keep core's properties that matter — unique across nodes, sortable by
creation time, 26 URL-safe characters — at a fraction of the cost: 11 hex digits of
milliseconds, a 6-hex-digit random node prefix drawn once, and a 9-hex-digit counter.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable


def fast_id_factory() -> Callable[[], str]:
    node = os.urandom(3).hex()
    counter = itertools.count(int.from_bytes(os.urandom(3), "big"))

    def new_fast_id() -> str:
        return f"{int(time.time() * 1000):011x}{node}{next(counter) & 0xFFFFFFFFF:09x}"

    return new_fast_id
