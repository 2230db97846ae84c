"""Webchat over a real websocket: acks with seq, idempotent client ids, resume without
loss or duplicates, typing, history, unverified pre-chat details, bad frames."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
from sqlmodel import func, select

from cases import IdentityRef
from digital.tables import Conversation, DigitalMessage

from .conftest import Stack

ORIGIN = {"Origin": "https://shop.example"}


async def recv(ws: aiohttp.ClientWebSocketResponse, kind: str | None = None) -> dict[str, Any]:
    """The next frame (of `kind`), bounded so a protocol bug fails instead of hanging."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        if kind is None or frame["type"] == kind:
            return frame


async def hello(stack: Stack, **fields: Any) -> tuple[aiohttp.ClientWebSocketResponse, dict]:
    ws = await stack.client.ws_connect("/webchat/ws", headers=ORIGIN)
    await ws.send_json({"type": "hello", "last_seq": 0, **fields})
    return ws, await recv(ws, "welcome")


async def open_and_assign(stack: Stack) -> tuple[aiohttp.ClientWebSocketResponse, dict, Any]:
    ws, welcome = await hello(stack, name="Vera")
    await ws.send_json({"type": "message", "client_id": "c1", "text": "is my parcel lost?"})
    assert (await recv(ws, "ack"))["seq"] == 1
    await stack.drain()
    async with stack.db.session() as s:
        conv = (await s.exec(select(Conversation).where(
            Conversation.contact == welcome["session"]))).one()
    await stack.acd.accept(conv.task_id, "agent-ann")
    conv = await stack.conversation_state(conv.id, "assigned")
    return ws, welcome, conv


async def test_widget_script_is_served_and_never_uses_inner_html(stack: Stack) -> None:
    response = await stack.client.get("/webchat/widget.js")
    assert response.status == 200
    assert response.content_type == "application/javascript"
    script = await response.text()
    assert '"title": "Chat with us"' in script
    assert "textContent" in script and not re.search(r"\.innerHTML|insertAdjacentHTML", script)


async def test_message_acked_once_routed_and_agent_reply_pushed(stack: Stack) -> None:
    ws, welcome, conv = await open_and_assign(stack)
    assert welcome["token"] and not welcome["resumed"]
    # the same client id again (a retry): the original seq, stored once
    await ws.send_json({"type": "message", "client_id": "c1", "text": "is my parcel lost?"})
    ack = await recv(ws, "ack")
    assert ack == {"type": "ack", "client_id": "c1", "seq": 1, "duplicate": True}
    assert len(stack.acd.tasks) == 1 and stack.acd.tasks[0].queue_id == "chat"
    assert stack.acd.tasks[0].channel == "webchat"
    result = await stack.conversations.reply(conv.id, "agent-ann", "<b>No</b>, it is on its way")
    assert result.ok, result.reason
    pushed = await recv(ws, "message")
    assert pushed["seq"] == 2 and pushed["from"] == "agent"
    assert pushed["text"] == "<b>No</b>, it is on its way"  # text, the widget shows it as text
    await stack.conversations.typing(conv.id, "agent-ann")
    assert (await recv(ws, "typing"))["from"] == "agent"
    await ws.close()


async def test_resume_after_reconnect_without_loss_or_duplicates(stack: Stack) -> None:
    ws, welcome, conv = await open_and_assign(stack)
    await ws.close()
    # while the visitor is away the agent writes twice
    for text in ("first", "second"):
        assert (await stack.conversations.reply(conv.id, "agent-ann", text)).ok
    ws2 = await stack.client.ws_connect("/webchat/ws", headers=ORIGIN)
    await ws2.send_json({"type": "hello", "token": welcome["token"], "last_seq": 1})
    back = await recv(ws2, "welcome")
    assert back["resumed"] and back["session"] == welcome["session"] and back["last_seq"] == 3
    replay = [await recv(ws2, "message"), await recv(ws2, "message")]
    assert [(f["seq"], f["text"]) for f in replay] == [(2, "first"), (3, "second")]
    # a message sent just before a drop, its ack lost: re-sent with the same client id
    await ws2.send_json({"type": "message", "client_id": "c2", "text": "thanks"})
    await ws2.close()
    ws3 = await stack.client.ws_connect("/webchat/ws", headers=ORIGIN)
    await ws3.send_json({"type": "hello", "token": welcome["token"], "last_seq": 3})
    await recv(ws3, "welcome")
    await ws3.send_json({"type": "message", "client_id": "c2", "text": "thanks"})
    ack = await recv(ws3, "ack")
    assert ack["seq"] == 4
    await ws3.send_json({"type": "history"})
    history = await recv(ws3, "history")
    assert [m["seq"] for m in history["messages"]] == [1, 2, 3, 4]
    assert [m["from"] for m in history["messages"]] == ["visitor", "agent", "agent", "visitor"]
    async with stack.db.session() as s:
        count = (await s.exec(select(func.count()).select_from(DigitalMessage).where(
            DigitalMessage.provider == "webchat", DigitalMessage.body == "thanks"))).one()
    assert count == 1
    await ws3.close()


async def test_unverified_prechat_email_is_a_suggestion_not_a_merge(stack: Stack) -> None:
    known = await stack.cases.resolve(IdentityRef("email", "vera@example.com"))
    ws, _ = await hello(stack, name="Vera", email="vera@example.com")
    await ws.send_json({"type": "message", "client_id": "x", "text": "hi"})
    await recv(ws, "ack")
    await stack.drain()
    task = stack.acd.tasks[0]
    assert task.customer_id != known.customer.id
    suggestions = await stack.cases.suggestions(task.customer_id)
    assert [s.candidate_customer_id for s in suggestions] == [known.customer.id]
    await ws.close()


async def test_visitor_typing_reaches_the_agent(stack: Stack) -> None:
    events: list[Any] = []

    async def listen(event: Any) -> None:
        events.append(event)

    await stack.bus.subscribe("conversation.typing", listen)
    ws, _, _ = await open_and_assign(stack)
    await ws.send_json({"type": "typing"})
    await ws.send_json({"type": "ping"})
    await recv(ws, "pong")
    assert events and events[0].payload["agent_id"] == "agent-ann"
    assert events[0].payload["from"] == "visitor"
    await ws.close()


async def test_bad_frames_get_clear_errors(stack: Stack) -> None:
    ws = await stack.client.ws_connect("/webchat/ws", headers=ORIGIN)
    await ws.send_str("not json")
    assert (await recv(ws, "error"))["code"] == "bad_json"
    await ws.send_json({"type": "message", "client_id": "a", "text": "x"})
    assert (await recv(ws, "error"))["code"] == "hello_first"
    await ws.send_json({"type": "hello", "last_seq": 0})
    await recv(ws, "welcome")
    await ws.send_json({"type": "message", "client_id": "", "text": "x"})
    assert (await recv(ws, "error"))["code"] == "bad_frame"
    await ws.send_json({"type": "message", "client_id": "a", "text": "x" * 4001})
    assert (await recv(ws, "error"))["code"] == "too_long"
    await ws.send_json({"type": "dance"})
    assert (await recv(ws, "error"))["code"] == "unknown_type"
    await ws.close()
    refused = await stack.client.get("/webchat/ws", headers={
        "Origin": "https://evil.example", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert refused.status == 403
    assert "evil.example" in (await refused.json())["error"]
