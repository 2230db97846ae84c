"""Agent rules: log-in, states and reason codes, RONA, wrap-up."""

from __future__ import annotations

import pytest
from acd_helpers import Rig, agent

pytestmark = pytest.mark.asyncio


def config(**queue: object) -> dict:
    return {
        "queues": [{"id": "q", **queue}, {"id": "q2", "wrap_up_seconds": 5}],
        "agents": [agent("a1", ["q", "q2"]), agent("a2", ["q"])],
        "wrap_up_codes": [{"id": "sale"}, {"id": "no_sale"}],
    }


async def test_login_makes_the_agent_available_and_is_idempotent_per_session() -> None:
    r = Rig(config())
    view = await r.engine.agent_login("a1", "s1")
    assert view.state == "available" and view.session_id == "s1"
    again = await r.engine.agent_login("a1", "s1")
    assert again.state == "available"
    assert r.topics().count("agent.state_changed") == 1


async def test_not_ready_with_reason_stops_offers_and_available_resumes() -> None:
    r = Rig(config())
    await r.login("a1")
    await r.engine.set_state("a1", "not_ready", "lunch")
    assert r.engine.agent("a1").state == "not_ready"
    assert r.engine.agent("a1").reason == "lunch"
    t = await r.enqueue()
    assert r.offered_to(t.id) == []
    await r.engine.set_state("a1", "available")
    assert r.offered_to(t.id) == ["a1"]
    changes = [(e.payload["state"], e.payload["reason"]) for e in r.bus.of("agent.state_changed")]
    assert changes == [("available", None), ("not_ready", "lunch"), ("available", None),
                       ("busy", None)]


async def test_not_ready_while_ringing_sends_the_task_to_the_next_agent() -> None:
    r = Rig(config())
    await r.login("a1")
    r.clock.advance(1)
    await r.login("a2")
    t = await r.enqueue()
    assert r.offered_to(t.id) == ["a1"]
    await r.engine.set_state("a1", "not_ready", "break")
    assert r.offered_to(t.id) == ["a2"]


async def test_logout_returns_ringing_tasks_and_is_refused_while_handling() -> None:
    r = Rig(config())
    await r.login("a1")
    t = await r.enqueue()
    await r.engine.agent_logout("a1")
    assert r.engine.task(t.id).status == "waiting"
    assert r.engine.agent("a1").state == "logged_out"
    await r.login("a1")
    await r.answer(t.id)
    from queues.errors import AgentBusyError

    with pytest.raises(AgentBusyError):
        await r.engine.agent_logout("a1")
    assert r.engine.agent("a1").state == "busy"


async def test_rona_moves_the_offer_to_the_next_agent_and_first_goes_not_ready() -> None:
    r = Rig(config(rona_seconds=15))
    await r.login("a1")
    r.clock.advance(1)
    await r.login("a2")
    t = await r.enqueue()
    assert r.offered_to(t.id) == ["a1"]
    await r.advance(14.9)
    assert r.offered_to(t.id) == ["a1"]
    await r.advance(0.1)
    assert r.offered_to(t.id) == ["a2"]
    a1 = r.engine.agent("a1")
    assert (a1.state, a1.reason) == ("not_ready", "missed")
    assert r.topics().count("task.missed") == 1


async def test_rona_stay_available_keeps_the_agent_routable() -> None:
    r = Rig(config(rona_seconds=15, rona_action="stay_available"))
    await r.login("a1")
    t = await r.enqueue()
    await r.advance(15)
    assert r.engine.agent("a1").state == "available"
    # a1 missed this task: it is not rung again before one RONA period...
    assert r.offered_to(t.id) == []
    other = await r.enqueue(case_id="k2")
    assert r.offered_to(other.id) == ["a1"]


async def test_accepting_an_expired_offer_fails_and_changes_nothing() -> None:
    from queues.errors import OfferExpiredError

    r = Rig(config(rona_seconds=10))
    await r.login("a1")
    t = await r.enqueue()
    offer = r.offer_id(t.id, "a1")
    r.clock.advance(10)  # expired, timer not yet processed
    with pytest.raises(OfferExpiredError):
        await r.engine.accept(offer, "a1")
    assert r.engine.task(t.id).status == "offered"
    await r.engine.tick()
    with pytest.raises(OfferExpiredError):
        await r.engine.accept(offer, "a1")


async def test_wrap_up_per_queue_then_available() -> None:
    r = Rig(config(wrap_up_seconds=20))
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1", wrap_up_code="sale", notes="ok")
    assert r.engine.agent("a1").state == "wrap_up"
    t2 = await r.enqueue(case_id="k2")
    assert r.offered_to(t2.id) == []
    await r.advance(19)
    assert r.engine.agent("a1").state == "wrap_up"
    await r.advance(1)
    assert r.offered_to(t2.id) == ["a1"]
    (ended,) = r.bus.of("task.wrap_up_ended")
    assert ended.payload["wrap_up_code"] == "sale" and ended.payload["handle_seconds"] == 20


async def test_wrap_up_end_early_and_extend() -> None:
    r = Rig(config(wrap_up_seconds=20))
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1")
    (w,) = await r.engine.extend_wrap_up("a1", 30)
    assert (w.ends_at - r.clock.now()).total_seconds() == 50
    await r.advance(20)
    assert r.engine.agent("a1").state == "wrap_up"  # the stale timer must not end it
    await r.advance(29)
    assert r.engine.agent("a1").state == "wrap_up"
    await r.engine.end_wrap_up("a1", wrap_up_code="no_sale")
    assert r.engine.agent("a1").state == "available"
    (ended,) = r.bus.of("task.wrap_up_ended")
    assert ended.payload["wrap_up_code"] == "no_sale" and ended.payload["reason"] == "agent"


async def test_wrap_up_of_one_queue_is_not_ended_by_another_queue() -> None:
    """app_queue defect: an agent in several queues could get a call from the second
    queue during the first queue's wrap-up. Here wrap-up blocks the agent, whatever queue."""
    r = Rig(config(wrap_up_seconds=60))
    await r.login("a1")
    t = await r.enqueue("q")
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1")
    other = await r.enqueue("q2", case_id="k2")
    await r.advance(30)
    assert r.offered_to(other.id) == []
    assert r.engine.agent("a1").state == "wrap_up"
    await r.advance(30)
    assert r.offered_to(other.id) == ["a1"]


async def test_chat_wrap_up_holds_one_slot_only() -> None:
    r = Rig({"queues": [{"id": "q", "channels": ["webchat"], "wrap_up_seconds": 60}],
             "agents": [agent("a1", ["q"], webchat=2)]})
    await r.login("a1")
    t = await r.enqueue(channel="webchat")
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1")
    t2 = await r.enqueue(channel="webchat", case_id="k2")
    assert r.offered_to(t2.id) == ["a1"]
    t3 = await r.enqueue(channel="webchat", case_id="k3")
    assert r.offered_to(t3.id) == []


async def test_transfer_keeps_the_enqueue_time_and_frees_the_agent() -> None:
    r = Rig(config())
    await r.login("a1")
    t = await r.enqueue()
    r.clock.advance(7)
    await r.answer(t.id)
    moved = await r.engine.transfer(t.id, "a1", "q2")
    assert moved.queue_id == "q2" and moved.enqueued_at == t.enqueued_at
    assert r.engine.agent("a1").load["voice"] == 0
    assert r.offered_to(t.id) == []  # not straight back to the agent who transferred it
    assert r.bus.of("task.moved")[0].payload["reason"] == "transfer"


async def test_not_ready_while_busy_takes_effect_after_the_work() -> None:
    r = Rig(config(wrap_up_seconds=5))
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.set_state("a1", "not_ready", "break")
    assert r.engine.agent("a1").state == "busy"
    await r.engine.complete(t.id, "a1")
    await r.advance(5)
    a1 = r.engine.agent("a1")
    assert (a1.state, a1.reason) == ("not_ready", "break")
    t2 = await r.enqueue(case_id="k2")
    assert r.offered_to(t2.id) == []


async def test_logout_ends_running_wrap_ups() -> None:
    r = Rig(config(wrap_up_seconds=60))
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1", wrap_up_code="sale")
    await r.engine.agent_logout("a1")
    assert r.engine.task(t.id).status == "completed"
    (ended,) = r.bus.of("task.wrap_up_ended")
    assert ended.payload["reason"] == "logout" and ended.payload["wrap_up_code"] == "sale"
