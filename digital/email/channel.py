"""E-mail: an SMTP listener (aiosmtpd) and IMAP polling in, SMTP out.

Inbound mail is stored before the SMTP `250` (or before the IMAP message is flagged
\\Seen), so an accepted mail is never lost; a re-delivery with the same Message-ID is
stored once. Threading, in order: the plus-addressed reply-to we gave out
(support+<token>@…), our Message-ID in In-Reply-To/References, the `[#token]` in the
subject, else a new conversation. Auto-replies and bounces go on the timeline of the
thread they belong to and never to an agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import secrets
import smtplib
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlmodel import col, select

from cases import IdentityRef
from config.schema.channels import EmailChannel as EmailConfig
from core.clock import Clock
from core.db import Database
from core.ids import new_id
from digital.adapter import Prepared, RetryPolicy, SendOutcome
from digital.email.parse import SUBJECT_TOKEN, parse_email
from digital.http import SendRefused
from digital.store import InboxWriter
from digital.tables import Conversation, DigitalMessage, SendAttempt

log = logging.getLogger(__name__)

MAX_MAIL_BYTES = 25 * 1024 * 1024
TOKEN_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(10))


class _SmtpHandler:
    def __init__(self, adapter: EmailAdapter) -> None:
        self.adapter = adapter

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not self.adapter.is_ours(address):
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw).encode()
        try:
            await self.adapter.ingest(raw, list(envelope.rcpt_tos))
        except Exception:
            log.exception("storing inbound mail failed")
            return "451 4.3.0 could not store the message, try again later"
        return "250 OK stored"


class EmailAdapter:
    name = "email"

    def __init__(self, cfg: EmailConfig, db: Database, clock: Clock, writer: InboxWriter, *,
                 retry: RetryPolicy | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.clock = clock
        self.writer = writer
        self.retry = retry or RetryPolicy(attempts=3)
        local, _, domain = cfg.address.partition("@")
        self.local, self.domain = local.lower(), domain.lower()
        self._server: asyncio.AbstractServer | None = None
        self._imap_task: asyncio.Task[None] | None = None
        self.smtp_port: int | None = None  # the port actually bound (0 in config = any)

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        handler = _SmtpHandler(self)
        self._server = await loop.create_server(
            lambda: SMTP(handler, data_size_limit=MAX_MAIL_BYTES, enable_SMTPUTF8=True,
                         hostname=self.domain or "centrale"),
            self.cfg.smtp_listen_host, self.cfg.smtp_listen_port)
        self.smtp_port = self._server.sockets[0].getsockname()[1]
        if self.cfg.imap_host:
            self._imap_task = asyncio.create_task(self._imap_loop(), name="email-imap")

    async def stop(self) -> None:
        if self._imap_task is not None:
            self._imap_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._imap_task
            self._imap_task = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def is_ours(self, address: str) -> bool:
        local, _, domain = address.lower().strip("<>").partition("@")
        return domain == self.domain and (local == self.local
                                          or local.startswith(self.local + "+"))

    def plus_token(self, address: str) -> str | None:
        local, _, domain = address.lower().partition("@")
        if domain == self.domain and local.startswith(self.local + "+"):
            return local[len(self.local) + 1:] or None
        return None

    # ---- inbound -------------------------------------------------------------------

    async def ingest(self, raw: bytes, rcpts: list[str] | None = None) -> None:
        """Store one mail durably (SMTP and IMAP both come here)."""
        await self.writer.write([parse_email(raw, envelope_rcpts=rcpts)], [])

    async def _imap_loop(self) -> None:
        while True:
            try:
                await self.poll_imap()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("IMAP poll of %s failed", self.cfg.imap_host)
            await asyncio.sleep(self.cfg.imap_poll_seconds)

    async def poll_imap(self) -> int:
        """Fetch unseen mail, store it, then flag it \\Seen: at-least-once, and the
        UNIQUE Message-ID makes the "at least" harmless."""
        fetched = await asyncio.to_thread(self._imap_fetch)
        for _uid, raw in fetched:
            await self.ingest(raw)
        if fetched:
            await asyncio.to_thread(self._imap_mark_seen, [uid for uid, _ in fetched])
        return len(fetched)

    def _imap(self) -> imaplib.IMAP4:
        host, port = str(self.cfg.imap_host), self.cfg.imap_port
        conn = imaplib.IMAP4_SSL(host, port) if port == 993 else imaplib.IMAP4(host, port)
        password = self.cfg.imap_password.get_secret_value() if self.cfg.imap_password else ""
        conn.login(self.cfg.imap_username or self.cfg.address, password)
        conn.select("INBOX")
        return conn

    def _imap_fetch(self) -> list[tuple[bytes, bytes]]:
        conn = self._imap()
        try:
            typ, data = conn.uid("SEARCH", "UNSEEN")
            if typ != "OK" or not data or not data[0]:
                return []
            out = []
            for uid in data[0].split()[:200]:
                typ, parts = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                for part in parts or []:
                    if isinstance(part, tuple) and len(part) == 2:
                        out.append((uid, bytes(part[1])))
            return out
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def _imap_mark_seen(self, uids: list[bytes]) -> None:
        conn = self._imap()
        try:
            conn.uid("STORE", b",".join(uids).decode(), "+FLAGS", "(\\Seen)")
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    async def prepare(self, row: DigitalMessage) -> Prepared:
        p = row.payload
        conv = await self._thread(p)
        auto = p.get("automatic")
        prepared = Prepared(identity=IdentityRef("email", p["from"]) if p.get("from") else None,
                            contact=p.get("from") or "", display_name=p.get("from_name"),
                            subject=p.get("subject") or None)
        if conv is not None:
            prepared.conversation_id = conv.id
            prepared.thread_token = conv.thread_token
        else:
            prepared.thread_token = new_token()
        if auto:
            prepared.route = False
            prepared.timeline_kind = "system"
            prepared.note = f"automatic e-mail not routed to an agent ({auto})"
            if p.get("bounce"):
                if conv is None:
                    prepared.store_only = True
                else:
                    prepared.case_id = conv.case_id
        return prepared

    async def _thread(self, p: dict[str, Any]) -> Conversation | None:
        async with self.db.session() as s:
            for address in p.get("to") or []:
                token = self.plus_token(address)
                if token:
                    conv = (await s.exec(select(Conversation).where(
                        Conversation.thread_token == token))).first()
                    if conv is not None:
                        return conv
            ids = [*(p.get("in_reply_to") or []), *reversed(p.get("references") or [])]
            if ids:
                msg = (await s.exec(select(DigitalMessage).where(
                    DigitalMessage.provider == "email",
                    col(DigitalMessage.provider_message_id).in_(ids),
                    col(DigitalMessage.conversation_id).is_not(None))
                    .order_by(col(DigitalMessage.created_at).desc()))).first()
                if msg is not None and msg.conversation_id:
                    conv = await s.get(Conversation, msg.conversation_id)
                    if conv is not None:
                        return conv
            match = SUBJECT_TOKEN.search(p.get("subject") or "")
            if match:
                return (await s.exec(select(Conversation).where(
                    Conversation.thread_token == match.group(1)))).first()
        return None

    # ---- outbound ------------------------------------------------------------------

    async def send(self, conversation: Conversation, message: DigitalMessage,
                   template: dict[str, Any] | None = None) -> SendOutcome:
        token = conversation.thread_token or new_token()
        async with self.db.session() as s:
            last = (await s.exec(select(DigitalMessage).where(
                DigitalMessage.conversation_id == conversation.id,
                DigitalMessage.provider == "email",
                col(DigitalMessage.provider_message_id).is_not(None),
                DigitalMessage.id != message.id)
                .order_by(col(DigitalMessage.created_at).desc()))).first()
        mail = EmailMessage()
        msg_id = make_msgid(idstring=message.id, domain=self.domain or None)
        subject = conversation.subject or "Your message"
        if not subject.lower().startswith("re:"):
            subject = "Re: " + subject
        if f"[#{token}]" not in subject:
            subject = f"{subject} [#{token}]"
        mail["Message-ID"] = msg_id
        mail["Date"] = format_datetime(self.clock.now())
        mail["From"] = self.cfg.address
        mail["Reply-To"] = f"{self.local}+{token}@{self.domain}"
        mail["To"] = conversation.contact
        mail["Subject"] = subject
        if last is not None and last.provider_message_id:
            parent = last.provider_message_id
            refs = [*(last.payload.get("references") or []), parent]
            mail["In-Reply-To"] = f"<{parent}>"
            mail["References"] = " ".join(f"<{r}>" for r in dict.fromkeys(refs))
        mail.set_content(message.body or "")
        our_id = msg_id.strip("<>")
        for attempt in range(1, self.retry.attempts + 1):
            try:
                await asyncio.to_thread(self._smtp_send, mail)
            except smtplib.SMTPResponseException as exc:
                await self._attempt(message.id, attempt, "rejected" if exc.smtp_code >= 500
                                    else "temporary", exc.smtp_code, str(exc)[:300])
                if exc.smtp_code >= 500:
                    raise SendRefused(f"the mail server refused the message: {exc.smtp_code} "
                                      f"{exc.smtp_error!r}") from exc
                await self.retry.sleep(attempt)
                continue
            except (OSError, smtplib.SMTPException) as exc:
                await self._attempt(message.id, attempt, "connect_error", None, str(exc)[:300])
                await self.retry.sleep(attempt)
                continue
            await self._attempt(message.id, attempt, "sent", 250, None)
            return SendOutcome(our_id, "sent", meta={"message_id": our_id})
        return SendOutcome(None, "failed", f"not sent after {self.retry.attempts} attempts")

    def _smtp_send(self, mail: EmailMessage) -> None:
        with smtplib.SMTP(self.cfg.smtp_relay_host, self.cfg.smtp_relay_port, timeout=30) as smtp:
            if self.cfg.smtp_username:
                smtp.starttls()
                password = (self.cfg.smtp_password.get_secret_value()
                            if self.cfg.smtp_password else "")
                smtp.login(self.cfg.smtp_username, password)
            smtp.send_message(mail)

    async def _attempt(self, message_id: str, attempt: int, outcome: str, code: int | None,
                       detail: str | None) -> None:
        async with self.db.session() as s:
            s.add(SendAttempt(id=new_id(), message_id=message_id, attempt=attempt,
                              outcome=outcome, http_status=code, detail=detail,
                              at=self.clock.now()))
            await s.commit()
