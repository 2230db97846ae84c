"""The reports package's own tables, fed only from bus events (reports never read the
ACD's or the cases' tables, DESIGN.md).

`report_contact` is one row per ACD task (a contact: a call, a conversation, an e-mail
that entered a queue), updated as the task's events arrive. `bucket` is the task's
15-minute UTC interval (epoch // 900): every site interval (15/30/60 min, day, week,
month, in any time zone whose offset is a multiple of 15 minutes) is a union of these
buckets, so one indexed GROUP BY serves every report and the time-zone arithmetic
happens on a few thousand grouped rows instead of a million contacts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

BUCKET_SECONDS = 900


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


def bucket_of(at: datetime) -> int:
    return int(at.timestamp()) // BUCKET_SECONDS


class ReportContact(SQLModel, table=True):
    """One contact as the KPIs need it. 0/1 integers rather than booleans so that SUM()
    works the same on SQLite and PostgreSQL."""

    __tablename__ = "report_contact"
    __table_args__ = (
        Index("ix_report_contact_bucket_queue", "bucket", "queue_id"),
        Index("ix_report_contact_case", "case_id", "entered_at"),
        Index("ix_report_contact_customer", "customer_id", "entered_at"),
    )

    task_id: str = Field(primary_key=True, max_length=64)
    case_id: str | None = Field(default=None, max_length=64)
    customer_id: str | None = Field(default=None, max_length=64)
    queue_id: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=16)
    agent_id: str | None = Field(default=None, max_length=64)
    wrap_up_code: str | None = Field(default=None, max_length=64)
    entered_at: datetime = _ts(nullable=False)
    bucket: int = Field(default=0)
    answered_at: datetime | None = _ts(nullable=True)
    ended_at: datetime | None = _ts(nullable=True)  # wrap-up end, abandon or exit
    wait_seconds: float | None = None
    talk_seconds: float | None = None  # accept -> complete, hold included
    hold_seconds: float = 0.0
    wrap_seconds: float | None = None
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    exited: int = 0
    handled: int = 0
    transferred: int = 0


class ReportAgentState(SQLModel, table=True):
    """An agent state change (agent.state_changed), for occupancy and utilisation."""

    __tablename__ = "report_agent_state"
    __table_args__ = (UniqueConstraint("event_id", name="uq_report_agent_state_event"),
                      Index("ix_report_agent_state_at", "at", "agent_id"))

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64)
    agent_id: str = Field(max_length=64)
    state: str = Field(max_length=16)
    at: datetime = _ts(nullable=False)


class ReportCaseClosed(SQLModel, table=True):
    """When a case was closed (case.closed), for FCR's `closed_after_one` reading."""

    __tablename__ = "report_case_closed"

    case_id: str = Field(primary_key=True, max_length=64)
    closed_at: datetime = _ts(nullable=False)


class ReportSurveyAnswer(SQLModel, table=True):
    """A survey answer (survey.answered): CSAT 1–5 or NPS 0–10; `score` None is a
    customer who did not answer validly (asked again once, then recorded as no answer)."""

    __tablename__ = "report_survey_answer"
    __table_args__ = (UniqueConstraint("event_id", name="uq_report_survey_event"),
                      Index("ix_report_survey_at", "at"))

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64)
    kind: str = Field(max_length=8)  # csat | nps
    score: int | None = None
    case_id: str | None = Field(default=None, max_length=64)
    customer_id: str | None = Field(default=None, max_length=64)
    task_id: str | None = Field(default=None, max_length=64)
    queue_id: str | None = Field(default=None, max_length=64)
    agent_id: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=16)
    at: datetime = _ts(nullable=False)


class ReportMailSent(SQLModel, table=True):
    """A scheduled report claimed for one local day: the node that inserts the row sends
    the mail, so a cluster sends it once (at most once: a node that dies between the
    claim and the send loses that day's mail, which the log says)."""

    __tablename__ = "report_mail_sent"

    schedule_id: str = Field(primary_key=True, max_length=64)
    day: str = Field(primary_key=True, max_length=10)  # the report's local date
    node_id: str | None = Field(default=None, max_length=64)
    claimed_at: datetime = _ts(nullable=False)
    sent_at: datetime | None = _ts(nullable=True)
    error: str | None = Field(default=None, max_length=300)


class ReportBucketTotal(SQLModel, table=True):
    """Pre-aggregated `report_contact`: the sums of one 15-minute bucket per key of one
    dimension (`dim`: queue, channel, agent, wrap_up_code; key '' = none). Rebuilt from
    the contacts for every bucket marked in `report_dirty_bucket` (reports.rollup), so
    a month by queue reads ~30,000 rows instead of every contact."""

    __tablename__ = "report_bucket_total"
    # a report paged by key reads its keys' rows only (migration 0006)
    __table_args__ = (Index("ix_report_total_dim_key", "dim", "key", "bucket"),)

    dim: str = Field(primary_key=True, max_length=16)
    bucket: int = Field(primary_key=True)
    key: str = Field(primary_key=True, max_length=64)
    contacts: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    exited: int = 0
    handled: int = 0
    transferred: int = 0
    wait_answered_total: float = 0.0
    talk_total: float = 0.0
    hold_total: float = 0.0
    wrap_total: float = 0.0


class ReportDirtyBucket(SQLModel, table=True):
    """A bucket whose contacts changed since its totals were built. `version` grows
    with each change, so a rebuild only clears the mark it read (a change during the
    rebuild leaves the bucket dirty)."""

    __tablename__ = "report_dirty_bucket"

    bucket: int = Field(primary_key=True)
    version: int = 1
