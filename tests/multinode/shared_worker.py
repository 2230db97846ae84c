"""A separate process acting on the shared ACD state, for the multi-process tests.

    python tests/multinode/shared_worker.py claims URL PREFIX NODE SEED TASKS AGENTS N
        race N unfenced claims on shared tasks/agents; print the successful ones (JSON)
    python tests/multinode/shared_worker.py churn URL PREFIX NODE SEED TASKS AGENTS N
        claims, releases, accepts and ends at random; print counts (JSON)
    python tests/multinode/shared_worker.py victim URL PREFIX NODE TTL_MS
        join, own tasks (one offered, one assigned), a timer; print "ready"; sleep
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from queues.shared import SharedAcdState

PARTIES = 2


async def barrier(state: SharedAcdState) -> None:
    """Start together: both processes are up before either claims anything."""
    key = f"{state.prefix}test-barrier"
    await state.redis.incr(key)
    for _ in range(3000):
        if int(await state.redis.get(key) or 0) >= PARTIES:
            return
        await asyncio.sleep(0.01)
    raise SystemExit("the other worker never came")


async def claims(url: str, prefix: str, node: str, seed: int, tasks: int, agents: int,
                 n: int) -> None:
    state = SharedAcdState.from_url(url, node, prefix=prefix)
    rng = random.Random(seed)
    await barrier(state)
    won = []
    for i in range(n):
        t, a = f"t{rng.randrange(tasks)}", f"a{rng.randrange(agents)}"
        offer = f"{node}-o{i}"
        if await state.claim_offer(t, a, offer, fenced=False):
            won.append([t, a, offer])
    print(json.dumps(won))
    await state.redis.aclose()


async def churn(url: str, prefix: str, node: str, seed: int, tasks: int, agents: int,
                n: int) -> None:
    state = SharedAcdState.from_url(url, node, prefix=prefix)
    rng = random.Random(seed)
    await barrier(state)
    counts = {"claimed": 0, "released": 0, "accepted": 0}
    mine: list[tuple[str, str, str]] = []
    for i in range(n):
        roll = rng.random()
        if mine and roll < 0.3:
            t, a, offer = mine.pop(rng.randrange(len(mine)))
            if await state.release_offer(t, offer, fenced=False):
                counts["released"] += 1
        elif mine and roll < 0.4:
            t, a, offer = mine.pop(rng.randrange(len(mine)))
            if await state.accept(t, offer, a):
                counts["accepted"] += 1
                # Transferred straight back to the queue, so the pool never runs dry.
                await state.requeue(t, fenced=False)
        else:
            t, a = f"t{rng.randrange(tasks)}", f"a{rng.randrange(agents)}"
            offer = f"{node}-o{i}"
            if await state.claim_offer(t, a, offer, fenced=False):
                counts["claimed"] += 1
                mine.append((t, a, offer))
    print(json.dumps(counts))
    await state.redis.aclose()


async def victim(url: str, prefix: str, node: str, ttl_ms: int) -> None:
    state = SharedAcdState.from_url(url, node, prefix=prefix, node_ttl_ms=ttl_ms)
    await state.join()
    await state.register_task("chat-offered", "whatsapp", {"queue_id": "support"})
    await state.register_task("chat-assigned", "webchat", {"queue_id": "support"})
    await state.register_task("mail-waiting", "email", {"queue_id": "support"})
    assert await state.claim_offer("chat-offered", "anna", "offer-1")
    assert await state.claim_offer("chat-assigned", "bob", "offer-2")
    assert await state.accept("chat-assigned", "offer-2", "bob")
    await state.schedule_timer('{"kind": "rona", "key": "offer-1"}', 1)
    print("ready", flush=True)
    await asyncio.sleep(3600)


def main(argv: list[str]) -> None:
    mode, url, prefix, node = argv[:4]
    rest = [int(x) for x in argv[4:]]
    if mode == "claims":
        asyncio.run(claims(url, prefix, node, *rest))
    elif mode == "churn":
        asyncio.run(churn(url, prefix, node, *rest))
    elif mode == "victim":
        asyncio.run(victim(url, prefix, node, *rest))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
