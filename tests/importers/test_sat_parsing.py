"""Unit tests of the SAT reading layer: escapes, pages, fields by label, tables."""

from __future__ import annotations

from pathlib import Path

from config.importers.avaya_cm.fields import Form, cells, header_columns
from config.importers.avaya_cm.flows import _tod_minutes
from config.importers.avaya_cm.sat import split_commands
from config.importers.avaya_cm.vector import parse_condition, parse_step
from config.importers.builder import week_intervals_to_hours
from config.importers.report import Issue, SourceRef
from config.importers.textfile import read_text, strip_vt220


def test_strip_vt220_turns_cursor_addressing_into_lines() -> None:
    raw = "\x1b[2J\x1b[1;1Hdisplay vdn 1\x1b[3;10HName:\x1b[3;20H\x1b[7mSales\x1b[0m\x1b(B"
    assert strip_vt220(raw) == "display vdn 1\n         Name:     Sales"


def test_pages_are_joined_in_any_order_and_headers_dropped(tmp_path: Path) -> None:
    src = tmp_path / "c.txt"
    src.write_text("change hunt-group 3         Page   2 of   2\nSkill? y\n"
                   "display hunt-group 3        Page   1 of   2\nGroup Number: 3\n"
                   "list announcement\n3501  integrated  Hi  001V9  1\n")
    issues: list[Issue] = []
    cmds = list(split_commands(read_text(src), issues))
    # page 2 came first: it opens the command, which is then incomplete
    assert [c.title for c in cmds] == ["change hunt-group 3", "display hunt-group 3",
                                       "list announcement"]
    assert cmds[0].incomplete == "page(s) 1 missing from the capture"
    assert any("page(s) 1 missing" in i.message and i.source.line == 1 for i in issues)
    assert [t for _, t in cmds[1].lines] == ["Group Number: 3"]
    assert cmds[2].lines == [(6, "3501  integrated  Hi  001V9  1")]


def test_form_reads_values_with_spaces_and_flags_by_label() -> None:
    form = Form(enumerate([
        "    Group Number: 1                           ACD? y",
        "      Group Name: Sales  Desk  North          Queue? n",
        "   Destination: Vector Number        1",
    ], start=1))
    assert form.value("group name") == "Sales Desk North"
    assert form.flag("acd") is True and form.flag("queue") is False
    assert form.value("destination") == "Vector Number 1"
    assert form.get("group name").line == 2
    assert form.flag("vector") is None


def test_table_cells_follow_header_labels_not_positions() -> None:
    cols = header_columns("Extension   Type       Name               Source  Sources",
                          ["Extension", "Type", "Name", "Source", "Sources"])
    row = cells("3501        integrated Welcome To Sales   001V9     1", cols)
    assert row == {"Extension": "3501", "Type": "integrated", "Name": "Welcome To Sales",
                   "Source": "001V9", "Sources": "1"}


def test_vector_step_grammar_across_releases() -> None:
    ref = SourceRef("f", 1)
    step = parse_step(6, "queue-to main split 5 pri m", ref)
    assert (step.kind, step.args["skill"], step.args["pri"]) == ("queue", "5", "m")
    step = parse_step(3, "check skill 2 pri l if expected-wait < 60", ref)
    assert step.condition is not None
    assert (step.condition.kind, step.condition.subject, step.condition.op) == (
        "queue-metric", "expected-wait", "<")
    step = parse_step(9, "route-to number 0201234567 with cov y if digits = 1", ref)
    assert step.condition.kind == "compare" and step.args["number"] == "0201234567"
    assert parse_step(4, "converse-on skill 9 pri m passing ani and none", ref).kind == "other"
    cond = parse_condition("holiday not-in table 2")
    assert (cond.kind, cond.negated, cond.table) == ("holiday", True, "2")


def test_time_of_day_over_midnight_and_week_wrap() -> None:
    hours = week_intervals_to_hours(_tod_minutes("all", "17:00", "all", "07:59"))
    assert hours["mon"] == ["00:00-08:00", "17:00-24:00"]
    hours = week_intervals_to_hours(_tod_minutes("fri", "18:00", "mon", "07:59"))
    assert hours == {"mon": ["00:00-08:00"], "fri": ["18:00-24:00"],
                     "sat": ["00:00-24:00"], "sun": ["00:00-24:00"]}


def test_utf16_capture_from_a_windows_tool(tmp_path: Path) -> None:
    src = tmp_path / "c.txt"
    src.write_bytes("display vdn 7\r\n   Name: K\u00f6ln\r\n".encode("utf-16"))
    text = read_text(src)
    assert (text.encoding, text.lines) == ("utf-16", ["display vdn 7", "   Name: K\u00f6ln"])
