"""Garbage mixed into real-looking input: an import succeeds or fails cleanly
(ImportFailure), never with another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.importers import run_import
from config.importers.errors import ImportFailure

FRAGMENTS = [
    "display vector 7                      Page   1 of   3",
    "display vector 7                      Page   3 of   3",
    "display hunt-group 2                  Page   2 of   2",
    "list agent-loginID", "display vdn 500", "list announcement",
    "display holiday-table 1", "display srvc-hours-table 1",
    "    Number: 7   Name: x y", "Group Number: 2  Group Type: ead-loa",
    "01 goto step 99 if holiday in table 4", "02 queue-to skill 1st pri t",
    "03 goto vector 8 @step 2 if unconditionally", "04 wait-time 2 mins hearing 77 then music",
    "05 collect 40 digits after announcement none for Z", "06 goto step 1 if unconditionally",
    "07 route-to number ~r5 with cov y if digits >= x",
    "08 check skill 3 pri m if calls-queued < 2",
    "   Destination: Vector Number 7", "   Extension: 500", "5001   Jo Bloggs   unstaffed",
    "       1/01  2/99", "    SN   RL SL", " 1: 2        1", "  1  1 00 00  13 45 23 59 Bad",
    "     Monday:  08:00 07:00", "3501  integrated  Hello There   001V9  1",
    "\x1b[5;10HName:\x1b[5;20HEsc", "Page 2 of 3", "# comment", "",
]

SATS = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=40)), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SATS)
def test_sat_import_never_crashes(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "capture.txt"
        src.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        try:
            result = run_import("avaya-cm", [src])
        except ImportFailure:
            return
        for item in result.report.items:
            assert item.source.file.endswith("capture.txt")


CSV_LINES = st.lists(st.one_of(
    st.sampled_from([
        "Name,Extension,Ring Mode,User List,Queue Limit,Overflow Group List,Overflow Time",
        "Incoming Number,Destination,Fallback Extension,Time Profile,Time Profile Destination",
        "Name,Time Entry List,Calendar Entry List", "Name,Full Name,Extension",
        "Sales,300,Rotary,Anna;Bob,x,Sales,1e5", "0201,Sales,Bob,Office,VoiceMail",
        "Office,08:00-17:00 Mon-Fri;junk,2026-13-45", ",,,,", "\"unterminated,quote",
    ]),
    st.text(max_size=30)), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CSV_LINES, min_size=1, max_size=3), st.sampled_from(["avaya-ipo", "mitel-mivb"]))
def test_csv_import_never_crashes(files: list[list[str]], system: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, lines in enumerate(files):
            p = Path(d) / f"f{i}.csv"
            p.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
            paths.append(p)
        try:
            run_import(system, paths)
        except ImportFailure:
            return
