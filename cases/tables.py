"""The customer record in SQL: customers, identities, cases, timeline, merges.

Identity is UNIQUE per (kind, value): two concurrent contacts from one new number
cannot create two customers; the loser of the race re-reads and joins the winner.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Customer(SQLModel, table=True):
    __tablename__ = "customer"

    id: str = Field(primary_key=True, max_length=32)
    display_name: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=8)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    anonymous: bool = False
    merged_into: str | None = Field(default=None, foreign_key="customer.id", max_length=32)
    created_at: datetime = _ts(nullable=False)


class Identity(SQLModel, table=True):
    __tablename__ = "identity"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_identity_kind_value"),)

    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=32)
    kind: str = Field(max_length=24)  # phone, whatsapp, whatsapp_bsuid, email, webchat, sip
    value: str = Field(max_length=320)  # normalised: E.164, wa_id digits, lower-case email
    raw: str = Field(max_length=320)  # as received, kept for the agent and audits
    verified: bool = True
    created_at: datetime = _ts(nullable=False)
    # A number the customer changed away from (WhatsApp `user_changed_number`): kept,
    # so a later call or message from it still finds them, but marked previous.
    previous: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    replaced_by: str | None = Field(default=None, max_length=320)  # the value it became


class Case(SQLModel, table=True):
    __tablename__ = "case_"  # `case` is reserved in SQL
    __table_args__ = (Index("ix_case_customer_status", "customer_id", "status"),)

    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id", max_length=32)
    status: str = Field(default="open", max_length=12)  # open | closed
    subject: str | None = Field(default=None, max_length=300)
    last_agent_id: str | None = Field(default=None, max_length=64)
    last_agent_at: datetime | None = _ts(nullable=True)
    opened_at: datetime = _ts(nullable=False)
    closed_at: datetime | None = _ts(nullable=True)
    last_activity_at: datetime = _ts(nullable=False)


class TimelineEntry(SQLModel, table=True):
    __tablename__ = "timeline_entry"
    __table_args__ = (
        UniqueConstraint("dedup_key", name="uq_timeline_dedup_key"),
        Index("ix_timeline_case_time", "case_id", "occurred_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="case_.id", max_length=32)
    kind: str = Field(max_length=24)  # message, call, ivr, note, wrap_up, voicemail, system
    channel: str = Field(max_length=16)  # voice, whatsapp, webchat, email, sms, internal
    direction: str = Field(max_length=10)  # inbound, outbound, internal
    body: str | None = Field(default=None, sa_column=Column(Text))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    dedup_key: str | None = Field(default=None, max_length=200)
    occurred_at: datetime = _ts(nullable=False)
    recorded_at: datetime = _ts(nullable=False)


class IdentitySuggestion(SQLModel, table=True):
    """An identity that may belong to another customer: shown to the agent, never applied
    by itself (unverified pre-chat details, ambiguous WhatsApp number forms)."""

    __tablename__ = "identity_suggestion"

    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=32)
    candidate_customer_id: str = Field(foreign_key="customer.id", max_length=32)
    kind: str = Field(max_length=24)
    value: str = Field(max_length=320)
    reason: str = Field(max_length=200)
    status: str = Field(default="open", max_length=12)  # open | accepted | rejected
    created_at: datetime = _ts(nullable=False)


class CustomerMerge(SQLModel, table=True):
    """The audit trail of a merge, holding exactly what moved so it can be undone."""

    __tablename__ = "customer_merge"

    id: str = Field(primary_key=True, max_length=32)
    source_customer_id: str = Field(foreign_key="customer.id", max_length=32)
    target_customer_id: str = Field(foreign_key="customer.id", max_length=32)
    moved_identity_ids: list[str] = Field(default_factory=list,
                                          sa_column=Column(JSON, nullable=False))
    moved_case_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    actor: str = Field(max_length=64)
    reason: str | None = Field(default=None, max_length=300)
    merged_at: datetime = _ts(nullable=False)
    reverted_at: datetime | None = _ts(nullable=True)
    reverted_by: str | None = Field(default=None, max_length=64)
