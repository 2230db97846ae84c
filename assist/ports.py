"""The model port: the one door to a language model. assist asks `ChatModel.chat`; the
composition root hands in the HTTP client when `assist.model.enabled`, else nothing,
and no other package knows whether a model is configured."""

from __future__ import annotations

from typing import Protocol


class ModelUnavailable(Exception):
    """The model gave no usable answer: timeout, rate limit, HTTP or network error,
    malformed response. `reason` is what the agent's quiet note says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChatModel(Protocol):
    async def chat(self, messages: list[dict[str, str]]) -> str:
        """The assistant's answer to `messages` (OpenAI chat format); raises
        ModelUnavailable for anything but a non-empty answer."""
        ...

    async def close(self) -> None: ...
