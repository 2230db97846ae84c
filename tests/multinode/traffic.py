"""Traffic for the multi-node kill tests and the take-over benchmark: a site with the
embedded SIP core and WhatsApp on every node, signed webhooks, sipp callers that wait in
a queue, and the checks that read the shared event stream (no task offered to two
agents at once, none above an agent's capacity).

The site: `support` takes WhatsApp (anna and chloe 1 chat each, daan 20, all
not-ready-able), `sales` takes the calls and only bram serves it — he stays not-ready,
so callers wait in line with music on hold. RONA is long, so an offer rings until the
test (or a take-over) ends it."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from core.events import Event
from digital.whatsapp.signature import sign
from tests.multinode.nodes import REPO

sys.path.insert(0, str(REPO / "tests" / "pbx_bridge" / "sip"))  # sip_testkit

APP_SECRET = "multinode-app-secret"
PHONE_NUMBER_ID = "106540352242922"
CAPACITY = {"anna": 1, "chloe": 1, "daan": 20, "bram": 0}

SITE = """
server:
  name: multinode
  default_region: NL
  timezone: Europe/Amsterdam
  default_language: nl
  web: {host: 127.0.0.1, port: 0}
  sip:
    enabled: true
    host: 127.0.0.1
    port: ${CENTRALE_TEST_SIP_PORT}
    transports: [udp]
    rtp_port_min: ${CENTRALE_TEST_RTP_MIN}
    rtp_port_max: ${CENTRALE_TEST_RTP_MAX}
    trunks:
      - {name: local, allowed_ips: [127.0.0.1], trusted: true}
  prompts_dir: prompts
skills: [{id: sales}, {id: support}]
reason_codes: [{id: break}, {id: lunch}, {id: missed}]
wrap_up_codes: [{id: resolved}]
queues:
  - {id: sales, skills: {sales: 1}, rona_seconds: 300, wrap_up_seconds: 5,
     announce_interval_seconds: 30}
  - {id: support, skills: {support: 1}, rona_seconds: 300, wrap_up_seconds: 5}
agents:
  - {id: anna, name: Anna, skills: {support: 1}, queues: [support],
     capacity: {voice: 1, whatsapp: 1}, sip: {username: "1001", password: s1}}
  - {id: bram, name: Bram, skills: {sales: 1}, queues: [sales],
     capacity: {voice: 1, whatsapp: 0}, sip: {username: "1002", password: s2}}
  - {id: chloe, name: Chloe, skills: {support: 1}, queues: [support],
     capacity: {voice: 1, whatsapp: 1}, sip: {username: "1003", password: s3}}
  - {id: daan, name: Daan, skills: {support: 1}, queues: [support],
     capacity: {voice: 1, whatsapp: 20}, sip: {username: "1004", password: s4}}
users:
  - {username: anna, role: agent, agent: anna, password: demo}
  - {username: bram, role: agent, agent: bram, password: demo}
  - {username: chloe, role: agent, agent: chloe, password: demo}
  - {username: daan, role: agent, agent: daan, password: demo}
  - {username: sam, role: supervisor, password: demo}
channels:
  whatsapp:
    queue: support
    phone_number_id: "PHONEID"
    access_token: multinode-token
    app_secret: APPSECRET
    verify_token: multinode-verify
    graph_base_url: http://127.0.0.1:9
numbers:
  - {number: "100", flow: main}
flows:
  - id: main
    languages: [nl]
    start: to_sales
    nodes:
      to_sales: {type: queue, queue: sales, announce_interval_seconds: 30}
"""


def write_site(dest: Path) -> Path:
    """One config directory for every node; each node's SIP port and RTP range come
    from its environment (`${CENTRALE_TEST_SIP_PORT}`, …), as a real site would do."""
    dest.mkdir(parents=True, exist_ok=True)
    text = SITE.replace("PHONEID", PHONE_NUMBER_ID).replace("APPSECRET", APP_SECRET)
    (dest / "site.yaml").write_text(textwrap.dedent(text))
    prompts = dest / "prompts"
    if not prompts.exists():
        shutil.copytree(REPO / "examples/demo/prompts/nl", prompts / "nl")
        shutil.copytree(REPO / "examples/demo/prompts/moh", prompts / "moh")
    return dest


def free_port() -> int:
    """A free UDP port for a node's SIP core."""
    from sip_testkit import free_udp_port

    return free_udp_port()


def sip_env(sip_port: int, rtp_base: int) -> dict[str, str]:
    return {"CENTRALE_TEST_SIP_PORT": str(sip_port), "CENTRALE_TEST_RTP_MIN": str(rtp_base),
            "CENTRALE_TEST_RTP_MAX": str(rtp_base + 998)}


# ---------------------------------------------------------------- WhatsApp


def whatsapp_body(wa_id: str, msg_id: str, text: str) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "WABA",
        "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111",
                         "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": f"Klant {wa_id[-3:]}"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": msg_id, "timestamp": str(int(time.time())),
                          "type": "text", "text": {"body": text}}]}}]}]}).encode()


async def post_whatsapp(http: aiohttp.ClientSession, base: str, wa_id: str, msg_id: str,
                        text: str = "Hallo") -> int:
    """One signed webhook, as Meta sends it; returns the HTTP status (200 = acknowledged:
    the message is stored and must become part of exactly one task)."""
    raw = whatsapp_body(wa_id, msg_id, text)
    async with http.post(f"{base}/webhooks/whatsapp", data=raw,
                         timeout=aiohttp.ClientTimeout(total=10), headers={
                             "Content-Type": "application/json",
                             "X-Hub-Signature-256": sign(APP_SECRET, raw)}) as resp:
        await resp.read()
        return resp.status


# ---------------------------------------------------------------- sipp callers


def waiting_caller_scenario(hold_ms: int, bye_timeout_ms: int = 3000) -> str:
    """A caller who waits in the queue (music on hold) for `hold_ms`, then hangs up.
    The BYE waits at most `bye_timeout_ms` for its 200: a node that died meanwhile
    never answers, and sipp counts the call as failed instead of retrying for 32 s."""
    from sip_testkit import uac_scenario

    xml = uac_scenario(hold_ms=hold_ms, wait_before_dtmf_ms=0,
                       from_hdr='"Beller" <sip:+3120[call_number]55501@[local_ip]:[local_port]>')
    return xml.replace('<recv response="200" crlf="true"/>',
                       f'<recv response="200" crlf="true" timeout="{bye_timeout_ms}"/>')


def sipp_callers(workdir: Path, sip_port: int, calls: int, hold_ms: int
                 ) -> asyncio.Future[Any]:
    """Start sipp with `calls` simultaneous waiting callers (call it in the event
    loop); the future gives sipp's `SippResult` when it ends."""
    from sip_testkit import run_sipp

    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.ensure_future(run_sipp(
        waiting_caller_scenario(hold_ms), workdir, sip_port, calls=calls, rate=20,
        limit=calls, service="100", timeout=hold_ms / 1000 + 20))


# ---------------------------------------------------------------- the event stream


async def stream_events(redis: aioredis.Redis, prefix: str) -> list[tuple[str, Event]]:
    """Every event on the site's stream so far, with its stream id (publish order)."""
    return [(entry_id, Event.from_json(fields["e"]))
            for entry_id, fields in await redis.xrange(f"{prefix}:events")]


async def wait_events(redis: aioredis.Redis, prefix: str, done: Any, *,
                      timeout: float = 20, what: str = "condition") -> list[Event]:
    """Poll the stream until `done(events)` is true; returns the events then."""
    deadline = time.monotonic() + timeout
    while True:
        events = [e for _id, e in await stream_events(redis, prefix)]
        if done(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


ENDS_AN_OFFER = ("task.offer_withdrawn", "task.missed", "task.rejected", "task.accepted")
ENDS_A_TASK = ("task.abandoned", "task.exited", "task.wrap_up_ended")


@dataclass
class OfferAudit:
    """What the stream says about offers, replayed in publish order."""

    violations: list[str] = field(default_factory=list)
    offers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def audit_offers(events: Iterable[Event], capacity: dict[str, int]) -> OfferAudit:
    """Replay offers: a task never has two offers ringing at once (no ring-all queue
    here), and an agent never holds more WhatsApp offers + accepted chats than their
    capacity. A task's ringing offer ends with a withdrawal, a miss, a rejection or an
    accept, or with its adoption (the take-over withdraws ringing offers in Redis).

    Give the events in the order the nodes decided them (`occurred_at`), not in the
    stream's publish order: what frees a slot is published by its node after Redis
    confirmed it, so another node that learnt of the free slot at its sync can publish
    its offer of it first. Every event that frees a slot is stamped no later than its
    change was sent to Redis (an adoption: when it was asked, AdoptedTask.adopted_at),
    and an offer is stamped after its node read the free slot, so in time order the
    free comes first. What this order cannot see: a free decided before another node's
    offer but applied in Redis after its claim (the claim script refuses that one, and
    the engines' tests compare Redis's slots with capacity directly); the publish order
    cannot tell that either, and it flags the harmless race above as a violation."""
    audit = OfferAudit()
    by_task: dict[str, list[str]] = defaultdict(list)  # what a violation shows of a task
    ringing: dict[str, dict[str, str]] = defaultdict(dict)  # task -> offer -> agent
    held: dict[str, set[str]] = defaultdict(set)  # agent -> task ids (offers, chats)
    for e in events:
        p = e.payload
        task, offer, agent = p.get("task_id"), p.get("offer_id"), p.get("agent_id")
        by_task[task].append(f"{e.occurred_at.time()} {p.get('node_id')} {e.topic} "
                             f"{agent or ''}")
        if e.topic == "task.offered":
            audit.offers[task].append(agent)
            if ringing[task]:
                audit.violations.append(
                    f"{task} offered to {agent} while ringing {ringing[task]}")
            ringing[task][offer] = agent
            if p.get("channel") == "whatsapp":
                held[agent].add(task)
                if len(held[agent]) > capacity.get(agent, 0):
                    audit.violations.append(
                        f"{agent} holds {sorted(held[agent])} > capacity "
                        f"{capacity.get(agent, 0)} (offer of {task} by "
                        f"{p.get('node_id')} at {e.occurred_at.isoformat()}; so far: "
                        f"{ {t: by_task[t] for t in sorted(held[agent])} })")
        elif e.topic in ENDS_AN_OFFER:
            gone = ringing[task].pop(offer, None)
            if e.topic != "task.accepted" and gone is not None:
                held[gone].discard(task)
        elif e.topic == "task.adopted":
            for gone in ringing.pop(task, {}).values():
                held[gone].discard(task)
        elif e.topic in ENDS_A_TASK:
            ringing.pop(task, None)
            for tasks in held.values():
                tasks.discard(task)
    return audit
