"""Write the imported config directory atomically.

Everything is written into a temporary sibling directory, checked with the same loader
`centrale check-config` uses, and only then renamed into place; any failure removes the
temporary directory, so the admin never finds half an import. The previous content of
OUTDIR (allowed with --force) is replaced only after the new one is complete.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from config.importers.report import MigrationReport

SECTION_FILES = {
    "skills": "skills.yaml",
    "queues": "queues.yaml",
    "agents": "agents.yaml",
    "holiday_calendars": "holiday_calendars.yaml",
    "schedules": "schedules.yaml",
    "flows": "flows.yaml",
    "numbers": "numbers.yaml",
}


class OutputError(Exception):
    """OUTDIR cannot be used (not empty without --force, not a directory, ...)."""


class InvalidOutput(Exception):
    """The generated config does not load: an importer bug; `issues` says where."""

    def __init__(self, issues: list[str]) -> None:
        self.issues = issues
        super().__init__("generated config is invalid:\n" + "\n".join(issues[:20]))


def check_outdir(outdir: Path, *, force: bool) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir}: exists and is not a directory")
    if outdir.is_dir() and any(outdir.iterdir()) and not force:
        raise OutputError(f"{outdir}: directory is not empty (use --force to replace it)")


def dump_yaml(data: dict[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    yaml.width = 4096
    yaml.allow_unicode = True
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def write_output(
    outdir: Path,
    sections: dict[str, list[dict[str, Any]]],
    report: MigrationReport,
    header: str,
    *,
    force: bool,
) -> None:
    check_outdir(outdir, force=force)
    parent = outdir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=parent))
    try:
        comment = "".join(f"# {line}\n" for line in header.splitlines())
        for section, items in sections.items():
            text = comment + dump_yaml({section: items})
            (tmp / SECTION_FILES[section]).write_text(text, encoding="utf-8")
        if not sections:
            (tmp / "empty.yaml").write_text(comment + "skills: []\n", encoding="utf-8")
        report.write(tmp)
        _check_loads(tmp)
        os.chmod(tmp, 0o755)
        _swap_in(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_loads(directory: Path) -> None:
    from config.errors import ConfigError
    from config.loader import load_config

    try:
        load_config(directory, env={})
    except ConfigError as exc:
        raise InvalidOutput([str(i) for i in exc.issues]) from None


def _swap_in(tmp: Path, outdir: Path) -> None:
    if not outdir.exists():
        tmp.rename(outdir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old-", dir=tmp.parent))
    old.rmdir()
    outdir.rename(old)
    try:
        tmp.rename(outdir)
    except OSError:
        old.rename(outdir)
        raise
    shutil.rmtree(old, ignore_errors=True)
