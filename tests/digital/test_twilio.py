"""Twilio SMS and WhatsApp: requests signed by the twilio package's RequestValidator,
behind a reverse proxy, status callbacks, and sending to a Twilio REST stand-in."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from sqlmodel import select
from twilio.request_validator import RequestValidator

from core.db import Database
from digital.tables import Conversation, DeliveryStatus, DigitalMessage

from .conftest import (
    TWILIO_SID,
    TWILIO_TOKEN,
    Stack,
    make_config,
    make_stack,
    raw_http_post,
)

PUBLIC = "https://contact.example.com"


class FakeTwilio:
    def __init__(self) -> None:
        self.script: list[int] = []
        self.sent: list[dict[str, str]] = []
        self.requests = 0
        self._ids = itertools.count(1)
        self.base_url = ""

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return runner

    async def create(self, request: web.Request) -> web.Response:
        self.requests += 1
        expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        status = self.script.pop(0) if self.script else 201
        if status == 500:
            return web.json_response({"code": 20500, "message": "Internal"}, status=500)
        if status == 429:
            return web.json_response({"code": 20429, "message": "Too Many Requests"}, status=429)
        if status == 400:
            return web.json_response({"code": 21211, "message": "Invalid 'To' Phone Number"},
                                     status=400)
        form = dict(await request.post())
        self.sent.append({k: str(v) for k, v in form.items()})
        return web.json_response({"sid": f"SM{next(self._ids):032d}", "status": "queued"},
                                 status=201)


@pytest.fixture
async def twilio_api() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()
    runner = await fake.start()
    yield fake
    await runner.cleanup()


@pytest.fixture
async def proxied(database: Database, tmp_path: Path, twilio_api: FakeTwilio,
                  ) -> AsyncIterator[Stack]:
    """Centrale behind a reverse proxy: Twilio signs the public https URL."""
    st, client = await make_stack(database, tmp_path, make_config(
        twilio_url=twilio_api.base_url, public_url=PUBLIC))
    try:
        yield st
    finally:
        await client.close()
        await st.digital.stop()


async def post_form(stack: Stack, path: str, params: dict[str, str], *,
                    signed_url: str | None = None, token: str = TWILIO_TOKEN) -> Any:
    url = signed_url or PUBLIC + path
    signature = RequestValidator(token).compute_signature(url, params)
    return await stack.client.post(path, data=urlencode(params), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})


def sms(sid: str, body: str, sender: str = "+31612345678", **extra: str) -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": TWILIO_SID, "From": sender,
            "To": "+15550001111", "Body": body, "NumMedia": "0", **extra}


async def test_signed_sms_behind_proxy_is_stored_once_and_routed(proxied: Stack) -> None:
    params = sms("SM1", "Where is my refund?")
    first = await post_form(proxied, "/webhooks/twilio/sms", params)
    assert first.status == 200 and "<Response>" in await first.text()
    assert (await post_form(proxied, "/webhooks/twilio/sms", params)).status == 200
    await proxied.drain()
    assert len(proxied.acd.tasks) == 1
    task = proxied.acd.tasks[0]
    assert task.channel == "sms" and task.queue_id == "support"
    timeline = await proxied.cases.timeline(task.case_id)
    assert [(e.channel, e.body) for e in timeline] == [("sms", "Where is my refund?")]


async def test_wrong_url_token_or_tampering_is_401(proxied: Stack) -> None:
    params = sms("SM2", "hi")
    internal = str(proxied.client.make_url("/webhooks/twilio/sms"))
    cases = [
        await post_form(proxied, "/webhooks/twilio/sms", params, signed_url=internal),
        await post_form(proxied, "/webhooks/twilio/sms", params, token="wrong"),
    ]
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        PUBLIC + "/webhooks/twilio/sms", params)
    cases.append(await proxied.client.post(
        "/webhooks/twilio/sms", data=urlencode({**params, "Body": "changed"}),
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "X-Twilio-Signature": signature}))
    for response in cases:
        assert response.status == 401
    for value in (b"\xe9", "é=".encode(), b"\xff" * 28):  # defect 6: 401, never 500
        status = await raw_http_post(proxied.client, "/webhooks/twilio/sms", [
            (b"Content-Type", b"application/x-www-form-urlencoded"),
            (b"X-Twilio-Signature", value)], urlencode(params).encode())
        assert status == 401, value
    wrong_type = await proxied.client.post("/webhooks/twilio/sms", json=params)
    assert wrong_type.status == 415
    async with proxied.db.session() as s:
        assert list(await s.exec(select(DigitalMessage))) == []


async def test_twilio_whatsapp_and_sms_same_person_one_case(proxied: Stack) -> None:
    await post_form(proxied, "/webhooks/twilio/sms", sms("SM3", "by sms"))
    await post_form(proxied, "/webhooks/twilio/sms", sms(
        "SM4", "by whatsapp", sender="whatsapp:+31612345678", WaId="31612345678",
        ProfileName="Kees"))
    await proxied.drain()
    # Two contacts are routed side by side, so their tasks may come in either order.
    assert sorted(t.channel for t in proxied.acd.tasks) == ["sms", "whatsapp"]
    assert proxied.acd.tasks[0].case_id == proxied.acd.tasks[1].case_id


async def test_send_with_retries_and_status_callbacks(proxied: Stack,
                                                      twilio_api: FakeTwilio) -> None:
    await post_form(proxied, "/webhooks/twilio/sms", sms("SM5", "call me"))
    await proxied.drain()
    async with proxied.db.session() as s:
        conv = (await s.exec(select(Conversation))).one()
    await proxied.acd.accept(conv.task_id, "agent-ann")
    await proxied.conversation_state(conv.id, "assigned")
    twilio_api.script = [500, 429]
    result = await proxied.conversations.reply(conv.id, "agent-ann", "Calling you in 5 min")
    assert result.ok, result.reason
    assert twilio_api.requests == 3 and len(twilio_api.sent) == 1
    sent = twilio_api.sent[0]
    assert sent["To"] == "+31612345678" and sent["From"] == "+15550001111"
    assert sent["StatusCallback"] == PUBLIC + "/webhooks/twilio/status"
    sid = result.provider_message_id
    for status in ("delivered", "sent", "delivered"):
        response = await post_form(proxied, "/webhooks/twilio/status", {
            "MessageSid": sid, "MessageStatus": status, "AccountSid": TWILIO_SID})
        assert response.status == 200
    async with proxied.db.session() as s:
        st = await s.get(DeliveryStatus, ("twilio", sid))
    assert st is not None and st.rank == 2 and not st.failed
    await post_form(proxied, "/webhooks/twilio/status", {
        "MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003",
        "AccountSid": TWILIO_SID})
    async with proxied.db.session() as s:
        st = await s.get(DeliveryStatus, ("twilio", sid))
    assert st is not None and st.failed and st.error_code == "30003" and st.rank == 2
    twilio_api.script = [400]
    refused = await proxied.conversations.reply(conv.id, "agent-ann", "again")
    assert not refused.ok and "21211" in (refused.reason or "")
