"""The answer an adapter gives a webhook, so that web/ only turns it into a Response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: Any = field(default_factory=dict)  # dict -> JSON; str -> text
    content_type: str = "application/json"

    @classmethod
    def error(cls, status: int, message: str) -> HttpReply:
        return cls(status, {"error": message})


class SendRefused(Exception):
    """A send the channel will not make (window closed, unknown contact, permanent
    provider error). The message is what the agent sees."""
