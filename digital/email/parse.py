"""Inbound e-mail -> an inbox record: addresses, threading headers, text, and whether
it is an automatic message (auto-reply, bounce) that must not reach an agent."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from digital.store import InboundRecord

SUBJECT_TOKEN = re.compile(r"\[#([0-9a-z]{6,16})\]")
MSGID = re.compile(r"<([^<>\s]+)>")
MAX_BODY_CHARS = 100_000


def message_ids(value: str | None) -> list[str]:
    """`<a@b> <c@d>` -> ['a@b', 'c@d'] (References, In-Reply-To)."""
    return MSGID.findall(value or "")


def automatic_reason(msg: Message) -> str | None:
    """Why this message was written by a machine, or None (RFC 3834 and common practice)."""
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for header in ("X-Autoreply", "X-Autorespond"):
        if msg.get(header) is not None:
            return f"{header} present"
    precedence = str(msg.get("Precedence", "")).strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    if msg.get_content_type() == "multipart/report":
        return "delivery report (multipart/report)"
    sender = parseaddr(str(msg.get("From", "")))[1].lower()
    local = sender.split("@", 1)[0]
    if local in ("mailer-daemon", "postmaster") or local.startswith("mailer-daemon"):
        return f"sent by {local}"
    return None


def is_bounce(msg: Message) -> bool:
    sender = parseaddr(str(msg.get("From", "")))[1].lower().split("@", 1)[0]
    return msg.get_content_type() == "multipart/report" or sender in ("mailer-daemon",
                                                                       "postmaster")


def _text_of(msg: EmailMessage) -> str:
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, ValueError):
        text = part.get_payload(decode=True).decode("utf-8", "replace")  # type: ignore[union-attr]
    if part.get_content_type() == "text/html":
        text = re.sub(r"<[^>]+>", " ", re.sub(r"(?is)<(script|style).*?</\1>", " ", text))
    return str(text)[:MAX_BODY_CHARS]


def _reported_ids(msg: Message) -> list[str]:
    """The original Message-ID inside a bounce report, to thread the bounce."""
    out: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                out += message_ids(str(inner.get("Message-ID", "")))
        elif ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True) or b""
            inner = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
            out += message_ids(str(inner.get("Message-ID", "")))
    return out


def parse_email(raw: bytes, *, envelope_rcpts: list[str] | None = None) -> InboundRecord:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    ids = message_ids(str(msg.get("Message-ID", "")))
    message_id = ids[0] if ids else "sha256:" + hashlib.sha256(raw).hexdigest()
    name, address = parseaddr(str(msg.get("From", "")))
    recipients = [a.lower() for _, a in getaddresses(
        [str(v) for h in ("To", "Cc", "Delivered-To") for v in msg.get_all(h, [])]) if a]
    recipients += [r.lower() for r in envelope_rcpts or []]
    try:
        when = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    except (TypeError, ValueError):
        when = datetime.now(UTC)
    attachments = [p.get_filename() for p in msg.iter_attachments() if p.get_filename()]
    auto = automatic_reason(msg)
    payload: dict[str, Any] = {
        "from": address.lower(), "from_name": name or None, "to": sorted(set(recipients)),
        "subject": str(msg.get("Subject", ""))[:300], "message_id": message_id,
        "in_reply_to": message_ids(str(msg.get("In-Reply-To", ""))),
        "references": message_ids(str(msg.get("References", ""))),
        "automatic": auto, "bounce": is_bounce(msg), "attachments": attachments,
    }
    if auto and payload["bounce"]:
        payload["references"] += _reported_ids(msg)
    return InboundRecord("email", message_id[:300], "email", "text", address.lower() or None,
                         _text_of(msg), when, payload)
