"""The omnichannel KPIs that need more than one contact: first-contact resolution,
channel switching, repeat contacts (per case and customer), AHT with concurrency, and
occupancy / utilisation (per agent). Pure functions over contact lines and state
changes, so the definitions of docs/kpis.md are tested without a database.

An *episode* is a contact on a case with no earlier contact on that case within the FCR
window, plus the contacts on the case that follow it within the window. Episodes whose
window has not elapsed yet (`now` < first contact + window) are *pending*: they are
counted apart, never as resolved.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from queues.stats import ratio
from reports.queries import ContactLine

WORKING = ("busy", "wrap_up")


def episodes(contacts: list[ContactLine], start: datetime, end: datetime,
             window: timedelta) -> list[list[ContactLine]]:
    """Episodes that begin in [start, end); `contacts` must also hold the contacts of
    [start - window, end + window) so that beginnings and follow-ups are seen."""
    by_case: dict[str, list[ContactLine]] = defaultdict(list)
    for c in contacts:
        if c.case_id:
            by_case[c.case_id].append(c)
    out = []
    for lines in by_case.values():
        lines.sort(key=lambda c: c.entered_at)
        i = 0
        while i < len(lines):
            first = lines[i]
            j = i + 1
            while j < len(lines) and lines[j].entered_at - first.entered_at <= window:
                j += 1
            previous = lines[i - 1] if i > 0 else None
            begins = previous is None or first.entered_at - previous.entered_at > window
            if begins and start <= first.entered_at < end:
                out.append(lines[i:j])
            i = j if begins else i + 1
    return out


def fcr_window(contacts: list[ContactLine], start: datetime, end: datetime, now: datetime,
               window: timedelta) -> dict[str, Any]:
    eps = episodes(contacts, start, end, window)
    pending = [e for e in eps if e[0].entered_at + window > now and len(e) == 1]
    decided = [e for e in eps if not (e[0].entered_at + window > now and len(e) == 1)]
    resolved = sum(1 for e in decided if len(e) == 1)
    return {"mode": "window", "window_days": window / timedelta(days=1),
            "episodes": len(decided), "resolved_first_contact": resolved,
            "pending": len(pending), "fcr": ratio(resolved, len(decided))}


def fcr_closed(contacts_of_closed: list[ContactLine],
               closed: dict[str, datetime]) -> dict[str, Any]:
    """Cases closed in the period: FCR when exactly one contact came before the close."""
    before: Counter[str] = Counter()
    for c in contacts_of_closed:
        if c.case_id in closed and c.entered_at <= closed[c.case_id]:
            before[c.case_id] += 1
    with_contact = [cid for cid in closed if before[cid] > 0]
    resolved = sum(1 for cid in with_contact if before[cid] == 1)
    return {"mode": "closed_after_one", "cases_closed": len(with_contact),
            "resolved_first_contact": resolved, "fcr": ratio(resolved, len(with_contact))}


def channel_switching(contacts: list[ContactLine], start: datetime, end: datetime,
                      window: timedelta) -> dict[str, Any]:
    """Episodes whose contacts use more than one channel, and which switches they made
    (consecutive contacts on different channels: `whatsapp->voice`)."""
    eps = episodes(contacts, start, end, window)
    switched = 0
    switches: Counter[str] = Counter()
    for e in eps:
        channels = [c.channel or "-" for c in e]
        if len(set(channels)) > 1:
            switched += 1
        for a, b in itertools.pairwise(channels):
            if a != b:
                switches[f"{a}->{b}"] += 1
    return {"episodes": len(eps), "switched": switched,
            "switching_rate": ratio(switched, len(eps)), "switches": dict(switches)}


def repeat_contacts(contacts: list[ContactLine], start: datetime, end: datetime,
                    now: datetime, window: timedelta) -> dict[str, Any]:
    """Contacts in [start, end) followed by another contact of the same customer (any
    case, any channel) within the window. Pending: window not elapsed, no repeat yet."""
    by_customer: dict[str, list[datetime]] = defaultdict(list)
    for c in contacts:
        if c.customer_id:
            by_customer[c.customer_id].append(c.entered_at)
    counted = repeated = pending = 0
    for times in by_customer.values():
        times.sort()
        for i, at in enumerate(times):
            if not start <= at < end:
                continue
            nxt = times[i + 1] if i + 1 < len(times) else None
            if nxt is not None and nxt - at <= window:
                counted += 1
                repeated += 1
            elif at + window > now:
                pending += 1
            else:
                counted += 1
    return {"contacts": counted, "repeated": repeated, "pending": pending,
            "repeat_rate": ratio(repeated, counted)}


def aht_by_channel(contacts: list[ContactLine]) -> dict[str, dict[str, Any]]:
    """AHT per channel, handled contacts only: `aht_seconds` is talk (hold included) +
    wrap-up; `effective_aht_seconds` splits each moment of an agent's time between the
    contacts the agent handled at that moment (three chats at once: a third each), which
    is what a conversation costs in agent time."""
    handled = [c for c in contacts if c.handled and c.answered_at is not None]
    spans: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for c in handled:
        length = (c.talk_seconds or 0.0) + (c.wrap_seconds or 0.0)
        spans[c.agent_id or "-"].append(
            (c.answered_at, c.answered_at + timedelta(seconds=length), c.task_id))  # type: ignore[operator]
    effective: dict[str, float] = defaultdict(float)
    for agent_spans in spans.values():
        points = sorted({t for s, e, _ in agent_spans for t in (s, e)})
        for a, b in itertools.pairwise(points):
            active = [tid for s, e, tid in agent_spans if s <= a and e >= b]
            for tid in active:
                effective[tid] += (b - a).total_seconds() / len(active)
    per: dict[str, dict[str, float]] = defaultdict(lambda: {"n": 0, "raw": 0.0, "eff": 0.0})
    for c in handled:
        p = per[c.channel or "-"]
        p["n"] += 1
        p["raw"] += (c.talk_seconds or 0.0) + (c.wrap_seconds or 0.0)
        p["eff"] += effective.get(c.task_id, 0.0)
    return {ch: {"handled": int(p["n"]), "aht_seconds": ratio(p["raw"], p["n"]),
                 "effective_aht_seconds": ratio(p["eff"], p["n"])}
            for ch, p in sorted(per.items())}


def agent_time(changes: list[tuple[str, str, datetime]], start: datetime, end: datetime,
               ) -> dict[str, dict[str, Any]]:
    """Seconds per state per agent inside [start, end), from sorted (agent, state, at)
    changes (the first may precede `start`). Occupancy = handling (busy + wrap-up) /
    (handling + available); utilisation = handling / logged-in time (every state but
    logged_out)."""
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_agent: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for agent, state, at in changes:
        by_agent[agent].append((state, at))
    for agent, seq in by_agent.items():
        for i, (state, at) in enumerate(seq):
            until = seq[i + 1][1] if i + 1 < len(seq) else end
            a, b = max(at, start), min(until, end)
            if b > a:
                per[agent][state] += (b - a).total_seconds()
    out = {}
    for agent, time_in in sorted(per.items()):
        handling = sum(time_in.get(s, 0.0) for s in WORKING)
        logged_in = sum(v for s, v in time_in.items() if s != "logged_out")
        out[agent] = {"seconds": dict(time_in), "handling_seconds": handling,
                      "logged_in_seconds": logged_in,
                      "occupancy": ratio(handling, handling + time_in.get("available", 0.0)),
                      "utilisation": ratio(handling, logged_in)}
    return out
