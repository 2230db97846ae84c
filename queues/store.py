"""The store port: where the engine writes task life-cycle and agent-state records for
reports. The engine never waits on SQL in a routing decision: it hands records to the
store in batches after each operation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Protocol

from sqlalchemy import insert
from sqlmodel import select

from core.db import Database
from queues.tables import AcdAgentStateRow, AcdTaskEventRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskEventRecord:
    task_id: str
    event: str
    occurred_at: datetime
    queue_id: str
    channel: str
    kind: str
    case_id: str
    customer_id: str
    agent_id: str | None = None
    offer_id: str | None = None
    wait_seconds: float | None = None
    handle_seconds: float | None = None
    wrap_up_code: str | None = None
    notes: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AgentStateRecord:
    agent_id: str
    state: str
    previous: str
    reason: str | None
    occurred_at: datetime


class AcdStore(Protocol):
    async def save(
        self, tasks: Sequence[TaskEventRecord], agents: Sequence[AgentStateRecord]
    ) -> None: ...

    async def task_history(self, task_id: str) -> list[TaskEventRecord]: ...


class InMemoryAcdStore:
    """For tests, benchmarks and the embedded default when no database is wanted."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.task_events: list[TaskEventRecord] = []
        self.agent_events: list[AgentStateRecord] = []

    async def save(
        self, tasks: Sequence[TaskEventRecord], agents: Sequence[AgentStateRecord]
    ) -> None:
        if self.keep:
            self.task_events.extend(tasks)
            self.agent_events.extend(agents)

    async def task_history(self, task_id: str) -> list[TaskEventRecord]:
        return [r for r in self.task_events if r.task_id == task_id]


_FIELDS: dict[type, tuple[str, ...]] = {}


def _rows(records: Sequence[TaskEventRecord] | Sequence[AgentStateRecord]
          ) -> list[dict[str, object]]:
    """Records as parameter dicts. Every field is a scalar, so `dataclasses.asdict`'s
    recursive deep copy (~0.1 ms a record, 2 records a call) bought nothing."""
    names = _FIELDS.get(type(records[0]))
    if names is None:
        names = _FIELDS[type(records[0])] = tuple(f.name for f in fields(records[0]))
    return [{name: getattr(r, name) for name in names} for r in records]


class SqlAcdStore:
    """Writes each batch in one transaction through core.db.Database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(
        self, tasks: Sequence[TaskEventRecord], agents: Sequence[AgentStateRecord]
    ) -> None:
        if not tasks and not agents:
            return
        # Core executemany, not ORM objects: one statement per table and batch instead
        # of one per record (the records are plain rows; nothing reads them back here).
        async with self.db.session() as session:
            conn = await session.connection()
            if tasks:
                await conn.execute(insert(AcdTaskEventRow.__table__),  # type: ignore[attr-defined]
                                   _rows(tasks))
            if agents:
                await conn.execute(insert(AcdAgentStateRow.__table__),  # type: ignore[attr-defined]
                                   _rows(agents))
            await session.commit()

    async def task_history(self, task_id: str) -> list[TaskEventRecord]:
        async with self.db.session() as session:
            rows = (
                await session.exec(
                    select(AcdTaskEventRow)
                    .where(AcdTaskEventRow.task_id == task_id)
                    .order_by(AcdTaskEventRow.id)  # type: ignore[arg-type]
                )
            ).all()
        return [
            TaskEventRecord(**{k: getattr(row, k) for k in TaskEventRecord.__dataclass_fields__})
            for row in rows
        ]

    async def agent_history(self, agent_id: str) -> list[AgentStateRecord]:
        async with self.db.session() as session:
            rows = (
                await session.exec(
                    select(AcdAgentStateRow)
                    .where(AcdAgentStateRow.agent_id == agent_id)
                    .order_by(AcdAgentStateRow.id)  # type: ignore[arg-type]
                )
            ).all()
        return [
            AgentStateRecord(**{k: getattr(row, k) for k in AgentStateRecord.__dataclass_fields__})
            for row in rows
        ]
