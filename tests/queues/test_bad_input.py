"""Bad input: a clear AcdError subclass, and the engine's state exactly as before."""

from __future__ import annotations

from datetime import timedelta

import pytest
from acd_helpers import Rig, agent

from config.schema import CentraleConfig
from core.clock import ManualClock
from queues import errors as E
from queues.engine import AcdEngine
from queues.ports import CollectingPublisher

pytestmark = pytest.mark.asyncio


def config() -> dict:
    return {
        "queues": [{"id": "q", "channels": ["voice", "webchat"], "rona_seconds": 10},
                   {"id": "chat", "channels": ["webchat"]}],
        "agents": [agent("a1", ["q"]), agent("a2", ["q"])],
        "wrap_up_codes": [{"id": "sale"}],
    }


async def unchanged(r: Rig, call, error: type[E.AcdError]) -> None:
    before = r.engine.snapshot()
    events = len(r.bus.events)
    with pytest.raises(error) as info:
        await call()
    assert str(info.value)
    after = r.engine.snapshot()
    before["stats"].pop("at"), after["stats"].pop("at")
    assert after == before
    assert len(r.bus.events) == events


async def test_unknown_queue_agent_task_offer() -> None:
    r = Rig(config())
    await r.login("a1")
    await unchanged(r, lambda: r.enqueue("nope"), E.UnknownQueueError)
    await unchanged(r, lambda: r.engine.agent_login("ghost", "s"), E.UnknownAgentError)
    await unchanged(r, lambda: r.engine.set_state("ghost", "available"), E.UnknownAgentError)
    await unchanged(r, lambda: r.engine.abandon("no-task"), E.UnknownTaskError)
    await unchanged(r, lambda: r.engine.position("no-task"), E.UnknownTaskError)
    await unchanged(r, lambda: r.engine.accept("no-offer", "a1"), E.UnknownOfferError)
    await unchanged(r, lambda: r.engine.request_callback("no-task", "+331234"),
                    E.UnknownTaskError)
    with pytest.raises(E.UnknownQueueError):
        await r.engine.queue_estimated_wait("nope", "voice")


async def test_bad_task_fields() -> None:
    r = Rig(config())
    await unchanged(r, lambda: r.enqueue(channel="fax"), E.InvalidArgumentError)
    await unchanged(r, lambda: r.enqueue("chat", channel="voice"), E.ChannelNotServedError)
    await unchanged(r, lambda: r.enqueue(case_id=""), E.InvalidArgumentError)
    await unchanged(r, lambda: r.enqueue(skills={"fr": 0}), E.InvalidArgumentError)
    await unchanged(r, lambda: r.enqueue(skills={"fr": "1"}), E.InvalidArgumentError)
    await unchanged(r, lambda: r.enqueue(skills=["fr"]), E.InvalidArgumentError)
    await unchanged(r, lambda: r.enqueue(priority="high"), E.InvalidArgumentError)
    await unchanged(r, lambda: r.enqueue(attributes=[1]), E.InvalidArgumentError)
    future = r.clock.now() + timedelta(seconds=5)
    await unchanged(r, lambda: r.enqueue(enqueued_at=future), E.InvalidArgumentError)
    await unchanged(r, lambda: r.enqueue(enqueued_at=future.replace(tzinfo=None)),
                    E.InvalidArgumentError)
    t = await r.enqueue(task_id="t1")
    await unchanged(r, lambda: r.enqueue(task_id="t1"), E.DuplicateTaskError)
    await unchanged(r, lambda: r.engine.request_callback(t.id, "call me"),
                    E.InvalidArgumentError)
    chat = await r.enqueue("chat", channel="webchat", task_id="c1")
    await unchanged(r, lambda: r.engine.request_callback(chat.id, "+3312345"),
                    E.ChannelNotServedError)


async def test_undeclared_skill_is_refused_when_skills_are_declared() -> None:
    r = Rig({**config(), "skills": [{"id": "fr"}, {"id": "de"}]})
    await unchanged(r, lambda: r.enqueue(skills={"klingon": 1}), E.InvalidArgumentError)
    assert (await r.enqueue(skills={"de": 2})).skills == {"de": 2}


async def test_login_elsewhere_is_refused() -> None:
    r = Rig(config())
    await r.engine.agent_login("a1", "laptop")
    await unchanged(r, lambda: r.engine.agent_login("a1", "phone"), E.AgentAlreadyLoggedInError)
    await unchanged(r, lambda: r.engine.agent_logout("a1", "phone"),
                    E.ForbiddenStateChangeError)
    await unchanged(r, lambda: r.engine.agent_login("a2", ""), E.InvalidArgumentError)


async def test_forbidden_state_changes() -> None:
    r = Rig(config())
    await unchanged(r, lambda: r.engine.set_state("a1", "available"), E.AgentNotLoggedInError)
    await unchanged(r, lambda: r.engine.agent_logout("a1"), E.AgentNotLoggedInError)
    await r.login("a1")
    for state in ("busy", "wrap_up", "logged_out", "sleeping"):
        await unchanged(r, lambda s=state: r.engine.set_state("a1", s),
                        E.ForbiddenStateChangeError)
    await unchanged(r, lambda: r.engine.set_state("a1", "not_ready", "nap"),
                    E.UnknownReasonCodeError)
    await unchanged(r, lambda: r.engine.set_state("a1", "available", "break"),
                    E.InvalidArgumentError)
    await unchanged(r, lambda: r.engine.end_wrap_up("a1"), E.NotInWrapUpError)
    await unchanged(r, lambda: r.engine.extend_wrap_up("a1", 10), E.NotInWrapUpError)


async def test_offers_expired_withdrawn_or_someone_elses() -> None:
    r = Rig({"queues": [{"id": "q", "strategy": "ring_all", "channels": ["voice"],
                         "rona_seconds": 10}],
             "agents": [agent("a1", ["q"]), agent("a2", ["q"])]})
    await r.login("a1", "a2")
    t = await r.enqueue()
    o1, o2 = r.offer_id(t.id, "a1"), r.offer_id(t.id, "a2")
    await unchanged(r, lambda: r.engine.accept(o1, "a2"), E.OfferNotYoursError)
    await r.engine.accept(o1, "a1")
    await unchanged(r, lambda: r.engine.accept(o2, "a2"), E.OfferWithdrawnError)
    await unchanged(r, lambda: r.engine.reject(o2, "a2"), E.OfferWithdrawnError)
    await unchanged(r, lambda: r.engine.abandon(t.id), E.TaskStateError)
    t2 = await r.enqueue(case_id="k2")
    o3 = r.offer_id(t2.id, "a2")
    r.clock.advance(10)
    await unchanged(r, lambda: r.engine.accept(o3, "a2"), E.OfferExpiredError)
    await unchanged(r, lambda: r.engine.reject(o3, "a2"), E.OfferExpiredError)


async def test_task_operations_in_the_wrong_state() -> None:
    r = Rig(config())
    await r.login("a1")
    t = await r.enqueue()
    await unchanged(r, lambda: r.engine.complete(t.id, "a1"), E.TaskStateError)
    await r.answer(t.id)
    await unchanged(r, lambda: r.engine.complete(t.id, "a2"), E.TaskStateError)
    await unchanged(r, lambda: r.engine.complete(t.id, "a1", wrap_up_code="??"),
                    E.UnknownWrapUpCodeError)
    await unchanged(r, lambda: r.engine.complete(t.id, "a1", notes=5), E.InvalidArgumentError)
    await unchanged(r, lambda: r.engine.request_callback(t.id, "+3312345"), E.TaskStateError)
    await unchanged(r, lambda: r.engine.transfer(t.id, "a1", "nope"), E.UnknownQueueError)
    await unchanged(r, lambda: r.engine.position(t.id), E.TaskStateError)
    await r.engine.complete(t.id, "a1")
    await unchanged(r, lambda: r.engine.extend_wrap_up("a1", -1), E.InvalidArgumentError)
    await unchanged(r, lambda: r.engine.extend_wrap_up("a1", float("nan")),
                    E.InvalidArgumentError)
    await unchanged(r, lambda: r.engine.end_wrap_up("a1", task_id="other"), E.NotInWrapUpError)
    await r.engine.end_wrap_up("a1")
    await unchanged(r, lambda: r.engine.abandon(t.id), E.TaskStateError)
    assert r.engine.task(t.id).status == "completed"


async def test_config_with_unknown_queue_references_is_refused() -> None:
    cfg = CentraleConfig.model_validate({
        "queues": [{"id": "q", "overflow": [{"after_seconds": 5, "move_to": "nowhere"}]}],
        "agents": [agent("a1", ["ghost"])],
    })
    with pytest.raises(E.AcdConfigError) as info:
        AcdEngine(cfg, ManualClock(), CollectingPublisher())
    assert "nowhere" in str(info.value) and "ghost" in str(info.value)
