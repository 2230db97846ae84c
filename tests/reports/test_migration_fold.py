"""Upgrading a database of the first wave keeps its report data: the web layer's task
facts become contact rows (and their buckets are marked for the rollup)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import select

from centrale.schema import upgrade
from core.db import Database, sqlite_url
from reports.rollup import rebuild
from reports.tables import ReportContact


def test_report_facts_are_folded_into_contacts(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "old.db")
    upgrade(url, "0002")
    at = datetime(2026, 1, 5, 9, 0, 30, tzinfo=UTC)
    facts = [("e1", "entered", "t1", None), ("e2", "answered", "t1", 12.0),
             ("e3", "completed", "t1", 95.0), ("e4", "abandoned", "t2", 7.0)]
    engine = sa.create_engine(url.replace("+aiosqlite", ""))
    with engine.begin() as conn:
        for event_id, kind, task, seconds in facts:
            conn.execute(sa.text(
                "INSERT INTO web_report_fact (id, event_id, kind, task_id, queue_id, "
                "agent_id, channel, at, seconds, wrap_up_code) VALUES (:id, :e, :k, :t, "
                "'sales', :a, 'voice', :at, :s, :c)"),
                {"id": event_id, "e": event_id, "k": kind, "t": task, "s": seconds,
                 "a": "anna" if task == "t1" else None, "at": at.isoformat(),
                 "c": "sale" if kind == "completed" else None})
    engine.dispose()
    upgrade(url)

    async def check() -> None:
        db = Database(url)
        try:
            async with db.session() as s:
                rows = {r.task_id: r for r in await s.exec(select(ReportContact))}
            t1, t2 = rows["t1"], rows["t2"]
            assert (t1.answered, t1.handled, t1.wait_seconds, t1.talk_seconds,
                    t1.wrap_up_code, t1.agent_id) == (1, 1, 12.0, 95.0, "sale", "anna")
            assert (t2.abandoned, t2.wait_seconds) == (1, 7.0)
            assert await rebuild(db) == 1  # both in the 09:00 bucket, marked dirty
        finally:
            await db.dispose()

    asyncio.run(check())
