"""The answer an adapter gives a webhook, so that web/ only turns it into a Response;
and the outbound HTTP client an adapter owns between start() and stop()."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp


class OwnsHttpClient:
    """One aiohttp client session per adapter, opened on start, closed on stop."""

    http_timeout: float
    _http: aiohttp.ClientSession | None

    async def start(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.http_timeout))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


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
