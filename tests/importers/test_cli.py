"""`centrale migrate` entry: progress bar rules and the summary line."""

from __future__ import annotations

import io
from pathlib import Path

from config.importers import cli
from config.importers.cli import migrate_main


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(tmp_path: Path, own_dir: Path) -> None:
    err, out = Tty(), io.StringIO()
    src = own_dir / "avaya_cm" / "cm8_call_center.txt"
    code = migrate_main(["avaya-cm", str(src), "-o", str(tmp_path / "o")], stderr=err,
                        stdout=out)
    assert code == 3
    bar = err.getvalue().split("\n")[0]
    assert bar.startswith("\rimporting [") and "100%" in bar.rsplit("\r", 1)[1]
    assert "mapped" in out.getvalue() and "migration-report.md" in out.getvalue()


def test_no_progress_for_small_input_in_a_log(tmp_path: Path, own_dir: Path) -> None:
    err = io.StringIO()
    src = own_dir / "avaya_cm" / "cm8_call_center.txt"
    migrate_main(["avaya-cm", str(src), "-o", str(tmp_path / "o")], stderr=err,
                 stdout=io.StringIO())
    assert "importing" not in err.getvalue()


def test_large_input_in_a_log_gets_line_progress(tmp_path: Path, own_dir: Path,
                                                 monkeypatch) -> None:
    monkeypatch.setattr(cli, "LARGE_INPUT_BYTES", 1000)
    err = io.StringIO()
    src = own_dir / "avaya_cm" / "cm8_call_center.txt"
    migrate_main(["avaya-cm", str(src), "-o", str(tmp_path / "o")], stderr=err,
                 stdout=io.StringIO())
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("importing:")]
    assert lines[-1].startswith("importing: 100%") and "\r" not in err.getvalue()
    assert migrate_main(["avaya-cm", str(src), "-o", str(tmp_path / "p"), "--no-progress"],
                        stderr=(e := io.StringIO()), stdout=io.StringIO()) == 3
    assert "importing" not in e.getvalue()
