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
    config = drop_invalid_flows(builder, report, builder.validate())
    return ImportResult(builder, report, config)


def drop_invalid_flows(builder: ConfigBuilder, report: MigrationReport,
                       config: CentraleConfig) -> CentraleConfig:
    """A flow the importer built wrong (an importer bug) must not cost the admin the
    whole import: it is removed, with the numbers and flows that lead to it, and each
    removal is an unsupported line of the report with the checker's words."""
    from config.importers.report import SourceRef
    from config.validate_flows import validate_flows

    for _ in range(10):
        problems = validate_flows(config)
        if not problems:
            return config
        bad: dict[str, list[str]] = {}
        for p in problems:
            bad.setdefault(p.flow_id, []).append(
                (f"{p.node}: " if p.node else "") + p.message)
        for fid, messages in bad.items():
            builder.flows.pop(fid, None)
            source = next((i.source for i in report.items if f"flows[{fid}]" in i.target),
                          SourceRef("-"))
            report.add("generated flow", fid, Outcome.UNSUPPORTED, source,
                       reason="the importer built a flow that does not load (please report "
                       "it with the input); left out: " + "; ".join(messages[:3]))
            for number, entry in list(builder.numbers.items()):
                if entry["flow"] == fid:
                    del builder.numbers[number]
                    report.add("number", number, Outcome.UNSUPPORTED, source,
                               reason=f"its flow {fid} was left out (see above)")
        config = builder.validate()
    return config


__all__ = [
    "SYSTEMS",
    "ImportFailure",
    "ImportResult",
    "MigrationReport",
    "Outcome",
    "run_import",
    "write_output",
]
