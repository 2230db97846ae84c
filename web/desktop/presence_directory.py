"""Which nodes hold a desktop websocket of which agent, cluster-wide (Redis).

An agent's browser may reconnect to any node (a node restarting, a load balancer's
choice). Each node writes, per agent whose desktop it holds, its own entry into the
agent's sorted set `<prefix>:desktop:presence:<agent>` — member the node id, score the
time (epoch seconds) until which the entry is valid — and refreshes it every `ttl / 3`
while the socket stays open; it removes the entry when its last socket of the agent
closes. A node that dies stops refreshing and its entries run out after `ttl`.

"Connected anywhere" is then one ZCOUNT of entries still valid: the node where the
desktop closed asks it before it rejects the agent's offers or puts the agent
not-ready, so an agent who moved to another node keeps working. Scores are written
from each node's clock: nodes are expected to keep NTP time (a skew shortens or
lengthens an entry's life by the skew, well inside the TTL of 30 s).

Without Redis (one node) there is nothing to ask: `Presence` works from its own sockets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 30.0


class RedisPresenceDirectory:
    def __init__(self, url: str, *, prefix: str, node_id: str,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = node_id
        self.ttl_seconds = ttl_seconds
        self._redis = None  # redis.asyncio.Redis once started

    def key(self, agent_id: str) -> str:
        return f"{self.prefix}:desktop:presence:{agent_id}"

    async def start(self) -> None:
        from redis.asyncio import Redis

        if self._redis is None:
            self._redis = Redis.from_url(self.url, decode_responses=True)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def install(self, ctx: object) -> None:
        services = getattr(ctx, "services", None)
        if isinstance(services, dict):
            services["desktop_presence"] = self

    async def mark(self, agent_ids: Iterable[str]) -> None:
        """This node holds a desktop of each of these agents (now, and for `ttl`)."""
        agents = list(agent_ids)
        if not agents or self._redis is None:
            return
        until = time.time() + self.ttl_seconds
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent in agents:
                pipe.zadd(self.key(agent), {self.node_id: until})
                # the key itself goes when its last entry would have expired
                pipe.expire(self.key(agent), int(self.ttl_seconds) + 5)
            await pipe.execute()

    async def clear(self, agent_id: str) -> None:
        """This node's last desktop of the agent closed."""
        if self._redis is not None:
            await self._redis.zrem(self.key(agent_id), self.node_id)

    async def connected_elsewhere(self, agent_id: str) -> bool:
        """Another node holds a live desktop of the agent."""
        if self._redis is None:
            return False
        key, now = self.key(agent_id), time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)  # dead nodes' entries
            pipe.zrangebyscore(key, now, "+inf")
            _, nodes = await pipe.execute()
        return any(node != self.node_id for node in nodes)
