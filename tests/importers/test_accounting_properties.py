"""Issue 23's promise as properties: whatever an export holds, every construct in it
(a vector step, a holiday row, a hunt group, a CSV row) appears in the output or in the
report with its file:line; nothing is dropped silently, and the report never says
"mapped" for a membership that is not in the output."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.importers import ImportResult, run_import
from config.importers.errors import ImportFailure

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def accounted_lines(result: ImportResult, file_name: str) -> set[int]:
    lines = {i.source.line for i in result.report.items if i.source.file.endswith(file_name)}
    lines |= {i.source.line for i in result.report.issues
              if i.source.file.endswith(file_name)}
    return {n for n in lines if n}


# -- Avaya CM vectors ------------------------------------------------------------------

STEP_BODIES = [
    "goto step {n} if unconditionally", "goto step {n} if digits = 3",
    "goto step {n} if calls-queued in skill 1 pri l > 5",
    "goto step {n} if rolling-asa for skill 1 > 60", "goto step {n} if ani in table 2",
    "goto step {n} if time-of-day is mon 08:00 to fri 17:00",
    "goto step {n} if holiday in table 1", "queue-to skill 1 pri m",
    "check skill 2 pri l if available-agents > 0", "wait-time {n} secs hearing music",
    "wait-time {n} secs hearing 3001 then ringback", "announcement 300{n}",
    "collect 2 digits after announcement 3002", "route-to number 4711 with cov n if digit = 1",
    "route-to digits with coverage y", "disconnect after announcement none", "busy", "stop",
    "messaging skill 1 for extension 4000", "adjunct routing link 1",
    "converse-on skill 9 pri m passing vdn and none", "# a comment",
]

VECTOR = st.lists(
    st.tuples(st.sampled_from(STEP_BODIES), st.integers(1, 12), st.booleans()),
    min_size=1, max_size=12)


def _capture(steps: list[tuple[str, int, bool]], pages: bool) -> tuple[str, list[int]]:
    lines = ["display hunt-group 1                       Page   1 of   1",
             "            Group Number: 1      ACD? y", "              Group Name: Sales",
             "display hunt-group 2                       Page   1 of   1",
             "            Group Number: 2      ACD? y", "              Group Name: Support",
             "display vector 9                           Page   1 of   2",
             "    Number: 9               Name: Property"]
    step_lines = []
    for index, (body, n, break_page) in enumerate(steps, start=1):
        if pages and break_page and index > 1:
            lines.append("display vector 9                           Page   2 of   2")
            pages = False
        lines.append(f"{index:02d} {body.format(n=n)}")
        step_lines.append(len(lines))
    return "\n".join(lines) + "\n", step_lines


@SETTINGS
@given(VECTOR, st.booleans())
def test_every_vector_step_is_in_the_report_with_its_line(steps, pages) -> None:
    text, step_lines = _capture(steps, pages)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "capture.txt"
        src.write_text(text)
        result = run_import("avaya-cm", [src])
    reported = {i.source.line for i in result.report.items if i.kind == "vector step"}
    assert set(step_lines) <= reported
    flow = result.builder.flows["vector_9"]
    for item in result.report.items:
        if item.kind == "vector step" and item.target.startswith("flows[vector_9].nodes."):
            assert item.target.rsplit(".", 1)[1] in flow["nodes"]  # mapped means present


HOLIDAY_ROW = st.tuples(st.integers(0, 14), st.integers(0, 33),
                        st.one_of(st.none(), st.tuples(st.integers(0, 25), st.integers(0, 61))),
                        st.one_of(st.none(), st.tuples(st.integers(0, 14), st.integers(0, 33),
                                                       st.integers(0, 25), st.integers(0, 61))),
                        st.sampled_from(["Easter Monday", "Kerst", "Half day", ""]))


@SETTINGS
@given(st.lists(HOLIDAY_ROW, min_size=1, max_size=10))
def test_every_holiday_row_is_imported_or_reported(rows) -> None:
    lines = ["display holiday-table 1                    Page   1 of   1",
             "                Number: 1           Name: Test",
             "                ______START______       ______END________",
             "          Month  Day  Hour  Min      Month  Day  Hour  Min     Description"]
    row_lines = []
    for month, day, time, end, desc in rows:
        row = f"            {month:02d}   {day:02d}"
        row += f"    {time[0]:02d}    {time[1]:02d}" if time else " " * 12
        if end:
            row += f"        {end[0]:02d}   {end[1]:02d}    {end[2]:02d}    {end[3]:02d}"
        else:
            row += " " * 29
        row += f"     {desc}"
        lines.append(row)
        row_lines.append(len(lines))
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "holidays.txt"
        src.write_text("\n".join(lines) + "\n")
        result = run_import("avaya-cm", [src])
    assert set(row_lines) <= accounted_lines(result, "holidays.txt")


# -- CSV exports -------------------------------------------------------------------------

CELL = st.one_of(st.sampled_from(["", "1", "2", "8001", "Yes", "No", "3.1E+10", "0201.0",
                                  "x;y", "Sales", "12"]),
                 st.text(alphabet="abc019 ;-", max_size=8))


@SETTINGS
@given(st.lists(st.tuples(CELL, CELL, CELL, CELL), min_size=1, max_size=12))
def test_every_mivb_member_row_is_accounted_for(rows) -> None:
    with tempfile.TemporaryDirectory() as d:
        groups = Path(d) / "groups.csv"
        groups.write_text("Group Number,Name\n1,Sales\n2,Support\n")
        members = Path(d) / "members.csv"
        body = "".join(",".join(f'"{c}"' for c in row) + "\n" for row in rows)
        members.write_text("Agent Skill Group Number,Agent ID,Skill Level,Present\n" + body)
        try:
            result = run_import("mitel-mivb", [groups, members])
        except ImportFailure:
            return
    data_lines = {i + 2 for i, row in enumerate(rows) if any(c.strip() for c in row)
                  and not row[0].lstrip().startswith("#")}
    assert data_lines <= accounted_lines(result, "members.csv")
    # a member reported mapped is in the output with that skill
    for item in result.report.items:
        if item.kind == "MiVB skill group member" and item.outcome == "mapped":
            agent, skill = item.target[len("agents["):].split("].skills.")
            assert skill in result.builder.agents[agent]["skills"]


@SETTINGS
@given(st.lists(st.tuples(CELL, CELL, CELL), min_size=1, max_size=12),
       st.lists(st.tuples(CELL, CELL), min_size=1, max_size=8))
def test_every_ipo_route_and_member_row_is_accounted_for(routes, members) -> None:
    with tempfile.TemporaryDirectory() as d:
        users = Path(d) / "users.csv"
        users.write_text("Name,Full Name,Extension\nanna,Anna,201\nbram,Bram,202\n")
        groups = Path(d) / "groups.csv"
        groups.write_text("Name,Extension,Ring Mode\nSales,300,Rotary\n")
        icr = Path(d) / "icr.csv"
        icr.write_text("Incoming Number,Destination,Fallback Extension\n" + "".join(
            ",".join(f'"{c}"' for c in r) + "\n" for r in routes))
        mem = Path(d) / "members.csv"
        mem.write_text("Hunt Group,Member\n" + "".join(
            ",".join(f'"{c}"' for c in r) + "\n" for r in members))
        try:
            result = run_import("avaya-ipo", [users, groups, icr, mem])
        except ImportFailure:
            return
    for name, rows in (("icr.csv", routes), ("members.csv", members)):
        data = {i + 2 for i, row in enumerate(rows) if any(c.strip() for c in row)
                and not row[0].lstrip().startswith("#")}
        assert data <= accounted_lines(result, name), name
