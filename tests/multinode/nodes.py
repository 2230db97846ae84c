"""The multi-node tests' `centrale run` processes (tests/node_process.py) and the small
client steps those tests share (log in, a Redis database of their own)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from yarl import URL

from tests.node_process import REPO, NodeProcess

__all__ = ["REPO", "NodeProcess", "login", "redis_database", "run_centrale"]


def run_centrale(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "centrale", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


async def login(http: aiohttp.ClientSession, base: str, user: str) -> None:
    """The browser's log-in: the form's CSRF cookie, then the POST (demo password)."""
    async with http.get(f"{base}/login") as resp:
        assert resp.status == 200
    csrf = http.cookie_jar.filter_cookies(URL(f"{base}/login"))["centrale_login_csrf"].value
    async with http.post(f"{base}/login", allow_redirects=False, data={
            "username": user, "password": "demo", "csrf_token": csrf, "next": ""}) as resp:
        assert resp.status == 302, await resp.text()


@asynccontextmanager
async def redis_database(url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the nodes' Redis database, with the site's keys cleared before and
    after: the bus's stream (`centrale:events`) and the shared ACD's (`{centrale}:acd:…`),
    whose agent presence a node adopts when it starts. The default prefix is fixed, so
    each test file uses its own database number."""
    client = aioredis.Redis.from_url(url, decode_responses=True)

    async def clear() -> None:
        keys = [k for pattern in ("centrale:*", "{centrale}:*")
                async for k in client.scan_iter(pattern)]
        if keys:
            await client.delete(*keys)

    await clear()
    try:
        yield client
    finally:
        await clear()
        await client.aclose()
