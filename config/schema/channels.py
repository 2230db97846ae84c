"""`channels:` — digital channel settings. Secrets come as `${ENV_NAME}` references."""

from __future__ import annotations

from pydantic import Field, SecretStr

from config.schema.base import Ident, Strict


class WhatsAppChannel(Strict):
    enabled: bool = True
    queue: Ident
    phone_number_id: str
    access_token: SecretStr
    app_secret: SecretStr
    verify_token: SecretStr
    graph_base_url: str = "https://graph.facebook.com"
    graph_version: str = "v21.0"
    media_max_bytes: int = Field(16 * 1024 * 1024, ge=1024)


class TwilioChannel(Strict):
    enabled: bool = True
    queue: Ident
    account_sid: str
    auth_token: SecretStr
    from_number: str
    api_base_url: str = "https://api.twilio.com"


class WebchatChannel(Strict):
    enabled: bool = True
    queue: Ident
    allowed_origins: list[str] = []
    title: str = "Chat with us"


class EmailChannel(Strict):
    enabled: bool = True
    queue: Ident
    address: str  # support@example.com; replies go to support+<token>@example.com
    smtp_listen_host: str = "127.0.0.1"
    smtp_listen_port: int = Field(2525, ge=0, le=65535)
    smtp_relay_host: str = "127.0.0.1"
    smtp_relay_port: int = Field(25, ge=0, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    imap_host: str | None = None
    imap_port: int = 993
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_poll_seconds: float = Field(60, gt=0)


class Channels(Strict):
    whatsapp: WhatsAppChannel | None = None
    twilio: TwilioChannel | None = None
    webchat: WebchatChannel | None = None
    email: EmailChannel | None = None
