"""A lean Redis connection for the commands a routing node sends most: the batch
script's EVALSHA (queues.shared.scripts.BATCH), once per engine flush, and the read of
the agents other nodes changed (queues.shared.scripts.AGENT_STATES), a few times a
second.

Why not redis-py for it: each redis-py call takes a connection from the pool, runs
under a retry policy and a timeout context, and packs and parses through several
layers: about 130 µs of the node's CPU per round trip on the reference box, where the
engine's own work for a whole decision is about the same. This connection writes the
command packed by hiredis straight to an asyncio transport and matches replies to
callers in order (Redis answers in order on one connection, so calls that overlap are
pipelined for free): about 25 µs per round trip, and the node waits less for each.

Semantics kept from redis-py: errors are redis-py's exception classes (ResponseError,
ConnectionError, TimeoutError), the client's `socket_timeout` applies (None = wait),
replies are decoded as UTF-8. Deliberately not kept: redis-py retries a command after a
connection error, which for a script that may have run already could apply it twice;
here a lost connection fails the calls in flight and the next call reconnects.
The reply protocol is the bus's (core.bus.lean), which reads the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.bus.lean import ReplyProtocol as _Protocol


class ScriptLane:
    """One TCP connection to the Redis of `redis` (same host, port, database, user,
    password), for EVALSHA of one main script (`evalsha`) and a few others
    (`evalsha_other`). `usable(redis)` says whether it can be used (plain TCP, no TLS):
    otherwise the caller keeps using redis-py."""

    def __init__(self, redis: Redis, script: str) -> None:
        kw = redis.connection_pool.connection_kwargs
        self.host = str(kw.get("host") or "localhost")
        self.port = int(kw.get("port") or 6379)
        self.db = int(kw.get("db") or 0)
        self.username = kw.get("username")
        self.password = kw.get("password")
        self.timeout: float | None = kw.get("socket_timeout")
        self.connect_timeout: float | None = kw.get("socket_connect_timeout") or self.timeout
        self.redis = redis
        self.script = script
        self.sha: str | None = None
        self._other_shas: dict[str, str] = {}  # script text -> sha (evalsha_other)
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    @staticmethod
    def usable(redis: Redis) -> bool:
        pool = redis.connection_pool
        kw = pool.connection_kwargs
        return pool.connection_class.__name__ == "Connection" and "path" not in kw \
            and not kw.get("ssl")

    async def _connected(self) -> _Protocol:
        proto = self._proto
        if proto is not None and proto.lost is None:
            return proto
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None and self._proto.lost is None:
                return self._proto
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _t, proto = await loop.create_connection(_Protocol, self.host, self.port)
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
                    self._check(await self._wait(proto, proto.send(
                        hiredis.pack_command(command))))
            except BaseException:
                if proto.transport is not None:
                    proto.transport.abort()
                raise
            if self.sha is None:
                self.sha = await self.redis.script_load(self.script)
            self._proto = proto
            return proto

    async def _wait(self, proto: _Protocol, fut: asyncio.Future[Any]) -> Any:
        if self.timeout is None:
            return await fut
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.shield(fut)
        except TimeoutError:
            # Replies behind this one can no longer be matched: drop the connection.
            if proto.transport is not None:
                proto.transport.abort()
            raise RedisTimeoutError("Redis did not answer within the socket timeout") \
                from None

    @staticmethod
    def _check(reply: Any) -> Any:
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            if message.startswith("NOSCRIPT"):
                raise NoScriptError(message)
            raise ResponseError(message)
        return reply

    async def evalsha(self, *args: Any) -> Any:
        """EVALSHA of the script with no keys and `args`; its reply. The script is
        loaded again when Redis lost it (a restart): NOSCRIPT means it did not run."""
        for attempt in range(2):
            proto = await self._connected()
            assert self.sha is not None
            reply = await self._wait(proto, proto.send(
                hiredis.pack_command(("EVALSHA", self.sha, 0, *args))))
            try:
                return self._check(reply)
            except NoScriptError:
                if attempt:
                    raise
                self.sha = await self.redis.script_load(self.script)
        raise AssertionError("unreachable")

    async def evalsha_other(self, script: str, *args: Any) -> Any:
        """EVALSHA of another script (loaded on first use, and again after NOSCRIPT)
        with no keys and `args`, on the same connection: calls stay in the order they
        were made, with the main script's."""
        for attempt in range(2):
            proto = await self._connected()
            sha = self._other_shas.get(script)
            if sha is None:
                sha = self._other_shas[script] = await self.redis.script_load(script)
            reply = await self._wait(proto, proto.send(
                hiredis.pack_command(("EVALSHA", sha, 0, *args))))
            try:
                return self._check(reply)
            except NoScriptError:
                if attempt:
                    raise
                self._other_shas.pop(script, None)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            with contextlib.suppress(Exception):
                proto.transport.close()
