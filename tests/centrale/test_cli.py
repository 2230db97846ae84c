"""The `centrale` command as an operator uses it: real processes, real databases."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.node_process import NodeProcess

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo"


def centrale(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "centrale", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd or REPO,
                          timeout=120, input=input)


def start_node(tmp_path: Path, config: Path, env: dict[str, str] | None = None) -> NodeProcess:
    """`centrale run` in tmp_path: its log is node.log, its pid file node.pid."""
    return NodeProcess("node", tmp_path, config, env or {})


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "cfg"
    shutil.copytree(DEMO, dest)
    # The embedded SIP core is exercised by its own tests; keep this node to HTTP.
    text = (dest / "centrale.yaml").read_text().replace("sip:\n    enabled: true",
                                                        "sip:\n    enabled: false")
    (dest / "centrale.yaml").write_text(text)
    return dest


def test_check_config_ok_and_invalid(tmp_path: Path) -> None:
    ok = centrale("check-config", str(DEMO))
    assert ok.returncode == 0, ok.stderr
    assert "2 queues, 4 agents" in ok.stdout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "q.yaml").write_text("queues:\n  - id: sales\n    strategy: random\n")
    res = centrale("check-config", str(bad))
    assert res.returncode == 2
    assert "q.yaml:3: queues[sales].strategy:" in res.stderr


def test_run_serves_health_and_metrics_then_stops_cleanly_on_sigterm(
        tmp_path: Path, demo_copy: Path) -> None:
    node = start_node(tmp_path, demo_copy)
    try:
        node.wait_listening()
        status, body = node.get("/healthz")
        assert status == 200 and json.loads(body)["checks"]["database"] == "ok"
        status, body = node.get("/metrics")
        assert status == 200 and b"centrale_http_requests_total" in body
        assert (tmp_path / "var" / "centrale.db").exists()
    finally:
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=20) == 0
    assert '"centrale stopped"' in node.log.read_text()
    assert not node.pid_file.exists()


def test_reload_keeps_the_old_config_when_the_new_one_is_invalid(
        tmp_path: Path, demo_copy: Path) -> None:
    node = start_node(tmp_path, demo_copy)
    try:
        node.wait_listening()
        acd = demo_copy / "acd.yaml"
        acd.write_text(acd.read_text().replace("strategy: longest_idle", "strategy: fastest"))
        res = centrale("reload", "--pid-file", str(node.pid_file))
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 10
        while "config reload rejected" not in node.log.read_text():
            assert time.monotonic() < deadline, node.log.read_text()
            time.sleep(0.1)
        assert node.proc.poll() is None, "an invalid reload must not stop the node"
        assert node.get("/healthz")[0] == 200
        assert "acd.yaml:" in node.log.read_text()
        _, metrics = node.get("/metrics")
        assert b'centrale_config_reloads_total{result="rejected"} 1.0' in metrics

        acd.write_text(acd.read_text().replace("strategy: fastest", "strategy: round_robin"))
        os.kill(node.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while '"config reloaded"' not in node.log.read_text():
            assert time.monotonic() < deadline, node.log.read_text()
            time.sleep(0.1)
    finally:
        node.proc.send_signal(signal.SIGTERM)
        node.proc.wait(timeout=20)


def test_run_refuses_an_invalid_config_with_exit_2(tmp_path: Path, demo_copy: Path) -> None:
    (demo_copy / "numbers.yaml").write_text("numbers:\n  - {number: '123', flow: nowhere}\n")
    res = centrale("run", "--config", str(demo_copy), "--port", "0", cwd=tmp_path)
    assert res.returncode == 2
    assert "numbers.yaml:2: numbers[123].flow: unknown flow 'nowhere'" in res.stderr
    assert "nothing was started" in res.stderr


@pytest.fixture
def empty_pg(postgres_url: str) -> str:
    url = postgres_url.rsplit("/", 1)[0] + "/centrale_cli_" + str(os.getpid())
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def test_postgres_schema_too_old_names_the_fix_then_upgrade_runs(
        tmp_path: Path, demo_copy: Path, empty_pg: str) -> None:
    env = {"CENTRALE_DATABASE_URL": empty_pg}
    res = centrale("run", "--config", str(demo_copy), "--port", "0", env=env, cwd=tmp_path)
    assert res.returncode == 1
    assert "run `centrale db upgrade`" in res.stderr
    up = centrale("db", "upgrade", "--config", str(demo_copy), env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert "schema at head" in up.stdout and "centrale-test" not in up.stdout
    check = centrale("db", "check", "--config", str(demo_copy), env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr

    node = start_node(tmp_path, demo_copy, env=env)
    try:
        node.wait_listening()
        assert node.get("/healthz")[0] == 200
    finally:
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=20) == 0


def test_unreachable_database_is_a_clear_error(tmp_path: Path, demo_copy: Path) -> None:
    env = {"CENTRALE_DATABASE_URL": "postgresql://centrale:hunter2@127.0.0.1:1/centrale"}
    res = centrale("run", "--config", str(demo_copy), "--port", "0", env=env, cwd=tmp_path)
    assert res.returncode == 1
    assert "cannot reach the database" in res.stderr
    assert "hunter2" not in res.stderr, "secrets are never logged"


def test_unreachable_redis_is_a_clear_error(tmp_path: Path, demo_copy: Path) -> None:
    """CENTRALE_REDIS_URL set but nothing listens: the node names the URL (without its
    password) and exits non-zero instead of routing without the shared state."""
    import socket

    with socket.socket() as probe:  # a port the OS just handed out, closed again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"CENTRALE_REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0",
           "CENTRALE_LOG_FORMAT": "text"}
    res = centrale("run", "--config", str(demo_copy), "--port", "0", env=env, cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in res.stderr
    assert "hunter2" not in res.stderr, "secrets are never logged"
    assert "Traceback" not in res.stderr


def test_merge_and_unmerge_from_the_cli(tmp_path: Path, demo_copy: Path) -> None:
    import asyncio

    from cases import CaseService, IdentityRef
    from centrale.schema import upgrade
    from core.bus import InMemoryBus
    from core.clock import SystemClock
    from core.db import Database, sqlite_url

    db_path = tmp_path / "var" / "centrale.db"
    db_path.parent.mkdir()
    upgrade(sqlite_url(db_path))

    async def two_customers() -> tuple[str, str]:
        db = Database(sqlite_url(db_path))
        cs = CaseService(db, InMemoryBus(), SystemClock(), default_region="NL")
        a = await cs.resolve(IdentityRef("phone", "0612345678"))
        b = await cs.resolve(IdentityRef("email", "jan@example.nl"))
        await db.dispose()
        return a.customer.id, b.customer.id

    a, b = asyncio.run(two_customers())
    res = centrale("merge", b, a, "--actor", "sam", "--config", str(demo_copy), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    merge_id = res.stdout.split("merge id ")[1].split()[0]
    res = centrale("merge", b, a, "--config", str(demo_copy), cwd=tmp_path)
    assert res.returncode == 1 and "already merged" in res.stderr
    res = centrale("unmerge", merge_id, "--config", str(demo_copy), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = centrale("unmerge", "nope", "--config", str(demo_copy), cwd=tmp_path)
    assert res.returncode == 1 and "merge nope not found" in res.stderr


def test_hash_password_prints_an_argon2_hash() -> None:
    res = centrale("hash-password", input="s3cret\n")
    assert res.returncode == 0
    from argon2 import PasswordHasher

    assert PasswordHasher().verify(res.stdout.strip(), "s3cret")


async def test_sigterm_closes_open_desktops_with_going_away_without_waiting(
        tmp_path: Path, demo_copy: Path) -> None:
    """Issue 18, defect 10: open desktop websockets used to hold SIGTERM for the whole
    shutdown timeout (21 s). They are now closed first, with 1001, and the node exits."""
    import asyncio
    import re

    import aiohttp

    node = start_node(tmp_path, demo_copy)
    try:
        url = await asyncio.to_thread(node.wait_listening)
        sockets = []
        for user in ("anna", "admin"):
            session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            page = await (await session.get(url + "/login")).text()
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert csrf
            resp = await session.post(url + "/login", data={
                "username": user, "password": "demo", "csrf_token": csrf.group(1)},
                allow_redirects=False)
            assert resp.status == 302, await resp.text()
            ws = await session.ws_connect(url + "/ws", headers={"Origin": url})
            assert (await ws.receive_json(timeout=10))["type"] == "hello"
            sockets.append((session, ws))
        started = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        for _, ws in sockets:
            while not ws.closed:
                await ws.receive(timeout=15)  # state pushes, then the close frame
            assert ws.close_code == 1001
        code = await asyncio.to_thread(node.proc.wait, 20)
        took = time.monotonic() - started
        for session, _ in sockets:
            await session.close()
        assert code == 0
        # below aiohttp's 10 s shutdown timeout: nothing waited for the sockets
        assert took < 8, f"shutdown took {took:.1f} s"
        print(f"SIGTERM with 2 open desktops: exited in {took:.2f} s")
    finally:
        node.stop()
