"""SQLAlchemy's aiosqlite adapter with one thread hop per statement, none for a no-op
commit or rollback.

aiosqlite runs each sqlite3 call on the connection's own thread; every call is a hop:
a queue put, the thread woken, the result handed back with `call_soon_threadsafe`, and
the GIL passed twice. SQLAlchemy's adapter makes four hops per SELECT (create a cursor,
execute, fetch all, close the cursor) and three per write, and one more for each
`rollback()` — which SQLAlchemy calls when a session closes and again when the pool
takes a connection back, also after a read-only session that never opened a
transaction. The screen-pop benchmark counted ~85 hops per inbound message, about 4
per statement; on two busy cores each hop costs more than the SQLite work it carries
(an indexed read is microseconds, a hop tens to hundreds of microseconds of GIL
hand-over).

Here a statement is one hop: cursor, execute, fetch, close run together on the
connection's thread (the same calls, in the same order, on the same thread as before).
The adapter keeps whether sqlite3 has a transaction open after each statement
(`Connection.in_transaction`, read on that thread), so `commit()` and `rollback()` with
nothing open return at once; with a transaction open, or after a statement that failed
or was cancelled (state unknown), they run as before. Nothing else changes: the same
sqlite3 connection, isolation handling, PRAGMAs and commit durability.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)


def _statement(conn: sqlite3.Connection, operation: str, parameters: Any,
               many: bool) -> tuple[Any, list[Any] | None, int | None, int, bool]:
    """On the connection's thread: the whole statement, as the stock adapter's four
    hops did it, and whether a transaction is open afterwards."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.lastrowid, cursor.rowcount, conn.in_transaction
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._run(operation, parameters, False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._run(operation, seq_of_parameters, True)

    def _run(self, operation: Any, parameters: Any, many: bool) -> None:
        adapt: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        driver = adapt._connection
        try:
            description, rows, lastrowid, rowcount, open_tx = self.await_(
                driver._execute(_statement, driver._conn, operation, parameters, many))
        except BaseException as error:
            adapt._in_tx = True  # failed or cancelled half-way: let rollback() run
            if not isinstance(error, Exception):
                raise
            adapt._handle_exception(error)
        adapt._in_tx = open_tx
        if description:
            self.description = description
            self.lastrowid = self.rowcount = -1
            self._rows = deque(rows or ())
        else:
            self.description = None
            self.lastrowid = lastrowid
            self.rowcount = rowcount


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_in_tx",)

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._in_tx = True  # not known yet: the first rollback/commit runs

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        if server_side:  # a streamed result keeps its cursor: the stock one
            self._in_tx = True
            return super().cursor(server_side=True)
        return OneHopCursor(self)

    def execute(self, *args: Any, **kw: Any) -> Any:
        self._in_tx = True
        return super().execute(*args, **kw)

    def rollback(self) -> None:
        if self._in_tx:
            super().rollback()
            self._in_tx = False

    def commit(self) -> None:
        if self._in_tx:
            super().commit()
            self._in_tx = False


class OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module SQLAlchemy's aiosqlite dialect is given (`module=`)."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        stock = super().connect(*arg, **kw)
        return OneHopConnection(self, stock._connection)


def one_hop_dbapi() -> OneHopDbapi:
    return OneHopDbapi(aiosqlite, sqlite3)
