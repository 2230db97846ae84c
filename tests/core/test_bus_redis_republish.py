"""A publish whose reply is lost after Redis added the entry is retried without a second
entry (core.bus.redis, REPUBLISH): the event is in the stream once.

A TCP proxy of the test's own sits between the bus and the real Redis. While it
"drops replies", it forwards the bus's commands to Redis and, when Redis's reply comes
back (proof that Redis ran the command), closes the bus's connection instead of
passing the reply on: the bus sees a lost connection for an XADD that did land.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import pytest
import redis.asyncio as aioredis

from core.bus.redis import RedisStreamsBus
from core.events import Event

pytestmark = [pytest.mark.redis]


class ReplyDroppingProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.drop_replies = False
        self.dropped = asyncio.Event()  # a reply Redis sent was withheld
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in self.writers:
                writer.transport.abort()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers |= {writer, up_writer}

        async def to_redis() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                if self.drop_replies:
                    self.dropped.set()
                    writer.transport.abort()  # the bus never sees this reply
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(to_redis()), asyncio.create_task(to_client())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            w.transport.abort()


async def entries_of(client: aioredis.Redis, stream: str, event_id: str) -> int:
    return sum(1 for _id, fields in await client.xrange(stream)
               if json.loads(fields["e"])["event_id"] == event_id)


async def test_a_publish_that_reached_redis_is_not_added_twice(redis_url: str) -> None:
    direct = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pool = direct.connection_pool.connection_kwargs
    proxy = ReplyDroppingProxy(pool.get("host", "127.0.0.1"), pool.get("port", 6379))
    await proxy.start()
    db = pool.get("db", 0)
    prefix = f"republish-{uuid.uuid4().hex[:8]}"
    bus = RedisStreamsBus(f"redis://127.0.0.1:{proxy.port}/{db}", prefix=prefix)
    await bus.start()
    try:
        await bus.publish(Event("test.before", {"n": 0}))
        proxy.drop_replies = True
        lost = Event("test.lost_reply", {"n": 1})
        assert await bus.publish(lost) == ""  # failed as far as the bus knows: queued
        await asyncio.wait_for(proxy.dropped.wait(), 10)
        assert await entries_of(direct, bus.stream, lost.event_id) == 1  # it landed
        assert bus.backlog == 1
        proxy.drop_replies = False
        after = Event("test.after", {"n": 2})
        await bus.publish(after)  # queued behind the retry, in order

        assert bus._backlog_task is not None  # the drain ends when the backlog is empty
        await asyncio.wait_for(asyncio.shield(bus._backlog_task), 20)
        assert bus.backlog == 0
        assert await entries_of(direct, bus.stream, lost.event_id) == 1
        assert bus.republished_found == 1
        topics = [json.loads(f["e"])["topic"] for _i, f in await direct.xrange(bus.stream)]
        assert topics == ["test.before", "test.lost_reply", "test.after"]
    finally:
        await bus.stop()
        await proxy.stop()
        await direct.delete(f"{prefix}:events")
        await direct.aclose()


async def test_a_publish_that_never_reached_redis_is_added_on_retry(redis_url: str) -> None:
    """The same path when the first attempt did not land: the retry adds it, once."""
    direct = aioredis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"republish-{uuid.uuid4().hex[:8]}"
    bus = RedisStreamsBus(redis_url, prefix=prefix)
    await bus.start()
    try:
        event = Event("test.retried", {"n": 1})
        bus._attempted[event.event_id] = time.monotonic() - 1.0  # as after a failure
        await bus.publish(event)
        assert await entries_of(direct, bus.stream, event.event_id) == 1
        assert bus.republished_found == 0
    finally:
        await bus.stop()
        await direct.delete(f"{prefix}:events")
        await direct.aclose()
