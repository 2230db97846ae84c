"""core/sqlite_driver.py: one thread hop per statement, none for a commit or rollback
with nothing open, and transactions that behave exactly as with the stock adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.db import Database, sqlite_url


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(sqlite_url(tmp_path / "hops.db"))
    async with database.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    yield database
    await database.dispose()


def count_hops(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call queued to aiosqlite's thread, by the function's name."""
    import aiosqlite.core

    hops: list[str] = []
    original = aiosqlite.core.Connection._execute

    async def counted(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counted)
    return hops


async def count(db: Database) -> int:
    async with db.session() as s:
        return int((await s.exec(text("SELECT count(*) FROM t"))).scalar_one())  # type: ignore[call-overload]


async def test_a_read_is_one_hop_and_its_session_closes_without_one(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await count(db)  # the pool's connection exists and has been reset once
    hops = count_hops(db, monkeypatch)
    assert await count(db) == 0
    assert hops == ["_statement"]


async def test_a_write_is_a_hop_per_statement_and_one_for_the_commit(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await count(db)
    hops = count_hops(db, monkeypatch)
    async with db.session() as s:
        await s.exec(text("INSERT INTO t (v) VALUES ('a')"))  # type: ignore[call-overload]
        rows = (await s.exec(text(  # type: ignore[call-overload]
            "INSERT INTO t (v) VALUES ('b'), ('c') RETURNING id"))).all()
        await s.commit()
    assert len(rows) == 2
    assert hops == ["_statement", "_statement", "commit"]
    assert await count(db) == 3


async def test_a_rollback_undoes_what_was_written(db: Database) -> None:
    async with db.session() as s:
        result = await s.exec(text("INSERT INTO t (v) VALUES ('x')"))  # type: ignore[call-overload]
        assert result.rowcount == 1
        await s.rollback()
    async with db.session() as s:  # a session closed without commit rolls back too
        await s.exec(text("INSERT INTO t (v) VALUES ('y')"))  # type: ignore[call-overload]
    assert await count(db) == 0


async def test_a_failed_statement_leaves_a_transaction_that_rolls_back(db: Database) -> None:
    async with db.session() as s:
        await s.exec(text("INSERT INTO t (v) VALUES ('a')"))  # type: ignore[call-overload]
        await s.commit()
    with pytest.raises(IntegrityError):
        async with db.session() as s:
            await s.exec(text("INSERT INTO t (v) VALUES ('b')"))  # type: ignore[call-overload]
            await s.exec(text("INSERT INTO t (v) VALUES ('a')"))  # type: ignore[call-overload]
    assert await count(db) == 1  # 'b' went with the failed transaction
    async with db.session() as s:  # the connection is clean for the next one
        await s.exec(text("INSERT INTO t (v) VALUES ('c')"))  # type: ignore[call-overload]
        await s.commit()
    assert await count(db) == 2


async def test_executemany_reports_its_rows(db: Database) -> None:
    async with db.session() as s:
        conn = await s.connection()
        result = await conn.execute(text("INSERT INTO t (v) VALUES (:v)"),
                                    [{"v": "a"}, {"v": "b"}, {"v": "c"}])
        assert result.rowcount == 3
        await s.commit()
    assert await count(db) == 3
