"""The one exception importers raise: the input cannot be read at all (exit code 2)."""

from __future__ import annotations

from config.importers.report import SourceRef


class ImportFailure(Exception):
    """Unreadable input: nothing is written. `where` says which file and line."""

    def __init__(self, message: str, where: SourceRef) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}")
