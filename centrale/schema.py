"""Database schema management on top of alembic: upgrade, current revision, and the
start-up check that refuses to run on a schema older than the code."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from core.db import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaError(Exception):
    """The database cannot be used as it is; the message names the fix."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def upgrade(url: str, revision: str = "head") -> None:
    """Run in a worker thread: alembic's env.py starts its own event loop."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision())


async def check_schema(db: Database) -> None:
    """Raise SchemaError unless the database is reachable and at the code's head."""
    try:
        current = await current_revision(db)
    except Exception as exc:
        raise SchemaError(
            f"cannot reach the database ({type(exc).__name__}: {_short(exc)}); check "
            "CENTRALE_DATABASE_URL / server.database and that the server is running"
        ) from None
    head = head_revision()
    if current != head:
        state = "empty" if current is None else f"at revision {current}"
        raise SchemaError(
            f"the database schema is {state}, the code needs {head}: "
            "run `centrale db upgrade` (back up production databases first)")


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""
