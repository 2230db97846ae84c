"""A local HTTP server that speaks OpenAI's chat-completions protocol, standing in for
a hosted model or Ollama/vLLM/llama.cpp: plain JSON and server-sent-event streams, and
the ways a real one fails (429, no answer, malformed JSON, a garbage stream)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


class ChatServer:
    def __init__(self) -> None:
        self.mode = "json"  # json | stream | 429 | hang | malformed | garbage_stream | 500
        self.answer = "Draft"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def last_prompt(self) -> str:
        return "\n".join(m["content"] for m in self.requests[-1]["messages"])

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.mode == "429":
            return web.json_response({"error": {"message": "Rate limit reached"}}, status=429,
                                     headers={"Retry-After": "20"})
        if self.mode == "500":
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "hang":
            await self._release.wait()  # never answers while the test runs
            return web.json_response({})
        if self.mode == "malformed":
            return web.Response(text='{"choices": [{"message": {"content": "half', status=200,
                                content_type="application/json")
        if self.mode in ("stream", "garbage_stream") and body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            if self.mode == "garbage_stream":
                await resp.write(b"data: <html>502 Bad Gateway</html>\n\n")
                await resp.write_eof()
                return resp
            await resp.write(b": keep-alive\n\n")
            words = self.answer.split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunk = {"id": "c1", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": piece}}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await resp.write(b'data: {"choices": [{"index": 0, "delta": {}, '
                             b'"finish_reason": "stop"}]}\n\n')
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return web.json_response({
            "id": "c1", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.answer}}]})
