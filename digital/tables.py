"""Digital channels in SQL: messages, conversations, delivery status, send attempts,
webchat sessions.

Idempotency lives in the schema, not in code: a message is UNIQUE per
(provider, provider_message_id), so a webhook delivered twice — or the same id twice in
one POST — is stored once whatever the timing. Inbound messages are written raw first
(`processed=False`, the *inbox*) in the transaction that the webhook's 2xx waits for, and
are turned into customers, cases and ACD tasks afterwards by `digital.inbox`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Delivery ranks: a status only ever moves up (sent < delivered < read); `failed` is a
# separate flag so a late "delivered" never hides a failure and vice versa.
STATUS_RANK = {"accepted": 0, "queued": 0, "sending": 0, "sent": 1, "delivered": 2, "read": 3}
RANK_NAME = {0: "accepted", 1: "sent", 2: "delivered", 3: "read"}


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class DigitalMessage(SQLModel, table=True):
    """One message in or out on any digital channel."""

    __tablename__ = "digital_message"
    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id", name="uq_digital_message_provider_id"),
        Index("ix_digital_message_inbox", "processed", "received_seq"),
        Index("ix_digital_message_conversation", "conversation_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=32)  # our id (biz_opaque_callback_data)
    provider: str = Field(max_length=16)  # whatsapp | twilio | webchat | email
    provider_message_id: str | None = Field(default=None, max_length=300)  # wamid, SM…, …
    channel: str = Field(max_length=16)  # whatsapp | sms | webchat | email
    direction: str = Field(max_length=10)  # inbound | outbound
    kind: str = Field(default="text", max_length=24)  # text, image, …, unsupported, system
    sender: str | None = Field(default=None, max_length=320)  # wa_id, E.164, address, visitor
    body: str | None = Field(default=None, sa_column=Column(Text))
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    media_path: str | None = Field(default=None, max_length=500)
    conversation_id: str | None = Field(default=None, max_length=32)
    case_id: str | None = Field(default=None, max_length=32)
    customer_id: str | None = Field(default=None, max_length=32)
    agent_id: str | None = Field(default=None, max_length=64)
    # inbox: inbound rows are processed after the webhook was acknowledged
    processed: bool = True
    received_seq: int | None = Field(default=None, sa_column=Column(BigInteger))  # ingest order
    # inbox on PostgreSQL (several nodes): the node processing the row, until when; a dead
    # node's claim runs out and the row is claimed again (digital.inbox)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = _ts(nullable=True)
    # outbound: our send state; delivery state lives in DeliveryStatus by provider id
    send_state: str | None = Field(default=None, max_length=16)  # pending|sent|failed|refused
    error: str | None = Field(default=None, max_length=300)
    seq: int | None = Field(default=None)  # webchat: per-session sequence number
    occurred_at: datetime = _ts(nullable=False)
    created_at: datetime = _ts(nullable=False)


class DeliveryStatus(SQLModel, table=True):
    """Delivery of one outbound message, as a one-way maximum plus a failed flag.

    Keyed by the provider's id so a status that arrives before our send call returned
    (it happens with Meta) is kept and joins the message later."""

    __tablename__ = "digital_delivery_status"

    provider: str = Field(primary_key=True, max_length=16)
    provider_message_id: str = Field(primary_key=True, max_length=300)
    # from biz_opaque_callback_data, whole (Meta allows 512): a cut value could name
    # another of our messages or none
    our_id: str | None = Field(default=None, max_length=512, index=True)
    rank: int = 0
    failed: bool = False
    error_code: str | None = Field(default=None, max_length=32)
    error_title: str | None = Field(default=None, max_length=300)
    recipient: str | None = Field(default=None, max_length=320)
    updated_at: datetime = _ts(nullable=False)


class SendAttempt(SQLModel, table=True):
    """Each HTTP call we made to send one message, for audits and the retry rule."""

    __tablename__ = "digital_send_attempt"

    id: str = Field(primary_key=True, max_length=32)
    message_id: str = Field(max_length=32, index=True)
    attempt: int
    outcome: str = Field(max_length=24)  # sent | http_5xx | timeout | rate_limited | rejected
    http_status: int | None = None
    error_code: str | None = Field(default=None, max_length=32)
    detail: str | None = Field(default=None, max_length=500)
    at: datetime = _ts(nullable=False)


class Conversation(SQLModel, table=True):
    """A thread with one contact on one channel, from the first message to wrap-up."""

    __tablename__ = "digital_conversation"
    __table_args__ = (
        Index("ix_digital_conversation_contact", "channel", "contact", "state"),
        Index("ix_digital_conversation_case", "case_id"),
        UniqueConstraint("thread_token", name="uq_digital_conversation_thread_token"),
    )

    id: str = Field(primary_key=True, max_length=32)
    channel: str = Field(max_length=16)  # whatsapp | sms | webchat | email
    contact: str = Field(max_length=320)  # wa_id / BSUID / E.164 / email / webchat session
    case_id: str = Field(max_length=32)
    customer_id: str = Field(max_length=32)
    queue_id: str = Field(max_length=64)
    state: str = Field(default="waiting", max_length=12)  # waiting | assigned | ended
    agent_id: str | None = Field(default=None, max_length=64)
    task_id: str | None = Field(default=None, max_length=64, index=True)
    thread_token: str | None = Field(default=None, max_length=32)  # e-mail plus/subject token
    subject: str | None = Field(default=None, max_length=300)
    last_inbound_at: datetime | None = _ts(nullable=True)  # WhatsApp 24-hour window
    wrap_up_code: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts(nullable=False)
    ended_at: datetime | None = _ts(nullable=True)


class WaContact(SQLModel, table=True):
    """`input -> wa_id` as the Graph API answered a send: the number we dialled and the
    WhatsApp id it belongs to (they differ for some countries)."""

    __tablename__ = "digital_wa_contact"

    input: str = Field(primary_key=True, max_length=64)
    wa_id: str = Field(max_length=64)
    updated_at: datetime = _ts(nullable=False)


class WebchatSession(SQLModel, table=True):
    """A webchat visitor's session: the token the widget keeps and the next sequence
    number, so a reconnecting widget gets exactly what it missed."""

    __tablename__ = "digital_webchat_session"

    id: str = Field(primary_key=True, max_length=32)
    token_hash: str = Field(max_length=64, unique=True)  # sha256 of the bearer token
    visitor_name: str | None = Field(default=None, max_length=200)
    unverified_email: str | None = Field(default=None, max_length=320)
    unverified_phone: str | None = Field(default=None, max_length=64)
    conversation_id: str | None = Field(default=None, max_length=32)
    next_seq: int = 1
    created_at: datetime = _ts(nullable=False)
    last_seen_at: datetime = _ts(nullable=False)


class ConversationSurveyRow(SQLModel, table=True):
    """A survey question sent after a conversation, and what became of it. One per
    conversation (UNIQUE), so an `conversation.ended` delivered twice asks once."""

    __tablename__ = "digital_survey"
    __table_args__ = (
        UniqueConstraint("conversation_id", name="uq_digital_survey_conversation"),
        Index("ix_digital_survey_customer", "customer_id", "asked_at"),
        Index("ix_digital_survey_contact", "channel", "contact", "state"),
    )

    id: str = Field(primary_key=True, max_length=32)
    conversation_id: str = Field(max_length=32)
    case_id: str = Field(max_length=32)
    customer_id: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    contact: str = Field(max_length=320)
    kind: str = Field(max_length=8)  # csat | nps
    state: str = Field(default="asked", max_length=12)  # asked | answered | no_answer
    attempts: int = 0  # invalid answers so far (one more question after the first)
    score: int | None = None
    queue_id: str | None = Field(default=None, max_length=64)
    agent_id: str | None = Field(default=None, max_length=64)
    task_id: str | None = Field(default=None, max_length=64)
    asked_at: datetime = _ts(nullable=False)
    answered_at: datetime | None = _ts(nullable=True)
