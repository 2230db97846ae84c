"""Config errors that name the file and line, so an admin can fix them without guessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ConfigIssue:
    file: Path | None
    line: int | None  # 1-based
    path: str  # dotted location in the config, e.g. queues[sales].wrap_up_seconds
    message: str

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"


class ConfigError(Exception):
    """The configuration is invalid; `issues` lists every problem found, in file order."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(
            issues, key=lambda i: (str(i.file or ""), i.line or 0, i.path, i.message)
        )
        super().__init__("\n".join(str(i) for i in self.issues))
