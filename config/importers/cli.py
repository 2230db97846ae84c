"""`centrale migrate avaya-cm|avaya-ipo|mitel-mivb SRC... -o OUTDIR [--force]`.

Exit codes: 0 everything mapped or approximated; 3 something unsupported (the report
says what); 2 unreadable input (nothing written); 1 OUTDIR refused, a usage error or an
internal error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from config.importers import SYSTEMS, run_import
from config.importers.errors import ImportFailure
from config.importers.site import site_files, users_section
from config.importers.writer import InvalidOutput, OutputError, check_outdir, write_output

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREADABLE = 2
EXIT_UNSUPPORTED = 3

LARGE_INPUT_BYTES = 1_000_000


class ProgressBar:
    """Progress on stderr: a redrawn bar on a terminal, a line per 10 % otherwise
    (only for large inputs, so logs of small imports stay clean)."""

    def __init__(self, total: int, stream: TextIO, *, tty: bool, label: str) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.tty = tty
        self.label = label
        self._last_decile = -1

    def __call__(self, n: int) -> None:
        self.done = min(self.total, self.done + n)
        pct = self.done * 100 // self.total
        if self.tty:
            filled = pct * 30 // 100
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                              f"{pct:3d}% {self.done:,}/{self.total:,} lines")
            self.stream.flush()
        elif pct // 10 != self._last_decile:
            self._last_decile = pct // 10
            self.stream.write(f"{self.label}: {pct}% ({self.done:,}/{self.total:,} lines)\n")

    def close(self) -> None:
        if self.done < self.total:
            self(self.total - self.done)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="centrale migrate",
        description="Import an Avaya or Mitel configuration export into a Centrale config "
        "directory, with a migration report (migration-report.md / .json).",
    )
    p.add_argument("system", choices=SYSTEMS)
    p.add_argument("sources", nargs="+", type=Path,
                   help="export files (SAT captures or CSV files), or directories of them")
    p.add_argument("-o", "--output", required=True, type=Path, help="config directory to write")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUTDIR")
    p.add_argument("--timezone", default="Europe/Amsterdam",
                   help="time zone of the old system's schedules (default Europe/Amsterdam)")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("--config-only", action="store_true",
                   help="only the imported sections and the report, to merge into an "
                   "existing config (no server.yaml, users.yaml or placeholder prompts)")
    p.add_argument("--speak-placeholders", action="store_true",
                   help="placeholder prompts say the announcement's number and name "
                   "(espeak-ng, one run per prompt) instead of beeping")
    return p


def _expand(sources: list[Path]) -> list[Path]:
    out: list[Path] = []
    for src in sources:
        if src.is_dir():
            out.extend(sorted(p for p in src.iterdir() if p.is_file()
                              and not p.name.startswith(".")))
        else:
            out.append(src)
    return out


def migrate_main(argv: list[str], *, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (argparse printed it)
        return EXIT_OK if not exc.code else EXIT_REFUSED
    try:
        check_outdir(args.output, force=args.force)
    except OutputError as exc:
        err.write(f"centrale migrate: {exc}\n")
        return EXIT_REFUSED
    paths = _expand(args.sources)
    if not paths:
        err.write("centrale migrate: no input files\n")
        return EXIT_UNREADABLE

    progress = None
    size = 0
    lines = 0
    for p in paths:
        try:
            data = p.read_bytes()
        except OSError as exc:
            err.write(f"centrale migrate: {p}: cannot read: {exc.strerror or exc}\n")
            return EXIT_UNREADABLE
        size += len(data)
        lines += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    tty = err.isatty()
    if not args.no_progress and (tty or size >= LARGE_INPUT_BYTES):
        progress = ProgressBar(lines, err, tty=tty, label="importing")

    try:
        result = run_import(args.system, paths, timezone=args.timezone, progress=progress)
    except ImportFailure as exc:
        if progress and progress.tty:
            err.write("\n")
        err.write(f"centrale migrate: {exc}\nnothing written\n")
        return EXIT_UNREADABLE
    except Exception as exc:  # an importer bug must not look like a crash of the input
        err.write(f"\ncentrale migrate: internal error ({type(exc).__name__}: {exc}); "
                  "nothing written. Please report it with the input that caused it.\n")
        return EXIT_REFUSED
    if progress:
        progress.close()
    report = result.report
    header = (f"Generated by `centrale migrate {args.system}` from "
              f"{', '.join(p.name for p in paths)}.\nSee migration-report.md before use.")
    sections = result.builder.sections()
    files: dict[str, str | bytes] | None = None
    if not args.config_only:
        sections["users"] = users_section(sections.get("agents", []))
        names = {r.prompt: r.source_name for r in report.recordings}
        files = site_files(args.system, args.timezone, result.config,
                           speak=args.speak_placeholders, names=names)
        report.placeholders = sorted(p for p in files if p.startswith("prompts/"))
    try:
        write_output(args.output, sections, report, header, force=args.force,
                     site_files=files, config=result.config)
    except OutputError as exc:
        err.write(f"centrale migrate: {exc}\n")
        return EXIT_REFUSED
    except InvalidOutput as exc:
        err.write(f"centrale migrate: internal error, {exc}\nnothing written\n")
        return EXIT_REFUSED

    for issue in report.issues:
        err.write(f"{issue}\n")
    counts = report.counts()
    out.write(f"{args.output}: {counts['mapped']} mapped, {counts['approximated']} "
              f"approximated, {counts['unsupported']} unsupported; "
              f"{len(report.issues)} input issue(s); {len(report.recordings)} recording(s) "
              f"to export. Report: {args.output / 'migration-report.md'}\n")
    return EXIT_UNSUPPORTED if report.has_unsupported else EXIT_OK


def main() -> None:  # pragma: no cover - `python -m config.importers.cli`
    raise SystemExit(migrate_main(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    main()
