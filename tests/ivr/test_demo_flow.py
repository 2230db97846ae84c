"""The demo site's real flow (examples/demo) on the interpreter, and its prompts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.loader import load_config
from config.validate_flows import node_prompts
from core.clock import ManualClock
from ivr.interpreter import Interpreter, Outcome
from ivr.ports import CustomerContext
from ivr.prompts import say_duration, say_position
from ivr.testing import FakeQueue, Press, RecordingTimeline, ScriptedCallLeg, Silence, Then

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


@pytest.fixture(scope="module")
def demo_config():
    return load_config(DEMO)


async def test_known_english_caller_reaches_support_and_an_agent(demo_config):
    clock = ManualClock(datetime(2026, 1, 6, 9, 0, tzinfo=UTC))  # Tue 10:00 in Amsterdam
    queue, timeline = FakeQueue(position=2, wait=100), RecordingTimeline()
    interp = Interpreter(demo_config, queues=queue, timeline=timeline, clock=clock)
    leg = ScriptedCallLeg([Press("2"), Silence(), Then(lambda: queue.connect("anna"))],
                          clock=clock)
    ctx = CustomerContext(customer_id="c1", case_id="k1", language="en")
    result = await interp.run(leg, "main", ctx)
    assert result.outcome == Outcome.CONNECTED and result.agent_id == "anna"
    # The customer's language is known: no language menu, English from the start.
    assert [s.node for s in result.steps] == ["hours", "known_customer", "main_menu",
                                              "to_support", "to_support"]
    assert queue.requests[0].queue_id == "support" and queue.requests[0].language == "en"
    assert leg.prompts("en")[:4] == ["menu_main", "queue/you_are_number", "digits/2",
                                     "queue/in_line"]
    bodies = timeline.bodies()
    assert "Menu main_menu: pressed 2 → to_support" in bodies
    assert bodies[-1].startswith("Connected to agent anna")


async def test_the_demo_is_open_at_any_hour_so_the_walkthrough_works(demo_config):
    clock = ManualClock(datetime(2026, 12, 25, 2, 0, tzinfo=UTC))  # Christmas, 3 AM
    interp = Interpreter(demo_config, queues=FakeQueue(), timeline=RecordingTimeline(),
                         clock=clock)
    leg = ScriptedCallLeg([Press("1"), Press("1")], clock=clock)
    result = await interp.run(leg, "main", CustomerContext())
    assert [s.node for s in result.steps][:3] == ["hours", "known_customer", "language"]
    assert leg.prompts("nl")[:3] == ["welcome", "choose_language", "menu_main"]


async def test_after_hours_line_speaks_dutch_then_english_to_an_unknown_caller(demo_config):
    clock = ManualClock(datetime(2026, 1, 6, 9, 0, tzinfo=UTC))
    interp = Interpreter(demo_config, queues=FakeQueue(), timeline=RecordingTimeline(),
                         clock=clock)
    leg = ScriptedCallLeg(clock=clock)
    result = await interp.run(leg, "after_hours", CustomerContext())
    assert result.node == "closed_known"
    assert leg.prompts("nl") == ["closed"]
    assert leg.prompts("en") == ["closed", "goodbye"]


async def test_after_hours_line_speaks_only_the_known_language(demo_config):
    clock = ManualClock(datetime(2026, 1, 6, 9, 0, tzinfo=UTC))
    interp = Interpreter(demo_config, queues=FakeQueue(), timeline=RecordingTimeline(),
                         clock=clock)
    leg = ScriptedCallLeg(clock=clock)
    await interp.run(leg, "after_hours", CustomerContext(customer_id="c1", language="en"))
    assert leg.prompts("en") == ["closed", "goodbye"] and leg.prompts("nl") == []


def test_every_prompt_the_demo_can_play_is_recorded_in_both_languages(demo_config):
    keys: set[str] = set()
    for flow in demo_config.flows:
        for node in flow.nodes.values():
            keys.update(node_prompts(node))
    for lang in ("nl", "en"):
        dynamic = {k for p in range(1, 150) for k in say_position(p, lang).keys}
        dynamic |= {k for s in range(0, 4 * 3600, 30) for k in say_duration(s, lang).keys}
        dynamic |= {"queue/wait_time_is", "queue/callback_offer", "queue/voicemail_offer",
                    "callback_confirmed", "digits/star", "digits/hash"}
        missing = sorted(k for k in keys | dynamic if not (DEMO / "prompts" / lang /
                                                          f"{k}.wav").is_file())
        assert missing == [], f"{lang}: {missing}"
