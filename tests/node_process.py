"""A `centrale run` process for the tests that need the real command: started on an
ephemeral port, its URL read from the JSON log, stopped for certain in the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class NodeProcess:
    def __init__(self, name: str, workdir: Path, config: Path, env: dict[str, str],
                 port: int = 0) -> None:
        """`port` 0: one from the OS; a fixed one lets a restarted node keep its
        address behind a proxy."""
        self.name = name
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self.pid_file = workdir / f"{name}.pid"
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "centrale", "run", "--config", str(config),
             "--port", str(port),
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

    def get(self, path: str) -> tuple[int, bytes]:
        """A plain GET on the node (status, body), for tests without an HTTP client."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
