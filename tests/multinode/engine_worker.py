"""A node in a process of its own: an `AcdEngine` on shared Redis state through
queues.shared.wiring, as `centrale run` wires it — for the multi-process tests.

    python tests/multinode/engine_worker.py URL REDIS_PREFIX NODE

It waits until agent a1 is available (logged in on another node), enqueues one voice
task (offered to a1 there) and, once that is accepted, three chats that must wait (a1's
voice is exclusive). It prints one JSON line per `task.offered` / `task.accepted` it
publishes and `{"event": "ready"}` when the chats are queued; then it runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from config.schema import CentraleConfig
from core.clock import SystemClock
from core.events import Event
from queues.engine import AcdEngine
from queues.shared.wiring import attach_shared_state


def site() -> CentraleConfig:
    cap = {"voice": 1, "whatsapp": 2, "webchat": 0, "email": 0, "sms": 0}
    return CentraleConfig.model_validate({
        "queues": [{"id": "sales", "channels": ["voice", "whatsapp"], "rona_seconds": 60,
                    "wrap_up_seconds": 30}],
        "agents": [{"id": a, "name": a, "queues": ["sales"], "capacity": cap}
                   for a in ("a1", "a2")],
    })


class PrintingBus:
    async def publish(self, event: Event) -> str:
        if event.topic in ("task.offered", "task.accepted"):
            say({"event": event.topic, **event.payload})
        return ""


def say(line: dict[str, Any]) -> None:
    print(json.dumps(line, default=str), flush=True)


async def main(url: str, redis_prefix: str, node: str) -> None:
    engine = AcdEngine(site(), SystemClock(), PrintingBus())
    service = attach_shared_state(engine, url, node_id=node, prefix=redis_prefix)
    await service.start()
    for _ in range(200):
        await engine.sync_remote()
        if engine.agent("a1").state == "available":
            break
        await asyncio.sleep(0.05)
    call = await engine.enqueue(queue_id="sales", channel="voice", case_id="k0",
                                customer_id="c")
    for _ in range(400):
        if engine.task(call.id).status == "assigned":
            break
        await asyncio.sleep(0.05)
    for i in range(1, 4):
        await engine.enqueue(queue_id="sales", channel="whatsapp", case_id=f"k{i}",
                             customer_id="c")
    say({"event": "ready"})
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
