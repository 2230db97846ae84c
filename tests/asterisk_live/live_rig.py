"""The rig of a live-Asterisk test: a live Asterisk and a Centrale node wired to it.

A module of its own (not conftest.py) so that the tests import it by a unique name:
other test folders put their own `conftest` on sys.path.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from live_asterisk import AMI_SECRET, TRUNK_IP, AsteriskBuild, LiveAsterisk, Sipp, free_port

SITE = """
server:
  name: live-asterisk
  default_region: NL
  default_language: en
  web: {host: 127.0.0.1, port: 0}
  database: {path: DBPATH}
  recordings: {path: RECORDINGS}
  asterisk:
    enabled: true
    ami: {host: 127.0.0.1, port: AMIPORT, username: centrale, secret: SECRET}
    fastagi_host: 127.0.0.1
    fastagi_port: AGIPORT
skills: [{id: support}]
acd: {unreachable_after: 2}
queues:
  - {id: support, skills: {support: 2}, rona_seconds: RONA, wrap_up_seconds: 0RECORDING}
agents:
  - id: anna
    name: Anna de Vries
    skills: {support: 1}
    queues: [support]
    sip: {username: "1001", password: demo-sip}
  - id: bram
    name: Bram Jansen
    skills: {support: 1}
    queues: [support]
    sip: {username: "1002", password: demo-sip}
EXTRA_AGENT
users:
  - {username: sam, role: supervisor, password: demo}
numbers:
  - {number: "100", flow: main}
flows:
  - id: main
    languages: [en, nl]
    start: choose
    nodes:
      choose:
        type: menu
        prompts: [choose_language]
        options: {"1": english, "2": dutch}
        timeout_seconds: 8
        retries: 1
        fallback: english
      english: {type: set, language: en, next: to_support}
      dutch: {type: set, language: nl, next: to_support}
      to_support: {type: queue, queue: support}
"""


class Rig:
    """A live Asterisk and a Centrale node wired to it (in this process, the real
    wiring), with the bus events the test saw."""

    def __init__(self, tmp: Path, build: AsteriskBuild, rona: float, *,
                 carrier: Sipp | None = None, extra_agent: bool = False,
                 recording: bool = False) -> None:
        self.tmp = tmp
        self.agi_port = free_port()
        self.carrier = carrier
        self.trunk_port = carrier.port if carrier else free_port(kind=2, host=TRUNK_IP)
        self.asterisk = LiveAsterisk(build, tmp / "asterisk", agi_port=self.agi_port,
                                     trunk_port=self.trunk_port)
        # As docker/compose.yaml shares them: Asterisk's monitor spool is the
        # `asterisk/` folder of Centrale's recordings directory.
        self.recordings = tmp / "recordings"
        (self.recordings / "asterisk").mkdir(parents=True, exist_ok=True)
        (self.asterisk.root / "spool" / "monitor").symlink_to(self.recordings / "asterisk")
        self.config_dir = tmp / "site"
        self.config_dir.mkdir(exist_ok=True)
        (self.config_dir / "site.yaml").write_text(textwrap.dedent(
            SITE.replace("DBPATH", str(tmp / "centrale.db"))
            .replace("AMIPORT", str(self.asterisk.ami_port))
            .replace("AGIPORT", str(self.agi_port)).replace("SECRET", AMI_SECRET)
            .replace("RONA", str(rona)).replace("RECORDINGS", str(self.recordings))
            .replace("RECORDING", ", recording: {mode: always, retention_days: 30}"
                     if recording else "")
            .replace("EXTRA_AGENT", EXTRA_AGENT if extra_agent else "")))
        self.node: Any = None
        self.events: list[Any] = []

    async def start_centrale(self) -> Any:
        from centrale.container import Container
        from centrale.node import Node
        from centrale.wiring import wire
        from config import load_config_with_sources
        from core.settings import Settings

        loaded = load_config_with_sources(self.config_dir, env={})
        container = Container.build(
            Settings(config_dir=str(self.config_dir), node_id="live"), loaded)
        wire(container)
        node = Node(container)
        await node.start()

        async def grab(event: Any) -> None:
            self.events.append(event)

        await container.bus.subscribe("task.*", grab)
        self.node = node
        return node

    async def stop_centrale(self) -> None:
        if self.node is not None:
            await self.node.stop()
            self.node = None

    @property
    def c(self) -> Any:
        return self.node.c

    @property
    def acd(self) -> Any:
        return self.node.c.services["acd"]

    @property
    def backend(self) -> Any:
        return self.node.c.services["asterisk"]

    def topics(self) -> list[str]:
        return [e.topic for e in self.events]

    async def agent_ready(self, agent_id: str) -> None:
        await self.acd.agent_login(agent_id, f"desk-{agent_id}")
        await self.acd.set_state(agent_id, "available")

    async def timeline(self, case_id: str) -> list[Any]:
        return list(await self.c.cases.timeline(case_id))

    async def case_bodies(self) -> list[str]:
        """Every timeline body of every case (a test has one caller at a time)."""
        out = []
        for e in self.events:
            case_id = e.payload.get("case_id")
            if case_id:
                out += [t.body for t in await self.timeline(case_id)]
                break
        return out


#: An agent whose endpoint Asterisk does not have (pjsip.conf defines 1001-1004).
EXTRA_AGENT = """\
  - id: cleo
    name: Cleo Bakker
    skills: {support: 1}
    queues: [support]
    sip: {username: "1999", password: demo-sip}
"""
