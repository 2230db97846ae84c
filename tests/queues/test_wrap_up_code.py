"""A queue that wants a wrap-up code (`wrap_up_code_required`): a call the customer hung
up goes into wrap-up without one, and its timer must not end it codeless; the agent
ends it with a code. The `disconnected` reason the web uses is a known reason."""

from __future__ import annotations

import pytest

from queues import errors as E
from tests.queues.acd_helpers import Rig, agent


def config(**queue: object) -> dict:
    return {
        "queues": [{"id": "q", "wrap_up_seconds": 20, **queue}],
        "agents": [agent("a1", ["q"])],
        "wrap_up_codes": [{"id": "sale", "name": "Sale made"}, {"id": "no_sale"}],
    }


async def test_timer_does_not_end_a_codeless_wrap_up_when_a_code_is_required() -> None:
    r = Rig(config(wrap_up_code_required=True))
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1")  # the caller hung up: no code yet
    await r.advance(60)
    assert r.engine.agent("a1").state == "wrap_up"
    assert r.bus.of("task.wrap_up_ended") == []
    with pytest.raises(E.WrapUpCodeRequiredError):
        await r.engine.end_wrap_up("a1", t.id)
    assert r.engine.agent("a1").state == "wrap_up"
    await r.engine.end_wrap_up("a1", t.id, wrap_up_code="sale", notes="two seats")
    (ended,) = r.bus.of("task.wrap_up_ended")
    assert ended.payload["wrap_up_code"] == "sale" and ended.payload["reason"] == "agent"
    assert ended.payload["notes"] == "two seats"
    assert r.engine.agent("a1").state == "available"


async def test_timer_ends_a_wrap_up_that_has_its_code() -> None:
    r = Rig(config(wrap_up_code_required=True))
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1", wrap_up_code="no_sale")
    await r.advance(20)
    (ended,) = r.bus.of("task.wrap_up_ended")
    assert ended.payload["reason"] == "timer" and ended.payload["wrap_up_code"] == "no_sale"


async def test_without_the_flag_the_timer_ends_wrap_up_as_before() -> None:
    r = Rig(config())
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1")
    await r.advance(20)
    (ended,) = r.bus.of("task.wrap_up_ended")
    assert ended.payload["reason"] == "timer" and ended.payload["wrap_up_code"] is None


async def test_logout_still_ends_a_codeless_required_wrap_up() -> None:
    r = Rig(config(wrap_up_code_required=True))
    await r.login("a1")
    t = await r.enqueue()
    await r.answer(t.id)
    await r.engine.complete(t.id, "a1")
    await r.engine.agent_logout("a1")
    (ended,) = r.bus.of("task.wrap_up_ended")
    assert ended.payload["reason"] == "logout"


async def test_disconnected_is_a_reason_the_engine_knows() -> None:
    r = Rig(config())
    await r.login("a1")
    view = await r.engine.set_state("a1", "not_ready", "disconnected")
    assert view.reason == "disconnected"


async def test_agent_stats_carry_the_time_in_the_current_state() -> None:
    r = Rig(config())
    await r.login("a1")
    r.clock.advance(42)
    assert r.engine.stats()["agents"]["a1"]["state_seconds"] == pytest.approx(42)


async def test_a_never_logged_in_agent_is_logged_out_since_the_engine_knew_it() -> None:
    r = Rig(config())
    r.clock.advance(7)
    agent = r.engine.stats()["agents"]["a1"]
    assert agent["state"] == "logged_out" and agent["state_seconds"] == pytest.approx(7)
