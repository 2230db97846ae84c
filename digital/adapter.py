"""What every channel adapter gives the conversation service.

An adapter knows its provider's wire format; the conversation service knows customers,
cases and routing. `prepare` turns a stored inbound row into what routing needs;
`send` delivers one outbound row (already committed with our id) and reports back.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from cases import IdentityRef
from digital.tables import Conversation, DigitalMessage


@dataclass
class Prepared:
    """An inbound message made ready for routing."""

    identity: IdentityRef | None
    contact: str  # the address replies go to, also the conversation key
    display_name: str | None = None
    unverified: list[IdentityRef] = field(default_factory=list)
    route: bool = True  # False: timeline only (auto-replies, bounces, system notices)
    conversation_id: str | None = None  # threading found an existing conversation
    thread_token: str | None = None
    subject: str | None = None
    media_path: str | None = None
    timeline_kind: str = "message"
    note: str | None = None  # what went wrong with the message (its `error` field)
    timeline_meta: dict[str, Any] = field(default_factory=dict)  # facts for the timeline
    case_id: str | None = None  # known case (a bounce of our own mail): skip resolution
    store_only: bool = False  # nothing to attach it to (an unthreaded bounce)


@dataclass
class SendOutcome:
    provider_message_id: str | None
    state: str  # sent | failed
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class ChannelAdapter(Protocol):
    name: str  # provider name: whatsapp | twilio | webchat | email

    async def prepare(self, row: DigitalMessage) -> Prepared: ...

    async def send(self, conversation: Conversation, message: DigitalMessage,
                   template: dict[str, Any] | None = None) -> SendOutcome: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; rate limits wait longer."""

    attempts: int = 5
    base_seconds: float = 0.5
    max_seconds: float = 8.0
    rate_limit_seconds: float = 4.0
    status_wait_seconds: float = 2.0  # after a timeout: how long to look for a status

    def delay(self, attempt: int, *, rate_limited: bool = False) -> float:
        base = self.rate_limit_seconds if rate_limited else self.base_seconds
        raw = min(self.max_seconds, base * (2 ** (attempt - 1)))
        return raw * (0.75 + random.random() * 0.5)

    async def sleep(self, attempt: int, *, rate_limited: bool = False) -> None:
        await asyncio.sleep(self.delay(attempt, rate_limited=rate_limited))
