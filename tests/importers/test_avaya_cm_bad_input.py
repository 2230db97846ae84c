"""Damaged SAT captures: a clear warning or error with file:line, never a crash, and no
partial output when the import fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.importers.cli import migrate_main

VECTOR = """display vector 30                                               Page   1 of   3
                                  CALL VECTOR

    Number: 30               Name: Damaged
01 wait-time    2   secs hearing ringback
02 queue-to     skill 4   pri m
03 wait-time    30  secs hearing music
display vector 30                                               Page   3 of   3
                                  CALL VECTOR

20 disconnect   after announcement none
"""


def _run(tmp_path: Path, text: str | bytes, *extra: str) -> tuple[int, Path, str]:
    src = tmp_path / "capture.txt"
    if isinstance(text, str):
        src.write_text(text, encoding="utf-8")
    else:
        src.write_bytes(text)
    out = tmp_path / "out"
    import io

    err = io.StringIO()
    code = migrate_main(["avaya-cm", str(src), "-o", str(out), *extra], stderr=err,
                        stdout=io.StringIO())
    return code, out, err.getvalue()


def _report(out: Path) -> dict:
    return json.loads((out / "migration-report.json").read_text())


def test_page_missing_from_the_middle_is_an_error_with_line(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, VECTOR)
    assert code == 3
    assert "capture.txt:1: error: display vector 30: page(s) 2 missing" in err
    items = {i["name"]: i for i in _report(out)["items"]}
    assert items["30 Damaged"]["outcome"] == "unsupported"
    assert "page(s) 2 missing" in items["30 Damaged"]["reason"]


def test_truncated_capture_warns_and_reports_the_cut_step(tmp_path: Path) -> None:
    cut = VECTOR[: VECTOR.index("display vector 30", 10)]  # only page 1
    cut += "04 collect      5    digits after annou"  # cut mid-line, no line break
    code, out, err = _run(tmp_path, cut)
    assert code == 3
    assert "capture.txt:8: warning: file does not end with a line break" in err
    items = {i["name"]: i for i in _report(out)["items"]}
    step = items["vector 30 step 04: collect 5 digits after annou"]
    assert (step["outcome"], step["line"]) == ("unsupported", 8)


def test_capture_cut_right_after_a_command_line(tmp_path: Path) -> None:
    code, _out, err = _run(tmp_path, VECTOR.replace("20 disconnect", "02 x") +
                          "display hunt-group 4                   Page   1 of   3\n")
    assert "display hunt-group 4: no output after the command line" in err
    assert code == 3


def test_unknown_command_is_reported_not_dropped(tmp_path: Path) -> None:
    text = ("display station 4001                                          Page   1 of   5\n"
            "                                     STATION\n"
            "Extension: 4001                          Lock Messages? n\n")
    code, out, _ = _run(tmp_path, text)
    assert code == 3
    [item] = _report(out)["items"]
    assert (item["kind"], item["outcome"], item["line"]) == ("SAT command", "unsupported", 1)


@pytest.mark.parametrize("content", [
    "hello, this is not a capture\njust text\n",
    b"\x00\x01\x02binary\x00",
    "",
])
def test_unreadable_input_exits_2_and_writes_nothing(tmp_path: Path, content: str | bytes
                                                     ) -> None:
    code, out, err = _run(tmp_path, content)
    assert code == 2
    assert "capture.txt" in err and "nothing written" in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["capture.txt"]  # no temp dir left


def test_missing_file_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = migrate_main(["avaya-cm", str(tmp_path / "nope.txt"), "-o", str(out)])
    assert code == 2 and not out.exists()


def test_non_empty_outdir_needs_force(tmp_path: Path, shared_dir: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.yaml").write_text("skills: []\n")
    src = str(shared_dir / "avaya_cm_sat_change_vector_5.txt")
    assert migrate_main(["avaya-cm", src, "-o", str(out)]) == 1
    assert [p.name for p in out.iterdir()] == ["keep.yaml"]
    assert migrate_main(["avaya-cm", src, "-o", str(out), "--force"]) == 0
    assert not (out / "keep.yaml").exists() and (out / "flows.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # old copy removed


def test_failed_import_leaves_existing_outdir_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.yaml").write_text("skills: []\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("not a capture\n")
    assert migrate_main(["avaya-cm", str(bad), "-o", str(out), "--force"]) == 2
    assert [p.name for p in out.iterdir()] == ["keep.yaml"]


def test_duplicate_screens_warn_and_keep_the_later(tmp_path: Path) -> None:
    one = ("display vdn 100\n   Extension: 100\n   Name: First\n"
           "   Destination: Vector Number 1\n")
    vec = "display vector 1\n  Number: 1   Name: V\n01 stop\n"
    code, out, err = _run(tmp_path, one + vec + one.replace("First", "Second"))
    assert code == 0
    assert "vdn 100 appears again with different content (first at" in err
    assert "Second" in (out / "numbers.yaml").read_text()
