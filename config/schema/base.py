"""Shared pieces of the config schema."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
Channel = Annotated[str, StringConstraints(pattern=r"^(voice|whatsapp|webchat|email|sms)$")]
CHANNELS = ("voice", "whatsapp", "webchat", "email", "sms")


class Strict(BaseModel):
    """Every config model rejects unknown keys: a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
