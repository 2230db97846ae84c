"""Real peers for the digital channels: a Graph API stand-in that behaves like Meta's
(Bearer checks, error codes, signed status webhooks sent back reordered and
duplicated), a small ACD stand-in, and the whole web stack wired like production."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cases import CaseService, CustomerMerger
from config.schema import CentraleConfig, Queue
from config.schema.channels import (
    Channels,
    EmailChannel,
    TwilioChannel,
    WebchatChannel,
    WhatsAppChannel,
)
from core.bus import InMemoryBus
from core.clock import SystemClock
from core.db import Database
from core.events import Event
from core.ids import new_id
from digital import DigitalChannels, build
from digital.adapter import RetryPolicy
from digital.whatsapp.signature import sign

APP_SECRET = "test-app-secret"
ACCESS_TOKEN = "test-access-token"
VERIFY_TOKEN = "test-verify-token"
PHONE_NUMBER_ID = "1234567890"
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "twilio-auth-token"


@dataclass(frozen=True)
class TaskRequest:
    channel: str
    queue_id: str
    case_id: str
    customer_id: str
    preferred_agent_id: str | None
    attributes: dict[str, Any]


class DuplicateTaskError(Exception):
    """Named like queues.errors.DuplicateTaskError, which digital recognises by name."""


class FakeAcd:
    """Records tasks; tests play the agent by publishing what the ACD would."""

    def __init__(self, bus: InMemoryBus) -> None:
        self.bus = bus
        self.tasks: list[TaskRequest] = []
        self.ids: list[str] = []

    async def enqueue(self, *, queue_id: str, channel: str, case_id: str, customer_id: str,
                      attributes: Any = None, preferred_agent_id: str | None = None,
                      task_id: str | None = None) -> str:
        """The signature and duplicate rule of queues.AcdEngine.enqueue."""
        if task_id is not None and task_id in self.ids:
            raise DuplicateTaskError(f"task {task_id!r} exists already")
        self.tasks.append(TaskRequest(channel, queue_id, case_id, customer_id,
                                      preferred_agent_id, dict(attributes or {})))
        self.ids.append(task_id or f"task-{len(self.tasks)}")
        return self.ids[-1]

    async def accept(self, task_id: str, agent_id: str) -> None:
        await self.bus.publish(Event("task.accepted", {"task_id": task_id,
                                                       "agent_id": agent_id}))

    async def complete(self, task_id: str, wrap_up_code: str | None = None) -> None:
        await self.bus.publish(Event("task.completed", {"task_id": task_id,
                                                        "wrap_up_code": wrap_up_code}))


@dataclass
class FakeGraph:
    """Meta's Graph API as far as Centrale uses it."""

    script: list[str] = field(default_factory=list)  # behaviour of the next sends
    sent: list[dict[str, Any]] = field(default_factory=list)  # accepted messages
    requests: int = 0
    media: dict[str, bytes] = field(default_factory=dict)
    webhook_url: str | None = None
    status_order: tuple[str, ...] = ("read", "sent", "delivered", "delivered")
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v21.0/{pnid}/messages", self._send)
        app.router.add_get("/v21.0/{media_id}", self._media_info)
        app.router.add_get("/files/{media_id}", self._media_file)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {ACCESS_TOKEN}"

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "OAuthException",
                                            "code": code, "fbtrace_id": "x"}}, status=status)

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        if not self._authorised(request):
            return self._error(401, 190, "Invalid OAuth access token")
        if request.match_info["pnid"] != PHONE_NUMBER_ID:
            return self._error(400, 100, "Unsupported post request")
        body = await request.json()
        action = self.script.pop(0) if self.script else "ok"
        if action == "500":
            return self._error(500, 1, "An unknown error occurred")
        if action in ("130429", "131056"):
            return self._error(400, int(action), "Rate limit hit")
        if action == "131047":
            return self._error(400, 131047, "Re-engagement message")
        wamid = f"wamid.{next(self._ids):08d}"
        self.sent.append({**body, "_wamid": wamid})
        self._spawn(self._statuses(wamid, body))
        if action == "timeout":  # accepted, but the answer never arrives in time
            await asyncio.sleep(1.5)  # longer than the client timeout (1 s)
        to = body.get("to") or body.get("recipient")
        return web.json_response({"messaging_product": "whatsapp",
                                  "contacts": [{"input": to, "wa_id": str(to).lstrip("+")}],
                                  "messages": [{"id": wamid}]})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _statuses(self, wamid: str, body: dict[str, Any]) -> None:
        """Status webhooks for a sent message: out of order and with a duplicate."""
        if not self.webhook_url:
            return
        await asyncio.sleep(0.02)
        async with aiohttp.ClientSession() as http:
            for name in self.status_order:
                status = {"id": wamid, "status": name, "timestamp": str(int(time.time())),
                          "recipient_id": str(body.get("to", "")),
                          "biz_opaque_callback_data": body.get("biz_opaque_callback_data")}
                payload = wa_payload(statuses=[status])
                raw = json.dumps(payload).encode()
                await http.post(self.webhook_url, data=raw, headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": sign(APP_SECRET, raw)})

    async def _media_info(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(401, 190, "Invalid OAuth access token")
        media_id = request.match_info["media_id"]
        if media_id not in self.media:
            return self._error(404, 100, "Unknown media")
        return web.json_response({"url": f"{self.base_url}/files/{media_id}",
                                  "mime_type": "image/jpeg", "id": media_id,
                                  "file_size": len(self.media[media_id]),
                                  "messaging_product": "whatsapp"})

    async def _media_file(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401, text="unauthorised")
        return web.Response(body=self.media[request.match_info["media_id"]],
                            content_type="image/jpeg")


def wa_payload(messages: list[dict[str, Any]] | None = None,
               statuses: list[dict[str, Any]] | None = None,
               contacts: list[dict[str, Any]] | None = None,
               phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "15550001111",
                                          "phone_number_id": phone_number_id}}
    if messages is not None:
        value["messages"] = messages
        value["contacts"] = contacts if contacts is not None else [
            {"profile": {"name": "Kerry"}, "wa_id": m["from"]} for m in messages
            if m.get("from")]
    if statuses is not None:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}]}


def wa_text(wa_id: str = "31612345678", body: str = "hello", msg_id: str | None = None,
            ts: int | None = None) -> dict[str, Any]:
    return {"from": wa_id, "id": msg_id or f"wamid.in.{new_id()}",
            "timestamp": str(ts if ts is not None else int(time.time())), "type": "text",
            "text": {"body": body}}


def make_config(*, graph_url: str = "http://127.0.0.1:9", twilio_url: str = "http://127.0.0.1:9",
                public_url: str | None = None, smtp_relay_port: int = 25,
                email_listen_port: int = 0, imap_port: int | None = None,
                webchat_origins: tuple[str, ...] = ("https://shop.example",),
                ) -> CentraleConfig:
    return CentraleConfig(
        server={"web": {"public_url": public_url, "max_body_bytes": 65536}},
        queues=[Queue(id="support"), Queue(id="chat")],
        channels=Channels(
            whatsapp=WhatsAppChannel(queue="support", phone_number_id=PHONE_NUMBER_ID,
                                     access_token=ACCESS_TOKEN, app_secret=APP_SECRET,
                                     verify_token=VERIFY_TOKEN, graph_base_url=graph_url,
                                     media_max_bytes=4096),
            twilio=TwilioChannel(queue="support", account_sid=TWILIO_SID,
                                 auth_token=TWILIO_TOKEN, from_number="+15550001111",
                                 api_base_url=twilio_url),
            webchat=WebchatChannel(queue="chat", allowed_origins=list(webchat_origins)),
            email=EmailChannel(queue="support", address="support@centrale.example",
                               smtp_listen_port=email_listen_port,
                               smtp_relay_port=smtp_relay_port,
                               imap_host="127.0.0.1" if imap_port else None,
                               imap_port=imap_port or 993, imap_username="support",
                               imap_poll_seconds=3600),
        ),
    )


FAST_RETRY = RetryPolicy(attempts=4, base_seconds=0.01, max_seconds=0.05,
                         rate_limit_seconds=0.02, status_wait_seconds=0.5)


@dataclass
class Stack:
    db: Database
    bus: InMemoryBus
    cases: CaseService
    acd: FakeAcd
    digital: DigitalChannels
    client: TestClient
    config: CentraleConfig

    @property
    def conversations(self) -> Any:
        return self.digital.conversations

    async def post_wa(self, payload: Any, *, secret: str = APP_SECRET,
                      raw: bytes | None = None, headers: dict[str, str] | None = None,
                      ) -> aiohttp.ClientResponse:
        body = raw if raw is not None else json.dumps(payload).encode()
        hdrs = {"Content-Type": "application/json",
                "X-Hub-Signature-256": sign(secret, body), **(headers or {})}
        return await self.client.post("/webhooks/whatsapp", data=body, headers=hdrs)

    async def drain(self) -> None:
        await self.digital.processor.drain()

    async def conversation_state(self, conversation_id: str, state: str) -> Any:
        """Wait (bounded) until the bus consumer has applied an ACD event."""
        for _ in range(250):
            conv = await self.conversations.get(conversation_id)
            if conv.state == state:
                return conv
            await asyncio.sleep(0.02)
        raise AssertionError(f"conversation {conversation_id} never became {state}")


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph()
    await fake.start()
    yield fake
    await fake.stop()


async def make_stack(database: Database, tmp_path: Path, config: CentraleConfig, *,
                     acd_factory: Any = None, bus: InMemoryBus | None = None,
                     ) -> tuple[Stack, Any]:
    import web.channels as web_channels
    from web.context import CONTEXT, WebContext
    from web.middleware import errors_and_metrics

    bus = bus or InMemoryBus()
    clock = SystemClock()
    cases = CaseService(database, bus, clock, default_region="NL")
    acd = acd_factory(config, clock, bus) if acd_factory else FakeAcd(bus)
    digital = build(config, database, bus, clock, cases, acd, media_dir=tmp_path / "media",
                    retry=FAST_RETRY, http_timeout=1.0)
    ctx = WebContext(config=config, db=database, bus=bus, clock=clock, cases=cases,
                     merger=CustomerMerger(database, bus, clock), acd=acd)
    digital.install(ctx)
    await digital.start()
    # The channel routes alone, as web.app.create_app mounts them (same middleware and
    # body limit): web.desktop's background consumers are not part of these tests.
    app = web.Application(middlewares=[errors_and_metrics],
                          client_max_size=config.server.web.max_body_bytes)
    app[CONTEXT] = ctx
    web_channels.setup(app)
    # A handler still running at teardown must not hold the suite for aiohttp's
    # default 60 s shutdown timeout.
    client = TestClient(TestServer(app, shutdown_timeout=2.0))
    await client.start_server()
    return Stack(database, bus, cases, acd, digital, client, config), client


@pytest.fixture
async def stack(database: Database, tmp_path: Path, graph: FakeGraph) -> AsyncIterator[Stack]:
    st, client = await make_stack(database, tmp_path, make_config(graph_url=graph.base_url))
    graph.webhook_url = str(client.make_url("/webhooks/whatsapp"))
    try:
        yield st
    finally:
        await client.close()
        await st.digital.stop()


async def raw_http_post(client: TestClient, path: str, headers: list[tuple[bytes, bytes]],
                        body: bytes) -> int:
    """POST with header bytes exactly as given (aiohttp's client would re-encode them):
    hostile peers send bytes that are not UTF-8. Returns the status code."""
    url = client.make_url(path)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        head += b"".join(k + b": " + v + b"\r\n" for k, v in headers)
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        writer.write(head + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 15)
        return int(status_line.split()[1])
    finally:
        writer.close()
