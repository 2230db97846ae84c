"""Twilio SMS and WhatsApp-through-Twilio: form webhooks in, REST API out.

Inbound and status webhooks are checked with `X-Twilio-Signature` against the URL
Twilio called (the configured public URL when there is one), stored in one commit and
acknowledged. Sending uses the Messages REST resource with Basic auth; 5xx, 429 and
refused connections are retried with backoff. A timeout is not retried: Twilio has no
idempotency key for sends, so a second POST could text the customer twice (see
docs/channels.md); the message is reported failed with the reason instead.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from yarl import URL

from cases import IdentityRef
from config.schema.channels import TwilioChannel as TwilioConfig
from core.clock import Clock
from core.db import Database
from core.ids import new_id
from core.json_input import unstorable_text
from digital.adapter import Prepared, RetryPolicy, SendOutcome
from digital.http import HttpReply, OwnsHttpClient, SendRefused
from digital.sms import signature
from digital.store import InboundRecord, InboxWriter, StatusRecord
from digital.tables import STATUS_RANK, Conversation, DigitalMessage, SendAttempt

log = logging.getLogger(__name__)

TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
FAILED = {"failed", "undelivered", "canceled"}


class TwilioAdapter(OwnsHttpClient):
    name = "twilio"

    def __init__(self, cfg: TwilioConfig, db: Database, clock: Clock, writer: InboxWriter, *,
                 public_url: str | None, retry: RetryPolicy | None = None,
                 http_timeout: float = 10.0) -> None:
        self.cfg = cfg
        self.db = db
        self.clock = clock
        self.writer = writer
        self.public_url = public_url.rstrip("/") if public_url else None
        self.retry = retry or RetryPolicy()
        self.http_timeout = http_timeout
        self._http: aiohttp.ClientSession | None = None

    def signed_url(self, path_qs: str, request_url: URL) -> str:
        """The URL Twilio signed: public URL + path when behind a proxy."""
        if self.public_url:
            return self.public_url + path_qs
        return str(request_url)

    # ---- webhooks ------------------------------------------------------------------

    async def handle_webhook(self, kind: str, path_qs: str, raw: bytes,
                             content_type: str | None, signature_header: str | None,
                             request_url: URL) -> HttpReply:
        if (content_type or "").split(";")[0].strip().lower() != \
                "application/x-www-form-urlencoded":
            return HttpReply.error(415, "content type must be application/x-www-form-urlencoded")
        try:
            params = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return HttpReply.error(400, "form body is not UTF-8")
        url = self.signed_url(path_qs, request_url)
        if not signature.verify(self.cfg.auth_token.get_secret_value(), url, params,
                                signature_header):
            return HttpReply.error(401, "X-Twilio-Signature is missing or does not match")
        form = dict(params)
        problem = unstorable_text(form)
        if problem:
            return HttpReply.error(400, f"form holds {problem}")
        sid = form.get("MessageSid") or form.get("SmsSid")
        if not sid:
            return HttpReply.error(400, "MessageSid is missing")
        if len(sid) > 300 or len(form.get("From", "")) > 320:
            return HttpReply.error(400, "MessageSid or From is too long")
        if form.get("AccountSid") and form["AccountSid"] != self.cfg.account_sid:
            return HttpReply.error(403, "AccountSid is not this account")
        if kind == "status":
            status = _status(sid, form)
            await self.writer.write([], [status] if status else [])
            return HttpReply(200, "", "text/plain")
        sender = form.get("From", "")
        if not sender:
            return HttpReply.error(400, "From is missing")
        await self.writer.write([self._inbound(sid, form)], [])
        return HttpReply(200, TWIML_EMPTY, "text/xml")

    def _inbound(self, sid: str, form: dict[str, str]) -> InboundRecord:
        sender = form["From"]
        whatsapp = sender.startswith("whatsapp:")
        media = []
        try:
            count = min(int(form.get("NumMedia") or 0), 10)
        except ValueError:
            count = 0
        for i in range(count):
            if form.get(f"MediaUrl{i}"):
                media.append({"url": form[f"MediaUrl{i}"],
                              "content_type": form.get(f"MediaContentType{i}")})
        number = sender.split(":", 1)[1] if whatsapp else sender
        identity = ({"kind": "whatsapp", "raw": form.get("WaId") or number} if whatsapp
                    else {"kind": "phone", "raw": number})
        payload = {"identity": identity, "contact": sender, "to": form.get("To"),
                   "display_name": form.get("ProfileName") or None, "media": media}
        kind = "text" if not media else "media"
        return InboundRecord("twilio", sid, "whatsapp" if whatsapp else "sms", kind, sender,
                             form.get("Body", ""), datetime.now(UTC), payload)

    async def prepare(self, row: DigitalMessage) -> Prepared:
        p = row.payload
        ident = p.get("identity") or {}
        return Prepared(identity=IdentityRef(ident["kind"], ident["raw"]),
                        contact=p.get("contact") or row.sender or "",
                        display_name=p.get("display_name"))

    # ---- sending -------------------------------------------------------------------

    async def send(self, conversation: Conversation, message: DigitalMessage,
                   template: dict[str, Any] | None = None) -> SendOutcome:
        if self._http is None:
            raise RuntimeError("Twilio adapter not started")
        to = conversation.contact
        sender = self.cfg.from_number
        if to.startswith("whatsapp:") and not sender.startswith("whatsapp:"):
            sender = "whatsapp:" + sender
        form = {"To": to, "From": sender, "Body": message.body or ""}
        if self.public_url:
            form["StatusCallback"] = self.public_url + "/webhooks/twilio/status"
        url = (f"{self.cfg.api_base_url.rstrip('/')}/2010-04-01/Accounts/"
               f"{self.cfg.account_sid}/Messages.json")
        headers = {"Authorization": _basic_auth(self.cfg.account_sid,
                                                self.cfg.auth_token.get_secret_value())}
        for attempt in range(1, self.retry.attempts + 1):
            try:
                async with self._http.post(url, data=form, headers=headers) as r:
                    status, text = r.status, await r.text()
            except aiohttp.ClientConnectorError as exc:
                await self._attempt(message.id, attempt, "connect_error", None, None, str(exc))
                await self.retry.sleep(attempt)
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                await self._attempt(message.id, attempt, "timeout", None, None, repr(exc)[:300])
                return SendOutcome(None, "failed", "Twilio did not answer in time; not resent "
                                                   "to avoid a duplicate text")
            data = _json(text)
            if status in (200, 201) and data.get("sid"):
                await self._attempt(message.id, attempt, "sent", status, None, None)
                return SendOutcome(str(data["sid"]), "sent")
            code = data.get("code")
            detail = str(data.get("message") or text)[:300]
            if status >= 500 or status == 429:
                await self._attempt(message.id, attempt,
                                    "rate_limited" if status == 429 else "http_5xx",
                                    status, code, detail)
                await self.retry.sleep(attempt, rate_limited=status == 429)
                continue
            await self._attempt(message.id, attempt, "rejected", status, code, detail)
            raise SendRefused(f"Twilio refused the message (error {code}): {detail}")
        return SendOutcome(None, "failed", f"not sent after {self.retry.attempts} attempts")

    async def _attempt(self, message_id: str, attempt: int, outcome: str,
                       http_status: int | None, code: Any, detail: str | None) -> None:
        async with self.db.session() as s:
            s.add(SendAttempt(id=new_id(), message_id=message_id, attempt=attempt,
                              outcome=outcome, http_status=http_status,
                              error_code=str(code) if code is not None else None,
                              detail=detail, at=self.clock.now()))
            await s.commit()


def _status(sid: str, form: dict[str, str]) -> StatusRecord | None:
    name = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if name in FAILED:
        return StatusRecord("twilio", sid, 0, True, form.get("ErrorCode") or None,
                            form.get("ErrorMessage") or None, None, form.get("To"))
    if name in STATUS_RANK:
        return StatusRecord("twilio", sid, STATUS_RANK[name], False, None, None, None,
                            form.get("To"))
    return None


def _json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _basic_auth(login: str, password: str) -> str:
    """The Authorization value Twilio's REST API takes. Built here because aiohttp 3.14
    deprecates `BasicAuth` and `auth=`, and its replacement is missing before 3.14."""
    token = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
    return "Basic " + token
