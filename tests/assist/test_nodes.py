"""Two nodes on the real Redis bus: a case closing is learnt once (one consumer group
cluster-wide), and both nodes' in-memory indexes suggest it (the `assist.learned`
broadcast). And a config reload re-reads the knowledge base."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assist import AssistService
from cases import CaseService
from config.schema import AssistSettings
from core.bus.redis import RedisStreamsBus
from core.clock import SystemClock
from tests.assist.seeding import open_case, resolved_case
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.redis
async def test_both_nodes_suggest_a_case_closed_on_one(database, tmp_path: Path, redis_url,
                                                       redis_prefix) -> None:
    nodes = []
    for name in ("node-a", "node-b"):
        bus = RedisStreamsBus(redis_url, prefix=redis_prefix, node_id=name, block_ms=100)
        await bus.start()
        clock = SystemClock()
        cases = CaseService(database, bus, clock, default_region="NL")
        assist = AssistService(AssistSettings(commit_interval_seconds=0.05), cases=cases,
                               db=database, bus=bus, clock=clock, node_id=name,
                               knowledge_dir=tmp_path / "none")
        await assist.start()
        await assist.ready.wait()
        nodes.append((bus, cases, assist))
    try:
        (_bus_a, cases_a, assist_a), (_bus_b, _cases_b, assist_b) = nodes
        closed = await resolved_case(cases_a, assist_a, number="31677770001", language="en",
                                     asked=["Do you ship to Belgium?"],
                                     reply="Yes, we ship to Belgium within 3 days.")
        await wait_until(lambda: len(assist_a.replies.index) == 1
                         and len(assist_b.replies.index) == 1, timeout=15)
        assert len(assist_a.replies) == len(assist_b.replies) == 1
        asking = await open_case(cases_a, number="31677770002", language="en",
                                 asked=["Shipping to Belgium possible?"])
        for assist in (assist_a, assist_b):
            got = await assist.suggest(asking, queue_id="support")
            assert [r.case_id for r in got.replies] == [closed]
        from sqlmodel import select

        from assist.tables import AssistReply
        async with database.session() as s:
            assert len(list(await s.exec(select(AssistReply)))) == 1  # learnt once
    finally:
        for bus, _cases, assist in nodes:
            await assist.stop()
            await bus.stop()


async def test_a_config_reload_rereads_the_knowledge_base(database, tmp_path: Path) -> None:
    from config.loader import load_config
    from core.bus import InMemoryBus

    config_dir = tmp_path / "config"
    shutil.copytree(REPO / "examples" / "demo", config_dir)
    config = load_config(config_dir, env={})
    bus, clock = InMemoryBus(), SystemClock()
    cases = CaseService(database, bus, clock, default_region="NL")
    assist = AssistService.from_config(config, config_dir=config_dir, cases=cases,
                                       db=database, bus=bus, clock=clock, node_id="n1",
                                       model=None)
    await assist.start()
    try:
        question = "Kan ik met een cadeaubon in de winkel betalen?"
        before = assist.knowledge.search(question, language="nl", queue_id="sales")
        assert "nl/cadeaubon" not in [h.article_id for h in before]
        (config_dir / "knowledge" / "nl" / "cadeaubon.md").write_text(
            "# Betalen met een cadeaubon\n\nEen cadeaubon kunt u in de winkel en online "
            "gebruiken om te betalen.\n", encoding="utf-8")
        await assist.apply_config(load_config(config_dir, env={}))
        after = assist.knowledge.search(question, language="nl", queue_id="sales")
        assert after[0].article_id == "nl/cadeaubon"
    finally:
        await assist.stop()
