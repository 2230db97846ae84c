"""Call control across two nodes: the call's media is on node A (embedded SIP core),
anna's desktop talks to node B. Both are whole composition roots (`wire` + `Node`)
sharing a real PostgreSQL and a real Redis (bus, ACD state, request/reply); the caller
is sipp, anna's phone a pyVoIP tone phone, and what the caller hears is checked by FFT.

- hold / view / resume through node B are forwarded to node A and act on the call
  (the caller hears music, then anna again);
- the checks run on the owner: bram (another agent) gets 403 through node B;
- node A not answering (its request/reply service stopped) → 503 from node B within
  the ack timeout, and the call is unchanged;
- after the call ended on node A, node B says 409, not 404."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.multinode.nodes import REPO, NodeProcess, run_centrale
from tests.waiting import wait_until

sys.path.insert(0, str(REPO / "tests" / "pbx_bridge" / "sip"))  # sip_testkit

from tests.e2e.conftest import SITE
from tests.e2e.test_call_control_e2e import ANNA, CALLER, MUSIC, Desk, assert_hears
from tests.e2e.tone_parties import ToneCallerMedia, TonePhone, caller_scenario

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.sipp]


def write_site(tmp_path: Path) -> Path:
    import shutil

    cfg = tmp_path / "site"
    cfg.mkdir()
    text = SITE.replace("DBPATH", str(tmp_path / "unused.db")).replace(
        "GRAPHURL", "http://127.0.0.1:9").replace("TRUNKPORT", "5099")
    (cfg / "site.yaml").write_text(textwrap.dedent(text))
    shutil.copytree(REPO / "examples/demo/prompts/nl", cfg / "prompts" / "nl")
    return cfg


@pytest.fixture
async def two_nodes(tmp_path: Path, fresh_database_url: str, redis_url: str,
                    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
                    ) -> AsyncIterator[tuple[Any, Any]]:
    from centrale.container import Container
    from centrale.node import Node
    from centrale.wiring import wire
    from config import load_config_with_sources
    from core.settings import Settings

    cfg = await asyncio.to_thread(write_site, tmp_path)
    upgraded = await asyncio.to_thread(
        run_centrale, "db", "upgrade", "--config", str(cfg),
        env={"CENTRALE_DATABASE_URL": fresh_database_url}, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    monkeypatch.chdir(tmp_path)
    nodes: list[Any] = []
    try:
        for name in ("node-a", "node-b"):
            loaded = load_config_with_sources(cfg, env={})
            container = Container.build(Settings(
                config_dir=str(cfg), database_url=fresh_database_url, redis_url=redis_url,
                redis_prefix=redis_prefix, node_id=name), loaded)
            wire(container)
            node = Node(container)
            await node.start()
            nodes.append(node)
        yield nodes[0], nodes[1]
    finally:
        for node in reversed(nodes):
            await node.stop()


async def test_call_control_is_forwarded_to_the_node_holding_the_call(
        two_nodes: tuple[Any, Any], tmp_path: Path) -> None:
    from sip_testkit import run_sipp

    a, b = two_nodes
    sip_a = a.c.services["sip"]
    control_a, control_b = a.c.services["call_control"], b.c.services["call_control"]
    phone = TonePhone(sip_a.port, "1001", "anna-secret", ANNA)
    await phone.start()
    caller = await ToneCallerMedia.open(CALLER)
    desks: list[Desk] = []
    sipp: asyncio.Future[Any] | None = None
    try:
        await wait_until(lambda: sip_a.registrar.is_registered("1001"))
        acd_a = a.c.services["acd"]
        await acd_a.agent_login("anna", "desk-anna")
        await acd_a.set_state("anna", "available")
        sipp = asyncio.ensure_future(run_sipp(caller_scenario(caller.port), tmp_path,
                                              sip_a.port, service="100", timeout=90))
        await wait_until(lambda: caller.remote is not None, timeout=20)
        await asyncio.sleep(0.5)  # the menu prompt is playing
        caller.press("1")
        sessions = a.c.services["voice"].sip_control.sessions
        await wait_until(lambda: bool(sessions), timeout=30)
        call_id = next(iter(sessions))
        # node B learns where the call is from node A's `voice.call_located`
        await wait_until(lambda: control_b.elsewhere.get(call_id) == "node-a", timeout=15)
        assert call_id not in b.c.services["voice"].calls_by_id

        base_b = f"http://127.0.0.1:{b.port}"
        anna = await Desk(base_b, "anna").login()
        bram = await Desk(base_b, "bram").login()
        desks += [anna, bram]

        status, body = await anna.post(f"/api/calls/{call_id}/hold")
        assert status == 200, body
        assert body["call"]["held"] and body["call"]["backend"] == "sip", body
        assert sessions[call_id].held  # it happened on node A
        assert_hears(await caller.listen(50), [MUSIC], [ANNA], "caller, held via node B")
        status, body = await anna.get(f"/api/calls/{call_id}")
        assert status == 200 and body["call"]["state"] == "held", body

        status, body = await bram.post(f"/api/calls/{call_id}/resume")
        assert status == 403, body  # the owner's checks, answered through node B

        status, body = await anna.post(f"/api/calls/{call_id}/resume")
        assert status == 200 and not body["call"]["held"], body
        assert_hears(await caller.listen(50), [ANNA], [MUSIC], "caller, resumed via node B")

        # Node A stops answering forwarded operations: node B says 503 within the
        # ack timeout, and nothing changes on the call.
        for sub in list(control_a._subs):
            await sub.close()
        control_a._subs.clear()
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, body = await anna.post(f"/api/calls/{call_id}/hold")
        assert status == 503 and body.get("code") == "owner_unavailable", body
        assert loop.time() - started < control_b.ack_timeout + 5
        assert not sessions[call_id].held
        await control_a.start()  # serving again

        status, body = await anna.post(f"/api/calls/{call_id}/hangup")
        assert status == 200 and body["call"]["state"] == "ended", body
        result = await asyncio.wait_for(sipp, 30)
        assert result.returncode == 0, result.stderr + result.errors
        await wait_until(lambda: call_id in control_b.ended, timeout=15)
        status, body = await anna.post(f"/api/calls/{call_id}/hold")
        assert status == 409, body  # ended, as node A announced: not "unknown"
    finally:
        for desk in desks:
            await desk.close()
        caller.close()
        await phone.stop()
        if sipp is not None and not sipp.done():
            sipp.cancel()


def sip_port_of(node: NodeProcess) -> int:
    """The SIP port the node's OS gave it, from its JSON log."""
    for line in node.log.read_text().splitlines():
        if '"SIP listening on' in line:
            message = json.loads(line)["msg"]
            return int(message.split(":")[1].split()[0])
    raise AssertionError(f"{node.name}: no SIP port in its log:\n{node.tail()}")


async def test_two_processes_forward_and_a_frozen_owner_gives_503(
        tmp_path: Path, fresh_database_url: str, redis_url: str, redis_prefix: str) -> None:
    """The same over two `centrale run` processes: anna's desktop (session, websocket,
    API) is on node B; the caller and anna's phone are on node A. Hold and resume by
    task id through node B act on node A's call; node A frozen (SIGSTOP) → node B
    answers 503 within seconds and, node A thawed, the call goes on unchanged."""
    from sip_testkit import run_sipp

    cfg = await asyncio.to_thread(write_site, tmp_path)
    env = {"CENTRALE_DATABASE_URL": fresh_database_url, "CENTRALE_REDIS_URL": redis_url,
           "CENTRALE_REDIS_PREFIX": redis_prefix}
    upgraded = await asyncio.to_thread(run_centrale, "db", "upgrade", "--config", str(cfg),
                                       env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    nodes = [NodeProcess(name, tmp_path / name, cfg, env) for name in ("node-a", "node-b")]
    desk: Desk | None = None
    phone: TonePhone | None = None
    caller = await ToneCallerMedia.open(CALLER)
    sipp: asyncio.Future[Any] | None = None
    try:
        for node in nodes:
            await asyncio.to_thread(node.wait_listening)
        a, b = nodes
        sip_a = sip_port_of(a)
        phone = TonePhone(sip_a, "1001", "anna-secret", ANNA)
        await phone.start()
        desk = await Desk(b.url, "anna").login()
        async with desk.http.ws_connect(f"{b.url}/ws", heartbeat=10) as ws:
            assert json.loads((await ws.receive(timeout=15)).data)["type"] == "hello"
            status, body = await desk.post("/api/agents/anna/state", {"state": "available"})
            assert status == 200, body
            sipp = asyncio.ensure_future(run_sipp(caller_scenario(caller.port), tmp_path,
                                                  sip_a, service="100", timeout=120))
            await wait_until(lambda: caller.remote is not None, timeout=30)
            await asyncio.sleep(0.5)  # the menu prompt is playing
            caller.press("1")
            async with asyncio.timeout(30):
                while True:
                    frame = json.loads((await ws.receive()).data)
                    if frame.get("type") == "screenpop":
                        break
            task_id = frame["task_id"]
            await wait_until(lambda: len(phone.calls) == 1, timeout=30)

            async def held_via_b() -> bool:  # 404 until node B has heard where it is
                status, body = await desk.post(f"/api/calls/{task_id}/hold")
                assert status in (200, 404), body
                return status == 200

            await wait_until(held_via_b, timeout=20, step=0.3)
            assert_hears(await caller.listen(50), [MUSIC], [ANNA], "caller, held via B")
            status, body = await desk.post(f"/api/calls/{task_id}/resume")
            assert status == 200 and not body["call"]["held"], body
            assert_hears(await caller.listen(50), [ANNA], [MUSIC], "caller, resumed via B")

            a.proc.send_signal(signal.SIGSTOP)
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                status, body = await desk.post(f"/api/calls/{task_id}/hold")
                assert status == 503 and body.get("code") == "owner_unavailable", body
                assert loop.time() - started < 10
            finally:
                a.proc.send_signal(signal.SIGCONT)
            status, body = await desk.get(f"/api/calls/{task_id}")
            assert status == 200 and not body["call"]["held"], body  # nothing changed
            status, body = await desk.post(f"/api/calls/{task_id}/hangup")
            assert status == 200, body
        result = await asyncio.wait_for(sipp, 60)
        assert result.returncode == 0, result.stderr + result.errors
    finally:
        if desk is not None:
            await desk.close()
        caller.close()
        if phone is not None:
            await phone.stop()
        if sipp is not None and not sipp.done():
            sipp.cancel()
        for node in nodes:
            with contextlib.suppress(Exception):
                node.proc.send_signal(signal.SIGCONT)
            await asyncio.to_thread(node.stop)
