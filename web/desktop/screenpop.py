"""The screen-pop: everything an agent needs the moment a task is offered — the
customer (name, identities, tags), the case and its whole cross-channel timeline, open
digital conversations with their WhatsApp window, merge suggestions and the queue's CTI
link. Built from CaseService and the conversation port, as plain JSON-ready dicts."""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from cases import InvalidIdentity, NotFound
from cases.identities import normalise_phone
from core.numbers import is_ascii_digits
from web.context import WebContext

log = logging.getLogger(__name__)


def iso_utc(value: datetime | None) -> str | None:
    """A timestamp as ISO 8601 with its zone. SQLite hands back naive datetimes for what
    was stored as UTC; read as local time by a browser they were an hour or two off, so
    a naive value is UTC by definition here (every writer stores UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    return value


def plain(obj: Any) -> Any:
    """A dataclass / pydantic / sqlmodel object or mapping as JSON-ready data."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, datetime):
        return iso_utc(obj)
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v) for v in obj]
    if is_dataclass(obj) and not isinstance(obj, type):
        return plain(asdict(obj))
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return plain(dump())
    return str(obj)


async def maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def customer_view(customer: Any, identities: list[Any]) -> dict[str, Any]:
    return {
        "id": customer.id,
        "display_name": customer.display_name,
        "language": customer.language,
        "tags": list(customer.tags or []),
        "anonymous": customer.anonymous,
        "identities": [{"id": i.id, "kind": i.kind, "value": i.value, "raw": i.raw,
                        "verified": i.verified} for i in identities],
    }


def case_view(case: Any) -> dict[str, Any]:
    return {"id": case.id, "customer_id": case.customer_id, "status": case.status,
            "subject": case.subject, "last_agent_id": case.last_agent_id,
            "opened_at": iso(case.opened_at), "closed_at": iso(case.closed_at),
            "last_activity_at": iso(case.last_activity_at)}


def entry_view(e: Any) -> dict[str, Any]:
    return {"id": e.id, "case_id": e.case_id, "kind": e.kind, "channel": e.channel,
            "direction": e.direction, "body": e.body, "meta": plain(e.meta or {}),
            "occurred_at": iso(e.occurred_at)}


def caller_of(identities: list[dict[str, Any]], hint: str | None = None) -> str | None:
    if hint:
        return hint
    for kind in ("phone", "whatsapp", "sip"):
        for ident in identities:
            if ident["kind"] == kind:
                value = ident["value"]
                return "+" + value if kind == "whatsapp" and is_ascii_digits(value) else value
    return None


def e164(number: str, region: str) -> str:
    """A caller ID as the CRM knows it: national `0612345678` becomes `+31612345678`
    (the site's default region), as on the customer's phone identity. A SIP user or
    anything else that is not a phone number is left as it came."""
    try:
        return normalise_phone(number, region)
    except (InvalidIdentity, ValueError):
        return number


CTI_FIELDS = ("case_id", "customer_id", "channel", "queue_id")


def cti_link(template: str | None, caller: str | None, **fields: str | None) -> str | None:
    """The queue's CRM link with `{caller}` — and `{case_id}`, `{customer_id}`,
    `{channel}`, `{queue_id}` when given — filled in, each URL-encoded; http(s) only,
    so a config typo cannot turn into a javascript: link. Other braces stay as they are."""
    if not template or not template.lower().startswith(("http://", "https://")):
        return None
    link = template.replace("{caller}", quote(caller or "", safe="+"))
    for name in CTI_FIELDS:
        link = link.replace("{" + name + "}", quote(fields.get(name) or "", safe=""))
    return link


async def conversations_view(ctx: WebContext, case_id: str) -> list[dict[str, Any]]:
    service = ctx.services.get("conversations")
    if service is None:
        return []
    if hasattr(service, "case_threads"):  # one session for the case's conversations
        try:
            threads = await service.case_threads(case_id)
        except Exception:
            log.exception("case_threads(%s) failed", case_id)
            return []
        views = []
        for conv, win, msgs in threads:
            data = plain(conv)
            data["id"] = conv.id
            data.setdefault("window", plain(win))
            data["messages"] = plain(msgs)
            views.append(data)
        return views
    try:
        convs = await maybe_await(service.conversations_for_case(case_id))
    except Exception:
        log.exception("conversations_for_case(%s) failed", case_id)
        return []
    views = [_conversation_view(service, conv) for conv in convs or []]
    return [v for v in await asyncio.gather(*views) if v is not None]


async def _conversation_view(service: Any, conv: Any) -> dict[str, Any] | None:
    data = plain(conv)
    if not isinstance(data, dict):
        return None
    conv_id = data.get("id") or data.get("conversation_id")
    data["id"] = conv_id
    if not conv_id:
        return data

    async def window() -> Any:
        try:
            return plain(await maybe_await(service.window(conv_id)))
        except Exception:
            log.exception("window(%s) failed", conv_id)
            return None

    async def messages() -> Any:
        if not hasattr(service, "messages"):
            return None
        try:
            return plain(await maybe_await(service.messages(conv_id)))[-50:]
        except Exception:
            log.exception("messages(%s) failed", conv_id)
            return None

    win, msgs = await asyncio.gather(window(), messages())
    data.setdefault("window", win)
    if msgs is not None:
        data["messages"] = msgs
    return data


def annotate_delivery(timeline: list[dict[str, Any]], conversations: list[dict[str, Any]],
                      ) -> None:
    """Put each outbound message's delivery status (sent/delivered/read/failed) on its
    timeline entry, matched by the digital message id the entry carries."""
    status: dict[str, str] = {}
    errors: dict[str, str] = {}
    for conv in conversations:
        for m in conv.get("messages") or []:
            if isinstance(m, dict) and m.get("id"):
                value = "failed" if m.get("failed") else m.get("delivery") or m.get("send_state")
                if value:
                    status[m["id"]] = str(value)
                if value == "failed" and (m.get("error_code") or m.get("error")):
                    errors[m["id"]] = str(m.get("error_code") or m.get("error"))
    for entry in timeline:
        meta = entry.get("meta") or {}
        if meta.get("message_id") in status:
            meta["delivery"] = status[meta["message_id"]]
            if meta["message_id"] in errors:  # a failed send keeps its reason in view
                meta["delivery_error"] = errors[meta["message_id"]]


async def build_case_bundle(ctx: WebContext, case_id: str, *, limit: int = 300,
                            customer_id: str | None = None) -> dict[str, Any]:
    """Customer, case, timeline, conversations and suggestions of one case.

    The customer record comes in one session (`CaseService.snapshot`: three
    statements on one connection); the conversations through the conversation port.
    On PostgreSQL the two run concurrently (two connections per pop, the pop waits for
    the slower); on SQLite one after the other: every aiosqlite connection is a thread
    and the reads are CPU-bound, so running them at once measured slower (GIL
    hand-offs). `customer_id` (the offer's) is not needed: the case names its live
    customer, also when a merge happened after the offer."""
    del customer_id  # kept for callers that pass the offer's; the case's own is read
    snapshot_read = ctx.cases.snapshot(case_id, timeline_limit=limit)
    if getattr(ctx.db, "is_sqlite", False):
        snapshot = await snapshot_read
        conversations = await conversations_view(ctx, case_id)
    else:
        snapshot, conversations = await asyncio.gather(snapshot_read,
                                                       conversations_view(ctx, case_id))
    cust = customer_view(snapshot.customer, snapshot.identities)
    entries = [entry_view(e) for e in snapshot.timeline]
    annotate_delivery(entries, conversations)
    return {
        "customer": cust,
        "case": case_view(snapshot.case),
        "timeline": entries,
        "timeline_total": snapshot.timeline_total,
        "suggestions": [{"id": s.id, "customer_id": s.customer_id,
                         "candidate_customer_id": s.candidate_customer_id, "kind": s.kind,
                         "value": s.value, "reason": s.reason} for s in snapshot.suggestions],
        "conversations": conversations,
    }


async def build_screenpop(ctx: WebContext, payload: dict[str, Any], *,
                          limit: int = 300) -> dict[str, Any]:
    """The `screenpop` frame for a `task.offered` event."""
    frame: dict[str, Any] = {
        "type": "screenpop",
        "offer_id": payload.get("offer_id"),
        "task_id": payload.get("task_id"),
        "channel": payload.get("channel"),
        "queue_id": payload.get("queue_id"),
        "case_id": payload.get("case_id"),
        "expires_at": iso(payload.get("expires_at")),
    }
    try:
        frame.update(await build_case_bundle(ctx, payload["case_id"], limit=limit,
                                             customer_id=payload.get("customer_id")))
    except (NotFound, KeyError) as exc:
        frame["error"] = f"case not found: {exc}"
        return frame
    queue_id = payload.get("queue_id")
    template = None
    if queue_id:
        template = next((q.cti_url for q in ctx.config.queues if q.id == queue_id), None)
    attrs = payload.get("attributes") or {}
    hint = attrs.get("caller") if isinstance(attrs, dict) else None
    transfer = attrs.get("transfer") if isinstance(attrs, dict) else None
    if isinstance(transfer, dict) and transfer.get("by"):
        # "transferred by X: reason" on the receiving agent's card (rendered as text)
        frame["transfer"] = {"by": str(transfer["by"]),
                             "reason": str(transfer.get("reason") or "")[:300] or None}
    caller = caller_of(frame["customer"]["identities"],
                       e164(str(hint), ctx.config.server.default_region) if hint else None)
    frame["caller"] = caller
    frame["cti_url"] = cti_link(template, caller, case_id=payload.get("case_id"),
                                customer_id=frame["customer"]["id"],
                                channel=payload.get("channel"), queue_id=queue_id)
    return frame
