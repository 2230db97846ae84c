"""Attach shared ACD state to a node's engine: what `centrale/wiring.py` calls when
CENTRALE_REDIS_URL is set.

    service = attach_shared_state(acd, redis_url, node_id=..., prefix=...)
    await service.start()   # join (lease), publish agents, recover, sync, take over
    ...
    await service.stop()    # after the engine's loop stopped: leave, release the lease

`start` adopts what a previous life of the same node id left behind; then, a few times
a second, it reads back what other nodes did with the shared agents (remote load,
presence) and, once a second, takes over the tasks of nodes whose lease expired. It
also answers the calls other nodes forward to this one (an agent connected there
accepting or completing a task this node owns).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError

from core.tasks import raise_if_cancelling
from queues.shared.state import SharedAcdState

log = logging.getLogger(__name__)


def acd_prefix(redis_prefix: str) -> str:
    """The ACD's key prefix under the site's Redis prefix, as one hash tag (all keys
    in one Redis Cluster slot, which the scripts need). A prefix that carries its own
    hash tag already (`site-{a}`) is kept as it is."""
    if "{" in redis_prefix and "}" in redis_prefix:
        return f"{redis_prefix}:acd:"
    return f"{{{redis_prefix}}}:acd:"


class SharedAcdService:
    """Start/stop of one node's shared ACD state around its `AcdEngine`."""

    def __init__(self, engine: Any, state: SharedAcdState, *,
                 sync_interval_s: float = 0.25, takeover_interval_s: float = 1.0) -> None:
        self.engine = engine
        self.state = state
        self.sync_interval_s = sync_interval_s
        self.takeover_interval_s = takeover_interval_s
        self._sync: asyncio.Task[None] | None = None
        self._calls: asyncio.Task[None] | None = None
        self._rejoin: asyncio.Task[None] | None = None
        state.on_fenced = self._fenced
        clock = getattr(engine, "clock", None)
        if clock is not None:  # adoptions stamped on the engine's time line
            state.clock = clock

    async def start(self) -> None:
        recovered = await self.state.join()
        for agent_id, capacity, exclusive in self.engine.shared_agents():
            await self.state.set_agent(agent_id, capacity, voice_exclusive=exclusive)
        if recovered:
            adopted = await self.engine.adopt(self.state.node_id, recovered)
            log.warning("recovered %d task(s) of a previous life of node %s",
                        len(adopted), self.state.node_id)
        await self.engine.sync_remote()
        self._sync = asyncio.create_task(self._sync_loop(), name="acd-shared-sync")
        self._calls = asyncio.create_task(self.state.serve_calls(self.engine.serve_forwarded),
                                          name="acd-forwarded-calls")
        self.state.start_takeover(self._adopted, interval_s=self.takeover_interval_s)

    async def _adopted(self, node: str, tasks: list[Any]) -> None:
        adopted = await self.engine.adopt(node, tasks)
        log.warning("adopted %d task(s) of dead node %s", len(adopted), node)

    async def _fenced(self) -> None:
        """The lease was lost (a pause longer than its TTL, a Redis outage): another node
        has adopted, or will adopt, this node's tasks. Drop them here and join again as a
        fresh node; what nobody adopted yet comes back through `join`."""
        dropped = self.engine.forget_tasks()
        log.error("node %s was fenced: dropped %d task(s) another node adopts; rejoining",
                  self.state.node_id, dropped)
        if self._rejoin is None or self._rejoin.done():
            self._rejoin = asyncio.create_task(self._join_again(), name="acd-rejoin")

    async def _join_again(self) -> None:
        for attempt in range(60):
            try:
                recovered = await self.state.join()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rejoin failed (attempt %d); retrying", attempt + 1)
                await asyncio.sleep(1)
                continue
            if recovered:
                await self.engine.adopt(self.state.node_id, recovered)
            await self.engine.sync_remote()
            return

    async def _sync_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.sync_interval_s)
            try:
                await self.engine.sync_remote()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                if not failing:  # once per outage, not four times a second
                    log.error("shared ACD state: Redis does not answer (%s); no new "
                              "offers until it is back", exc)
                failing = True
                continue
            except Exception:
                log.exception("shared ACD sync failed; retrying")
                continue
            if failing:
                log.warning("shared ACD state: Redis answers again; routing resumes")
                failing = False

    async def stop(self, *, release: bool = True) -> None:
        """Stop syncing and leave. With release (the default), the lease goes at once
        and another node adopts what this one still owned without waiting for its TTL."""
        self.state.stop_serving()
        for task in (self._sync, self._calls, self._rejoin):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sync = self._calls = self._rejoin = None
        await self.state.leave(release=release)
        await self.state.redis.aclose()


def attach_shared_state(engine: Any, redis_url: str, *, node_id: str, prefix: str,
                        node_ttl_ms: int = 3000) -> SharedAcdService:
    """Give `engine` a `SharedAcdState` on `redis_url` (keys under `acd_prefix(prefix)`)
    and return the service that joins and leaves with the node. Synchronous, so the
    composition root can call it while it builds the services."""
    state = SharedAcdState.from_url(redis_url, node_id, prefix=acd_prefix(prefix),
                                    node_ttl_ms=node_ttl_ms)
    engine.attach_shared(state)
    return SharedAcdService(engine, state)
