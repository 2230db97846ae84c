"""SQL tables for ACD reports: one row per task life-cycle event and per agent state
change. Written only through `queues.store.SqlAcdStore`; the lead's alembic migration is
generated from these models. Other packages read reports through queues' functions,
never these tables directly (DESIGN.md)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class AcdTaskEventRow(SQLModel, table=True):
    __tablename__ = "acd_task_events"

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(index=True, max_length=64)
    event: str = Field(max_length=32)  # enqueued, offered, accepted, missed, rejected, ...
    occurred_at: datetime = Field(index=True)
    queue_id: str = Field(index=True, max_length=64)
    channel: str = Field(max_length=16)
    kind: str = Field(default="normal", max_length=16)
    case_id: str = Field(index=True, max_length=64)
    customer_id: str = Field(max_length=64)
    agent_id: str | None = Field(default=None, index=True, max_length=64)
    offer_id: str | None = Field(default=None, max_length=64)
    wait_seconds: float | None = None
    handle_seconds: float | None = None
    wrap_up_code: str | None = Field(default=None, max_length=64)
    notes: str | None = None
    reason: str | None = Field(default=None, max_length=64)


class AcdAgentStateRow(SQLModel, table=True):
    __tablename__ = "acd_agent_state_events"

    id: int | None = Field(default=None, primary_key=True)
    agent_id: str = Field(index=True, max_length=64)
    state: str = Field(max_length=16)
    previous: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    occurred_at: datetime = Field(index=True)
