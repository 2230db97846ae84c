"""Asking the model, if there is one: masking what leaves the node, a hard time limit,
and a pause after a failure so agents are not kept waiting on a model that is down.
Every failure becomes ModelUnavailable; callers fall back to retrieval."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from assist.ports import ChatModel, ModelUnavailable
from assist.privacy import mask
from config.schema import AssistModel

log = logging.getLogger(__name__)


class Drafting:
    def __init__(self, model: ChatModel | None, settings: AssistModel,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self.settings = settings  # a reload replaces it: `enabled: false` stops at once
        self._monotonic = monotonic
        self._paused_until = 0.0
        self._last_failure: str | None = None

    @property
    def available(self) -> bool:
        return self.model is not None and self.settings.enabled

    def protect(self, text: str) -> str:
        return mask(text) if self.settings.mask_personal_data else text

    async def ask(self, messages: list[dict[str, str]]) -> str:
        if self.model is None or not self.settings.enabled:
            raise ModelUnavailable("no model is configured")
        now = self._monotonic()
        if now < self._paused_until:
            raise ModelUnavailable(f"the model is paused after an error "
                                   f"({self._last_failure}); retrieval only for now")
        try:
            answer = await asyncio.wait_for(self.model.chat(messages),
                                            self.settings.timeout_seconds)
        except TimeoutError:
            raise self._failure(f"no answer within {self.settings.timeout_seconds:g} s") \
                from None
        except ModelUnavailable as exc:
            raise self._failure(exc.reason) from None
        except Exception as exc:  # a model must never break the desktop
            log.exception("the model client failed")
            raise self._failure(f"model client error: {type(exc).__name__}") from None
        answer = answer.strip()
        if not answer:
            raise self._failure("the model answered nothing")
        return answer

    def _failure(self, reason: str) -> ModelUnavailable:
        self._last_failure = reason
        self._paused_until = self._monotonic() + self.settings.cooldown_seconds
        log.warning("assist model unavailable: %s", reason)
        return ModelUnavailable(reason)
