"""Routing rules: strategies, priority and FIFO, skills, capacity, several queues."""

from __future__ import annotations

import pytest
from acd_helpers import Rig, agent

pytestmark = pytest.mark.asyncio


def one_queue(strategy: str = "longest_idle", n: int = 3, **queue: object) -> dict:
    channels = ["voice"] if strategy == "ring_all" else queue.pop("channels", None)
    q = {"id": "q", "strategy": strategy, **queue}
    if channels:
        q["channels"] = channels
    return {"queues": [q], "agents": [agent(f"a{i}", ["q"]) for i in range(1, n + 1)]}


async def test_longest_idle_picks_the_agent_free_the_longest() -> None:
    r = Rig(one_queue())
    await r.login("a2")
    r.clock.advance(5)
    await r.login("a1", "a3")
    t = await r.enqueue()
    assert r.offered_to(t.id) == ["a2"]


async def test_longest_idle_counts_from_the_end_of_the_last_task() -> None:
    r = Rig(one_queue(n=2, wrap_up_seconds=0))
    await r.login("a1", "a2")
    t1 = await r.enqueue()
    first = await r.answer(t1.id)
    r.clock.advance(10)
    await r.engine.complete(t1.id, first)
    t2 = await r.enqueue()
    other = "a2" if first == "a1" else "a1"
    assert r.offered_to(t2.id) == [other]


async def test_round_robin_remembers_whose_turn_it_is() -> None:
    r = Rig(one_queue("round_robin", wrap_up_seconds=0))
    await r.login("a1", "a2", "a3")
    served = []
    for _ in range(6):
        t = await r.enqueue()
        agent_id = await r.answer(t.id)
        served.append(agent_id)
        await r.engine.complete(t.id, agent_id)
    assert served == ["a1", "a2", "a3", "a1", "a2", "a3"]


async def test_least_occupied_prefers_the_agent_with_fewer_chats() -> None:
    r = Rig({
        "queues": [{"id": "q", "strategy": "least_occupied", "channels": ["webchat"]}],
        "agents": [agent("a1", ["q"], webchat=3), agent("a2", ["q"], webchat=3)],
    })
    await r.login("a1", "a2")
    loads = []
    for _ in range(4):
        t = await r.enqueue(channel="webchat")
        await r.answer(t.id)
        loads.append(tuple(r.engine.agent(a).load["webchat"] for a in ("a1", "a2")))
    assert loads == [(1, 0), (1, 1), (2, 1), (2, 2)]


async def test_best_skill_offers_to_the_most_skilled_first() -> None:
    r = Rig({
        "queues": [{"id": "q", "strategy": "best_skill", "skills": {"fr": 3}}],
        "agents": [agent("a1", ["q"], {"fr": 3}), agent("a2", ["q"], {"fr": 1}),
                   agent("a3", ["q"], {"fr": 2})],
    })
    await r.login("a1", "a2", "a3")
    t = await r.enqueue()
    assert r.offered_to(t.id) == ["a2"]


async def test_ring_all_offers_to_every_eligible_agent_and_first_accept_wins() -> None:
    r = Rig(one_queue("ring_all"))
    await r.login("a1", "a2", "a3")
    t = await r.enqueue()
    assert r.offered_to(t.id) == ["a1", "a2", "a3"]
    await r.engine.accept(r.offer_id(t.id, "a2"), "a2")
    assert r.offered_to(t.id) == []
    withdrawn = [e.payload["agent_id"] for e in r.bus.of("task.offer_withdrawn")]
    assert sorted(withdrawn) == ["a1", "a3"]
    assert r.engine.agent("a1").state == "available"
    assert r.engine.task(t.id).agent_id == "a2"


async def test_ring_all_does_not_loop_on_agents_who_all_missed() -> None:
    r = Rig(one_queue("ring_all", n=2, rona_seconds=10, rona_action="stay_available"))
    await r.login("a1", "a2")
    t = await r.enqueue()
    await r.advance(10)  # everybody missed: nobody is rung again at once
    assert r.offered_to(t.id) == []
    assert len(r.bus.of("task.offered")) == 2
    await r.advance(10)  # after one RONA period, a new round
    assert r.offered_to(t.id) == ["a1", "a2"]
    assert len(r.bus.of("task.offered")) == 4


async def test_priority_first_then_fifo() -> None:
    r = Rig(one_queue(n=1, wrap_up_seconds=0))
    t1 = await r.enqueue(priority=0)
    r.clock.advance(1)
    t2 = await r.enqueue(priority=5)
    r.clock.advance(1)
    t3 = await r.enqueue(priority=0)
    r.clock.advance(1)
    t4 = await r.enqueue(priority=5)
    await r.login("a1")
    order = []
    for _ in range(4):
        (offer,) = r.engine.offers_for("a1")
        order.append(offer.task_id)
        await r.engine.accept(offer.id, "a1")
        await r.engine.complete(offer.task_id, "a1")
    assert order == [t2.id, t4.id, t1.id, t3.id]


async def test_skill_levels_one_is_best_and_max_level_is_inclusive() -> None:
    r = Rig({
        "queues": [{"id": "q", "skills": {"de": 2}}],
        "agents": [agent("a1", ["q"], {"de": 3}), agent("a2", ["q"], {"de": 2}),
                   agent("a3", ["q"], {})],
    })
    await r.login("a1", "a3")
    t = await r.enqueue()
    assert r.offered_to(t.id) == []
    await r.login("a2")
    assert r.offered_to(t.id) == ["a2"]


async def test_task_own_skills_add_to_the_queue_requirements() -> None:
    r = Rig({
        "queues": [{"id": "q", "skills": {"de": 3}}],
        "agents": [agent("a1", ["q"], {"de": 1}), agent("a2", ["q"], {"de": 1, "vip": 1})],
    })
    await r.login("a1")
    r.clock.advance(1)
    await r.login("a2")
    t = await r.enqueue(skills={"vip": 1})
    assert r.offered_to(t.id) == ["a2"]
    assert r.engine.task(t.id).skills == {"de": 3, "vip": 1}


async def test_chat_capacity_is_per_channel_and_voice_is_exclusive() -> None:
    r = Rig({
        "queues": [{"id": "q"}],
        "agents": [agent("a1", ["q"], webchat=2, email=1)],
    })
    await r.login("a1")
    c1 = await r.enqueue(channel="webchat")
    c2 = await r.enqueue(channel="webchat")
    c3 = await r.enqueue(channel="webchat")
    m1 = await r.enqueue(channel="email")
    assert [r.offered_to(t.id) for t in (c1, c2, c3, m1)] == [["a1"], ["a1"], [], ["a1"]]
    v = await r.enqueue(channel="voice")
    assert r.offered_to(v.id) == []  # chats in hand: no voice while voice is exclusive
    for t in (c1, c2, m1):
        await r.engine.reject(r.offer_id(t.id, "a1"), "a1")
    # the rejected tasks skip a1 for a while; the voice call and c3 compete: FIFO -> c3
    assert r.offered_to(c3.id) == ["a1"]
    await r.engine.reject(r.offer_id(c3.id, "a1"), "a1")
    assert r.offered_to(v.id) == ["a1"]
    chat = await r.enqueue(channel="webchat", case_id="k2")
    assert r.offered_to(chat.id) == []  # voice in hand blocks every other channel


async def test_voice_not_exclusive_when_configured() -> None:
    r = Rig({"queues": [{"id": "q"}],
             "agents": [agent("a1", ["q"], webchat=1, voice_exclusive=False)]})
    await r.login("a1")
    v = await r.enqueue(channel="voice")
    c = await r.enqueue(channel="webchat")
    assert r.offered_to(v.id) == ["a1"] and r.offered_to(c.id) == ["a1"]


async def test_agent_in_several_queues_serves_them_in_configured_order() -> None:
    r = Rig({
        "queues": [{"id": "low"}, {"id": "high"}],
        "agents": [agent("a1", ["high", "low"])],
    })
    t_low = await r.enqueue("low")
    r.clock.advance(5)
    t_high = await r.enqueue("high")
    await r.login("a1")
    assert r.offered_to(t_high.id) == ["a1"] and r.offered_to(t_low.id) == []


async def test_agent_queue_order_longest_waiting_task() -> None:
    r = Rig({
        "acd": {"agent_queue_order": "longest_waiting_task"},
        "queues": [{"id": "low"}, {"id": "high"}],
        "agents": [agent("a1", ["high", "low"])],
    })
    t_low = await r.enqueue("low")
    r.clock.advance(5)
    await r.enqueue("high")
    await r.login("a1")
    assert r.offered_to(t_low.id) == ["a1"]


async def test_agent_queue_order_by_queue_priority() -> None:
    r = Rig({
        "acd": {"agent_queue_order": "priority"},
        "queues": [{"id": "low", "priority": 0}, {"id": "high", "priority": 0},
                   {"id": "vip", "priority": 9}],
        "agents": [agent("a1", ["low", "high", "vip"])],
    })
    await r.enqueue("low")
    t_vip = await r.enqueue("vip")
    await r.login("a1")
    assert r.offered_to(t_vip.id) == ["a1"]


async def test_sticky_routing_holds_the_task_for_the_last_agent_then_falls_back() -> None:
    r = Rig(one_queue(n=2, sticky_agent_seconds=30))
    await r.login("a1", "a2")
    first = await r.enqueue(case_id="other")
    await r.answer(first.id)  # a1 busy now
    assert r.engine.agent("a1").state == "busy"
    t = await r.enqueue(preferred_agent_id="a1")
    assert r.offered_to(t.id) == []  # a2 is free, but the case's agent is a1
    await r.advance(29)
    assert r.offered_to(t.id) == []
    await r.advance(1)
    assert r.offered_to(t.id) == ["a2"]


async def test_sticky_agent_gets_the_task_when_free() -> None:
    r = Rig(one_queue(n=2, sticky_agent_seconds=30, wrap_up_seconds=0))
    await r.login("a1", "a2")
    first = await r.enqueue(case_id="other")
    holder = await r.answer(first.id)
    t = await r.enqueue(preferred_agent_id=holder)
    await r.engine.complete(first.id, holder)
    assert r.offered_to(t.id) == [holder]


async def test_sticky_ignored_when_the_agent_is_not_ready() -> None:
    r = Rig(one_queue(n=2, sticky_agent_seconds=30))
    await r.login("a1", "a2")
    await r.engine.set_state("a1", "not_ready", "break")
    t = await r.enqueue(preferred_agent_id="a1")
    assert r.offered_to(t.id) == ["a2"]


async def test_fifo_across_tasks_with_different_skill_requirements() -> None:
    """Tasks of one queue with different requirements sit in different index groups; an
    agent qualified for all of them still takes them in arrival order."""
    r = Rig({"queues": [{"id": "q", "wrap_up_seconds": 0, "skills": {"fr": 3}}],
             "agents": [agent("a1", ["q"], {"fr": 1, "vip": 1})]})
    expected = []
    for i, skills in enumerate([{"vip": 1}, None, {"fr": 1}, None, {"vip": 1}]):
        r.clock.advance(1)
        expected.append((await r.enqueue(case_id=f"k{i}", skills=skills)).id)
    await r.login("a1")
    served = []
    for _ in expected:
        (offer,) = r.engine.offers_for("a1")
        served.append(offer.task_id)
        await r.engine.accept(offer.id, "a1")
        await r.engine.complete(offer.task_id, "a1")
    assert served == expected


async def test_ring_all_callback_goes_to_one_agent_only() -> None:
    r = Rig(one_queue("ring_all"))
    await r.login("a1", "a2", "a3")
    t = await r.enqueue()
    assert len(r.offered_to(t.id)) == 3
    await r.engine.request_callback(t.id, "+3312345678")
    assert len(r.offered_to(t.id)) == 1


async def test_a_callback_task_can_be_enqueued_directly() -> None:
    """The desktop's 'call this customer back' is a voice callback task from the start:
    its offer carries the number; bad numbers and non-voice channels are refused."""
    from queues.errors import InvalidArgumentError

    r = Rig(one_queue(channels=["voice", "whatsapp"]))
    with pytest.raises(InvalidArgumentError):
        await r.enqueue(callback_number="call me")
    with pytest.raises(InvalidArgumentError):
        await r.enqueue(channel="whatsapp", callback_number="+31612345678")
    await r.login("a1")
    task = await r.enqueue(callback_number="+31612345678")
    assert task.kind == "callback" and task.callback_number == "+31612345678"
    offered = r.bus.of("task.offered")[-1].payload
    assert offered["callback_number"] == "+31612345678" and offered["kind"] == "callback"
