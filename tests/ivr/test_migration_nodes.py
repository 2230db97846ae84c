"""The nodes added so imported Avaya vectors map instead of approximate: `wait`,
`transfer.target_variable` (route-to digits) and `queue_stats` in conditions."""

from __future__ import annotations

import asyncio

import pytest

from config.validate_flows import validate_flows
from ivr.interpreter import Interpreter, Outcome
from ivr.ports import CustomerContext, QueueStatistics
from ivr.testing import Press, ScriptedCallLeg, Silence

CASE = CustomerContext(customer_id="c1", case_id="k1", language="en")


async def test_wait_holds_the_caller_for_its_seconds_with_music(make_interpreter, clock):
    interp = make_interpreter({
        "hold": {"type": "wait", "seconds": 20, "hearing": "music", "next": "bye"},
        "bye": {"type": "hangup"},
    })
    leg = ScriptedCallLeg([Press("5"), Silence()], clock=clock)  # a key does not end it
    started = clock.monotonic()
    result = await interp.run(leg, "main", CASE)
    assert result.outcome == Outcome.HANGUP
    assert clock.monotonic() - started >= 20
    assert ("moh_on", "default") in leg.events and ("moh_off", None) in leg.events
    assert result.steps[0].summary.startswith("Waited 20 s hearing music")


async def test_wait_ringback_uses_the_ringback_music_class(make_interpreter, clock):
    interp = make_interpreter({
        "ring": {"type": "wait", "seconds": 4, "hearing": "ringback", "next": "bye"},
        "bye": {"type": "hangup"},
    })
    leg = ScriptedCallLeg(clock=clock)
    await interp.run(leg, "main", CASE)
    assert ("moh_on", "ringback") in leg.events


async def test_wait_silence_plays_nothing(make_interpreter, clock):
    interp = make_interpreter({
        "quiet": {"type": "wait", "seconds": 2, "hearing": "silence", "next": "bye"},
        "bye": {"type": "hangup"},
    })
    leg = ScriptedCallLeg(clock=clock)
    await interp.run(leg, "main", CASE)
    assert not any(e[0] == "moh_on" for e in leg.events)


def test_a_loop_through_a_wait_is_not_a_busy_loop(config_for):
    config = config_for({
        "hold": {"type": "wait", "seconds": 30, "next": "ann"},
        "ann": {"type": "play", "prompts": ["welcome"], "next": "hold"},
    })
    assert [p.message for p in validate_flows(config)] == []
    busy = config_for({
        "a": {"type": "play", "prompts": ["welcome"], "next": "b"},
        "b": {"type": "play", "prompts": ["welcome"], "next": "a"},
    })
    assert any("loop never waits" in p.message for p in validate_flows(busy))


async def test_transfer_to_the_digits_the_caller_entered(make_interpreter, clock):
    interp = make_interpreter({
        "ask": {"type": "collect", "prompts": ["welcome"], "variable": "dest",
                "max_digits": 4, "next": "go", "fallback": "bye"},
        "go": {"type": "transfer", "target_variable": "dest", "failed_next": "bye"},
        "bye": {"type": "hangup", "prompts": ["goodbye"]},
    })
    leg = ScriptedCallLeg([Press("4711")], clock=clock)
    result = await interp.run(leg, "main", CASE)
    assert result.outcome == Outcome.TRANSFERRED
    assert ("transfer", "4711") in leg.events


async def test_transfer_variable_without_a_number_goes_to_failed_next(make_interpreter, clock):
    interp = make_interpreter({
        "set": {"type": "set", "variables": {"dest": "abc"}, "next": "go"},
        "go": {"type": "transfer", "target_variable": "dest", "failed_next": "bye"},
        "bye": {"type": "hangup", "prompts": ["goodbye"]},
    })
    leg = ScriptedCallLeg(clock=clock)
    result = await interp.run(leg, "main", CASE)
    assert result.outcome == Outcome.HANGUP and result.node == "bye"
    assert not any(e[0] == "transfer" for e in leg.events)


def test_transfer_needs_exactly_one_target(config_for):
    with pytest.raises(ValueError, match="exactly one"):
        config_for({"go": {"type": "transfer", "target": "100", "target_variable": "x"}})
    with pytest.raises(ValueError, match="exactly one"):
        config_for({"go": {"type": "transfer"}})


class Stats:
    def __init__(self, figures: dict[str, QueueStatistics]) -> None:
        self.figures = figures
        self.asked: list[str] = []

    async def statistics(self, queue_id: str) -> QueueStatistics | None:
        self.asked.append(queue_id)
        return self.figures.get(queue_id)


NODES = {
    "check": {"type": "condition",
              "branches": [{"when": "queue_stats.sales.available_agents == 0",
                            "next": "closed"}],
              "otherwise": "q"},
    "q": {"type": "queue", "queue": "sales"},
    "closed": {"type": "hangup", "prompts": ["closed"]},
}


@pytest.mark.parametrize(("available", "node"), [(0, "closed"), (2, "q")])
async def test_condition_reads_live_queue_statistics(config_for, clock, queue, timeline,
                                                     available, node):
    stats = Stats({"sales": QueueStatistics(available_agents=available, staffed_agents=3)})
    interp = Interpreter(config_for(NODES), queues=queue, timeline=timeline, clock=clock,
                         queue_stats=stats)
    leg = ScriptedCallLeg([Silence()], clock=clock)
    run = asyncio.ensure_future(interp.run(leg, "main", CASE))
    for _ in range(50):
        await asyncio.sleep(0)
        if run.done() or queue.requests:
            break
    if not run.done():
        queue.connect()
    result = await run
    assert stats.asked == ["sales"]
    assert result.steps[0].next == node


async def test_without_a_statistics_port_the_figure_is_none_and_tests_false(
        make_interpreter, clock, queue):
    interp = make_interpreter({**NODES, "check": {
        "type": "condition",
        "branches": [{"when": "queue_stats.sales.calls_queued > 5", "next": "closed"}],
        "otherwise": "closed2"}, "closed2": {"type": "hangup"}})
    leg = ScriptedCallLeg(clock=clock)
    result = await interp.run(leg, "main", CASE)
    assert result.node == "closed2"


def test_queue_stats_names_are_checked(config_for):
    bad_field = config_for({**NODES, "check": {
        "type": "condition", "branches": [{"when": "queue_stats.sales.agents > 1",
                                           "next": "closed"}], "otherwise": "q"}})
    assert any("queue_stats.<queue id>.<figure>" in p.message
               for p in validate_flows(bad_field))
    bad_queue = config_for({**NODES, "check": {
        "type": "condition", "branches": [{"when": "queue_stats.nope.calls_queued > 1",
                                           "next": "closed"}], "otherwise": "q"}})
    assert any("unknown queue 'nope'" in p.message for p in validate_flows(bad_queue))
