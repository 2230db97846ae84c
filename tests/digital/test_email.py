"""E-mail with real SMTP peers: customers' mail arrives over SMTP at Centrale's aiosmtpd
listener; Centrale's replies go to an aiosmtpd server standing in for the customer's
mail system; IMAP polling reads from a small IMAP4rev1 peer."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlmodel import select

from core.db import Database
from digital.email.parse import message_ids
from digital.tables import Conversation, DigitalMessage

from .conftest import Stack, make_config, make_stack


class Mailbox:
    """The customer's mail server: keeps what Centrale sends."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.received.append(msg)
        self.arrived.set()
        return "250 OK"

    async def next(self) -> EmailMessage:
        await asyncio.wait_for(self.arrived.wait(), 5)
        self.arrived.clear()
        return self.received[-1]


@pytest.fixture
async def mailbox() -> AsyncIterator[tuple[Mailbox, int]]:
    box = Mailbox()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(box), "127.0.0.1", 0)
    yield box, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def mail_stack(database: Database, tmp_path: Path, mailbox: tuple[Mailbox, int],
                     ) -> AsyncIterator[Stack]:
    st, client = await make_stack(database, tmp_path, make_config(smtp_relay_port=mailbox[1]))
    try:
        yield st
    finally:
        await client.close()
        await st.digital.stop()


def mail(subject: str, body: str, *, sender: str = "jan@customer.example",
         to: str = "support@centrale.example", msg_id: str | None = None,
         headers: dict[str, str] | None = None) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Jan Jansen <{sender}>"
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = msg_id or f"<{abs(hash((subject, body)))}@customer.example>"
    for key, value in (headers or {}).items():
        m[key] = value
    m.set_content(body)
    return m


async def deliver(stack: Stack, m: EmailMessage, rcpt: str | None = None) -> None:
    port = stack.digital.adapters["email"].smtp_port

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            smtp.send_message(m, to_addrs=[rcpt or str(m["To"])])

    await asyncio.to_thread(send)
    await stack.drain()


async def conversations(stack: Stack) -> list[Conversation]:
    async with stack.db.session() as s:
        return list(await s.exec(select(Conversation).order_by(Conversation.created_at)))


async def start_thread(stack: Stack, box: Mailbox) -> tuple[Conversation, EmailMessage]:
    await deliver(stack, mail("Broken kettle", "It leaks.", msg_id="<k1@customer.example>"))
    (conv,) = await conversations(stack)
    await stack.acd.accept(conv.task_id, "agent-ann")
    await stack.conversation_state(conv.id, "assigned")
    result = await stack.conversations.reply(conv.id, "agent-ann", "Sorry! A new one is coming.")
    assert result.ok, result.reason
    return conv, await box.next()


async def test_reply_has_correct_threading_headers(mail_stack: Stack,
                                                   mailbox: tuple[Mailbox, int]) -> None:
    conv, sent = await start_thread(mail_stack, mailbox[0])
    assert mail_stack.acd.tasks[0].channel == "email"
    assert sent["To"] == "jan@customer.example"
    assert sent["In-Reply-To"] == "<k1@customer.example>"
    assert message_ids(str(sent["References"])) == ["k1@customer.example"]
    assert str(sent["Message-ID"]).endswith("@centrale.example>")
    assert sent["Reply-To"] == f"support+{conv.thread_token}@centrale.example"
    assert sent["Subject"] == f"Re: Broken kettle [#{conv.thread_token}]"
    assert "A new one is coming." in sent.get_content()


@pytest.mark.parametrize("how", ["plus_address", "in_reply_to", "subject_token", "none"])
async def test_threading_order(mail_stack: Stack, mailbox: tuple[Mailbox, int],
                               how: str) -> None:
    conv, sent = await start_thread(mail_stack, mailbox[0])
    token = conv.thread_token
    if how == "plus_address":
        follow = mail("different subject", "more", to=str(sent["Reply-To"]))
    elif how == "in_reply_to":
        follow = mail("different subject", "more",
                      headers={"In-Reply-To": str(sent["Message-ID"])})
    elif how == "subject_token":
        follow = mail(f"Re: whatever [#{token}]", "more")
    else:
        follow = mail("A new question", "more")
    await deliver(mail_stack, follow)
    convs = await conversations(mail_stack)
    if how == "none":
        assert len(convs) == 2 and len(mail_stack.acd.tasks) == 2  # a new thread
        assert convs[0].case_id == convs[1].case_id  # on the same case
    else:
        assert len(convs) == 1
        async with mail_stack.db.session() as s:
            msgs = list(await s.exec(select(DigitalMessage).where(
                DigitalMessage.conversation_id == conv.id, DigitalMessage.direction == "inbound")))
        assert len(msgs) == 2


async def test_auto_replies_and_bounces_are_not_routed(mail_stack: Stack,
                                                       mailbox: tuple[Mailbox, int]) -> None:
    conv, sent = await start_thread(mail_stack, mailbox[0])
    ooo = mail("Out of office", "I am away", headers={
        "Auto-Submitted": "auto-replied", "In-Reply-To": str(sent["Message-ID"])})
    await deliver(mail_stack, ooo)
    await deliver(mail_stack, mail("Automatic reply", "away", sender="x@customer.example",
                                   headers={"X-Autoreply": "yes"}))
    await deliver(mail_stack, mail("Newsletter", "news", sender="y@customer.example",
                                   headers={"Precedence": "bulk"}))
    bounce = EmailMessage()
    bounce["From"] = "MAILER-DAEMON@customer.example"
    bounce["To"] = "support@centrale.example"
    bounce["Subject"] = "Undelivered Mail Returned to Sender"
    bounce["Message-ID"] = "<bounce1@customer.example>"
    bounce.set_content("delivery failed")
    bounce.make_mixed()
    bounce.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    headers_part = EmailMessage()
    headers_part.set_content(f"Message-ID: {sent['Message-ID']}\nSubject: x\n".encode(),
                             maintype="text", subtype="rfc822-headers")
    bounce.attach(headers_part)
    await deliver(mail_stack, bounce)
    assert len(mail_stack.acd.tasks) == 1  # only the real first mail
    timeline = await mail_stack.cases.timeline(conv.case_id)
    system = [e for e in timeline if e.kind == "system"]
    assert {e.meta.get("routed") for e in system} == {False}
    assert any("Auto-Submitted" in e.meta["note"] for e in system)
    assert any("multipart/report" in e.meta["note"] or "mailer-daemon" in e.meta["note"]
               for e in system)  # the bounce joined the thread it was about


async def test_redelivered_mail_is_stored_once_and_strangers_refused(
        mail_stack: Stack) -> None:
    m = mail("Hello", "once", msg_id="<same@customer.example>")
    await deliver(mail_stack, m)
    await deliver(mail_stack, m)
    async with mail_stack.db.session() as s:
        rows = list(await s.exec(select(DigitalMessage).where(DigitalMessage.provider == "email")))
    assert len(rows) == 1
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await deliver(mail_stack, mail("x", "y"), rcpt="someone@else.example")


# ---- IMAP ---------------------------------------------------------------------------

class ImapPeer:
    """Just enough IMAP4rev1 for imaplib: LOGIN, SELECT, UID SEARCH/FETCH/STORE, LOGOUT."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = {i + 1: m for i, m in enumerate(messages)}
        self.seen: set[int] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK IMAP4rev1 ready\r\n")
        while line := await reader.readline():
            tag, _, rest = line.decode().strip().partition(" ")
            cmd, _, args = rest.partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPABILITY":
                writer.write(b"* CAPABILITY IMAP4rev1\r\n")
            elif cmd == "SELECT":
                writer.write(f"* {len(self.messages)} EXISTS\r\n".encode())
            elif cmd == "UID":
                sub, _, uargs = args.partition(" ")
                if sub.upper() == "SEARCH":
                    uids = " ".join(str(u) for u in self.messages if u not in self.seen)
                    writer.write(f"* SEARCH {uids}\r\n".encode())
                elif sub.upper() == "FETCH":
                    uid = int(uargs.split()[0])
                    body = self.messages[uid]
                    writer.write(f"* {uid} FETCH (UID {uid} BODY[] {{{len(body)}}}\r\n".encode()
                                 + body + b")\r\n")
                elif sub.upper() == "STORE":
                    self.seen |= {int(u) for u in uargs.split()[0].split(",")}
            elif cmd == "LOGOUT":
                writer.write(b"* BYE\r\n" + f"{tag} OK LOGOUT\r\n".encode())
                await writer.drain()
                break
            writer.write(f"{tag} OK {cmd} done\r\n".encode())
            await writer.drain()
        writer.close()


async def test_imap_polling_stores_then_flags_seen(database: Database, tmp_path: Path) -> None:
    peer = ImapPeer([bytes(mail("Via IMAP", "polled", msg_id="<imap1@customer.example>")),
                     bytes(mail("Second", "polled too", sender="kim@customer.example",
                                msg_id="<imap2@customer.example>"))])
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    st, client = await make_stack(database, tmp_path, make_config(imap_port=port))
    try:
        adapter: Any = st.digital.adapters["email"]
        for _ in range(250):  # the poller's first pass runs at start
            if peer.seen == {1, 2}:
                break
            await asyncio.sleep(0.02)
        assert peer.seen == {1, 2}
        assert await adapter.poll_imap() == 0
        await st.drain()
        assert len(st.acd.tasks) == 2
    finally:
        await client.close()
        await st.digital.stop()
        server.close()
        await server.wait_closed()
