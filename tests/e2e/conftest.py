"""End-to-end fixtures: a whole Centrale node (the real wiring) on ephemeral ports."""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "pbx_bridge" / "sip"))  # sip_testkit

SITE = """
server:
  name: e2e
  default_region: NL
  timezone: Europe/Amsterdam
  default_language: nl
  web: {host: 127.0.0.1, port: 0}
  database: {path: DBPATH}
  sip:
    enabled: true
    host: 127.0.0.1
    port: 0
    transports: [udp]
    trunks:
      - {name: local, allowed_ips: [127.0.0.1], trusted: true, outbound_host: 127.0.0.1,
         outbound_port: TRUNKPORT}
  prompts_dir: prompts
skills: [{id: sales}, {id: support}]
wrap_up_codes: [{id: resolved}]
queues:
  - {id: sales, skills: {sales: 2}, rona_seconds: 8, wrap_up_seconds: 5,
     sticky_agent_seconds: 30}
  - {id: support, skills: {support: 2}, rona_seconds: 8, wrap_up_seconds: 5}
agents:
  - id: anna
    name: Anna de Vries
    skills: {sales: 1, support: 1}
    queues: [sales, support]
    sip: {username: "1001", password: anna-secret}
  - id: bram
    name: Bram Jansen
    skills: {support: 1}
    queues: [support]
    sip: {username: "1002", password: bram-secret}
users:
  - {username: anna, role: agent, agent: anna, password: demo}
  - {username: bram, role: agent, agent: bram, password: demo}
  - {username: sam, role: supervisor, password: demo}
channels:
  whatsapp:
    queue: support
    phone_number_id: "106540352242922"
    access_token: e2e-token
    app_secret: e2e-app-secret
    verify_token: e2e-verify
    graph_base_url: GRAPHURL
numbers:
  - {number: "100", flow: main}
flows:
  - id: main
    languages: [nl]
    start: main_menu
    nodes:
      main_menu:
        type: menu
        prompts: [menu_main]
        options: {"1": to_sales, "2": to_support}
        timeout_seconds: 6
        retries: 2
        fallback: to_support
      to_sales: {type: queue, queue: sales, announce_interval_seconds: 30}
      to_support: {type: queue, queue: support, announce_interval_seconds: 30}
"""


@pytest.fixture
def site_dir(tmp_path: Path) -> Callable[..., Path]:
    def make(graph_url: str = "http://127.0.0.1:9", trunk_port: int = 5099) -> Path:
        cfg = tmp_path / "site"
        cfg.mkdir(exist_ok=True)
        text = SITE.replace("DBPATH", str(tmp_path / "centrale.db")).replace(
            "GRAPHURL", graph_url).replace("TRUNKPORT", str(trunk_port))
        (cfg / "site.yaml").write_text(textwrap.dedent(text))
        if not (cfg / "prompts").exists():
            shutil.copytree(REPO / "examples/demo/prompts/nl", cfg / "prompts" / "nl")
        return cfg

    return make


NodeFactory = Callable[..., Awaitable[object]]


@pytest.fixture
async def make_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> AsyncIterator[NodeFactory]:
    from centrale.container import Container
    from centrale.node import Node
    from centrale.wiring import wire
    from config import load_config_with_sources
    from core.settings import Settings

    monkeypatch.chdir(tmp_path)  # var/ (prompt cache, media) lands in the test's folder
    nodes: list[Node] = []

    async def factory(config_dir: Path) -> Node:
        loaded = load_config_with_sources(config_dir, env={})
        container = Container.build(Settings(config_dir=str(config_dir), node_id="e2e"),
                                    loaded)
        wire(container)
        node = Node(container)
        await node.start()
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        await node.stop()
