"""Every package's tables, imported in one place so SQLModel.metadata (and alembic) see
the whole schema."""

from __future__ import annotations

import importlib

TABLE_MODULES = ("cases.tables", "cases.recording_tables", "queues.tables", "digital.tables",
                 "web.tables", "reports.tables", "assist.tables")


def import_all() -> None:
    for name in TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module
                raise
