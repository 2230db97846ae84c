"""Agent assist's own tables: the resolved replies it learnt from (the index is
rebuilt from them at start), the queue each case was last handled in, and the agents'
feedback on suggestions. Written only by `assist`; it reads cases through CaseService.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class AssistReply(SQLModel, table=True):
    """An agent's reply in a resolved case and the customer messages it answered."""

    __tablename__ = "assist_reply"
    __table_args__ = (UniqueConstraint("entry_id", name="uq_assist_reply_entry"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: str = Field(max_length=32)  # the reply's timeline entry
    case_id: str = Field(index=True, max_length=32)
    queue_id: str = Field(max_length=64)  # "" when the case never went through a queue
    language: str = Field(max_length=8)
    channel: str = Field(max_length=16)
    question: str = Field(sa_column=Column(Text, nullable=False))
    reply: str = Field(sa_column=Column(Text, nullable=False))
    wrap_up_code: str | None = Field(default=None, max_length=64)
    closed_at: datetime = _ts(nullable=False)


class AssistCaseQueue(SQLModel, table=True):
    """The queue a case's latest task was accepted from (from `task.*` events)."""

    __tablename__ = "assist_case_queue"

    case_id: str = Field(primary_key=True, max_length=32)
    queue_id: str = Field(max_length=64)
    updated_at: datetime = _ts(nullable=False)


class AssistFeedback(SQLModel, table=True):
    """What an agent did with a suggestion: used as is, edited, or ignored."""

    __tablename__ = "assist_feedback"
    __table_args__ = (
        UniqueConstraint("feedback_key", name="uq_assist_feedback_key"),
        Index("ix_assist_feedback_queue_time", "queue_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    feedback_key: str = Field(max_length=64)  # the desktop's id: a retried POST counts once
    case_id: str = Field(max_length=32)
    queue_id: str = Field(max_length=64)
    agent_id: str | None = Field(default=None, max_length=64)
    source: str = Field(max_length=16)  # case | article | model
    source_ref: str | None = Field(default=None, max_length=200)
    outcome: str = Field(max_length=12)  # used | edited | ignored
    created_at: datetime = _ts(nullable=False)
