"""One call that builds every enabled digital channel, for the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cases import CaseService
from config.schema import CentraleConfig
from core.bus import EventBus
from core.clock import Clock
from core.db import Database
from digital.adapter import ChannelAdapter, RetryPolicy
from digital.conversations import ConversationService
from digital.inbox import InboxProcessor
from digital.ports import AcdPort
from digital.store import InboxWriter
from digital.surveys import ConversationSurveys


@dataclass
class DigitalChannels:
    """What `build` returns. Put `adapters` in ctx.channels (by name) and
    `conversations` in ctx.services["conversations"]."""

    config: CentraleConfig
    conversations: ConversationService
    writer: InboxWriter
    processor: InboxProcessor
    adapters: dict[str, Any] = field(default_factory=dict)  # whatsapp|twilio|webchat|email
    surveys: Any = None  # digital.surveys.ConversationSurveys

    async def apply_config(self, config: CentraleConfig) -> None:
        """Reload: the survey settings are read from here on each conversation."""
        self.config = config

    async def start(self) -> None:
        """Idempotent parts, so wiring that also starts `conversations` on its own is fine."""
        await self.writer.start()
        for adapter in self.adapters.values():
            await adapter.start()
        await self.conversations.start()
        if self.surveys is not None:
            await self.surveys.start()
        await self.processor.start()

    async def stop(self) -> None:
        await self.processor.stop()
        if self.surveys is not None:
            await self.surveys.stop()
        await self.conversations.stop()
        for adapter in reversed(list(self.adapters.values())):
            await adapter.stop()
        await self.writer.stop()

    def web_listening(self, url: str) -> None:
        """Tell the adapters where this node's web server listens (see WhatsApp's)."""
        for adapter in self.adapters.values():
            if hasattr(adapter, "web_listening"):
                adapter.web_listening(url)

    def install(self, ctx: Any) -> None:
        """Put adapters and the conversation service where web/ looks for them."""
        ctx.channels.update(self.adapters)
        ctx.services["conversations"] = self.conversations


def build(config: CentraleConfig, db: Database, bus: EventBus, clock: Clock,
          cases: CaseService, acd: AcdPort, *, media_dir: str | Path = "var/media",
          retry: RetryPolicy | None = None, http_timeout: float = 10.0,
          node_id: str | None = None) -> DigitalChannels:
    ch = config.channels
    queues: dict[str, str] = {}
    adapters: dict[str, Any] = {}
    writer = InboxWriter(db, clock, bus=bus)
    public_url = config.server.web.public_url
    if ch.twilio is not None and ch.twilio.enabled:
        from digital.sms.channel import TwilioAdapter

        queues["sms"] = ch.twilio.queue
        queues["whatsapp"] = ch.twilio.queue
        adapters["twilio"] = TwilioAdapter(ch.twilio, db, clock, writer, public_url=public_url,
                                           retry=retry, http_timeout=http_timeout)
    if ch.whatsapp is not None and ch.whatsapp.enabled:
        from digital.whatsapp.channel import WhatsAppAdapter

        queues["whatsapp"] = ch.whatsapp.queue
        adapters["whatsapp"] = WhatsAppAdapter(ch.whatsapp, db, clock, writer, cases,
                                               media_dir=Path(media_dir), retry=retry,
                                               http_timeout=http_timeout)
    if ch.webchat is not None and ch.webchat.enabled:
        from digital.webchat.channel import WebchatAdapter

        queues["webchat"] = ch.webchat.queue
        adapters["webchat"] = WebchatAdapter(ch.webchat, db, bus, clock, writer)
    if ch.email is not None and ch.email.enabled:
        from digital.email.channel import EmailAdapter

        queues["email"] = ch.email.queue
        adapters["email"] = EmailAdapter(ch.email, db, clock, writer)
    typed: dict[str, ChannelAdapter] = adapters
    conversations = ConversationService(db, bus, clock, cases, acd, queues=queues,
                                        adapters=typed)
    # SQLite serialises writers: parallel lanes only add latency there; PostgreSQL
    # commits them side by side.
    # The node id names its inbox claims: a restarted node takes its own back at once.
    processor = InboxProcessor(db, conversations.process_inbound, ingest_busy=writer.busy,
                               lanes=1 if db.is_sqlite else 4, node_id=node_id,
                               pass_hooks=(conversations.begin_pass, conversations.end_pass))
    writer.on_committed.append(processor.wake)
    channels = DigitalChannels(config, conversations, writer, processor, adapters)
    channels.surveys = ConversationSurveys(db, bus, clock, cases, conversations,
                                           lambda: channels.config)
    return channels
