"""Webchat: the widget's websocket protocol, sessions, and delivery to the visitor.

Protocol (JSON text frames; docs/channels.md has the full table):

  client -> server  hello {token?, last_seq, name?, email?, phone?}
                    message {client_id, text}       typing {}     history {}     ping {}
  server -> client  welcome {token, session, resumed, last_seq}
                    ack {client_id, seq, duplicate}
                    message {seq, from: visitor|agent, text, client_id?, at}
                    typing {from: agent}   history {messages}   pong {}   error {code, message}

Every message in a session, both directions, gets the next sequence number in the
same transaction that stores it, and the visitor's message is acknowledged only after
that commit. A reconnecting widget says the last seq it saw and gets everything after
it; it re-sends unacknowledged messages with the same client_id, which the UNIQUE
(provider, provider_message_id) constraint turns into the original ack — so nothing is
lost and nothing doubles.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any, Protocol

from sqlalchemy import update
from sqlmodel import col, select

from cases import IdentityRef
from config.schema.channels import WebchatChannel as WebchatConfig
from core.bus import EventBus
from core.clock import Clock
from core.db import Database
from core.events import Event
from core.ids import new_id
from core.json_input import loads_untrusted
from digital.adapter import Prepared, SendOutcome
from digital.store import InboxWriter
from digital.tables import Conversation, DigitalMessage, WebchatSession

log = logging.getLogger(__name__)

MAX_TEXT = 4000
MAX_CLIENT_ID = 64
PUSH_TOPIC = "webchat.push"


class Transport(Protocol):
    async def send(self, frame: dict[str, Any]) -> None: ...

    def frames(self) -> AsyncIterator[str]: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class WebchatAdapter:
    name = "webchat"

    def __init__(self, cfg: WebchatConfig, db: Database, bus: EventBus, clock: Clock,
                 writer: InboxWriter) -> None:
        self.cfg = cfg
        self.db = db
        self.bus = bus
        self.clock = clock
        self.writer = writer
        self._sockets: dict[str, set[Transport]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._subs: list[Any] = []

    async def start(self) -> None:
        if self._subs:
            return
        # Broadcast listeners: every node pushes to the sockets it holds.
        self._subs.append(await self.bus.subscribe(PUSH_TOPIC, self._on_push))
        self._subs.append(await self.bus.subscribe("conversation.typing", self._on_typing))

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.close()
        self._subs.clear()
        await self.close_sockets()

    async def close_sockets(self) -> None:
        """Close every visitor socket this node holds (shutdown): the widgets reconnect
        to a live node and resume by last_seq."""
        for transports in list(self._sockets.values()):
            for transport in list(transports):
                try:
                    await transport.close(1001, "server shutting down")
                except Exception:  # already gone
                    log.debug("closing a webchat socket failed", exc_info=True)
        self._sockets.clear()

    def origin_allowed(self, origin: str | None) -> bool:
        """Browsers always send Origin on websockets; with a list configured only those
        sites may embed the widget. Non-browser clients carry no Origin."""
        if origin is None or not self.cfg.allowed_origins:
            return True
        return origin.rstrip("/") in {o.rstrip("/") for o in self.cfg.allowed_origins}

    # ---- the socket ----------------------------------------------------------------

    async def serve(self, transport: Transport) -> None:
        session: WebchatSession | None = None
        try:
            async for raw in transport.frames():
                try:
                    frame = _frame(raw)
                    if session is None:
                        if frame.get("type") != "hello":
                            raise ProtocolError("hello_first", "the first frame must be hello")
                        session = await self._hello(transport, frame)
                        continue
                    await self._on_frame(transport, session, frame)
                except ProtocolError as exc:
                    await transport.send({"type": "error", "code": exc.code,
                                          "message": str(exc)})
        finally:
            if session is not None:
                self._sockets.get(session.id, set()).discard(transport)

    async def _hello(self, transport: Transport, frame: dict[str, Any]) -> WebchatSession:
        token = frame.get("token")
        last_seq = frame.get("last_seq") or 0
        if not isinstance(last_seq, int) or last_seq < 0:
            raise ProtocolError("bad_frame", "last_seq must be a non-negative integer")
        now = self.clock.now()
        session = None
        async with self.db.session() as s:
            if isinstance(token, str) and token:
                session = (await s.exec(select(WebchatSession).where(
                    WebchatSession.token_hash == _hash(token)))).first()
            resumed = session is not None
            if session is None:
                token = secrets.token_urlsafe(32)
                session = WebchatSession(
                    id=new_id(), token_hash=_hash(token),
                    visitor_name=_text(frame.get("name"), 200),
                    unverified_email=_text(frame.get("email"), 320),
                    unverified_phone=_text(frame.get("phone"), 64),
                    created_at=now, last_seen_at=now)
                last_seq = 0
            session.last_seen_at = now
            s.add(session)
            await s.commit()
        self._sockets.setdefault(session.id, set()).add(transport)
        await transport.send({"type": "welcome", "token": token, "session": session.id,
                              "resumed": resumed, "last_seq": session.next_seq - 1,
                              "title": self.cfg.title})
        for item in await self.history(session.id, after_seq=last_seq):
            await transport.send(item)
        return session

    async def _on_frame(self, transport: Transport, session: WebchatSession,
                        frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            client_id = frame.get("client_id")
            text = frame.get("text")
            if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID:
                raise ProtocolError("bad_frame", "client_id must be a string of 1-64 chars")
            if not isinstance(text, str) or not text.strip():
                raise ProtocolError("bad_frame", "text must be a non-empty string")
            if len(text) > MAX_TEXT:
                raise ProtocolError("too_long", f"text is over {MAX_TEXT} characters")
            reply = frame.get("reply")  # a quick reply's id (a survey button)
            if reply is not None and not (isinstance(reply, str) and
                                          0 < len(reply) <= MAX_CLIENT_ID):
                raise ProtocolError("bad_frame", "reply must be a string of 1-64 chars")
            seq, duplicate = await self.receive(session, client_id, text, reply=reply)
            await transport.send({"type": "ack", "client_id": client_id, "seq": seq,
                                  "duplicate": duplicate})
        elif kind == "typing":
            conv = await self._open_conversation(session.id)
            if conv is not None:
                await self.bus.publish(Event("conversation.typing", {
                    "conversation_id": conv.id, "channel": "webchat", "case_id": conv.case_id,
                    "agent_id": conv.agent_id, "from": "visitor", "contact": session.id}))
        elif kind == "history":
            await transport.send({"type": "history",
                                  "messages": await self.history(session.id, after_seq=0)})
        elif kind == "ping":
            await transport.send({"type": "pong"})
        else:
            raise ProtocolError("unknown_type", f"unknown frame type {kind!r}")

    async def receive(self, session: WebchatSession, client_id: str, text: str, *,
                      reply: str | None = None) -> tuple[int, bool]:
        """Store the visitor's message with the next seq; the same client_id again gives
        the original seq back."""
        pmid = f"{session.id}:{client_id}"
        lock = self._locks.setdefault(session.id, asyncio.Lock())
        async with lock:
            async with self.db.session() as s:
                existing = (await s.exec(select(DigitalMessage).where(
                    DigitalMessage.provider == "webchat",
                    DigitalMessage.provider_message_id == pmid))).first()
                if existing is not None:
                    return int(existing.seq or 0), True
                stored = await s.get(WebchatSession, session.id)
                assert stored is not None
                seq = stored.next_seq
                stored.next_seq = seq + 1
                now = self.clock.now()
                payload: dict[str, Any] = {"contact": session.id, "client_id": client_id,
                                           "display_name": stored.visitor_name}
                if reply is not None:  # the same shape as a WhatsApp button/list reply
                    payload["reply"] = {"id": reply, "title": text[:64]}
                if seq == 1:
                    payload["unverified"] = [
                        {"kind": k, "raw": v} for k, v in
                        (("email", stored.unverified_email), ("phone", stored.unverified_phone))
                        if v]
                s.add(stored)
                s.add(DigitalMessage(
                    id=new_id(), provider="webchat", provider_message_id=pmid,
                    channel="webchat", direction="inbound", kind="text", sender=session.id,
                    body=text, payload=payload, processed=False, received_seq=_ns(),
                    seq=seq, occurred_at=now, created_at=now))
                await s.commit()
        self.writer.notify()
        return seq, False

    async def history(self, session_id: str, *, after_seq: int) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = await s.exec(select(DigitalMessage).where(
                DigitalMessage.provider == "webchat",
                col(DigitalMessage.provider_message_id).startswith(f"{session_id}:"),
                col(DigitalMessage.seq) > after_seq).order_by(col(DigitalMessage.seq)))
            return [_message_frame(m) for m in rows]

    async def _open_conversation(self, session_id: str) -> Conversation | None:
        async with self.db.session() as s:
            return (await s.exec(select(Conversation).where(
                Conversation.channel == "webchat", Conversation.contact == session_id,
                Conversation.state != "ended"))).first()

    # ---- routing hooks ---------------------------------------------------------------

    async def prepare(self, row: DigitalMessage) -> Prepared:
        p = row.payload
        unverified = [IdentityRef(u["kind"], u["raw"]) for u in p.get("unverified") or []]
        return Prepared(identity=IdentityRef("webchat", p["contact"]), contact=p["contact"],
                        display_name=p.get("display_name"), unverified=unverified)

    async def send(self, conversation: Conversation, message: DigitalMessage,
                   template: dict[str, Any] | None = None) -> SendOutcome:
        session_id = conversation.contact
        pmid = f"{session_id}:out:{message.id}"
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            async with self.db.session() as s:
                conn = await s.connection()
                result = await conn.execute(
                    update(WebchatSession).where(col(WebchatSession.id) == session_id)
                    .values(next_seq=WebchatSession.next_seq + 1)
                    .returning(WebchatSession.next_seq))
                row = result.first()
                if row is None:
                    return SendOutcome(None, "failed", "the visitor's session is gone")
                seq = int(row[0]) - 1
                await conn.execute(
                    update(DigitalMessage).where(col(DigitalMessage.id) == message.id)
                    .values(seq=seq, provider_message_id=pmid))
                await s.commit()
        message.seq, message.provider_message_id = seq, pmid
        await self.bus.publish(Event(PUSH_TOPIC, {"session_id": session_id,
                                                  "frame": _message_frame(message)}))
        return SendOutcome(pmid, "sent")

    async def _on_push(self, event: Event) -> None:
        await self._push(str(event.payload.get("session_id")), event.payload.get("frame") or {})

    async def _on_typing(self, event: Event) -> None:
        p = event.payload
        if p.get("channel") != "webchat" or p.get("from") != "agent":
            return
        conv_id = p.get("conversation_id")
        async with self.db.session() as s:
            conv = await s.get(Conversation, conv_id)
        if conv is not None:
            await self._push(conv.contact, {"type": "typing", "from": "agent"})

    async def _push(self, session_id: str, frame: dict[str, Any]) -> None:
        for transport in list(self._sockets.get(session_id, ())):
            try:
                await transport.send(frame)
            except Exception:  # a socket closing under us: it resumes by last_seq
                self._sockets.get(session_id, set()).discard(transport)


def _frame(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_TEXT * 2 + 1024:
        raise ProtocolError("too_long", "frame too large")
    try:
        data = loads_untrusted(raw)
    except ValueError as exc:
        raise ProtocolError("bad_json", "frame is not JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolError("bad_frame", "frame must be a JSON object")
    return data


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


def _ns() -> int:
    import time

    return time.time_ns()


def _message_frame(m: DigitalMessage) -> dict[str, Any]:
    at = m.occurred_at if m.occurred_at.tzinfo else m.occurred_at.replace(tzinfo=UTC)
    frame = {"type": "message", "seq": m.seq,
             "from": "visitor" if m.direction == "inbound" else "agent",
             "text": m.body or "", "at": at.isoformat()}
    if m.direction == "inbound":
        frame["client_id"] = m.payload.get("client_id")
    interactive = (m.payload or {}).get("interactive") or {}
    if interactive.get("type") == "quick_replies":  # buttons the widget offers
        frame["quick_replies"] = [{"id": str(o.get("id")), "title": str(o.get("title"))}
                                  for o in interactive.get("options") or []]
    return frame
