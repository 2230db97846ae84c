"""Flow validation at load (config.validate_flows) and the expression language."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.validate_flows import ExpressionError, FlowProblem, parse_expression, validate_flows
from ivr.expressions import evaluate_source

GOOD = {
    "start": {"type": "schedule", "schedule": "office", "open": "menu", "closed": "bye",
              "holiday": "bye"},
    "menu": {"type": "menu", "prompts": ["menu_main"], "options": {"1": "q", "2": "vm"},
             "fallback": "q"},
    "q": {"type": "queue", "queue": "sales", "timeout_next": "vm"},
    "vm": {"type": "voicemail"},
    "bye": {"type": "hangup", "prompts": ["goodbye"]},
}


def messages(problems: list[FlowProblem]) -> list[tuple[str | None, str]]:
    return [(p.node, p.message) for p in problems]


def test_a_sound_flow_has_no_problems(config_for):
    assert validate_flows(config_for(GOOD)) == []


def test_missing_targets_and_cross_flow_refs(config_for):
    other = {"id": "other", "start": "x", "nodes": {"x": {"type": "hangup"}}}
    cfg = config_for({
        "start": {"type": "play", "prompts": ["welcome"], "next": "nowhere"},
        "b": {"type": "menu", "prompts": ["m"], "options": {"1": "other.x", "2": "other.y",
                                                           "3": "ghost.z"},
              "fallback": "start"},
    }, extra_flows=[other])
    got = messages(validate_flows(cfg))
    assert ("start", "next: node 'nowhere' does not exist") in got
    assert ("b", "options[2]: node 'y' does not exist in flow 'other'") in got
    assert ("b", "options[3]: unknown flow 'ghost' in 'ghost.z'") in got
    assert not any("options[1]" in m for _, m in got)


def test_unreachable_nodes_but_cross_flow_targets_count(config_for):
    other = {"id": "other", "start": "x", "nodes": {
        "x": {"type": "hangup"}, "reached": {"type": "hangup"}, "lost": {"type": "hangup"}}}
    cfg = config_for({
        "start": {"type": "play", "prompts": ["welcome"], "next": "other.reached"},
        "island": {"type": "hangup"},
    }, extra_flows=[other])
    problems = validate_flows(cfg)
    unreachable = {(p.flow_id, p.node) for p in problems if "unreachable" in p.message}
    assert unreachable == {("main", "island"), ("other", "lost")}


def test_queue_exit_flow_node_is_a_root(config_for):
    cfg = config_for(
        {"start": {"type": "hangup"}, "after_queue": {"type": "hangup"}},
        queues=[{"id": "sales", "exit": {"flow_node": "main.after_queue"}}],
    )
    assert validate_flows(cfg) == []


def test_unknown_queue_schedule_skill_and_language(config_for):
    cfg = config_for({
        "start": {"type": "schedule", "schedule": "offfice", "open": "s", "closed": "s"},
        "s": {"type": "set", "language": "de", "skills": {"frnch": 1}, "next": "q"},
        "q": {"type": "queue", "queue": "sails"},
    })
    got = messages(validate_flows(cfg))
    assert ("start", "unknown schedule 'offfice'") in got
    assert ("q", "unknown queue 'sails'") in got
    assert ("s", "unknown skill 'frnch'") in got
    assert any(n == "s" and "language 'de'" in m for n, m in got)


def test_menu_without_exit(config_for):
    cfg = config_for({
        "start": {"type": "menu", "prompts": ["m"], "options": {"1": "again"},
                  "fallback": "start"},
        "again": {"type": "play", "prompts": ["x"], "next": "start"},
    })
    got = messages(validate_flows(cfg))
    assert ("start", "menu has no exit: no option or fallback ever leads out of it") in got
    # it waits for the caller, so it is not also a busy loop
    assert not any("never waits" in m for _, m in got)


def test_loop_that_never_waits_for_the_caller(config_for):
    cfg = config_for({
        "start": {"type": "condition", "branches": [{"when": "case.open", "next": "bye"}],
                  "otherwise": "s"},
        "s": {"type": "set", "variables": {"n": "1"}, "next": "p"},
        "p": {"type": "play", "prompts": ["x"], "next": "start"},
        "bye": {"type": "hangup"},
    })
    loops = [p for p in validate_flows(cfg) if "never waits" in p.message]
    assert len(loops) == 1
    assert "main.p -> main.s -> main.start" in loops[0].message


def test_keys_patterns_and_expressions(config_for):
    cfg = config_for({
        "start": {"type": "menu", "prompts": ["m"], "options": {"12": "c", "1": "c"},
                  "fallback": "c"},
        "c": {"type": "collect", "prompts": ["p"], "variable": "x", "max_digits": 3,
              "min_digits": 5, "pattern": "([0-9", "next": "cond", "fallback": "cond"},
        "cond": {"type": "condition", "branches": [
            {"when": "customer.vip ==", "next": "q"},
            {"when": "customer.vipp", "next": "q"},
            {"when": "__import__('os')", "next": "q"},
        ], "otherwise": "q"},
        "q": {"type": "queue", "queue": "sales", "callback_key": "1", "voicemail_key": "1",
              "exit_keys": {"1": "start"}},
    })
    got = messages(validate_flows(cfg))
    text = "\n".join(m for _, m in got)
    assert "key '12' is not one DTMF digit" in text
    assert "min_digits 5 exceeds max_digits 3" in text
    assert "is not a valid regex" in text
    assert "'customer.vip ==' does not parse: expected a value or name" in text
    assert "unknown name 'customer.vipp'" in text
    assert "\"__import__('os')\" does not parse: unexpected '('" in text
    assert "callback_key and voicemail_key must differ" in text
    assert "key '1' is both a special key and an exit key" in text


def test_prompts_missing_for_a_language(config_for, tmp_path: Path):
    for lang in ("nl", "en"):
        (tmp_path / lang).mkdir()
        for key in ("menu_main", "goodbye", "invalid_option", "no_input"):
            (tmp_path / lang / f"{key}.wav").write_bytes(b"RIFF")
    (tmp_path / "nl" / "leave_message.wav").write_bytes(b"RIFF")
    problems = validate_flows(config_for(GOOD), prompts_dir=tmp_path)
    assert messages(problems) == [
        ("vm", f"prompt 'leave_message' missing for language 'en' "
               f"({tmp_path / 'en' / 'leave_message.wav'})")
    ]
    # without a prompts dir the check is skipped
    assert validate_flows(config_for(GOOD), prompts_dir=None) == []


def test_the_demo_config_validates():
    from config.loader import load_config

    repo = Path(__file__).resolve().parents[2]
    load_config(repo / "examples" / "demo")  # raises ConfigError with file:line issues


@pytest.mark.parametrize(
    ("source", "scope", "expected"),
    [
        ("customer.known and not case.open", {"customer": {"known": True},
                                              "case": {"open": False}}, True),
        ('"vip" in customer.tags', {"customer": {"tags": ["VIP", "gold"]}}, True),
        ("customer.vip or customer.language == 'nl'", {"customer": {"language": "NL"}}, True),
        ("vars.order_number == 12345", {"vars": {"order_number": "12345"}}, True),
        ("digits >= 3 and digits < 10", {"digits": "7"}, True),
        ("digits in ['1', '2']", {"digits": "3"}, False),
        ("digits not in ['1', '2']", {"digits": "3"}, True),
        ("vars.missing == none", {"vars": {}}, True),
        ("vars.missing > 3", {"vars": {}}, False),
        ("customer.name != 'Bob' and (case.open or vars.x)", {"customer": {"name": "Ann"},
                                                              "case": {"open": True}}, True),
        ("'ab' in 'xaby'", {}, True),
        ("true == 1", {}, False),
    ],
)
def test_expression_evaluation(source, scope, expected):
    assert evaluate_source(source, scope) is expected


@pytest.mark.parametrize("bad", ["", "a ==", "(a", "a b", "1 +", "'open", "a.b. c",
                                 "x = 1", "not", "[1, 2"])
def test_expressions_that_do_not_parse(bad):
    with pytest.raises(ExpressionError):
        parse_expression(bad)


def test_deep_nesting_is_refused_not_a_crash():
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_expression("(" * 200 + "a" + ")" * 200)
    with pytest.raises(ExpressionError, match="longer than"):
        parse_expression("a or " * 400 + "a")
