"""The `survey` node on a scripted leg: CSAT one key, NPS one or two digits, an invalid
or missing answer asked again once and then "no answer", a hang-up recorded as no
answer; every answer reaches the survey port exactly once."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, load_config
from config.validate_flows import validate_flows
from ivr.interpreter import Interpreter, Outcome
from ivr.ports import CustomerContext, SurveyAnswer
from ivr.survey import score_of
from ivr.testing import Barge, HangupOnPrompt, Press, ScriptedCallLeg, Silence

CASE = CustomerContext(customer_id="cust-1", case_id="case-1", case_open=True,
                       language="en")


class Port:
    def __init__(self) -> None:
        self.asked_calls: list[tuple[str, str | None, str]] = []
        self.answers: list[SurveyAnswer] = []

    async def asked(self, call_id: str, case_id: str | None, kind: str) -> None:
        self.asked_calls.append((call_id, case_id, kind))

    async def answered(self, answer: SurveyAnswer) -> None:
        self.answers.append(answer)


def survey_nodes(kind: str) -> dict[str, Any]:
    return {"ask": {"type": "survey", "kind": kind, "prompts": [f"survey_{kind}"],
                    "retry_prompts": ["invalid_entry"], "thanks_prompts": ["thanks"]}}


@pytest.fixture
def run(config_for, clock, queue, timeline):  # type: ignore[no-untyped-def]
    async def go(kind: str, script: list[Any]) -> tuple[Port, ScriptedCallLeg, Any]:
        port = Port()
        interp = Interpreter(config_for(survey_nodes(kind), languages=["en"]), queues=queue,
                             timeline=timeline, clock=clock, surveys=port)
        leg = ScriptedCallLeg(script, clock=clock)
        result = await interp.run(leg, "main", CASE)
        return port, leg, result
    return go


@pytest.mark.parametrize(("kind", "entry", "score"), [
    ("csat", "1", 1), ("csat", "5", 5), ("csat", "0", None), ("csat", "6", None),
    ("csat", "*", None), ("csat", "", None), ("nps", "0", 0), ("nps", "10", 10),
    ("nps", "7", 7), ("nps", "11", None), ("nps", "100", None), ("nps", "٣", None),
])
def test_score_of(kind: str, entry: str, score: int | None) -> None:
    assert score_of(kind, entry) == score


async def test_csat_key_pressed_during_the_question(run, timeline) -> None:  # type: ignore[no-untyped-def]
    port, leg, result = await run("csat", [Barge("4")])
    assert [(a.kind, a.score, a.tries) for a in port.answers] == [("csat", 4, ("4",))]
    assert port.asked_calls == [("call-1", "case-1", "csat")]
    assert leg.prompts() == ["survey_csat", "thanks"]
    assert result.outcome == Outcome.HANGUP and leg.hung_up
    assert any("Survey CSAT: 4" in b for b in timeline.bodies())


async def test_nps_ten_is_two_digits(run) -> None:  # type: ignore[no-untyped-def]
    port, _leg, _ = await run("nps", [Barge("1"), Press("0")])
    assert port.answers[0].score == 10


async def test_nps_single_digit_then_pause_or_hash(run) -> None:  # type: ignore[no-untyped-def]
    port, _leg, _ = await run("nps", [Barge("8"), Silence()])
    assert port.answers[0].score == 8
    port, _leg, _ = await run("nps", [Barge("1"), Press("#")])
    assert port.answers[0].score == 1


async def test_out_of_range_is_asked_again_once(run) -> None:  # type: ignore[no-untyped-def]
    port, leg, _ = await run("csat", [Barge("7"), Barge("3")])
    assert [(a.score, a.tries) for a in port.answers] == [(3, ("7", "3"))]
    assert leg.prompts() == ["survey_csat", "invalid_entry", "survey_csat", "thanks"]


async def test_two_misses_are_no_answer(run, timeline) -> None:  # type: ignore[no-untyped-def]
    port, leg, result = await run("nps", [Barge("9"), Press("9"), Silence(), Silence()])
    assert [(a.score, a.tries) for a in port.answers] == [(None, ("99", "timeout"))]
    assert "thanks" not in leg.prompts()
    assert result.outcome == Outcome.HANGUP
    assert any("Survey NPS: no answer" in b for b in timeline.bodies())


async def test_hang_up_during_the_question_is_no_answer(run) -> None:  # type: ignore[no-untyped-def]
    port, _leg, result = await run("csat", [HangupOnPrompt("survey_csat")])
    assert [(a.score, a.tries) for a in port.answers] == [(None, ("hung up",))]
    assert result.outcome == Outcome.CALLER_HANGUP


async def test_typed_ahead_digits_are_discarded_before_asking(
        config_for, clock, queue, timeline) -> None:  # type: ignore[no-untyped-def]
    order: list[str] = []

    class Leg(ScriptedCallLeg):
        def discard_typed_ahead(self) -> None:
            order.append("discard")

    class OrderPort(Port):
        async def asked(self, call_id: str, case_id: str | None, kind: str) -> None:
            order.append("asked")

    interp = Interpreter(config_for(survey_nodes("csat"), languages=["en"]), queues=queue,
                         timeline=timeline, clock=clock, surveys=OrderPort())
    await interp.run(Leg([Barge("2")], clock=clock), "main", CASE)
    # discarded before `asked` is written: whoever waits for the asked entry and then
    # presses a key never has the key thrown away
    assert order == ["discard", "asked"]


def test_config_names_a_missing_survey_flow_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "acd.yaml").write_text(textwrap.dedent("""
        queues:
          - id: sales
            survey_flow: after_cal
        flows:
          - id: after_call
            languages: [en]
            start: ask
            nodes:
              ask: {type: survey, kind: nps, prompts: [survey_nps]}
    """))
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert "acd.yaml:4: queues[sales].survey_flow: unknown flow 'after_cal' (did you mean " \
        "'after_call'?)" in str(err.value), str(err.value)
    (tmp_path / "acd.yaml").write_text((tmp_path / "acd.yaml").read_text().replace(
        "after_cal\n", "after_call\n"))
    config = load_config(tmp_path)
    assert config.queues[0].survey_flow == "after_call"
    assert validate_flows(config) == []
