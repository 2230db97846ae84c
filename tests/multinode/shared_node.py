"""`centrale run` with the ACD on shared Redis state, for the multi-node tests, until
`centrale/wiring.py` attaches it itself: the same CLI, with `wire` wrapped so that it
adds the three lines docs/deploy.md ("What the wiring needs") gives the lead. Once the
composition root has `acd_shared`, the wrapper adds nothing.

    python tests/multinode/shared_node.py run --config DIR --port 0 ...
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import centrale.wiring as wiring

_wire = wiring.wire


def wire_with_shared_acd(c: Any) -> None:
    _wire(c)
    if not c.settings.redis_url or "acd_shared" in c.services:
        return
    from queues.shared.wiring import attach_shared_state

    services = list(c.services.items())
    c.services.clear()
    for name, service in services:
        if name == "acd_loop":  # start before the loop, stop after it
            c.services["acd_shared"] = attach_shared_state(
                c.services["acd"], c.settings.redis_url, node_id=c.settings.node_id,
                prefix=c.settings.redis_prefix)
        c.services[name] = service


wiring.wire = wire_with_shared_acd

if __name__ == "__main__":
    from centrale.cli import main

    sys.exit(main())
