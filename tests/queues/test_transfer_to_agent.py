"""Transfer to a named agent (`AcdEngine.transfer_to_agent`): a directed offer to that
agent only; not taken → back to the transferring agent → the task's queue."""

from __future__ import annotations

import pytest

from queues import errors as E
from tests.queues.acd_helpers import Rig, agent


def config(**queue: object) -> dict:
    return {
        "queues": [{"id": "q", "rona_seconds": 10, "wrap_up_seconds": 5, **queue},
                   {"id": "billing"}],
        # a3 does not serve q: a transfer by name reaches agents of any queue.
        "agents": [agent("a1", ["q"]), agent("a2", ["q"]), agent("a3", ["billing"])],
    }


async def accepted_by_a1(r: Rig, **kw: object):
    await r.login("a1")
    t = await r.enqueue(priority=7, **kw)
    await r.answer(t.id)
    return t


async def test_the_named_agent_gets_the_task_with_case_priority_and_who_transferred() -> None:
    r = Rig(config())
    t = await accepted_by_a1(r)
    await r.login("a2", "a3")
    moved = await r.engine.transfer_to_agent(t.id, "a3", by="a1", reason="billing question")
    assert moved.status == "offered" and moved.queue_id == "q"
    assert r.offered_to(t.id) == ["a3"]
    offered = r.bus.of("task.offered")[-1].payload
    assert offered["agent_id"] == "a3" and offered["case_id"] == "case-1"
    assert offered["attributes"]["transfer"]["by"] == "a1"
    assert offered["attributes"]["transfer"]["reason"] == "billing question"
    assert r.engine.task(t.id).priority == 7
    assert r.engine.agent("a1").load["voice"] == 0  # the giver is free at once
    await r.engine.accept(r.offer_id(t.id, "a3"), "a3")
    assert r.engine.task(t.id).agent_id == "a3"
    assert r.engine.agent("a3").state == "busy"
    await r.engine.complete(t.id, "a3", notes="sorted")
    assert r.engine.agent("a3").wrap_ups[0].task_id == t.id  # wrap-up is the receiver's
    moved_event = r.bus.of("task.moved")[-1].payload
    assert (moved_event["reason"], moved_event["to_agent_id"]) == ("transfer", "a3")


async def test_no_answer_goes_back_to_the_giver_then_to_the_queue() -> None:
    r = Rig(config(rona_action="stay_available"))
    t = await accepted_by_a1(r)
    await r.login("a3")
    await r.engine.transfer_to_agent(t.id, "a3", by="a1")
    await r.advance(10)  # a3 does not answer (RONA)
    assert r.offered_to(t.id) == ["a1"]
    await r.engine.reject(r.offer_id(t.id, "a1"), "a1")  # nor does the giver take it
    # It waits in its own queue; a2 (who serves q) gets it as soon as they log in.
    assert r.engine.task(t.id).status == "waiting"
    assert "task.transfer_fell_back" in r.topics()
    await r.login("a2")
    assert r.offered_to(t.id) == ["a2"]


async def test_an_unavailable_target_goes_straight_back_to_the_giver() -> None:
    r = Rig(config())
    t = await accepted_by_a1(r)
    await r.login("a3")
    await r.engine.set_state("a3", "not_ready", "lunch")
    await r.engine.transfer_to_agent(t.id, "a3", by="a1")
    assert r.offered_to(t.id) == ["a1"]
    # A rejected offer never reaches the giver again; a logged-out giver → the queue.
    r2 = Rig(config())
    t2 = await accepted_by_a1(r2)
    await r2.engine.transfer_to_agent(t2.id, "a3", by="a1")  # a3 logged out
    await r2.engine.agent_logout("a1")
    assert r2.engine.task(t2.id).status == "waiting"


async def test_old_queue_timers_do_not_fire_on_a_directed_offer() -> None:
    r = Rig(config(max_wait_seconds=30, rona_seconds=60, rona_action="stay_available"))
    t = await accepted_by_a1(r)
    await r.login("a3")
    await r.advance(20)
    await r.engine.transfer_to_agent(t.id, "a3", by="a1")
    await r.advance(15)  # the first queue entry's max wait (30 s) has passed
    assert r.offered_to(t.id) == ["a3"] and "task.exited" not in r.topics()


async def test_bad_transfers_change_nothing() -> None:
    r = Rig(config())
    t = await accepted_by_a1(r)
    with pytest.raises(E.UnknownAgentError):
        await r.engine.transfer_to_agent(t.id, "nobody", by="a1")
    with pytest.raises(E.TaskStateError):
        await r.engine.transfer_to_agent(t.id, "a3", by="a2")  # not a2's task
    with pytest.raises(E.InvalidArgumentError):
        await r.engine.transfer_to_agent(t.id, "a1", by="a1")
    with pytest.raises(E.InvalidArgumentError):
        await r.engine.transfer_to_agent(t.id, "a3", by="a1", reason="x" * 501)
    assert r.engine.task(t.id).agent_id == "a1" and r.engine.task(t.id).status == "assigned"
    assert r.engine.agent("a1").load["voice"] == 1


async def test_a_queue_transfer_notes_who_and_why_too() -> None:
    r = Rig(config())
    t = await accepted_by_a1(r)
    await r.login("a3")
    await r.engine.transfer(t.id, "a1", "billing", reason="invoice")
    offered = r.bus.of("task.offered")[-1].payload
    assert offered["agent_id"] == "a3"
    assert offered["attributes"]["transfer"] == {
        "by": "a1", "reason": "invoice", "to_queue_id": "billing",
        "at": offered["attributes"]["transfer"]["at"]}


async def test_an_answered_transfer_is_accepted_at_once_by_the_target() -> None:
    r = Rig(config())
    t = await accepted_by_a1(r)
    await r.login("a3")
    done = await r.engine.transfer_to_agent(t.id, "a3", by="a1", reason="consulted",
                                            answered=True)
    assert done.status == "assigned" and done.agent_id == "a3"
    offered = r.bus.of("task.offered")[-1].payload
    assert offered["attributes"]["transfer"]["answered"] is True
    assert r.bus.of("task.accepted")[-1].payload["agent_id"] == "a3"
    # A target who cannot take it now: refused, nothing changed.
    t2 = await accepted_by_a1(r)
    with pytest.raises(E.AgentBusyError):
        await r.engine.transfer_to_agent(t2.id, "a3", by="a1", answered=True)
    assert r.engine.task(t2.id).agent_id == "a1"
