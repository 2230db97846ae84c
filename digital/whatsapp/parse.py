"""WhatsApp Cloud API webhook payloads -> inbox records and status records.

Pure functions, no I/O: the webhook handler parses, then stores everything in one
commit. A structurally broken payload raises `PayloadError` (the caller answers 400);
a message of a type we do not know is kept as kind "unsupported", never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from digital.store import InboundRecord, StatusRecord
from digital.tables import STATUS_RANK

MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")


class PayloadError(ValueError):
    """The webhook body is not a WhatsApp notification we can read."""


@dataclass
class ParsedWebhook:
    messages: list[InboundRecord] = field(default_factory=list)
    statuses: list[StatusRecord] = field(default_factory=list)
    unknown_phone_number_ids: list[str] = field(default_factory=list)
    known_changes: int = 0


def _when(ts: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(ts), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{where} must be a list")
    return value


def parse_webhook(data: Any, phone_number_id: str) -> ParsedWebhook:
    data = _obj(data, "body")
    if data.get("object") != "whatsapp_business_account":
        raise PayloadError("object must be 'whatsapp_business_account'")
    out = ParsedWebhook()
    for ei, entry in enumerate(_list(data.get("entry"), "entry")):
        entry = _obj(entry, f"entry[{ei}]")
        for ci, change in enumerate(_list(entry.get("changes"), f"entry[{ei}].changes")):
            where = f"entry[{ei}].changes[{ci}]"
            change = _obj(change, where)
            if change.get("field") != "messages":
                continue  # account updates, template status: not conversations
            value = _obj(change.get("value"), f"{where}.value")
            metadata = value.get("metadata") or {}
            pnid = str(metadata.get("phone_number_id", "")) if isinstance(metadata, dict) else ""
            if pnid != phone_number_id:
                out.unknown_phone_number_ids.append(pnid or "<missing>")
                continue
            out.known_changes += 1
            contacts = _contacts(value, where)
            for mi, msg in enumerate(_list(value.get("messages"), f"{where}.messages")):
                out.messages.append(_message(_obj(msg, f"{where}.messages[{mi}]"),
                                             contacts, f"{where}.messages[{mi}]"))
            for si, st in enumerate(_list(value.get("statuses"), f"{where}.statuses")):
                status = _status(_obj(st, f"{where}.statuses[{si}]"), f"{where}.statuses[{si}]")
                if status is not None:
                    out.statuses.append(status)
    return out


def _contacts(value: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Contacts by wa_id and by BSUID, for display names."""
    out: dict[str, dict[str, Any]] = {}
    for c in _list(value.get("contacts"), f"{where}.contacts"):
        if isinstance(c, dict):
            for key in ("wa_id", "user_id"):
                if c.get(key):
                    out[str(c[key])] = c
    return out


def _message(msg: dict[str, Any], contacts: dict[str, dict[str, Any]],
             where: str) -> InboundRecord:
    msg_id = msg.get("id")
    if not isinstance(msg_id, str) or not msg_id or len(msg_id) > 300:
        raise PayloadError(f"{where}.id is missing or invalid")
    wa_id = str(msg["from"]) if msg.get("from") else None
    bsuid = msg.get("from_user_id") or msg.get("user_id")
    contact = contacts.get(wa_id or "") or contacts.get(str(bsuid or "")) or {}
    bsuid = bsuid or contact.get("user_id")
    if not wa_id and not bsuid:
        raise PayloadError(f"{where} has neither 'from' nor 'from_user_id'")
    if len(wa_id or str(bsuid)) > 320:
        raise PayloadError(f"{where}.from is too long")
    profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
    mtype = str(msg.get("type") or "unknown")
    kind, body, extra = _content(mtype, msg)
    username = (profile or {}).get("username")
    payload: dict[str, Any] = {
        "type": mtype, "wa_id": wa_id, "bsuid": bsuid,
        "username": str(username)[:100] if username else None,
        "display_name": (profile or {}).get("name") or username,
        "identity": {"kind": "whatsapp", "raw": wa_id} if wa_id
        else {"kind": "whatsapp_bsuid", "raw": str(bsuid)},
        "contact": wa_id or str(bsuid),
        **extra,
    }
    if isinstance(msg.get("context"), dict):
        payload["context"] = msg["context"]
    if msg.get("errors"):
        payload["errors"] = msg["errors"]
        if kind == "unsupported":
            body = f"{body} ({_describe_errors(msg['errors'])})"
    return InboundRecord("whatsapp", msg_id, "whatsapp", kind, wa_id or str(bsuid), body,
                         _when(msg.get("timestamp")), payload)


def _content(mtype: str, msg: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    part = msg.get(mtype) if isinstance(msg.get(mtype), dict) else {}
    if mtype == "text":
        return "text", str(part.get("body", "")), {}
    if mtype in MEDIA_TYPES:
        media = {k: part.get(k) for k in ("id", "mime_type", "sha256", "filename") if part.get(k)}
        caption = part.get("caption")
        return mtype, str(caption) if caption else None, {"media": media}
    if mtype == "interactive":
        reply = part.get("button_reply") or part.get("list_reply") or {}
        if not isinstance(reply, dict):
            raise PayloadError("interactive reply must be an object")
        return "interactive", str(reply.get("title", "")), {"reply": reply,
                                                            "reply_type": part.get("type")}
    if mtype == "button":  # quick-reply button of a template
        return "interactive", str(part.get("text", "")), {"reply": {"id": part.get("payload"),
                                                                    "title": part.get("text")}}
    if mtype == "reaction":
        return "reaction", str(part.get("emoji") or ""), {
            "reacted_to": part.get("message_id"), "removed": not part.get("emoji")}
    if mtype == "location":
        lat, lon = part.get("latitude"), part.get("longitude")
        label = ", ".join(str(x) for x in (part.get("name"), part.get("address")) if x)
        return "location", f"{lat},{lon}" + (f" ({label})" if label else ""), {"location": part}
    if mtype == "contacts":
        cards = msg.get("contacts") if isinstance(msg.get("contacts"), list) else []
        names = [str((c.get("name") or {}).get("formatted_name", "?")) for c in cards
                 if isinstance(c, dict)]
        return "contacts", "; ".join(names), {"contacts": cards}
    if mtype == "system":
        return "system", str(part.get("body", "")), {
            "system_type": part.get("type"),
            "new_wa_id": part.get("new_wa_id") or part.get("wa_id")}
    return "unsupported", f"unsupported WhatsApp message type {mtype!r}", {"raw": msg}


def _describe_errors(errors: Any) -> str:
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) \
        else {}
    code, title = first.get("code"), first.get("title") or first.get("message")
    return f"error {code}: {title}" if title else f"error {code}"


def _callback_data(value: Any) -> str | None:
    """`biz_opaque_callback_data` whole; a value longer than Meta allows (512) is not one
    we sent, and a cut one could name another of our messages."""
    text = str(value) if value else ""
    return text if 0 < len(text) <= 512 else None


def _status(st: dict[str, Any], where: str) -> StatusRecord | None:
    wamid = st.get("id")
    name = st.get("status")
    if not isinstance(wamid, str) or not wamid or len(wamid) > 300:
        raise PayloadError(f"{where}.id is missing or invalid")
    errors = st.get("errors") if isinstance(st.get("errors"), list) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    if name == "failed":
        rank, failed = 0, True
    elif name in STATUS_RANK:
        rank, failed = STATUS_RANK[name], False
    else:
        return None  # "deleted", "warning", future values: nothing to record
    return StatusRecord(
        "whatsapp", wamid, rank, failed,
        str(first["code"])[:32] if first.get("code") is not None else None,
        str(first.get("title") or first.get("message") or "")[:300] or None,
        _callback_data(st.get("biz_opaque_callback_data")),
        str(st.get("recipient_id") or "")[:320] or None)
