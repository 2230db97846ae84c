"""Phones' registrations visible to every node of a cluster.

A phone registers at whichever node the proxy or DNS sent it to, but the call for its
agent may arrive at, and be routed by, another node. Each node keeps its own
`Registrar` (authoritative for the REGISTERs it answered) and mirrors its UDP bindings
here, in Redis; a node with no local binding for an agent looks here and rings the phone
itself, from its own address, so the media stays on the node that holds the caller.

Only UDP bindings are shared: a TCP binding is a connection held by the node that
accepted it. A phone behind a NAT that only lets its registrar's address in cannot be
rung from another node; register such phones through a SIP proxy, or run the Asterisk
deployment (docs/deploy.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis

from pbx_bridge.sip.registrar import Binding
from pbx_bridge.sip.transport import Peer

log = logging.getLogger(__name__)


class SharedRegistrations:
    """`<prefix>:sip:reg:<username>`: a hash, contact URI -> JSON (address, expiry as
    epoch seconds, node). The key expires with its longest-lived binding."""

    def __init__(self, redis: Redis, *, node_id: str, prefix: str = "centrale",
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.node_id = node_id
        self.prefix = prefix
        self._clock = clock  # the Registrar's clock: Binding.expires_at is on it
        self._wall = wall

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> SharedRegistrations:
        return cls(Redis.from_url(url, decode_responses=True), **kwargs)  # type: ignore[arg-type]

    def key(self, username: str) -> str:
        return f"{self.prefix}:sip:reg:{username}"

    async def publish(self, username: str, bindings: list[Binding]) -> None:
        """Make this node's current bindings of `username` the ones others see; the
        bindings other nodes published for the same user stay."""
        key = self.key(username)
        offset = self._wall() - self._clock()
        mine = {b.contact: json.dumps({
                    "host": b.peer.host, "port": b.peer.port,
                    "expires": b.expires_at + offset, "node": self.node_id})
                for b in bindings if b.peer.transport == "UDP"}
        stored = await self.redis.hgetall(key)
        stale = [contact for contact, raw in stored.items()
                 if contact not in mine and _node_of(raw) == self.node_id]
        pipe = self.redis.pipeline(transaction=True)
        if stale:
            pipe.hdel(key, *stale)
        if mine:
            pipe.hset(key, mapping=mine)
        expiries = [json.loads(v)["expires"] for v in mine.values()]
        expiries += [_expires_of(raw) for c, raw in stored.items()
                     if c not in mine and c not in stale]
        latest = max(expiries, default=0.0)
        if latest > self._wall():
            pipe.pexpireat(key, int(latest * 1000) + 1000)
        else:
            pipe.delete(key)
        await pipe.execute()

    async def lookup(self, username: str) -> list[Binding]:
        """Live bindings of `username` published by other nodes, as local `Binding`s
        (most recently registered first is not known across nodes: longest-lived
        first)."""
        now_wall, now = self._wall(), self._clock()
        out: list[Binding] = []
        for contact, raw in (await self.redis.hgetall(self.key(username))).items():
            try:
                entry = json.loads(raw)
                if entry["node"] == self.node_id or entry["expires"] <= now_wall:
                    continue
                expires_at = now + (entry["expires"] - now_wall)
                out.append(Binding(contact, expires_at, Peer("UDP", str(entry["host"]),
                                                              int(entry["port"])),
                                   call_id="", cseq=0, updated_at=now))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring a malformed shared registration of %s", username)
        out.sort(key=lambda b: b.expires_at, reverse=True)
        return out

    async def close(self) -> None:
        await self.redis.aclose()


def _node_of(raw: str) -> str | None:
    try:
        return str(json.loads(raw)["node"])
    except (ValueError, KeyError, TypeError):
        return None


def _expires_of(raw: str) -> float:
    try:
        return float(json.loads(raw)["expires"])
    except (ValueError, KeyError, TypeError):
        return 0.0
