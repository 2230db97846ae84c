"""Leases in Redis: `SET key token NX PX ttl` to take one, a compare-and-expire script
to renew it, a compare-and-delete script to give it back. Only the holder (the one who
knows the random token) can renew or release; when the holder dies the key expires and
anyone may take it. That is how a node owns its tasks and timers (its node lease) and
how a singleton job (a callback dialer, the stats publisher) runs on exactly one node.

A lease is only as good as its renewal: `LeaseKeeper` renews every held lease at a
third of its TTL and reports a lease it failed to renew, so the holder stops acting on
what it no longer owns (fencing; the scripts in queues.shared.state check the token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.tasks import raise_if_cancelling
from queues.shared.scripts import RELEASE_LEASE, RENEW_LEASE, REVIVE_LEASE

log = logging.getLogger(__name__)

LostHandler = Callable[["Lease"], Awaitable[None]]


class Lease:
    """One lease on one key. `token` identifies this holder; it is never reused."""

    def __init__(self, redis: Redis, key: str, ttl_ms: int, *, token: str | None = None,
                 revive_in: tuple[str, str] | None = None) -> None:
        """`revive_in` (set key, member): a lease that expired while Redis was away may
        be taken again with the same token as long as `member` is still in the set
        (queues.shared.scripts.REVIVE_LEASE): a node's lease, which nobody adopted."""
        if ttl_ms < 100:
            raise ValueError("a lease TTL under 100 ms cannot be renewed reliably")
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl_ms)
        self.token = token or secrets.token_hex(16)
        self.held = False
        self.renewed_at: float | None = None  # loop time of the last successful renew
        self.revive_in = revive_in
        self.revived = 0  # times the lease was taken again after it expired
        self._renew = redis.register_script(RENEW_LEASE)
        self._revive = redis.register_script(REVIVE_LEASE)
        self._release = redis.register_script(RELEASE_LEASE)

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it. True = held now."""
        self.held = bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))
        if self.held:
            self.renewed_at = asyncio.get_running_loop().time()
        return self.held

    async def renew(self) -> bool:
        """Push the expiry out by one TTL; False = the lease was lost (expired and maybe
        taken by someone else): stop acting as its holder."""
        if self.revive_in is None:
            ok = bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        else:
            set_key, member = self.revive_in
            answer = int(await self._revive(keys=[self.key, set_key],
                                            args=[self.token, self.ttl_ms, member]))
            ok = answer > 0
            if answer == 2:
                self.revived += 1
                log.warning("lease %s expired while Redis was away; taken again (nobody "
                            "had adopted it)", self.key)
        self.held = ok
        if ok:
            self.renewed_at = asyncio.get_running_loop().time()
        return ok

    async def release(self) -> bool:
        was = bool(await self._release(keys=[self.key], args=[self.token]))
        self.held = False
        return was

    async def holder(self) -> str | None:
        """The current holder's token, whoever that is (None = free)."""
        value = await self.redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


class LeaseKeeper:
    """Renews leases in the background. A lease it cannot renew is dropped from the set
    and handed to `on_lost`. While Redis does not answer, a node lease (`revive_in`) is
    not given up: whether it is lost is known only when Redis answers again (it may be
    revived then, see `Lease`), and meanwhile its holder can change nothing in Redis
    anyway. A plain lease (a singleton job) is given up once its TTL has run out, as
    another holder may take it the moment Redis is back. `back_at` is the loop time
    Redis last answered again after failing."""

    def __init__(self, on_lost: LostHandler | None = None) -> None:
        self._leases: dict[str, Lease] = {}
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self.failing = False
        self.back_at: float | None = None

    def add(self, lease: Lease) -> None:
        self._leases[lease.key] = lease

    def discard(self, lease: Lease) -> None:
        self._leases.pop(lease.key, None)

    @property
    def leases(self) -> list[Lease]:
        return list(self._leases.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lease-keeper")

    async def stop(self, *, release: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if release:
            for lease in self.leases:
                with contextlib.suppress(RedisError):
                    await lease.release()
        self._leases.clear()

    async def renew_all(self) -> list[Lease]:
        """One renewal round; returns the leases that were lost."""
        lost: list[Lease] = []
        loop = asyncio.get_running_loop()
        for lease in self.leases:
            try:
                ok = await lease.renew()
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                if not self.failing:
                    log.warning("lease %s: renewal failed (%s); retrying", lease.key, exc)
                self.failing = True
                last = lease.renewed_at if lease.renewed_at is not None else loop.time()
                if lease.revive_in is not None or loop.time() - last < lease.ttl_ms / 1000:
                    continue  # cannot tell yet: a node lease waits for Redis to answer
                # A plain lease (a singleton job) is given up once its TTL must have run
                # out: another holder may take it as soon as Redis is back.
                ok = False
            else:
                if self.failing:
                    self.failing = False
                    self.back_at = loop.time()
            if not ok:
                lost.append(lease)
                self.discard(lease)
                log.error("lease %s lost", lease.key)
                if self._on_lost is not None:
                    try:
                        await self._on_lost(lease)
                    except Exception:
                        log.exception("lease-lost handler failed for %s", lease.key)
        return lost

    async def _run(self) -> None:
        while True:
            interval = min((lease.ttl_ms for lease in self.leases), default=3000) / 3000
            await asyncio.sleep(interval)
            await self.renew_all()
