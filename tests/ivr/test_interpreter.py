"""Every node type on a scripted call leg: digits in, prompts and timeline out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ivr.call_leg import CallerData
from ivr.interpreter import Outcome
from ivr.ports import CustomerContext, LookupMatch
from ivr.testing import (
    Barge,
    Press,
    ScriptedCallLeg,
    Silence,
    Then,
)

CASE = CustomerContext(customer_id="cust-1", case_id="case-1", case_open=True,
                       language="en", tags=frozenset({"VIP"}), name="Anna")
BYE = {"type": "hangup", "prompts": ["goodbye"]}


async def test_play_then_hangup_records_the_path(make_interpreter, clock, timeline):
    interp = make_interpreter({
        "hello": {"type": "play", "prompts": ["welcome"], "next": "bye"},
        "bye": BYE,
    })
    leg = ScriptedCallLeg(clock=clock)
    result = await interp.run(leg, "main", CASE)
    assert result.outcome == Outcome.HANGUP
    assert leg.answered and leg.hung_up
    assert leg.prompts("en") == ["welcome", "goodbye"]
    assert [s.node for s in result.steps] == ["hello", "bye"]
    assert timeline.kinds()[0] == "ivr_step" and timeline.kinds()[-1] == "ivr_end"
    end = timeline.entries[-1][3]
    assert end["path"] == ["main.hello", "main.bye"] and end["outcome"] == "hangup"
    assert all(e[0] == "case-1" for e in timeline.entries)


async def test_play_without_next_hangs_up(make_interpreter, clock):
    interp = make_interpreter({"only": {"type": "play", "prompts": ["closed"]}})
    leg = ScriptedCallLeg(clock=clock)
    result = await interp.run(leg, "main", CASE)
    assert result.outcome == Outcome.HANGUP and ("hangup", "normal") in leg.events


async def test_play_barge_in_digit_jumps(make_interpreter, clock):
    interp = make_interpreter({
        "intro": {"type": "play", "prompts": ["welcome", "menu_main"], "barge_in": True,
                  "digit_next": {"9": "secret"}, "next": "bye"},
        "secret": {"type": "hangup", "prompts": ["holiday"]},
        "bye": BYE,
    })
    leg = ScriptedCallLeg([Barge("9")], clock=clock)
    result = await interp.run(leg, "main", CASE)
    # barge-in stopped the first prompt; the second never played
    assert leg.prompts() == ["welcome", "holiday"]
    assert result.node == "secret"


async def test_menu_choice_retries_and_fallback(make_interpreter, clock, timeline):
    nodes = {
        "menu": {"type": "menu", "prompts": ["menu_main"], "options": {"1": "a", "2": "b"},
                 "retries": 3, "fallback": "fb"},
        "a": {"type": "hangup", "prompts": ["welcome"]},
        "b": {"type": "hangup", "prompts": ["closed"]},
        "fb": {"type": "hangup", "prompts": ["holiday"]},
    }
    # wrong key, then silence, then 2
    leg = ScriptedCallLeg([Press("7"), Silence(), Press("2")], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.node == "b"
    assert leg.prompts() == ["menu_main", "invalid_option", "menu_main", "no_input",
                             "menu_main", "closed"]
    step = result.steps[0]
    assert step.data["tries"] == ["7", "timeout", "2"] and step.next == "b"
    assert "pressed 2" in timeline.bodies("ivr_step")[1]

    # three wrong answers: fallback, and no invalid prompt after the last try
    leg = ScriptedCallLeg([Press("5"), Press("6"), Press("7")], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.node == "fb"
    assert leg.prompts() == ["menu_main", "invalid_option", "menu_main", "invalid_option",
                             "menu_main", "holiday"]


async def test_menu_accepts_barge_in(make_interpreter, clock):
    nodes = {
        "menu": {"type": "menu", "prompts": ["welcome", "menu_main"], "options": {"1": "a"},
                 "fallback": "a"},
        "a": {"type": "hangup", "prompts": ["goodbye"]},
    }
    leg = ScriptedCallLeg([Barge("1")], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.steps[0].data["digits"] == "1"
    assert leg.prompts() == ["welcome", "goodbye"]
    assert not any(e[0] == "collect" for e in leg.events)


async def test_collect_validates_pattern_and_terminator(make_interpreter, clock):
    nodes = {
        "ask": {"type": "collect", "prompts": ["enter_order_number"], "variable": "order",
                "max_digits": 8, "min_digits": 4, "pattern": "9[0-9]+", "next": "check",
                "fallback": "bye"},
        "check": {"type": "condition",
                  "branches": [{"when": "vars.order == 91234", "next": "good"}],
                  "otherwise": "bye"},
        "good": {"type": "hangup", "prompts": ["welcome"]},
        "bye": BYE,
    }
    # too short; not matching the pattern; then valid with terminator
    leg = ScriptedCallLeg([Press("12#"), Press("81234#"), Press("91234#")], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.variables == {"order": "91234"}
    assert result.node == "good"
    assert leg.prompts().count("invalid_entry") == 2
    collect = next(e for e in leg.events if e[0] == "collect")
    assert collect[1] == (8, 5.0, "#")


async def test_collect_barge_in_first_digit_and_fallback(make_interpreter, clock):
    nodes = {
        "ask": {"type": "collect", "prompts": ["enter_customer_number"], "variable": "nr",
                "max_digits": 4, "retries": 2, "next": "bye", "fallback": "fb"},
        "fb": {"type": "hangup", "prompts": ["closed"]},
        "bye": BYE,
    }
    leg = ScriptedCallLeg([Barge("4"), Press("321")], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.variables["nr"] == "4321"

    leg = ScriptedCallLeg([Silence(), Silence()], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.node == "fb" and result.steps[0].data["tries"] == ["timeout", "timeout"]


async def test_collect_lookup_matches_customer(make_interpreter, clock, timeline):
    seen: list[tuple[str, str]] = []

    async def lookup(kind: str, value: str) -> LookupMatch:
        seen.append((kind, value))
        return LookupMatch(found=value == "5555", customer_id="cust-1" if value == "5555"
                           else None)

    ctx = CustomerContext(customer_id="cust-1", case_id="case-1", lookup=lookup)
    nodes = {
        "ask": {"type": "collect", "prompts": ["enter_customer_number"], "variable": "nr",
                "max_digits": 4, "lookup": "customer_number", "next": "check",
                "fallback": "bye"},
        "check": {"type": "condition",
                  "branches": [{"when": "lookup.matches_customer", "next": "vip"}],
                  "otherwise": "bye"},
        "vip": {"type": "hangup", "prompts": ["welcome"]},
        "bye": BYE,
    }
    leg = ScriptedCallLeg([Press("1111"), Press("5555")], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", ctx)
    assert seen == [("customer_number", "1111"), ("customer_number", "5555")]
    assert result.node == "vip"
    assert leg.prompts().count("invalid_entry") == 1
    assert timeline.entries[1][3]["lookup_found"] is True


async def test_schedule_branches(make_interpreter, clock):
    nodes = {
        "hours": {"type": "schedule", "schedule": "office", "open": "o", "closed": "c",
                  "holiday": "h"},
        "o": {"type": "hangup", "prompts": ["welcome"]},
        "c": {"type": "hangup", "prompts": ["closed"]},
        "h": {"type": "hangup", "prompts": ["holiday"]},
    }
    for when, expected in [
        (datetime(2026, 1, 6, 9, 0, tzinfo=UTC), "o"),  # Tue 10:00 CET
        (datetime(2026, 1, 6, 17, 0, tzinfo=UTC), "c"),  # Tue 18:00 CET
        (datetime(2026, 12, 25, 10, 0, tzinfo=UTC), "h"),  # Christmas
    ]:
        clock.set(when)
        result = await make_interpreter(nodes).run(ScriptedCallLeg(clock=clock), "main", CASE)
        assert result.node == expected, when


async def test_schedule_uses_flow_timezone_when_schedule_names_none(
    make_interpreter, clock
):
    nodes = {
        "hours": {"type": "schedule", "schedule": "ny", "open": "o", "closed": "c"},
        "o": {"type": "hangup", "prompts": ["welcome"]},
        "c": {"type": "hangup", "prompts": ["closed"]},
    }
    schedules = [{"id": "ny", "hours": {"tue": ["09:00-17:00"]}}]  # no timezone given
    # 15:00 UTC is 10:00 in New York (open) and 16:00 in Amsterdam
    clock.set(datetime(2026, 1, 6, 15, 0, tzinfo=UTC))
    interp = make_interpreter(nodes, schedules=schedules)
    flow_tz = interp.config.flows[0].model_copy(update={"timezone": "America/New_York"})
    interp.config = interp.config.model_copy(update={"flows": [flow_tz]})
    assert (await interp.run(ScriptedCallLeg(clock=clock), "main", CASE)).node == "o"
    # 22:30 UTC: 17:30 in New York, closed; Amsterdam would be closed too, so also check
    # 08:30 UTC: 03:30 in New York (closed) but 09:30 in Amsterdam (open there)
    clock.set(datetime(2026, 1, 6, 8, 30, tzinfo=UTC))
    assert (await interp.run(ScriptedCallLeg(clock=clock), "main", CASE)).node == "c"


async def test_condition_on_customer_and_case(make_interpreter, clock):
    nodes = {
        "route": {"type": "condition", "branches": [
            {"when": "not customer.known", "next": "anon"},
            {"when": '"vip" in customer.tags and case.open', "next": "vip"},
        ], "otherwise": "normal"},
        "anon": {"type": "hangup", "prompts": ["closed"]},
        "vip": {"type": "hangup", "prompts": ["welcome"]},
        "normal": {"type": "hangup", "prompts": ["goodbye"]},
    }
    interp = make_interpreter(nodes)
    assert (await interp.run(ScriptedCallLeg(clock=clock), "main", CASE)).node == "vip"
    assert (await interp.run(ScriptedCallLeg(clock=clock), "main",
                             CustomerContext())).node == "anon"
    plain = CustomerContext(customer_id="c2", case_id="k2")
    result = await interp.run(ScriptedCallLeg(clock=clock), "main", plain)
    assert result.node == "normal" and result.steps[0].data["branch"] == "otherwise"


async def test_set_language_variables_skills_priority_reach_the_queue(
    make_interpreter, clock, queue
):
    nodes = {
        "s": {"type": "set", "language": "nl", "variables": {"reason": "billing",
                                                             "vip": "=customer.vip"},
              "skills": {"dutch": 2}, "priority": 5, "next": "q"},
        "q": {"type": "queue", "queue": "sales", "skills": {"billing": 1},
              "announce_interval_seconds": 30},
    }
    leg = ScriptedCallLeg([Then(lambda: queue.connect("agent-7"))], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.outcome == Outcome.CONNECTED and result.agent_id == "agent-7"
    assert result.language == "nl" and result.variables == {"reason": "billing", "vip": True}
    req = queue.requests[0]
    assert req.skills == {"dutch": 2, "billing": 1} and req.priority == 5
    assert req.case_id == "case-1" and req.language == "nl"
    assert req.ivr_path == ("main.s", "main.q")
    # the announcement was in Dutch pieces: position 3, about 4 minutes
    assert leg.prompts("nl")[:7] == ["queue/you_are_number", "digits/3", "queue/in_line",
                                     "queue/wait_time_is", "queue/about", "digits/4",
                                     "queue/minutes"]
    assert not leg.moh  # stopped before the hand-over
    assert queue.abandoned == []


async def test_queue_announces_at_interval_then_max_wait(make_interpreter, clock, queue):
    nodes = {
        "q": {"type": "queue", "queue": "sales", "announce_interval_seconds": 60,
              "max_wait_seconds": 200, "timeout_next": "vm"},
        "vm": {"type": "voicemail", "prompts": ["leave_message"]},
    }
    leg = ScriptedCallLeg(clock=clock)  # a silent caller
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    # entry + 3 interval announcements (at ~60, ~120, ~180 s) before the 200 s max wait
    assert leg.prompts().count("queue/wait_time_is") == 4
    assert result.node == "vm" and queue.abandoned == ["task-1"]
    assert result.outcome == Outcome.HANGUP
    assert ("moh_on", "default") in leg.events


async def test_queue_callback_key(make_interpreter, clock, queue, timeline):
    nodes = {"q": {"type": "queue", "queue": "sales", "callback_key": "1"}}
    leg = ScriptedCallLeg([Silence(), Press("1")], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.outcome == Outcome.CALLBACK
    assert queue.callbacks == [("task-1", "+31612345678")]
    assert leg.prompts()[-2:] == ["callback_confirmed", "goodbye"]
    assert "callback_request" in timeline.kinds()
    assert "queue/callback_offer" in leg.prompts()


async def test_queue_no_callback_offer_for_withheld_number(make_interpreter, clock, queue):
    nodes = {"q": {"type": "queue", "queue": "sales", "callback_key": "1",
                   "exit_keys": {"0": "bye"}},
             "bye": BYE}
    anon = CallerData(call_id="c9", caller_id=None, dialled="100", withheld=True)
    leg = ScriptedCallLeg([Press("1"), Press("0")], clock=clock, caller=anon)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert queue.callbacks == [] and "queue/callback_offer" not in leg.prompts()
    assert result.node == "bye" and queue.abandoned == ["task-1"]


async def test_queue_voicemail_key_records_on_timeline(make_interpreter, clock, queue,
                                                       timeline):
    nodes = {"q": {"type": "queue", "queue": "sales", "voicemail_key": "2"}}
    leg = ScriptedCallLeg([Barge("2")], clock=clock)  # pressed during the announcement
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert queue.abandoned == ["task-1"]
    vm = [e for e in timeline.entries if e[1] == "voicemail"]
    assert vm and vm[0][3]["media"] == "recordings/call-1.wav"
    assert result.outcome == Outcome.HANGUP


async def test_queue_refused_goes_to_failed_next(make_interpreter, clock, queue):
    queue.refuse = "queue full"
    nodes = {"q": {"type": "queue", "queue": "sales", "failed_next": "bye"}, "bye": BYE}
    result = await make_interpreter(nodes).run(ScriptedCallLeg(clock=clock), "main", CASE)
    assert result.node == "bye" and "queue full" in result.steps[0].summary


async def test_queue_exit_from_acd_follows_flow_node_or_voicemail(make_interpreter, clock,
                                                                   queue, timeline):
    nodes = {"q": {"type": "queue", "queue": "support"},
             "other": {"type": "hangup", "prompts": ["closed"]}}
    leg = ScriptedCallLeg([Then(lambda: queue.send_away(flow_node="other"))], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.node == "other"

    leg = ScriptedCallLeg([Then(lambda: queue.send_away(voicemail=True))], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert ("record", 120) in leg.events and result.outcome == Outcome.HANGUP


async def test_transfer(make_interpreter, clock):
    nodes = {"t": {"type": "transfer", "target": "+31201112222", "prompts": ["transferring"]}}
    leg = ScriptedCallLeg(clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.outcome == Outcome.TRANSFERRED and ("transfer", "+31201112222") in leg.events

    leg = ScriptedCallLeg(clock=clock, can_transfer=False)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.outcome == Outcome.ERROR and leg.hung_up


async def test_voicemail_node_and_backend_without_recording(make_interpreter, clock,
                                                            timeline):
    nodes = {"vm": {"type": "voicemail", "max_seconds": 60, "next": "bye"}, "bye": BYE}
    leg = ScriptedCallLeg(clock=clock)
    await make_interpreter(nodes).run(leg, "main", CASE)
    entry = next(e for e in timeline.entries if e[1] == "voicemail")
    assert entry[3]["seconds"] == 12.0 and leg.prompts() == ["leave_message", "goodbye"]

    timeline.entries.clear()
    leg = ScriptedCallLeg(clock=clock, can_record=False)
    await make_interpreter(nodes).run(leg, "main", CASE)
    assert "voicemail" not in timeline.kinds()
    assert any("not recorded" in b for b in timeline.bodies())


async def test_cross_flow_target(make_interpreter, clock):
    other = {"id": "other", "languages": ["en"], "start": "x",
             "nodes": {"x": {"type": "hangup", "prompts": ["goodbye"]}}}
    nodes = {"go": {"type": "play", "prompts": ["welcome"], "next": "other.x"}}
    interp = make_interpreter(nodes, extra_flows=[other])
    leg = ScriptedCallLeg(clock=clock)
    result = await interp.run(leg, "main", CustomerContext(language="nl"))
    assert result.flow == "other" and result.language == "en"
    assert leg.played == [("nl", "welcome"), ("en", "goodbye")]


async def test_unknown_caller_has_no_timeline_but_a_path(make_interpreter, clock, timeline):
    interp = make_interpreter({"bye": BYE})
    result = await interp.run(ScriptedCallLeg(clock=clock), "main", None)
    assert timeline.entries == [] and [s.node for s in result.steps] == ["bye"]
    assert result.language == "en"  # server default language


async def test_timeline_failure_does_not_drop_the_call(clock, queue, config_for):
    from ivr.interpreter import Interpreter

    class Broken:
        async def record(self, *a, **k):
            raise RuntimeError("db down")

    interp = Interpreter(config_for({"bye": BYE}), queues=queue, timeline=Broken(),
                         clock=clock)
    result = await interp.run(ScriptedCallLeg(clock=clock), "main", CASE)
    assert result.outcome == Outcome.HANGUP


async def test_loop_guard_stops_a_flow_that_never_waits(clock, queue, timeline, config_for):
    from ivr.interpreter import Interpreter

    cfg = config_for({
        "a": {"type": "set", "next": "b"},
        "b": {"type": "set", "next": "a"},
    })
    interp = Interpreter(cfg, queues=queue, timeline=timeline, clock=clock, max_steps=20)
    leg = ScriptedCallLeg(clock=clock)
    result = await interp.run(leg, "main", CASE)
    assert result.outcome == Outcome.ERROR and leg.hung_up
    assert len(result.steps) == 21 and "after 20 steps" in result.steps[-1].summary


async def test_callback_survives_the_caller_hanging_up_on_the_confirmation(
    make_interpreter, clock, queue
):
    from ivr.testing import HangupOnPrompt

    nodes = {"q": {"type": "queue", "queue": "sales", "callback_key": "1"}}
    leg = ScriptedCallLeg([Press("1"), HangupOnPrompt("callback_confirmed")], clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)
    assert result.outcome == Outcome.CALLER_HANGUP
    assert queue.callbacks == [("task-1", "+31612345678")]
    assert queue.abandoned == []  # the callback request stands


async def test_cancelled_run_abandons_its_queue_place(make_interpreter, clock, queue, timeline):
    import asyncio

    nodes = {"q": {"type": "queue", "queue": "sales"}}
    started = asyncio.Event()
    leg = ScriptedCallLeg([Then(started.set)], clock=clock)
    run = asyncio.ensure_future(make_interpreter(nodes).run(leg, "main", CASE))
    await asyncio.wait_for(started.wait(), 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert queue.abandoned == ["task-1"]
    assert timeline.entries[-1][3]["outcome"] == "cancelled"


async def test_queue_hands_over_to_a_backend_that_holds_callers_outside(
    make_interpreter, clock, queue, timeline
):
    """Asterisk parks a queued caller in its holding context: the IVR run ends at the
    queue node with outcome `held`, without music, abandon or hang-up."""

    class HeldOutsideLeg(ScriptedCallLeg):
        @property
        def holds_caller_outside(self) -> bool:
            return True

    interp = make_interpreter({"q": {"type": "queue", "queue": "sales"}})
    leg = HeldOutsideLeg([], clock=clock)
    result = await interp.run(leg, "main", CustomerContext(case_id="case-1"))
    assert result.outcome == Outcome.HELD
    assert result.task_id == "task-1"
    assert queue.abandoned == [] and not leg.hung_up
    assert not leg.moh and all(name != "moh_on" for name, _ in leg.events)
    assert any("held by the voice backend" in body for _, _, body, _ in timeline.entries)
