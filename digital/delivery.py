"""Where a delivery status belongs: the public read behind live ticks on the desktop.

A `message.status` event names the provider's message id only (the status webhook knows
nothing else). A desktop that shows the thread needs the case and our message id, and
the stored status — a one-way maximum, so a late or duplicate report never moves a
tick backwards. One indexed read (UNIQUE provider + provider id, and the status's key).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from core.db import Database
from digital.tables import RANK_NAME, DeliveryStatus, DigitalMessage

PROVIDERS = ("whatsapp", "twilio", "webchat", "email")  # DigitalMessage.provider values


@dataclass(frozen=True)
class MessageDelivery:
    message_id: str  # our id: `meta.message_id` of the message's timeline entry
    conversation_id: str | None
    case_id: str | None
    delivery: str  # sent | delivered | read: the stored maximum; before any report,
    # the send's own state (pending, sent = the provider took it, failed)
    failed: bool
    error_code: str | None


async def message_delivery(db: Database, provider: str | None,
                           provider_message_id: str) -> MessageDelivery | None:
    """The outbound message with that provider id and its stored delivery state, or
    None (not ours, or the send has not recorded the provider id yet). `provider` may
    be None when only the id is known (a timeline entry): provider ids do not collide
    across providers (wamid.…, SM…, <…@host>), and `provider IN (…)` still probes the
    UNIQUE (provider, provider_message_id) index."""
    providers = [provider] if provider is not None else list(PROVIDERS)
    query = select(DigitalMessage).where(
        col(DigitalMessage.provider).in_(providers),
        DigitalMessage.provider_message_id == provider_message_id)
    async with db.session() as s:
        msg = (await s.exec(query)).first()
        if msg is None or msg.direction != "outbound":
            return None
        st = await s.get(DeliveryStatus, (msg.provider, provider_message_id))
    if st is None:  # no report yet: what our send recorded (pending, sent, failed)
        return MessageDelivery(msg.id, msg.conversation_id, msg.case_id,
                               msg.send_state or "pending", msg.send_state == "failed", None)
    return MessageDelivery(msg.id, msg.conversation_id, msg.case_id,
                           RANK_NAME.get(st.rank, "sent"),
                           st.failed, st.error_code)
