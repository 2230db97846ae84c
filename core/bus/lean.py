"""A lean Redis connection for the command a node's bus sends most: each consumer
group's XREADGROUP (with the XACK of what it handled last), once per event and group.

Why not redis-py for it: a node runs about seven consumer groups (ledger, webhooks,
reports, cases, conversations, assist, inbox) and each wakes for every event on the
stream. Profiling node B of `bench/multinode_bench.py --screenpops-only` showed the
groups' redis-py round trips (pool checkout, retry policy, pipeline packing, reply
parsing) at about a sixth of the node's CPU, as much as a third of what the pop's own
case-bundle read costs (issue 22). This connection writes commands packed by hiredis
straight to an asyncio transport and hands the replies to the callers in order.

The same idea as the routing's `queues.shared.lane` (core may not import queues, so
the small reply protocol lives here and the lane uses it). Errors are redis-py's
exception classes (ResponseError, ConnectionError), so the bus's handling of a lost
Redis (retry the group's loop, replay its pending entries) is unchanged. No retry of
its own: a lost connection fails the calls in flight and the next call reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class ReplyProtocol(asyncio.Protocol):
    """Replies in order, each to the oldest caller still waiting."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:  # a stream we cannot follow: drop it
                self._fail(RedisConnectionError(f"Redis protocol error: {exc}"))
                if self.transport is not None:
                    self.transport.abort()
                return
            if reply is False:
                return
            if not self.waiting:
                continue  # a reply to a caller that was failed already
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or RedisConnectionError("Redis closed the connection")
        self._fail(RedisConnectionError(f"connection to Redis lost: {self.lost}"))

    def _fail(self, exc: BaseException) -> None:
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            # Lost between the caller's check and now: nothing would ever answer.
            fut.set_exception(RedisConnectionError(f"connection to Redis lost: {self.lost}"))
            return fut
        self.waiting.append(fut)
        self.transport.write(packed)
        return fut


def usable(redis: Redis) -> bool:
    """Whether a lean connection can stand in for `redis`: plain TCP, no TLS."""
    pool = redis.connection_pool
    kw = pool.connection_kwargs
    return pool.connection_class.__name__ == "Connection" and "path" not in kw \
        and not kw.get("ssl")


class LeanConnection:
    """One TCP connection to the Redis of `redis` (same host, port, database, user,
    password). `call(*commands)` writes them in one go and returns their replies."""

    def __init__(self, redis: Redis) -> None:
        kw = redis.connection_pool.connection_kwargs
        self.host = str(kw.get("host") or "localhost")
        self.port = int(kw.get("port") or 6379)
        self.db = int(kw.get("db") or 0)
        self.username = kw.get("username")
        self.password = kw.get("password")
        # The client's socket timeout applies to each call, as it does in redis-py (a
        # blocking read's BLOCK must stay below it there too); None = wait.
        self.timeout: float | None = kw.get("socket_timeout")
        self.connect_timeout: float | None = kw.get("socket_connect_timeout") \
            or self.timeout
        self._proto: ReplyProtocol | None = None

    async def _connected(self) -> ReplyProtocol:
        proto = self._proto
        if proto is not None and proto.lost is None and proto.transport is not None \
                and not proto.transport.is_closing():
            return proto
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _t, proto = await loop.create_connection(ReplyProtocol, self.host, self.port)
        except TimeoutError:
            raise RedisTimeoutError(f"connecting to Redis {self.host}:{self.port} "
                                    "timed out") from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis {self.host}:"
                                       f"{self.port}: {exc}") from None
        setup: list[tuple[Any, ...]] = []
        if self.password is not None:
            setup.append(("AUTH", self.username, self.password) if self.username
                         else ("AUTH", self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        try:
            for command in setup:
                self._check(await proto.send(hiredis.pack_command(command)))
        except BaseException:
            if proto.transport is not None:
                proto.transport.abort()
            raise
        self._proto = proto
        return proto

    @staticmethod
    def _check(reply: Any) -> Any:
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    async def call(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send the commands back to back (one write) and wait for every reply; the
        first error reply raises ResponseError once all have arrived (so the replies
        after it are not left to the next call)."""
        proto = await self._connected()
        futures = [proto.send(hiredis.pack_command(c)) for c in commands]
        try:
            async with asyncio.timeout(self.timeout):
                replies = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError:
            # Replies behind these could no longer be matched: drop the connection
            # (the next call connects again).
            self._proto = None
            if proto.transport is not None:
                proto.transport.abort()
            raise RedisTimeoutError("Redis did not answer within the socket timeout") \
                from None
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return [self._check(r) for r in replies]

    async def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            with contextlib.suppress(Exception):
                proto.transport.close()
