"""Write the imported config directory atomically.

Everything is written into a temporary sibling directory, checked with the same loader
`centrale check-config` uses, and only then renamed into place; any failure removes the
temporary directory, so the admin never finds half an import. The previous content of
OUTDIR (allowed with --force) is replaced only after the new one is complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from config.importers.report import MigrationReport

SECTION_FILES = {
    "skills": "skills.yaml",
    "queues": "queues.yaml",
    "agents": "agents.yaml",
    "holiday_calendars": "holiday_calendars.yaml",
    "schedules": "schedules.yaml",
    "flows": "flows.yaml",
    "numbers": "numbers.yaml",
    "users": "users.yaml",
}


SECTION_NOTES = {
    "users": "# One log-in per imported agent (and an admin). Nobody can log in yet: each\n"
             "# password_hash is a placeholder that matches no password. Make a hash with\n"
             "# `centrale hash-password` and paste it in (or use api_token for tools).\n",
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


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .\-/()'&,+]*$")
_NOT_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "none", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if (_PLAIN.fullmatch(text) and text.lower() not in _RESERVED and not text.endswith(" ")
            and ": " not in text and " #" not in text):
        return text
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}",
                              json.dumps(text, ensure_ascii=False))


def _emit(value: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                out.append(f"{pad}{_scalar(key)}:\n")
                _emit(item, indent + 2, out)
            else:
                out.append(f"{pad}{_scalar(key)}: {_inline(item)}\n")
    else:
        for item in value:
            if isinstance(item, dict) and item:
                first = len(out)
                _emit(item, indent + 2, out)
                out[first] = f"{pad}- " + out[first][indent + 2 :]
            elif isinstance(item, list) and item:
                out.append(f"{pad}-\n")
                _emit(item, indent + 2, out)
            else:
                out.append(f"{pad}- {_inline(item)}\n")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def dump_yaml(data: dict[str, Any]) -> str:
    """Block-style YAML of plain data (dicts, lists, str, int, float, bool, None).

    Hand-written because ruamel's pure-Python emitter took 4 s for the benchmark's
    13,000 flow nodes; strings are quoted (JSON style, valid YAML) whenever a plain
    scalar could be read as something else ('3100', '08:00-17:00', 'yes')."""
    out: list[str] = []
    _emit(data, 0, out)
    return "".join(out)


def write_output(
    outdir: Path,
    sections: dict[str, list[dict[str, Any]]],
    report: MigrationReport,
    header: str,
    *,
    force: bool,
    site_files: dict[str, str | bytes] | None = None,
    config: Any = None,
) -> None:
    """Write the sections (one file each), the report and `site_files` (relative path
    -> content: server.yaml, placeholder prompts) into OUTDIR, atomically. `config`,
    when given, is the already validated import (saves validating it twice)."""
    check_outdir(outdir, force=force)
    parent = outdir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=parent))
    try:
        comment = "".join(f"# {line}\n" for line in header.splitlines())
        for section, items in sections.items():
            text = comment + SECTION_NOTES.get(section, "") + dump_yaml({section: items})
            (tmp / SECTION_FILES[section]).write_text(text, encoding="utf-8")
        if not sections:
            (tmp / "empty.yaml").write_text(comment + "skills: []\n", encoding="utf-8")
        for rel, content in (site_files or {}).items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        report.write(tmp)
        _check_loads(tmp, sections, config)
        os.chmod(tmp, 0o755)
        _swap_in(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


FULL_CHECK_MAX_BYTES = 400_000


def _check_loads(directory: Path, sections: dict[str, list[dict[str, Any]]],
                 validated: Any = None) -> None:
    """The output must pass `centrale check-config`. Up to FULL_CHECK_MAX_BYTES of YAML
    we run the real loader on the files; above, the loader's YAML pass is too slow
    (ruamel round-trip: ~20 s for the benchmark's 1.7 MB), so the same schema,
    cross-reference and flow checks run on the data the files were written from."""
    from config.errors import ConfigError

    size = sum(p.stat().st_size for p in directory.glob("*.yaml"))
    if size <= FULL_CHECK_MAX_BYTES:
        from config.loader import load_config

        try:
            load_config(directory, env={})
        except ConfigError as exc:
            raise InvalidOutput([str(i) for i in exc.issues]) from None
        return
    from pydantic import ValidationError

    from config.loader import SourceMap
    from config.schema import CentraleConfig
    from config.validate import cross_check

    data: dict[str, Any] = dict(sections)
    server_file = directory / "server.yaml"
    if server_file.exists():
        import yaml

        data.update(yaml.safe_load(server_file.read_text(encoding="utf-8")) or {})
    try:
        if isinstance(validated, CentraleConfig):
            from config.schema import ServerSettings, User

            # the imported sections are validated already: only what was added since
            config = validated.model_copy(update={
                "users": [User.model_validate(u) for u in data.get("users", [])],
                "server": ServerSettings.model_validate(data.get("server", {}))})
        else:
            config = CentraleConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidOutput([str(e) for e in exc.errors()]) from None
    sources = SourceMap()
    for section in sections:
        sources.locations[(section,)] = (directory / SECTION_FILES[section], 1)
    problems = cross_check(config, sources, base_dir=directory)
    if problems:
        raise InvalidOutput([str(i) for i in problems])


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
