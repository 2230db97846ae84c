"""The HTTP side of the assist model port: an OpenAI-compatible chat-completions client
(hosted providers, Ollama, vLLM, llama.cpp's server all speak it).

It lives with the wiring, the one place that knows whether a model is configured;
`assist` sees only `ChatModel.chat`. Streaming (server-sent events) and plain JSON
answers are both read; every way the exchange can go wrong — a 429, another HTTP
error, a timeout, a dropped connection, an answer that is not the protocol's JSON —
becomes ModelUnavailable with a short reason. The API key is sent in the
Authorization header only and is never logged.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from assist.ports import ModelUnavailable
from config.schema import AssistModel

MAX_ANSWER_CHARS = 20_000


class ChatCompletionsClient:
    def __init__(self, settings: AssistModel, *, api_key: str | None = None) -> None:
        self.settings = settings
        self._api_key = api_key
        self._http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"ChatCompletionsClient({self.settings.base_url!r}, model={self.settings.model!r})"

    @property
    def url(self) -> str:
        return self.settings.base_url + "/chat/completions"

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def chat(self, messages: list[dict[str, str]]) -> str:
        s = self.settings
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {"Accept": "text/event-stream" if s.stream else "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        body = {"model": s.model, "messages": messages, "max_tokens": s.max_tokens,
                "temperature": s.temperature, "stream": s.stream}
        try:
            async with self._http.post(
                    self.url, json=body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=s.timeout_seconds)) as resp:
                if resp.status == 429:
                    after = resp.headers.get("Retry-After")
                    raise ModelUnavailable("rate limited (429)"
                                           + (f", retry after {after} s" if after else ""))
                if resp.status >= 400:
                    raise ModelUnavailable(f"the model server answered HTTP {resp.status}")
                if resp.content_type == "text/event-stream":
                    return await _read_stream(resp)
                return _message_content(await _read_json(resp))
        except TimeoutError:
            raise ModelUnavailable(f"no answer within {s.timeout_seconds:g} s") from None
        except aiohttp.ClientError as exc:
            raise ModelUnavailable(f"cannot reach the model server ({type(exc).__name__})") \
                from None


async def _read_json(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.content.read(MAX_ANSWER_CHARS * 4 + 1)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ModelUnavailable("the model's answer is not JSON") from None


def _message_content(data: Any) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ModelUnavailable("the model's answer has no choices[0].message.content") \
            from None
    if not isinstance(content, str):
        raise ModelUnavailable("the model's message content is not text")
    return content[:MAX_ANSWER_CHARS]


async def _read_stream(resp: aiohttp.ClientResponse) -> str:
    """Server-sent events: `data: {chunk}` lines, `data: [DONE]` at the end. A stream
    cut before [DONE] keeps what arrived only if something did."""
    parts: list[str] = []
    size = 0
    done = False
    async for raw_line in resp.content:
        line = raw_line.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue  # comments (": keep-alive"), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(data)
            delta = chunk["choices"][0].get("delta") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ModelUnavailable("the model's stream holds a chunk that is not JSON") \
                from None
        piece = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(piece, str):
            parts.append(piece)
            size += len(piece)
            if size > MAX_ANSWER_CHARS:
                break
    text = "".join(parts)
    if not done and not text:
        raise ModelUnavailable("the model's stream ended before any text")
    return text[:MAX_ANSWER_CHARS]
