"""The database: one async engine per process, SQLite (WAL) or PostgreSQL.

Every package defines its own sqlmodel tables in `<package>/tables.py`; they all share
`SQLModel.metadata`, and alembic (in `centrale/migrations`) owns the schema in
production. Tests may call `create_all()` for a throw-away database.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)


def sqlite_url(path: str | Path) -> str:
    return f"sqlite+aiosqlite:///{Path(path)}"


def async_url(url: str) -> str:
    """Accept the URLs operators write (postgresql://, sqlite:///) and pick the async driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.split(":///", 1)[1]
    return url


def redact_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database url>"


# Connections kept open per process (a node), and opened beyond that for a burst.
#
# A burst that needs more than `POOL_SIZE` connections opens overflow connections and
# closes each one when it is returned to a full pool: a PostgreSQL connect (fork of a
# backend, auth) and, on SQLite, a new aiosqlite thread with its PRAGMAs, per checkout.
# With 10 + 10 the screen-pop benchmark (issue 8) opened and closed 374 connections in
# 400 pops at 20/s and hit the ceiling of 20; with the pop reading the customer record
# in one session the peak is 8 (PostgreSQL, 10/s and 20/s) to 10 (SQLite: every
# connection is a thread, the pool is also the reads' concurrency). 15 kept open covers
# that with room; 5 overflow are a safety net for a stall (a lock wait holding
# connections), not the normal path. The total stays 20 per node, the PostgreSQL
# budget docs/deploy.md gives operators (max_connections >= 20 x nodes + admin).
# Connections are opened lazily: an idle node holds only what it once needed.
#
# PostgreSQL: a connection that sat in the pool for more than PING_IDLE_SECONDS is
# pinged (`SELECT 1`) before it is handed out, and replaced if the server has gone: a
# database restart or fail-over while the node was quiet costs no request. One used
# within that time is not: SQLAlchemy's pool_pre_ping pinged on every checkout, ~10
# round trips per inbound message on the screen-pop path (issue 16), to guard against
# a server that went away in the last second — when the node is busy. A restart then
# fails the statements in flight anyway, and the first statement on a dead pooled
# connection is a disconnect error, on which SQLAlchemy invalidates the whole pool:
# the requests that meet it are those already running at the fail-over, plus at most
# one more.
POOL_SIZE = 15
MAX_OVERFLOW = 5
PING_IDLE_SECONDS = 5.0


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = POOL_SIZE,
                 max_overflow: int = MAX_OVERFLOW) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict = {"echo": echo}
        if self.is_sqlite:
            db_path = self.url.split(":///", 1)[1]
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
                kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
            # One hop to aiosqlite's thread per statement instead of four, none for a
            # commit or rollback with nothing open (core/sqlite_driver.py).
            from core.sqlite_driver import one_hop_dbapi

            kwargs["module"] = one_hop_dbapi()
        else:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if not self.is_sqlite:
            ping_when_idle(self.engine, PING_IDLE_SECONDS)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self.writer_lock = SqliteWriterLock()
            self.writer_lock.attach(self.engine)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; commit explicitly. Rolled back if the block raises."""
        async with self._sessions() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise

    async def create_all(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)

    async def drop_all(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.drop_all)

    async def dispose(self) -> None:
        await self.engine.dispose()


def ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection before it is handed out only when it sat unused for
    more than `idle_seconds` (see PING_IDLE_SECONDS); a dead one is replaced
    (DisconnectionError makes the pool open another)."""
    from sqlalchemy.exc import DisconnectionError

    sync = engine.sync_engine
    dialect = sync.dialect
    key = "centrale_returned_at"

    def fresh(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
        record.info[key] = time.monotonic()  # just opened: alive

    def checkout(dbapi_conn, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        returned = record.info.get(key)
        if returned is not None and time.monotonic() - returned <= idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:
            if dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError(f"pooled connection gone: {exc}") from exc
            raise

    event.listen(sync.pool, "connect", fresh)
    event.listen(sync.pool, "checkin", fresh)
    event.listen(sync.pool, "checkout", checkout)


class SqliteWriterLock:
    """One write transaction at a time per process, in asyncio, not in SQLite.

    SQLite has one writer. Without this, every pooled connection that wants to write
    while another writes waits in SQLite's busy handler: it sleeps 1, 2, 5 … 100 ms and
    tries again, so under load writers sleep instead of working, the newest can win over
    the oldest, and one that loses for `busy_timeout` fails with `database is locked`
    (issue 21: 50 calls at once lost their identification that way). Here a connection
    takes an asyncio lock just before its first INSERT/UPDATE/DELETE (the moment the
    sqlite3 driver opens the write transaction) and gives it back at commit or rollback:
    writers queue in order and never touch the busy handler. Reads take no lock (WAL).

    A writer that waits longer than `timeout` gets the `database is locked` it would have
    got from SQLite, so a mistake that nests two write transactions still fails, not
    hangs.
    """

    _HELD = "centrale_writer_lock_held"

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._lock = asyncio.Lock()

    def attach(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before_execute)
        event.listen(sync, "commit", self._release_conn)
        event.listen(sync, "rollback", self._release_conn)
        event.listen(sync.pool, "reset", self._on_reset)
        event.listen(sync.pool, "invalidate", self._on_invalidate)

    def _before_execute(self, conn, _cursor, statement, _params, _context,  # type: ignore[no-untyped-def]
                        _executemany) -> None:
        info = conn.info
        if info.get(self._HELD):
            return
        verb = statement.lstrip()[:7].upper()
        if not verb.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE")):
            return
        try:
            await_only(self._acquire())
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked (waited for the "
                                           "in-process writer lock)") from None
        info[self._HELD] = True

    async def _acquire(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that arrives as the lock is granted, and a consumer task cancelled
        # at shutdown then runs on and holds the lock (a test worker hung that way).
        async with asyncio.timeout(self.timeout):
            await self._lock.acquire()

    def _release_conn(self, conn) -> None:  # type: ignore[no-untyped-def]
        try:
            info = conn.info
        except Exception:  # invalidated (a cancelled transaction): the pool event releases
            return
        self._release(info)

    # SQLAlchemy 2 reads a listener's signature: `*args` made it warn (once per test
    # process) that the pre-2.0 `reset` form is deprecated.
    def _on_reset(self, _dbapi_conn, record, _reset_state) -> None:  # type: ignore[no-untyped-def]
        self._release(record.info)

    def _on_invalidate(self, _dbapi_conn, record, _exception) -> None:  # type: ignore[no-untyped-def]
        self._release(record.info)

    def _release(self, info: dict) -> None:  # type: ignore[type-arg]
        if info.pop(self._HELD, False) and self._lock.locked():
            self._lock.release()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    """WAL for concurrent readers; synchronous=FULL so an acknowledged commit survives a
    power cut (kill -9 alone would be safe with NORMAL, a crash of the OS would not);
    foreign keys on, as PostgreSQL has them."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
