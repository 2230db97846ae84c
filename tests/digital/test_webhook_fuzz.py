"""Fuzzing the webhook entry points (issue 18): grammar-shaped WhatsApp and Twilio
requests, correctly signed so they reach the parsers, plus hostile signatures.

Invariants: no 5xx, nothing logged at ERROR, every stored message is processed, and a
valid message afterwards is still routed."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st
from sqlmodel import select
from twilio.request_validator import RequestValidator

from digital.tables import DigitalMessage
from digital.whatsapp.signature import sign
from tests.fuzz_support import any_json, draw_examples, hostile_text, maybe_wrong

from .conftest import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    TWILIO_TOKEN,
    Stack,
    raw_http_post,
    wa_payload,
    wa_text,
)

TYPES = ["text", "image", "document", "audio", "video", "sticker", "interactive", "button",
         "reaction", "location", "contacts", "system", "unsupported", "order", "\u00b2"]

wa_id = hostile_text(st.from_regex(r"31[0-9]{9}", fullmatch=True))


@st.composite
def wa_message(draw: st.DrawFn) -> dict[str, Any]:
    mtype = draw(st.sampled_from(TYPES))
    msg: dict[str, Any] = {
        "from": draw(maybe_wrong(wa_id)),
        "id": draw(maybe_wrong(hostile_text(st.from_regex(r"wamid\.[a-z0-9]{6}",
                                                          fullmatch=True)))),
        "timestamp": draw(maybe_wrong(hostile_text(st.just(str(int(time.time())))))),
        "type": mtype,
    }
    part = {"body": draw(hostile_text()), "id": draw(hostile_text()),
            "mime_type": draw(hostile_text()), "caption": draw(hostile_text()),
            "type": draw(st.sampled_from(["user_changed_number", "button_reply", "x"])),
            "new_wa_id": draw(maybe_wrong(wa_id)), "emoji": draw(hostile_text()),
            "message_id": draw(hostile_text()), "latitude": draw(maybe_wrong(st.floats())),
            "button_reply": draw(maybe_wrong(st.fixed_dictionaries({"id": hostile_text(),
                                                                  "title": hostile_text()})))}
    msg[mtype] = draw(maybe_wrong(st.just(part)))
    if draw(st.booleans()):
        msg["errors"] = draw(maybe_wrong(st.just([{"code": draw(maybe_wrong(
            st.integers(0, 200000))), "title": draw(hostile_text())}])))
    if draw(st.booleans()):
        msg["from_user_id"] = draw(maybe_wrong(hostile_text(st.just("US.abc"))))
    if draw(st.booleans()):
        msg["context"] = draw(any_json)
    return msg


@st.composite
def wa_status(draw: st.DrawFn) -> dict[str, Any]:
    return {"id": draw(maybe_wrong(hostile_text(st.just("wamid.out1")))),
            "status": draw(st.sampled_from(["sent", "delivered", "read", "failed", "\u00b2"])),
            "timestamp": draw(maybe_wrong(st.just(str(int(time.time()))))),
            "recipient_id": draw(maybe_wrong(wa_id)),
            "biz_opaque_callback_data": draw(maybe_wrong(hostile_text())),
            "errors": draw(maybe_wrong(st.just([{"code": 131047, "title": "x"}])))}


@st.composite
def wa_body(draw: st.DrawFn) -> bytes:
    payload = wa_payload(draw(st.lists(wa_message(), max_size=3)),
                         statuses=draw(st.lists(wa_status(), max_size=2)),
                         contacts=draw(maybe_wrong(st.just([{"profile": {
                             "name": draw(hostile_text()), "username": draw(hostile_text())},
                             "wa_id": draw(wa_id), "user_id": draw(hostile_text())}]))))
    if draw(st.integers(0, 5)) == 0:  # break the envelope itself
        path = draw(st.sampled_from(["object", "entry", "changes", "value", "metadata"]))
        if path == "object":
            payload["object"] = draw(any_json)
        elif path == "entry":
            payload["entry"] = draw(any_json)
        elif path == "changes":
            payload["entry"][0]["changes"] = draw(any_json)
        elif path == "value":
            payload["entry"][0]["changes"][0]["value"] = draw(any_json)
        else:
            payload["entry"][0]["changes"][0]["value"]["metadata"] = {
                "phone_number_id": draw(maybe_wrong(st.just(PHONE_NUMBER_ID)))}
    raw = json.dumps(payload, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]  # truncated body
    return raw


def errors_logged(caplog: Any) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_fuzzed_whatsapp_webhooks_never_fail_or_lose_the_next_message(
        stack: Stack, caplog) -> None:
    caplog.set_level(logging.WARNING)
    bodies = draw_examples(wa_body())
    signatures = draw_examples(st.one_of(st.none(), hostile_text()), 20)
    for raw in bodies:
        resp = await stack.client.post("/webhooks/whatsapp", data=raw, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": sign(APP_SECRET, raw)})
        assert resp.status < 500, (resp.status, raw[:500])
    for signature in signatures:  # raw header bytes, as a hostile client sends them
        headers = [(b"Content-Type", b"application/json")]
        if signature is not None:
            value = signature.encode("utf-8", "surrogatepass")
            headers.append((b"X-Hub-Signature-256",
                            bytes(b for b in value if b not in b"\r\n\x00")))
        status = await raw_http_post(stack.client, "/webhooks/whatsapp", headers, b"{}")
        # 400: a control character aiohttp's HTTP parser refuses before any handler
        assert status in (400, 401), signature
    await stack.drain()
    ok = await stack.post_wa(wa_payload([wa_text("31612121212", "still here", "w.after")]))
    assert ok.status == 200
    await stack.drain()
    async with stack.db.session() as s:
        unprocessed = list(await s.exec(select(DigitalMessage).where(
            DigitalMessage.processed == False)))  # noqa: E712
        after = (await s.exec(select(DigitalMessage).where(
            DigitalMessage.provider_message_id == "w.after"))).one()
    assert unprocessed == [] and after.case_id is not None
    assert not errors_logged(caplog), errors_logged(caplog)[0].getMessage()


@st.composite
def twilio_form(draw: st.DrawFn) -> dict[str, str]:
    sid = draw(hostile_text(st.from_regex(r"SM[0-9a-f]{8}", fullmatch=True)))
    form = {"MessageSid": sid, "SmsSid": sid, "AccountSid": draw(hostile_text()),
            "From": draw(hostile_text(st.from_regex(r"\+316[0-9]{8}", fullmatch=True))),
            "To": draw(hostile_text()), "Body": draw(hostile_text()),
            "NumMedia": draw(hostile_text(st.sampled_from(["0", "1", "11"]))),
            "MessageStatus": draw(st.sampled_from(["sent", "delivered", "failed", "x"]))}
    for key in draw(st.sets(st.sampled_from(list(form)), max_size=3)):
        del form[key]
    return {k: v.replace("\ud800", "?").replace("\x00", "") for k, v in form.items()}


async def test_fuzzed_twilio_webhooks_never_fail(stack: Stack, caplog) -> None:
    caplog.set_level(logging.WARNING)
    base = str(stack.client.make_url("/")).rstrip("/")
    public = stack.config.server.web.public_url or base
    for form in draw_examples(twilio_form()):
        for path in ("/webhooks/twilio/sms", "/webhooks/twilio/status"):
            signature = RequestValidator(TWILIO_TOKEN).compute_signature(public + path, form)
            resp = await stack.client.post(path, data=urlencode(form), headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature})
            assert resp.status < 500, (resp.status, path, form)
    await stack.drain()
    assert not errors_logged(caplog), errors_logged(caplog)[0].getMessage()
