"""core.upsert: the cacheable INSERT ... ON CONFLICT text statements behave as the
dialect constructs they replace, on SQLite and PostgreSQL (the `database` fixture runs
both): nothing inserted twice, the named columns updated, JSON and datetimes typed, the
stored row's value returned, column defaults filled in."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import select

from core.db import Database
from core.upsert import full_row, insert_on_conflict
from digital.tables import DigitalMessage
from reports.tables import ReportContact


async def test_do_nothing_keeps_the_first_row_with_its_json_and_defaults(
        database: Database) -> None:
    table = DigitalMessage.__table__  # type: ignore[attr-defined]
    statement = insert_on_conflict(table, ("provider", "provider_message_id"))
    assert statement is insert_on_conflict(table, ("provider", "provider_message_id"))
    when = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    first = {"id": "m1", "provider": "whatsapp", "provider_message_id": "wamid.1",
             "channel": "whatsapp", "direction": "inbound", "sender": "316",
             "body": "hallo", "payload": {"a": [1, "é"]}, "processed": False,
             "occurred_at": when, "created_at": when}
    again = {**first, "id": "m2", "body": "twice"}
    async with database.session() as s:
        connection = await s.connection()
        await connection.execute(statement, [full_row(table, first)])
        await connection.execute(statement, [full_row(table, again)])
        await s.commit()
    async with database.session() as s:
        rows = list(await s.exec(select(DigitalMessage)))
    assert [(r.id, r.body, r.payload, r.kind) for r in rows] == \
        [("m1", "hallo", {"a": [1, "é"]}, "text")]  # kind: the column's default


async def test_do_update_sets_the_named_columns_and_returns_the_stored_value(
        database: Database) -> None:
    table = ReportContact.__table__  # type: ignore[attr-defined]
    statement = insert_on_conflict(table, ("task_id",), update=("queue_id",),
                                   returning=("bucket",))
    when = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    async with database.session() as s:
        connection = await s.connection()
        inserted = await connection.execute(statement, full_row(table, {
            "task_id": "t1", "entered_at": when, "bucket": 7, "queue_id": "sales"}))
        assert inserted.scalar_one() == 7
        updated = await connection.execute(statement, full_row(table, {
            "task_id": "t1", "entered_at": when, "bucket": 99, "queue_id": "support"}))
        assert updated.scalar_one() == 7  # the stored row's bucket, not the new one
        await s.commit()
    async with database.session() as s:
        row = await s.get(ReportContact, "t1")
    assert row is not None and row.queue_id == "support" and row.bucket == 7
    assert row.answered == 0 and row.hold_seconds == 0.0  # defaults filled in
