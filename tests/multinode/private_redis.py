"""A Redis server of the test's own (never the machine's 6379): started on a port the OS
handed out, with its data in the test's directory and AOF fsynced on every write, so a
test can kill it (-9) and start it again on the same port and data, as an operator's
restart or a crash of the Redis host would do, without touching what other tests use."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    def __init__(self, workdir: Path, password: str | None = None) -> None:
        """`password`: the server requires it (AUTH), and the URL carries it, as a
        production URL would; tests check it never shows."""
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_tcp_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives = 0

    def start(self, timeout: float = 20) -> None:
        """Start (again) on the same port and data directory; returns once it answers
        PING. AOF with `appendfsync always`: a kill -9 loses no acknowledged write, so
        what a restart tests is the nodes' behaviour, not Redis's durability setting."""
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed"
        self.lives += 1
        log = (self.dir / f"redis-{self.lives}.log").open("w")
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--maxmemory-policy", "noeviction", "--protected-mode", "no",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if self.proc.poll() is not None:
                    raise AssertionError(f"redis-server exited: {self.tail()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not answer: {self.tail()}")
                time.sleep(0.05)
        finally:
            client.close()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def tail(self) -> str:
        path = self.dir / f"redis-{self.lives}.log"
        try:
            return path.read_text()[-2000:]
        except OSError:
            return "(no log)"
