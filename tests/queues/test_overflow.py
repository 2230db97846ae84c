"""Overflow and escalation, max length and max wait with exit, callbacks."""

from __future__ import annotations

import pytest
from acd_helpers import Rig, agent

pytestmark = pytest.mark.asyncio


async def test_relax_skill_level_after_wait() -> None:
    r = Rig({
        "queues": [{"id": "q", "skills": {"fr": 1},
                    "overflow": [{"after_seconds": 30, "relax_skills": {"fr": 3}}]}],
        "agents": [agent("a1", ["q"], {"fr": 3})],
    })
    await r.login("a1")
    t = await r.enqueue()
    await r.advance(29)
    assert r.offered_to(t.id) == []
    await r.advance(1)
    assert r.offered_to(t.id) == ["a1"]
    (ev,) = r.bus.of("task.overflowed")
    assert ev.payload["skills"] == {"fr": 3}


async def test_drop_skill_and_priority_boost_are_cumulative() -> None:
    r = Rig({
        "queues": [{"id": "q", "skills": {"fr": 1, "vip": 1}, "overflow": [
            {"after_seconds": 10, "priority_boost": 2},
            {"after_seconds": 20, "drop_skills": ["vip"], "priority_boost": 3}]}],
        "agents": [agent("a1", ["q"], {"fr": 1})],
    })
    await r.login("a1")
    t = await r.enqueue()
    await r.advance(10)
    assert r.engine.task(t.id).priority == 2
    await r.advance(10)
    assert r.engine.task(t.id).priority == 5
    assert r.offered_to(t.id) == ["a1"]


async def test_add_another_queues_agents() -> None:
    r = Rig({
        "queues": [{"id": "sales", "overflow": [{"after_seconds": 60, "add_queues": ["support"]}]},
                   {"id": "support"}],
        "agents": [agent("s1", ["sales"]), agent("h1", ["support"])],
    })
    await r.login("h1")
    t = await r.enqueue("sales")
    await r.advance(59)
    assert r.offered_to(t.id) == []
    await r.advance(1)
    assert r.offered_to(t.id) == ["h1"]


async def test_added_queue_agent_freed_later_takes_the_task() -> None:
    r = Rig({
        "queues": [{"id": "sales", "overflow": [{"after_seconds": 60, "add_queues": ["support"]}]},
                   {"id": "support", "wrap_up_seconds": 0}],
        "agents": [agent("s1", ["sales"]), agent("h1", ["support"])],
    })
    await r.login("h1")
    busy = await r.enqueue("support", case_id="k0")
    await r.answer(busy.id)
    t = await r.enqueue("sales")
    await r.advance(60)
    assert r.offered_to(t.id) == []
    await r.engine.complete(busy.id, "h1")
    assert r.offered_to(t.id) == ["h1"]


async def test_move_to_another_queue_keeps_enqueue_time() -> None:
    r = Rig({
        "queues": [{"id": "a", "overflow": [{"after_seconds": 60, "move_to": "b"}]},
                   {"id": "b"}],
        "agents": [agent("x", ["b"])],
    })
    await r.login("x")
    busy = await r.enqueue("b", case_id="k0")
    await r.answer(busy.id)
    r.clock.advance(5)
    t = await r.enqueue("a")
    r.clock.advance(1)
    later = await r.enqueue("b", case_id="k2")
    await r.advance(60)
    moved = r.engine.task(t.id)
    assert moved.queue_id == "b" and moved.enqueued_at == t.enqueued_at
    # moved task is older than `later`, so it is ahead of it in b
    assert await r.engine.position(t.id) == 1
    assert await r.engine.position(later.id) == 2
    assert r.bus.of("task.moved")[0].payload["reason"] == "overflow"


async def test_max_length_exits_with_the_queue_exit() -> None:
    r = Rig({"queues": [{"id": "q", "max_length": 2,
                         "exit": {"flow_node": "main.voicemail", "voicemail": True}}],
             "agents": [agent("a1", ["q"])]})
    await r.enqueue(case_id="k1")
    await r.enqueue(case_id="k2")
    t = await r.enqueue(case_id="k3")
    assert t.status == "exited" and t.exit_reason == "full"
    assert t.exit == {"queue": None, "flow_node": "main.voicemail", "voicemail": True}
    assert r.bus.of("task.exited")[0].payload["reason"] == "full"


async def test_full_queue_exits_to_another_queue() -> None:
    r = Rig({"queues": [{"id": "q", "max_length": 1, "exit": {"queue": "spill"}},
                        {"id": "spill"}]})
    await r.enqueue(case_id="k1")
    t = await r.enqueue(case_id="k2")
    assert t.status == "waiting" and t.queue_id == "spill"


async def test_max_wait_exit() -> None:
    r = Rig({"queues": [{"id": "q", "max_wait_seconds": 120, "exit": {"voicemail": True}}]})
    t = await r.enqueue()
    await r.advance(119)
    assert r.engine.task(t.id).status == "waiting"
    await r.advance(1)
    done = r.engine.task(t.id)
    assert done.status == "exited" and done.exit_reason == "max_wait"


async def test_exit_loop_in_config_is_bounded() -> None:
    r = Rig({"queues": [{"id": "a", "max_wait_seconds": 1, "exit": {"queue": "b"}},
                        {"id": "b", "max_wait_seconds": 1, "exit": {"queue": "a"}}]})
    t = await r.enqueue("a")
    for _ in range(20):
        await r.advance(1)
    assert r.engine.task(t.id).status == "exited"


async def test_callback_keeps_its_place_and_is_offered_as_callback() -> None:
    r = Rig({"queues": [{"id": "q", "wrap_up_seconds": 0}], "agents": [agent("a1", ["q"])]})
    t1 = await r.enqueue(case_id="k1")
    r.clock.advance(1)
    t2 = await r.enqueue(case_id="k2")
    r.clock.advance(1)
    t3 = await r.enqueue(case_id="k3")
    cb = await r.engine.request_callback(t2.id, "+33612345678")
    assert cb.kind == "callback" and cb.enqueued_at == t2.enqueued_at
    assert await r.engine.position(t2.id) == 2
    await r.login("a1")
    order = []
    for _ in range(3):
        (offer,) = r.engine.offers_for("a1")
        accepted = await r.engine.accept(offer.id, "a1")
        order.append((accepted.id, accepted.kind))
        await r.engine.complete(accepted.id, "a1")
    assert order == [(t1.id, "normal"), (t2.id, "callback"), (t3.id, "normal")]
    acc = next(e for e in r.bus.of("task.accepted") if e.payload["task_id"] == t2.id)
    assert acc.payload["callback_number"] == "+33612345678"


async def test_digital_contact_can_leave_a_voice_callback() -> None:
    r = Rig({"queues": [{"id": "q"}], "agents": [agent("a1", ["q"], webchat=0)]})
    await r.login("a1")
    chat = await r.enqueue(channel="webchat")
    assert r.offered_to(chat.id) == []
    cb = await r.engine.request_callback(chat.id, "+4915112345678")
    assert cb.channel == "voice" and cb.status == "offered"
    assert r.bus.of("callback.requested")[0].payload["previous_channel"] == "webchat"


async def test_callbacks_never_outnumber_free_agents() -> None:
    r = Rig({"queues": [{"id": "q"}], "agents": [agent("a1", ["q"]), agent("a2", ["q"])]})
    tasks = [await r.enqueue(case_id=f"k{i}") for i in range(5)]
    for t in tasks:
        await r.engine.request_callback(t.id, "+3312345678")
    await r.login("a1")
    offered = {e.payload["task_id"] for e in r.bus.of("task.offered")}
    assert offered == {tasks[0].id}
    await r.login("a2")
    offered = {e.payload["task_id"] for e in r.bus.of("task.offered")}
    assert offered == {tasks[0].id, tasks[1].id}


async def test_rules_firing_at_the_same_instant_compete_by_priority() -> None:
    r = Rig({
        "queues": [{"id": "a", "overflow": [{"after_seconds": 30, "add_queues": ["b"]}]},
                   {"id": "b"}],
        "agents": [agent("x", ["b"])],
    })
    await r.login("x")
    low = await r.enqueue("a", priority=0, case_id="k1")
    high = await r.enqueue("a", priority=5, case_id="k2")
    await r.advance(30)
    assert r.offered_to(high.id) == ["x"] and r.offered_to(low.id) == []
