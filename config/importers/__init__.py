"""Importers for legacy contact-center configuration (Avaya CM, Avaya IP Office, Mitel
MiVoice Business): read the exports an admin can make, build a Centrale config, and
report every construct as mapped, approximated or unsupported.

Public API: `run_import(system, paths)` -> `ImportResult`, `write_output(...)`, and the
CLI entry `config.importers.cli.migrate_main`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from config.importers.builder import ConfigBuilder
from config.importers.errors import ImportFailure
from config.importers.report import MigrationReport, Outcome
from config.importers.writer import write_output
from config.schema import CentraleConfig

SYSTEMS = ("avaya-cm", "avaya-ipo", "mitel-mivb")


@dataclass
class ImportResult:
    builder: ConfigBuilder
    report: MigrationReport
    config: CentraleConfig  # the imported sections, validated


def run_import(
    system: str,
    paths: Sequence[Path],
    *,
    timezone: str = "Europe/Amsterdam",
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import `paths` exported from `system`; raise ImportFailure on unreadable input."""
    report = MigrationReport(system, sources=[str(p) for p in paths])
    builder = ConfigBuilder(report, timezone=timezone)
    if system == "avaya-cm":
        from config.importers.avaya_cm import import_avaya_cm

        import_avaya_cm(paths, builder, report, progress)
    elif system == "avaya-ipo":
        from config.importers.avaya_ipo import import_avaya_ipo

        import_avaya_ipo(paths, builder, report, progress)
    elif system == "mitel-mivb":
        from config.importers.mitel_mivb import import_mitel_mivb

        import_mitel_mivb(paths, builder, report, progress)
    else:
        raise ValueError(f"unknown system {system!r}; use one of {', '.join(SYSTEMS)}")
    builder.finish_report()
    config = builder.validate()
    return ImportResult(builder, report, config)


__all__ = [
    "SYSTEMS",
    "ImportFailure",
    "ImportResult",
    "MigrationReport",
    "Outcome",
    "run_import",
    "write_output",
]
