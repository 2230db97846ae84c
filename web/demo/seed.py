"""`centrale demo seed`: a few customers with a history, so the demo's case pages,
reports and wallboard charts are not empty on first sight.

Everything goes through the public services, as live contacts do: customers, cases and
timelines through `cases.CaseService` (on a clock set back to when each contact
happened), the report figures through the same `record_fact` the web app feeds from the
ACD's task events, the wallboard's day charts through its own `History`. It runs once:
the first entry carries a dedup key, and a second run finds it and writes nothing. It
refuses to run unless the config enables the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cases import CaseService, IdentityRef
from core.bus import EventBus
from core.clock import Clock, ManualClock
from core.db import Database
from core.events import Event
from web.demo.personas import SEEDED, Persona
from web.desktop.figures import History
from web.desktop.reports import record_fact

MARKER = "demo-seed:v1"


class SeedRefused(Exception):
    """The config does not enable the demo: seeding would put made-up customers into
    what may be a production database."""


@dataclass
class SeedResult:
    created: bool
    customers: int = 0
    cases: int = 0
    entries: int = 0
    wallboard_points: int = 0


@dataclass
class _Contact:
    """One past contact of a seeded customer, with the figures the reports count."""

    days_ago: float
    channel: str
    queue: str
    agent: str
    entries: list[tuple[str, str, str]]  # (kind, direction, body)
    wait_seconds: float
    handle_seconds: float
    wrap_up: str
    close: bool


def _history(p: Persona) -> list[_Contact]:
    if p.mobile == SEEDED[0].mobile:  # Joost: a closed call, then an open WhatsApp case
        return [
            _Contact(8, "voice", "support", "chloe", [
                ("note", "internal", "Klant sinds 2019, glasvezel 500 Mbit."),
                ("call", "inbound", f"Incoming call from {p.mobile} to +31201234567"),
                ("ivr_end", "inbound", "Queued in support"),
                ("call", "inbound", "Call with chloe ended after 312 s"),
                ("wrap_up", "internal", "Storing verholpen na herstart van de modem."),
            ], 34, 312, "resolved", True),
            _Contact(0.1, "whatsapp", "sales", "anna", [
                ("message", "inbound", "Wanneer wordt mijn nieuwe modem geleverd?"),
                ("message", "outbound", "Hoi Joost, hij is vandaag verzonden. Je krijgt "
                                        "morgen een track & trace."),
            ], 12, 95, "follow_up", False),
        ]
    if p.mobile == SEEDED[1].mobile:  # Sophie: an English WhatsApp case, closed
        return [
            _Contact(3, "whatsapp", "support", "chloe", [
                ("message", "inbound", "Hello, I was charged twice in November. Could you "
                                       "check?"),
                ("message", "outbound", "Dear Sophie, you are right: the second charge "
                                        "is refunded within 5 working days."),
            ], 1800, 420, "resolved", True),
        ]
    return [  # Daan Smit: a call and a WhatsApp chat, both closed
        _Contact(20, "voice", "sales", "bram", [
            ("call", "inbound", f"Incoming call from {p.mobile} to +31201234567"),
            ("ivr_end", "inbound", "Queued in sales"),
            ("call", "inbound", "Call with bram ended after 540 s"),
            ("wrap_up", "internal", "Upgrade naar 1 Gbit besteld."),
        ], 8, 540, "sale", True),
        _Contact(10, "whatsapp", "sales", "anna", [
            ("message", "inbound", "Is de upgrade al actief?"),
            ("message", "outbound", "Ja, sinds gisteren. Herstart je router even."),
        ], 20, 180, "resolved", True),
    ]


def _identity(p: Persona, channel: str) -> IdentityRef:
    """By mobile number only, so the simulator's messages and calls find these people."""
    if channel == "whatsapp":
        return IdentityRef("whatsapp", p.wa_id)
    return IdentityRef("phone", p.mobile)


async def seed_demo(config: Any, db: Database, bus: EventBus, clock: Clock) -> SeedResult:
    if not config.server.demo.enabled:
        raise SeedRefused("the config does not enable the demo (server.demo.enabled); "
                          "`centrale demo seed` writes made-up customers and only runs "
                          "on a demo config")
    now = clock.now()
    past = ManualClock(now)
    cases = CaseService(db, bus, past, default_region=config.server.default_region,
                        reopen_window=timedelta(days=config.server.continuity.reopen_window_days))
    result = SeedResult(created=True)
    first = True
    for persona in SEEDED:
        customer_id = None
        for contact in _history(persona):
            at = now - timedelta(days=contact.days_ago)
            past.set(at)
            res = await cases.resolve(_identity(persona, contact.channel),
                                      display_name=persona.name)
            if customer_id is None:
                customer_id = res.customer.id
                result.customers += 1
            result.cases += 1
            for n, (kind, direction, body) in enumerate(contact.entries):
                when = at + timedelta(seconds=contact.wait_seconds * (n > 0) + 30 * n)
                _, created = await cases.add_timeline(
                    res.case.id, kind=kind, channel=contact.channel, direction=direction,
                    body=body, occurred_at=when,
                    meta={"agent_id": contact.agent, "demo": True},
                    dedup_key=MARKER if first else None)
                if first and not created:
                    return SeedResult(created=False)
                first = False
                result.entries += 1
            await cases.set_last_agent(res.case.id, contact.agent)
            await _report_facts(db, contact, res.case.id, at)
            if contact.close:
                past.set(at + timedelta(seconds=contact.wait_seconds + contact.handle_seconds))
                await cases.close_case(res.case.id)
        if persona.language and customer_id:
            await cases.update_customer(customer_id, language=persona.language)
    result.wallboard_points = await _wallboard_morning(config, db, now)
    return result


# Contacts waiting per 5 minutes, and the service level: a quiet, plausible morning.
_WAITING = (0, 1, 2, 1, 0, 0, 1, 3, 2, 1, 0, 1, 2, 2, 1, 0, 0, 1, 1, 0, 0, 2, 1, 0)


async def _wallboard_morning(config: Any, db: Database, now: datetime) -> int:
    """Today's wallboard charts, up to two hours back (never before midnight UTC, where
    the charts start), through the wallboard's own `History`."""
    start = max(now - timedelta(hours=2), now.replace(hour=0, minute=0, second=0,
                                                      microsecond=0))
    clock = ManualClock(start)
    history = History(db, clock)
    points, n = 0, 0
    while clock.now() < now - timedelta(minutes=1):
        queues = []
        for offset, q in enumerate(config.queues):
            waiting = _WAITING[(n + 3 * offset) % len(_WAITING)]
            queues.append({"id": q.id, "waiting": waiting,
                           "service_level": round(1.0 - 0.06 * waiting, 2)})
        await history.add({"queues": queues})
        points += len(queues)
        n += 1
        clock.advance(300)
    return points


async def _report_facts(db: Database, c: _Contact, case_id: str, at: datetime) -> None:
    """The three task events a handled contact leaves, as the ACD would publish them."""
    task = f"demo-{case_id}-{c.channel}"
    base = {"task_id": task, "queue_id": c.queue, "channel": c.channel, "case_id": case_id}
    answered = at + timedelta(seconds=c.wait_seconds)
    for topic, when, extra in (
            ("task.enqueued", at, {}),
            ("task.accepted", answered, {"agent_id": c.agent, "wait_seconds": c.wait_seconds}),
            ("task.wrap_up_ended", answered + timedelta(seconds=c.handle_seconds),
             {"agent_id": c.agent, "handle_seconds": c.handle_seconds,
              "wrap_up_code": c.wrap_up})):
        await record_fact(db, Event(topic, {**base, **extra}, event_id=f"{task}-{topic}",
                                    occurred_at=when))
