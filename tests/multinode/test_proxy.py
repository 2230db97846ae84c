"""docker/proxy/nginx.conf in front of two `centrale run` processes, with the real nginx:
the compose topology without Docker. Requests are balanced over both nodes, log-in and
the websocket upgrade work through the proxy, and after kill -9 of one node every request
is still answered (nginx retries the other node) and the websocket reconnects."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.multinode.nodes import REPO, NodeProcess, login, redis_database, run_centrale

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

NGINX_CONF = REPO / "docker" / "proxy" / "nginx.conf"
REDIS_DB_URL = os.environ.get("CENTRALE_TEST_PROXY_REDIS_URL", "redis://127.0.0.1:6379/10")


def nginx() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                     else None)
    assert path, "nginx not found: apt-get install nginx-light (scripts/test installs it)"
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_conf(nodes: list[NodeProcess], port: int, workdir: Path) -> Path:
    """The compose file's proxy config, pointed at local processes: the node names become
    their addresses, and Docker's DNS resolver (and `resolve`, which needs it and nginx
    1.27.3+) goes. Everything else is tested as shipped."""
    conf = NGINX_CONF.read_text()
    conf = conf.replace("resolver 127.0.0.11 valid=5s ipv6=off;", "")
    conf = conf.replace(" resolve;", ";")
    for node in nodes:
        conf = conf.replace(f"server {node.name}:8080", f"server {node.url.split('//')[1]}")
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("pid /tmp/nginx.pid;", f"pid {workdir / 'nginx.pid'};")
    assert "centrale-1:8080" not in conf and f"127.0.0.1:{port}" in conf
    (workdir / "logs").mkdir(exist_ok=True)
    path = workdir / "nginx.conf"
    path.write_text(conf)
    return path


async def nodes_answering(http: aiohttp.ClientSession, base: str, n: int) -> list[str]:
    names = []
    for _ in range(n):
        async with http.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=10)) as r:
            assert r.status == 200, await r.text()
            names.append((await r.json())["node"])
    return names


async def test_nginx_balances_upgrades_websockets_and_survives_a_dead_node(
        tmp_path: Path, site_config: Path, fresh_database_url: str) -> None:
    env = {"CENTRALE_DATABASE_URL": fresh_database_url, "CENTRALE_REDIS_URL": REDIS_DB_URL}
    upgraded = await asyncio.to_thread(run_centrale, "db", "upgrade", "--config",
                                       str(site_config), env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    async with redis_database(REDIS_DB_URL):
        nodes = [NodeProcess(name, tmp_path / name, site_config, env)
                 for name in ("centrale-1", "centrale-2")]
        proxy: asyncio.subprocess.Process | None = None
        try:
            for node in nodes:
                await asyncio.to_thread(node.wait_listening)
            port = free_port()
            conf = local_conf(nodes, port, tmp_path)
            checked = await asyncio.to_thread(
                subprocess.run, [nginx(), "-t", "-p", str(tmp_path), "-c", str(conf)],
                capture_output=True, text=True, timeout=30)
            assert checked.returncode == 0, checked.stderr
            proxy = await asyncio.create_subprocess_exec(
                nginx(), "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                async with asyncio.timeout(20):
                    while True:  # nginx is up once it answers
                        try:
                            await nodes_answering(http, base, 1)
                            break
                        except aiohttp.ClientConnectionError:
                            await asyncio.sleep(0.1)
                assert set(await nodes_answering(http, base, 6)) == \
                    {"centrale-1", "centrale-2"}  # round robin, no stickiness

                await login(http, base, "sam")
                async with http.ws_connect(f"{base}/ws") as ws:
                    hello = json.loads((await ws.receive(timeout=15)).data)
                    assert hello["type"] == "hello"
                    await asyncio.to_thread(nodes[0].kill9)
                    # Every request is answered: a refused connection is retried on the
                    # other node, then centrale-1 is skipped for fail_timeout.
                    assert set(await nodes_answering(http, base, 6)) == {"centrale-2"}
                # The desktop reconnects: through the proxy, to the live node, with the
                # same session (it is in PostgreSQL, not in the dead node).
                async with http.ws_connect(f"{base}/ws") as ws:
                    hello = json.loads((await ws.receive(timeout=15)).data)
                    assert hello["type"] == "hello" and hello["user"]["username"] == "sam"
        except BaseException:
            for node in nodes:
                print(f"---- {node.name} log tail ----\n{node.tail()}")
            raise
        finally:
            if proxy is not None and proxy.returncode is None:
                proxy.terminate()
                try:
                    await asyncio.wait_for(proxy.wait(), 10)
                except TimeoutError:
                    proxy.kill()
                    await proxy.wait()
            for node in nodes:
                await asyncio.to_thread(node.stop)
