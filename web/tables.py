"""The web layer's own tables: sessions, API tokens, login attempts, the per-agent task
ledger that decides which cases an agent may open, webhook subscriptions and their
durable deliveries, and the wallboard's samples (report figures live in `reports/`).

They are written only by `web.desktop`; other packages are read through their services
and events, never through these tables (and the web layer never reads theirs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class WebSession(SQLModel, table=True):
    """A browser log-in. `id` is the SHA-256 of the cookie value, so a database leak
    does not hand out live sessions."""

    __tablename__ = "web_session"

    id: str = Field(primary_key=True, max_length=64)
    username: str = Field(index=True, max_length=64)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(nullable=False)
    last_seen_at: datetime = _ts(nullable=False)
    remote: str | None = Field(default=None, max_length=64)


class ApiToken(SQLModel, table=True):
    """An integration's Bearer token, created by an admin; only its SHA-256 is kept."""

    __tablename__ = "web_api_token"

    id: str = Field(primary_key=True, max_length=32)
    token_hash: str = Field(max_length=64, unique=True)
    username: str = Field(max_length=64)
    label: str = Field(max_length=100)
    created_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = _ts(nullable=True)
    last_used_at: datetime | None = _ts(nullable=True)


class LoginAttempt(SQLModel, table=True):
    """Failed log-ins, counted per user name and per remote address for rate limiting
    (in SQL so that every node of a cluster sees the same count)."""

    __tablename__ = "web_login_attempt"
    __table_args__ = (Index("ix_login_attempt_user_at", "username", "at"),
                      Index("ix_login_attempt_remote_at", "remote", "at"))

    id: str = Field(primary_key=True, max_length=32)
    username: str = Field(max_length=64)
    remote: str = Field(max_length=64)
    at: datetime = _ts(nullable=False)


class AgentTask(SQLModel, table=True):
    """One task as one agent saw it: offered, accepted, completed. This ledger is what
    lets an agent open a case (only the cases of tasks offered or assigned to them)."""

    __tablename__ = "web_agent_task"
    __table_args__ = (UniqueConstraint("agent_id", "task_id", name="uq_web_agent_task"),
                      Index("ix_web_agent_task_case", "case_id", "agent_id"))

    id: str = Field(primary_key=True, max_length=32)
    agent_id: str = Field(max_length=64, index=True)
    task_id: str = Field(max_length=64)
    offer_id: str | None = Field(default=None, max_length=64)
    case_id: str = Field(max_length=32)
    customer_id: str | None = Field(default=None, max_length=32)
    channel: str = Field(max_length=16)
    queue_id: str | None = Field(default=None, max_length=64)
    status: str = Field(default="offered", max_length=16)  # offered|accepted|wrap_up|done
    offered_at: datetime = _ts(nullable=False)
    accepted_at: datetime | None = _ts(nullable=True)
    completed_at: datetime | None = _ts(nullable=True)
    wrap_up_code: str | None = Field(default=None, max_length=64)


class WebhookSubscription(SQLModel, table=True):
    """A CRM (or any integration) that wants case and task events POSTed to it."""

    __tablename__ = "web_webhook_subscription"

    id: str = Field(primary_key=True, max_length=32)
    url: str = Field(max_length=500)
    secret: str = Field(max_length=200)
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    active: bool = True
    created_at: datetime = _ts(nullable=False)


class WebhookDelivery(SQLModel, table=True):
    """One event for one subscription. Written before the first attempt, so a restart
    resumes where it stopped; UNIQUE (subscription, event) makes a redelivered bus event
    harmless."""

    __tablename__ = "web_webhook_delivery"
    __table_args__ = (UniqueConstraint("subscription_id", "event_id", name="uq_webhook_event"),
                      Index("ix_webhook_due", "status", "next_attempt_at"))

    id: str = Field(primary_key=True, max_length=32)
    subscription_id: str = Field(foreign_key="web_webhook_subscription.id", max_length=32)
    event_id: str = Field(max_length=64)
    topic: str = Field(max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=12)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime = _ts(nullable=False)
    locked_until: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, max_length=300)
    created_at: datetime = _ts(nullable=False)
    delivered_at: datetime | None = _ts(nullable=True)


class WallboardSample(SQLModel, table=True):
    """One point of the wallboard's day charts per queue and minute."""

    __tablename__ = "web_wallboard_sample"
    __table_args__ = (UniqueConstraint("queue_id", "at", name="uq_wallboard_sample"),)

    id: str = Field(primary_key=True, max_length=32)
    queue_id: str = Field(max_length=64)
    at: datetime = _ts(nullable=False)
    waiting: int = 0
    service_level: float | None = None
