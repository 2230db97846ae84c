"""Hot reload: apply_config keeps live tasks and agents, applies the new rules."""

from __future__ import annotations

import pytest
from acd_helpers import Rig, agent

from config.schema import CentraleConfig
from queues import errors as E

pytestmark = pytest.mark.asyncio


def base() -> dict:
    return {
        "queues": [{"id": "q", "skills": {"fr": 1}, "max_wait_seconds": 100},
                   {"id": "spare"}],
        "agents": [agent("a1", ["q"], {"fr": 2}), agent("a2", ["q", "spare"], {"fr": 1})],
    }


async def test_a_relaxed_requirement_makes_a_waiting_task_routable_keeping_its_time() -> None:
    r = Rig(base())
    await r.login("a1")
    t = await r.enqueue()
    r.clock.advance(30)
    new = base()
    new["queues"][0]["skills"] = {"fr": 2}
    await r.engine.apply_config(CentraleConfig.model_validate(new))
    assert r.offered_to(t.id) == ["a1"]
    assert r.engine.task(t.id).enqueued_at == t.enqueued_at
    assert r.bus.of("acd.config_applied")


async def test_new_agent_and_new_queue_take_effect() -> None:
    r = Rig(base())
    new = base()
    new["queues"].append({"id": "vip"})
    new["agents"].append(agent("a3", ["vip"]))
    await r.engine.apply_config(CentraleConfig.model_validate(new))
    await r.login("a3")
    t = await r.enqueue("vip")
    assert [o.task_id for o in r.engine.offers_for("a3")] == [t.id]


async def test_removed_queue_sends_waiting_tasks_out_and_refuses_new_ones() -> None:
    r = Rig(base())
    t = await r.enqueue("spare")
    new = base()
    new["queues"] = new["queues"][:1]
    new["agents"][1]["queues"] = ["q"]
    await r.engine.apply_config(CentraleConfig.model_validate(new))
    gone = r.engine.task(t.id)
    assert gone.status == "exited" and gone.exit_reason == "queue_removed"
    with pytest.raises(E.UnknownQueueError):
        await r.enqueue("spare")
    assert "spare" not in r.engine.stats()["queues"]


async def test_removed_agent_keeps_its_task_but_gets_nothing_new() -> None:
    r = Rig(base())
    await r.login("a2")
    t = await r.enqueue()
    await r.answer(t.id)
    new = base()
    new["agents"] = new["agents"][:1]
    await r.engine.apply_config(CentraleConfig.model_validate(new))
    await r.engine.complete(t.id, "a2")
    await r.advance(30)
    t2 = await r.enqueue(case_id="k2", skills={"fr": 1})
    assert r.offered_to(t2.id) == []
    await r.engine.agent_logout("a2")
    with pytest.raises(E.UnknownAgentError):
        await r.engine.agent_login("a2", "s")


async def test_changed_max_wait_follows_the_new_config() -> None:
    r = Rig(base())
    t = await r.enqueue()
    r.clock.advance(50)
    new = base()
    new["queues"][0]["max_wait_seconds"] = 200
    await r.engine.apply_config(CentraleConfig.model_validate(new))
    await r.advance(60)  # the old limit (100 s) has passed: no exit
    assert r.engine.task(t.id).status == "waiting"
    await r.advance(90)
    assert r.engine.task(t.id).exit_reason == "max_wait"


async def test_invalid_config_changes_nothing() -> None:
    r = Rig(base())
    await r.login("a1")
    before = r.engine.snapshot()
    bad = base()
    bad["agents"][0]["queues"] = ["nowhere"]
    with pytest.raises(E.AcdConfigError):
        await r.engine.apply_config(CentraleConfig.model_validate(bad))
    after = r.engine.snapshot()
    before["stats"].pop("at"), after["stats"].pop("at")
    assert after == before
