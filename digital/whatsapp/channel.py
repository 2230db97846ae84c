"""The WhatsApp Cloud API adapter: webhook in, Graph API out.

Inbound: signature over the raw body, parse, one group commit of messages and
statuses, then 200 — so whatever Meta saw acknowledged is on disk. Media, identity
changes and routing happen afterwards in the inbox processor.

Outbound: our message id goes to Meta as `biz_opaque_callback_data` and comes back on
every status webhook. A 5xx or refused connection means "not accepted": retry. A
timeout means "maybe accepted": before sending again we wait for a status that
carries our id, and only resend if none came — that is how a retry never sends twice
in the normal case (Meta offers no idempotency key, see docs/channels.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import mimetypes
from pathlib import Path
from typing import Any

import aiohttp
from sqlmodel import select

from cases import CaseService, IdentityRef, InvalidIdentity, NumberChange
from config.schema.channels import WhatsAppChannel as WhatsAppConfig
from core.clock import Clock
from core.db import Database
from core.ids import new_id
from core.json_input import loads_untrusted
from core.numbers import is_ascii_digits
from digital.adapter import Prepared, RetryPolicy, SendOutcome
from digital.http import HttpReply, OwnsHttpClient, SendRefused
from digital.store import InboxWriter, dialect_insert
from digital.tables import Conversation, DeliveryStatus, DigitalMessage, SendAttempt, WaContact
from digital.whatsapp import signature
from digital.whatsapp.parse import PayloadError, parse_webhook

log = logging.getLogger(__name__)

RATE_LIMIT_CODES = {130429, 131056, 4, 80007}
WINDOW_CLOSED_CODE = 131047


class MediaError(Exception):
    pass


class WhatsAppAdapter(OwnsHttpClient):
    name = "whatsapp"

    def __init__(self, cfg: WhatsAppConfig, db: Database, clock: Clock, writer: InboxWriter,
                 cases: CaseService, *, media_dir: Path, retry: RetryPolicy | None = None,
                 http_timeout: float = 10.0) -> None:
        self.cfg = cfg
        self.db = db
        self.clock = clock
        self.writer = writer
        self.cases = cases
        self.media_dir = Path(media_dir)
        self.retry = retry or RetryPolicy()
        self.http_timeout = http_timeout
        self._http: aiohttp.ClientSession | None = None
        self._app_secret = cfg.app_secret.get_secret_value()
        self._own_web_url = ""  # this node's web server, for a path-only graph_base_url

    # ---- lifecycle -----------------------------------------------------------------

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("WhatsApp adapter not started")
        return self._http

    def web_listening(self, url: str) -> None:
        """The node's web server is up at `url`. A `graph_base_url` that is only a path
        (the demo's `/demo/graph`) means "this node": the demo's customer simulator
        answers there like the Graph API, on whatever port the node got."""
        self._own_web_url = url.rstrip("/")

    def _graph(self, path: str) -> str:
        base = self.cfg.graph_base_url.rstrip("/")
        if base.startswith("/"):
            base = self._own_web_url + base
        return f"{base}/{self.cfg.graph_version}/{path}"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.cfg.access_token.get_secret_value()}"}

    # ---- webhook -------------------------------------------------------------------

    def verify_subscription(self, mode: str | None, token: str | None,
                            challenge: str | None) -> HttpReply:
        """Meta's GET handshake: echo the challenge when the verify token matches."""
        if mode != "subscribe":
            return HttpReply.error(400, "hub.mode must be 'subscribe'")
        if not challenge:
            return HttpReply.error(400, "hub.challenge is missing")
        expected = self.cfg.verify_token.get_secret_value().encode()
        if token is None or not _consteq(expected, token.encode()):
            return HttpReply.error(403, "hub.verify_token does not match")
        return HttpReply(200, challenge, "text/plain")

    async def handle_webhook(self, raw: bytes, signature_header: str | None,
                             content_type: str | None) -> HttpReply:
        if not signature.verify(self._app_secret, raw, signature_header):
            return HttpReply.error(401, "X-Hub-Signature-256 is missing or does not match")
        if (content_type or "").split(";")[0].strip().lower() != "application/json":
            return HttpReply.error(415, "content type must be application/json")
        try:
            data = loads_untrusted(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return HttpReply.error(400, f"body is not valid JSON: {exc}")
        try:
            parsed = parse_webhook(data, self.cfg.phone_number_id)
        except PayloadError as exc:
            return HttpReply.error(400, f"not a WhatsApp notification: {exc}")
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            # a shape the parser does not name yet: still the sender's error, not ours
            log.warning("WhatsApp webhook of unexpected shape: %r", exc)
            return HttpReply.error(400, "not a WhatsApp notification: unexpected shape")
        if parsed.unknown_phone_number_ids and not parsed.known_changes:
            return HttpReply.error(
                422, "unknown phone_number_id "
                     + ", ".join(sorted(set(parsed.unknown_phone_number_ids))))
        await self.writer.write(parsed.messages, parsed.statuses)
        return HttpReply(200, {"messages": len(parsed.messages),
                               "statuses": len(parsed.statuses),
                               "ignored_phone_number_ids": parsed.unknown_phone_number_ids})

    # ---- processing ----------------------------------------------------------------

    async def prepare(self, row: DigitalMessage) -> Prepared:
        p = row.payload
        ident = p.get("identity") or {}
        prepared = Prepared(identity=IdentityRef(ident["kind"], ident["raw"]),
                            contact=p.get("contact") or row.sender or "",
                            display_name=p.get("display_name"))
        if p.get("username"):  # a BSUID-only user's handle: the agent's way to name them
            prepared.timeline_meta["username"] = str(p["username"])
        if row.kind == "system":
            prepared.route = False
            prepared.timeline_kind = "system"
            if p.get("system_type") == "user_changed_number" and p.get("new_wa_id") \
                    and p.get("wa_id"):
                old, new = str(p["wa_id"]), str(p["new_wa_id"])
                change = await self._changed_number(old, new)
                # The notice goes on the known customer's case (the old number stays
                # theirs, marked previous); replies go to the new number.
                known = change is not None and change.outcome != "unknown"
                prepared.identity = IdentityRef("whatsapp", old if known else new)
                prepared.contact = new
                prepared.timeline_meta["number_change"] = {
                    "old": old, "new": new,
                    "outcome": change.outcome if change is not None else "invalid",
                    "suggestion_id": change.suggestion_id if change is not None else None}
        elif row.kind == "unsupported":
            prepared.timeline_meta.update(_error_fields(p.get("errors")))
        elif row.kind == "reaction":
            prepared.route = False  # shown to whoever has the conversation, no new task
        elif (p.get("media") or {}).get("id") and not row.media_path:
            try:
                prepared.media_path = await self.fetch_media(p["media"])
            except MediaError as exc:
                prepared.note = f"media not stored: {exc}"
        return prepared

    async def _changed_number(self, old: str, new: str) -> NumberChange | None:
        try:
            change = await self.cases.change_number("whatsapp", old, new)
        except InvalidIdentity as exc:
            log.warning("WhatsApp number change %s -> %s ignored: %s", old, new, exc)
            return None
        async with self.db.session() as s:
            rows = await s.exec(select(Conversation).where(
                Conversation.channel == "whatsapp", Conversation.contact == old,
                Conversation.state != "ended"))
            for conv in rows:
                conv.contact = new
                s.add(conv)
            await s.commit()
        return change

    async def fetch_media(self, media: dict[str, Any]) -> str:
        """Graph: GET /{media-id} for the URL, then GET the URL — both with the Bearer
        token. Stored content-addressed under media_dir; size-limited while streaming."""
        limit = self.cfg.media_max_bytes
        try:
            async with self.http.get(self._graph(str(media["id"])), headers=self._auth()) as r:
                if r.status != 200:
                    raise MediaError(f"media lookup answered {r.status}")
                info = await r.json(content_type=None)
            if int(info.get("file_size") or 0) > limit:
                raise MediaError(f"media is {info['file_size']} bytes, over {limit}")
            url = info.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise MediaError("media lookup gave no URL")
            digest = hashlib.sha256()
            chunks: list[bytes] = []
            size = 0
            async with self.http.get(url, headers=self._auth()) as r:
                if r.status != 200:
                    raise MediaError(f"media download answered {r.status}")
                async for chunk in r.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > limit:
                        raise MediaError(f"media is over {limit} bytes")
                    digest.update(chunk)
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise MediaError(f"media download failed: {exc}") from exc
        mime = str(info.get("mime_type") or media.get("mime_type") or "")
        ext = mimetypes.guess_extension(mime.split(";")[0].strip()) or ".bin"
        name = digest.hexdigest()
        path = self.media_dir / name[:2] / f"{name}{ext}"
        await asyncio.to_thread(_write_file, path, b"".join(chunks))
        return str(path)

    # ---- sending -------------------------------------------------------------------

    async def send(self, conversation: Conversation, message: DigitalMessage,
                   template: dict[str, Any] | None = None) -> SendOutcome:
        to = conversation.contact
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                                "to": to, "biz_opaque_callback_data": message.id}
        if not is_ascii_digits(to):  # a username user known only by BSUID
            body.pop("to")
            body["recipient"] = to
        if template is not None:
            body.update(type="template", template=template)
        elif message.kind == "interactive" and isinstance(message.payload.get("interactive"),
                                                          dict):
            body.update(type="interactive", interactive=message.payload["interactive"])
        else:
            body.update(type="text", text={"body": message.body or "", "preview_url": False})
        url = self._graph(f"{self.cfg.phone_number_id}/messages")
        uncertain = False
        for attempt in range(1, self.retry.attempts + 1):
            if uncertain:
                found = await self._status_for(message.id)
                if found is not None:
                    await self._attempt(message.id, attempt, "status_seen", None, None,
                                        "earlier attempt was accepted; not resending")
                    return SendOutcome(found, "sent")
            try:
                async with self.http.post(url, json=body, headers=self._auth()) as r:
                    status = r.status
                    text = await r.text()
            except aiohttp.ClientConnectorError as exc:  # never reached Meta: safe to retry
                await self._attempt(message.id, attempt, "connect_error", None, None, str(exc))
                await self.retry.sleep(attempt)
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:  # may have been accepted
                uncertain = True
                await self._attempt(message.id, attempt, "timeout", None, None,
                                    repr(exc)[:300])
                await self._wait_for_status(message.id, attempt)
                continue
            data = _json(text)
            if status == 200 and data.get("messages"):
                wamid = str(data["messages"][0].get("id"))
                await self._attempt(message.id, attempt, "sent", status, None, None)
                await self._remember_contacts(data.get("contacts") or [])
                return SendOutcome(wamid, "sent", meta={"contacts": data.get("contacts")})
            err = data.get("error") if isinstance(data.get("error"), dict) else {}
            code = err.get("code")
            detail = str(err.get("message") or text)[:300]
            if status >= 500:
                await self._attempt(message.id, attempt, "http_5xx", status, code, detail)
                await self.retry.sleep(attempt)
                continue
            if status == 429 or code in RATE_LIMIT_CODES:
                await self._attempt(message.id, attempt, "rate_limited", status, code, detail)
                await self.retry.sleep(attempt, rate_limited=True)
                continue
            await self._attempt(message.id, attempt, "rejected", status, code, detail)
            if code == WINDOW_CLOSED_CODE:
                raise SendRefused("outside the WhatsApp 24-hour window: only a template can "
                                  "be sent")
            raise SendRefused(f"WhatsApp refused the message (error {code}): {detail}")
        found = await self._status_for(message.id) if uncertain else None
        if found is not None:
            return SendOutcome(found, "sent")
        return SendOutcome(None, "failed", f"not sent after {self.retry.attempts} attempts")

    async def _wait_for_status(self, our_id: str, attempt: int) -> None:
        """After a timeout, give Meta's status webhook time to tell us it got through."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry.status_wait_seconds * attempt
        delay = 0.05
        while True:
            if await self._status_for(our_id) is not None:
                return
            left = deadline - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.5)

    async def _status_for(self, our_id: str) -> str | None:
        async with self.db.session() as s:
            row = (await s.exec(select(DeliveryStatus).where(
                DeliveryStatus.provider == "whatsapp", DeliveryStatus.our_id == our_id))).first()
        return row.provider_message_id if row else None

    async def _attempt(self, message_id: str, attempt: int, outcome: str, http_status: int | None,
                       code: Any, detail: str | None) -> None:
        async with self.db.session() as s:
            s.add(SendAttempt(id=new_id(), message_id=message_id, attempt=attempt,
                              outcome=outcome, http_status=http_status,
                              error_code=str(code) if code is not None else None,
                              detail=detail, at=self.clock.now()))
            await s.commit()

    async def _remember_contacts(self, contacts: list[Any]) -> None:
        rows = [{"input": str(c["input"])[:64], "wa_id": str(c["wa_id"])[:64],
                 "updated_at": self.clock.now()}
                for c in contacts if isinstance(c, dict) and c.get("input") and c.get("wa_id")]
        if not rows:
            return
        async with self.db.session() as s:
            for row in rows:
                stmt = dialect_insert(self.db, WaContact.__table__).values(**row)  # type: ignore[attr-defined]
                stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                    index_elements=["input"],
                    set_={"wa_id": row["wa_id"], "updated_at": row["updated_at"]})
                await (await s.connection()).execute(stmt)
            await s.commit()


def _error_fields(errors: Any) -> dict[str, str]:
    """Meta's error on an inbound message (e.g. 131051, unsupported type) for the
    timeline item, so the agent sees why there is no content."""
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) \
        else {}
    out: dict[str, str] = {}
    if first.get("code") is not None:
        out["error_code"] = str(first["code"])[:32]
    title = first.get("title") or first.get("message")
    if title:
        out["error_title"] = str(title)[:300]
    return out


def _consteq(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)


def _json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
