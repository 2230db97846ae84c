"""Running `centrale run` processes for the multi-node tests: start on an ephemeral
port, read the URL from the JSON log, kill for certain in the end; and the small client
steps those tests share (log in, a Redis database of their own)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from yarl import URL

REPO = Path(__file__).resolve().parents[2]


class NodeProcess:
    def __init__(self, name: str, workdir: Path, config: Path, env: dict[str, str]) -> None:
        self.name = name
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self.pid_file = workdir / f"{name}.pid"
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "centrale", "run", "--config", str(config),
             "--port", "0",
             "--pid-file", str(self.pid_file)],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"), cwd=workdir,
            env={**os.environ, "PYTHONPATH": str(REPO), "CENTRALE_LOG_FORMAT": "json",
                 "CENTRALE_NODE_ID": name, **env})
        self.url = ""

    def wait_listening(self, timeout: float = 45) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if '"centrale listening"' in line:
                    self.url = json.loads(line)["url"]
                    return self.url
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not start:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


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
