"""INSERT ... ON CONFLICT statements that SQLAlchemy can cache.

SQLAlchemy 2.0 does not cache the compiled form of a dialect `insert().on_conflict_do_*()`
(its ON CONFLICT clause has no cache key): every execution compiles the statement anew,
which the screen-pop benchmark's profile showed on every inbound message (the inbox's
insert, the reports recorder's upserts). The same statements written once as text with
typed bind parameters are compiled once per process and read the same on SQLite (3.24+)
and PostgreSQL, whose ON CONFLICT syntax they share.

Values go through the columns' types (JSON, datetimes) as in a Core insert; a column a
row does not name gets the column's scalar default, else NULL, as a Core insert would.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, text
from sqlalchemy.sql.elements import TextClause


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=64)
def insert_on_conflict(table: Table, conflict: tuple[str, ...], *,
                       update: tuple[str, ...] = (), raw_update: str = "",
                       returning: tuple[str, ...] = ()) -> TextClause:
    """`INSERT INTO table (every column) VALUES (...) ON CONFLICT (conflict)` then
    `DO NOTHING`, or `DO UPDATE SET` each of `update` to the inserted value and
    `raw_update` (SQL written by the caller, e.g. `version = t.version + 1`), with an
    optional RETURNING. Cached per argument set: build it from constants only."""
    names = [c.name for c in table.columns]
    sql = (f"INSERT INTO {_quoted(table.name)} ({', '.join(map(_quoted, names))}) "
           f"VALUES ({', '.join(':' + n for n in names)}) "
           f"ON CONFLICT ({', '.join(map(_quoted, conflict))}) ")
    sets = [f"{_quoted(n)} = excluded.{_quoted(n)}" for n in update]
    if raw_update:
        sets.append(raw_update)
    sql += f"DO UPDATE SET {', '.join(sets)}" if sets else "DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(map(_quoted, returning))}"
    return text(sql).bindparams(*(bindparam(c.name, type_=c.type) for c in table.columns))


def full_row(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Every column of `table`: the given value, else the column's scalar default."""
    row: dict[str, Any] = {}
    for column in table.columns:
        if column.name in values:
            row[column.name] = values[column.name]
        elif column.default is not None and getattr(column.default, "is_scalar", False):
            row[column.name] = column.default.arg  # type: ignore[attr-defined]
        else:
            row[column.name] = None
    return row
