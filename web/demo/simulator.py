"""The customer simulator's state: WhatsApp threads as the customers' phones see them,
the Graph API stand-in the demo's outbound WhatsApp goes to, and the simulated calls.

Inbound, the simulator is Meta: it builds a Cloud API `messages` notification, signs the
raw body with the channel's app secret (X-Hub-Signature-256) and POSTs it to the node's
own `/webhooks/whatsapp`, exactly as Meta would — nothing is written behind the
webhook's back. Outbound, it is the Graph API: `POST /{version}/{phone_number_id}/
messages` with the channel's access token is accepted with a wamid, then the simulator
posts signed `sent` and `delivered` status webhooks, and `read` once the simulator's
page has shown the message (the customer read it).

State is in memory and bounded: a restart of the node forgets the simulated threads
(the cases keep everything, as they would with real customers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from digital.whatsapp.signature import sign  # Meta's X-Hub-Signature-256, one home
from web.demo.desk_phone import DeskPhone
from web.demo.sip_caller import SimulatedCall

log = logging.getLogger(__name__)

MAX_THREADS = 200
MAX_MESSAGES_PER_THREAD = 200
MAX_CALLS = 20
STATUS_DELAYS = (("sent", 0.2), ("delivered", 0.4))


@dataclass
class SimMessage:
    id: str  # wamid
    direction: str  # "in" (customer -> business) or "out" (business -> customer)
    text: str
    at: float
    status: str  # in: "posted"/"refused"; out: "accepted"/"sent"/"delivered"/"read"
    detail: str = ""
    our_id: str = ""  # the node's own id (biz_opaque_callback_data), echoed on statuses

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "direction": self.direction, "text": self.text,
                "at": self.at, "status": self.status, "detail": self.detail}


@dataclass
class Thread:
    wa_id: str
    name: str = ""
    messages: list[SimMessage] = field(default_factory=list)

    def add(self, message: SimMessage) -> None:
        self.messages.append(message)
        del self.messages[:-MAX_MESSAGES_PER_THREAD]


class Simulator:
    """One per app. `webhook_url()` and the channel settings are read at use, so a
    config reload or the node's port (known only once it listens) are followed."""

    def __init__(self, ctx: Any, fallback_base_url: str = "") -> None:
        self.ctx = ctx
        self.fallback_base_url = fallback_base_url
        self.threads: OrderedDict[str, Thread] = OrderedDict()
        self.calls: OrderedDict[str, SimulatedCall] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self.desk_phones: dict[str, DeskPhone] = {}

    # ---- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        if self.ctx.services.get("sip") is None:  # no embedded SIP core: nothing to ring
            return
        for agent_id in self.ctx.config.server.demo.desk_phones:
            agent = next((a for a in self.ctx.config.agents if a.id == agent_id), None)
            if agent is None or agent.sip is None:
                continue
            phone = DeskPhone(agent_id, agent.sip.username,
                              agent.sip.password.get_secret_value(), self.sip_port())
            await phone.start()
            self.desk_phones[agent_id] = phone

    async def stop(self) -> None:
        for phone in self.desk_phones.values():
            await phone.stop()
        for task in list(self._tasks):
            task.cancel()
        for call in list(self.calls.values()):
            with contextlib.suppress(Exception):
                await call.close()
        if self._http is not None:
            await self._http.close()

    # ---- settings --------------------------------------------------------------------

    @property
    def whatsapp(self) -> Any:
        wa = self.ctx.config.channels.whatsapp
        if wa is None or not wa.enabled:
            raise LookupError("the demo config has no WhatsApp channel")
        return wa

    def base_url(self) -> str:
        return str(self.ctx.services.get("web_url") or self.fallback_base_url).rstrip("/")

    def sip_port(self) -> int:
        """The embedded SIP core's actual port (the config may say 0: any free port)."""
        sip = self.ctx.services.get("sip")
        port = getattr(sip, "port", None) if sip is not None else None
        if port:
            return int(port)
        if not self.ctx.config.server.sip.enabled:
            raise LookupError("the demo config does not run the embedded SIP core")
        return int(self.ctx.config.server.sip.port)

    def thread(self, wa_id: str, name: str = "") -> Thread:
        thread = self.threads.get(wa_id)
        if thread is None:
            thread = self.threads[wa_id] = Thread(wa_id, name)
            while len(self.threads) > MAX_THREADS:
                self.threads.popitem(last=False)
        if name:
            thread.name = name
        self.threads.move_to_end(wa_id)
        return thread

    # ---- the customer writes: Meta's webhook ------------------------------------------

    def _envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        wa = self.whatsapp
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": "31201234567",
                              "phone_number_id": wa.phone_number_id}, **value}
        return {"object": "whatsapp_business_account",
                "entry": [{"id": "demo-waba", "changes": [{"field": "messages",
                                                           "value": value}]}]}

    async def _post_webhook(self, payload: dict[str, Any]) -> tuple[int, str]:
        assert self._http is not None, "simulator not started"
        raw = json.dumps(payload).encode()
        secret = self.whatsapp.app_secret.get_secret_value()
        async with self._http.post(f"{self.base_url()}/webhooks/whatsapp", data=raw, headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(secret, raw)}) as r:
            return r.status, (await r.text())[:300]

    async def customer_sends(self, wa_id: str, name: str, text: str) -> SimMessage:
        wamid = f"wamid.demo.in.{secrets.token_hex(10)}"
        now = time.time()
        message = {"from": wa_id, "id": wamid, "timestamp": str(int(now)), "type": "text",
                   "text": {"body": text}}
        payload = self._envelope({"contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                                  "messages": [message]})
        sim = SimMessage(wamid, "in", text, now, "posting")
        self.thread(wa_id, name).add(sim)
        try:
            status, body = await self._post_webhook(payload)
        except (aiohttp.ClientError, TimeoutError) as exc:
            sim.status, sim.detail = "refused", f"the node did not answer: {exc}"
            return sim
        sim.status = "posted" if status == 200 else "refused"
        sim.detail = "" if status == 200 else f"webhook answered {status}: {body}"
        return sim

    # ---- the business writes: the Graph API stand-in -----------------------------------

    def graph_send(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """What the Graph API answers to a send; statuses follow on their own."""
        to = str(body.get("to") or body.get("recipient") or "").lstrip("+")
        if not to:
            return 400, graph_error(100, "(#100) The parameter to is required.")
        kind = body.get("type")
        if kind == "text":
            text = str((body.get("text") or {}).get("body") or "")
        elif kind == "template":
            template = body.get("template") or {}
            text = f"[template {template.get('name', '?')}]"
        else:
            text = f"[{kind} message]"
        wamid = f"wamid.demo.out.{secrets.token_hex(10)}"
        sim = SimMessage(wamid, "out", text, time.time(), "accepted",
                         our_id=str(body.get("biz_opaque_callback_data") or "")[:32])
        self.thread(to).add(sim)
        self._spawn(self._auto_statuses(to, sim))
        return 200, {"messaging_product": "whatsapp",
                     "contacts": [{"input": body.get("to"), "wa_id": to}],
                     "messages": [{"id": wamid}]}

    async def _auto_statuses(self, wa_id: str, sim: SimMessage) -> None:
        for name, delay in STATUS_DELAYS:
            await asyncio.sleep(delay)
            await self._post_status(wa_id, sim, name)

    async def _post_status(self, wa_id: str, sim: SimMessage, name: str) -> None:
        status: dict[str, Any] = {"id": sim.id, "status": name,
                                  "timestamp": str(int(time.time())), "recipient_id": wa_id}
        if sim.our_id:
            status["biz_opaque_callback_data"] = sim.our_id
        try:
            code, body = await self._post_webhook(self._envelope({"statuses": [status]}))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("demo simulator: status webhook failed: %s", exc)
            return
        if code == 200:
            sim.status = name
        else:
            log.warning("demo simulator: status webhook answered %s: %s", code, body)

    async def customer_reads(self, wa_id: str) -> int:
        """The customer's phone showed the thread: `read` for every delivered message."""
        thread = self.threads.get(wa_id)
        if thread is None:
            return 0
        unread = [m for m in thread.messages if m.direction == "out" and
                  m.status == "delivered"]
        for sim in unread:
            await self._post_status(wa_id, sim, "read")
        return len(unread)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the customer calls -----------------------------------------------------------

    async def call(self, caller: str, name: str, dial: str) -> SimulatedCall:
        live = [c for c in self.calls.values() if c.state != "ended"]
        if len(live) >= 5:
            raise OverflowError("five simulated calls are already up; hang one up first")
        call = SimulatedCall(caller=caller, dial=dial, sip_port=self.sip_port(),
                             display_name=name)
        self.calls[call.id] = call
        while len(self.calls) > MAX_CALLS:
            _, old = self.calls.popitem(last=False)
            await old.close()
        await call.start()
        return call


def graph_error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code,
                      "fbtrace_id": "demo"}}
