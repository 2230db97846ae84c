"""Recordings in SQL: one row per recorded call or voicemail, one row per access.

A recording belongs to the case record (docs/recording.md): its row names the case,
the customer, the call and everyone who spoke in it; the file itself lives under the
recordings directory and `path` is relative to it (never absolute, so a moved data
directory keeps working and a row can never point outside it). A deleted recording
keeps its row with `deleted_at` and the reason: the record that it existed and was
removed is what retention and erasure audits ask for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index
from sqlmodel import Field, SQLModel


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Recording(SQLModel, table=True):
    __tablename__ = "recording"
    __table_args__ = (Index("ix_recording_case", "case_id"),
                      Index("ix_recording_expires", "expires_at"))

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="case_.id", max_length=32)
    customer_id: str | None = Field(default=None, max_length=32, index=True)
    call_id: str | None = Field(default=None, max_length=128)
    kind: str = Field(max_length=12)  # call | voicemail
    backend: str = Field(max_length=12)  # sip | asterisk
    queue_id: str | None = Field(default=None, max_length=64)
    # [{"agent_id", "from", "to"}] seconds from the start: every agent the customer spoke to
    parties: list[dict[str, Any]] = Field(default_factory=list,
                                          sa_column=Column(JSON, nullable=False))
    # [{"start", "end", "by"}] seconds from the start: paused stretches (silence in the file)
    pauses: list[dict[str, Any]] = Field(default_factory=list,
                                         sa_column=Column(JSON, nullable=False))
    # [{"at", "type", ...}]: hold, handover, pause, resume, failure
    markers: list[dict[str, Any]] = Field(default_factory=list,
                                          sa_column=Column(JSON, nullable=False))
    status: str = Field(default="recording", max_length=12)  # recording|complete|failed|deleted
    error: str | None = Field(default=None, max_length=300)
    path: str = Field(max_length=300)  # relative to server.recordings.path
    started_at: datetime = _ts(nullable=False)
    ended_at: datetime | None = _ts(nullable=True)
    duration_seconds: float | None = None
    size_bytes: int | None = None
    checksum: str | None = Field(default=None, max_length=80)  # sha256:<hex>
    retention_days: int = 90
    expires_at: datetime = _ts(nullable=False)
    deleted_at: datetime | None = _ts(nullable=True)
    deleted_reason: str | None = Field(default=None, max_length=40)  # retention | erasure


class RecordingAccess(SQLModel, table=True):
    """Who played or downloaded which recording, and when (and who was refused)."""

    __tablename__ = "recording_access"
    __table_args__ = (Index("ix_recording_access_recording", "recording_id"),)

    id: str = Field(primary_key=True, max_length=32)
    recording_id: str = Field(max_length=32)
    username: str = Field(max_length=64)
    role: str = Field(max_length=16)
    action: str = Field(max_length=12)  # play | download | denied
    at: datetime = _ts(nullable=False)
