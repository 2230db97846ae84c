"""PostgreSQL pool: a connection used within PING_IDLE_SECONDS is handed out without a
`SELECT 1`; one idle for longer is pinged and, when its server process is gone,
replaced before any statement of the caller runs on it (core/db.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

import core.db
from core.db import Database


async def backend_pid(db: Database) -> int:
    async with db.session() as s:
        return int((await s.exec(text("SELECT pg_backend_pid()"))).scalar_one())  # type: ignore[call-overload]


def count_pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    dialect = db.engine.sync_engine.dialect
    pings: list[int] = []
    original = dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        pings.append(1)
        return original(dbapi_conn)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


@pytest.fixture
async def pg(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Database]:
    monkeypatch.setattr(core.db, "PING_IDLE_SECONDS", 5.0)
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    yield db
    await db.dispose()


async def test_a_connection_in_use_is_not_pinged(pg: Database,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = await backend_pid(pg)
    pings = count_pings(pg, monkeypatch)
    assert [await backend_pid(pg) for _ in range(5)] == [first] * 5
    assert pings == []


async def test_an_idle_connection_whose_server_went_away_is_replaced(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.db, "PING_IDLE_SECONDS", 0.0)  # every checkout counts as idle
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    try:
        first = await backend_pid(db)
        admin = Database(postgres_url, pool_size=1, max_overflow=0)
        try:
            async with admin.session() as s:
                await s.exec(text("SELECT pg_terminate_backend(:p)").bindparams(p=first))  # type: ignore[call-overload]
        finally:
            await admin.dispose()
        pings = count_pings(db, monkeypatch)
        second = await backend_pid(db)  # no error: the dead connection was replaced
        assert second != first and len(pings) >= 1
    finally:
        await db.dispose()
