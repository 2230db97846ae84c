"""A case summary built from the timeline alone — no model: the channels used and the
last contact on each, what the customer asked, what was done (IVR choices, replies,
calls, notes, wrap-up codes) and the promises agents made.

"Open promises" are the sentences of agents' replies, notes and wrap-up notes that
promise something ("we will call you back", "ik stuur u morgen..."), from the case's
timeline since it was last closed (a reopened case still owes what it promised).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from assist.corpus import is_agent_reply, is_customer_message

_PROMISE = re.compile(
    r"\b(i|we)('ll| will| shall| are going to| am going to)\b"
    r"|\b(call|ring|get back to|email|e-mail|send|refund|credit)\s+you\b.*\b("
    r"tomorrow|today|monday|tuesday|wednesday|thursday|friday|within|before|by)\b"
    r"|\b(ik|wij|we)\s+(bel|bellen|stuur|sturen|zorg|zorgen|kom|komen|mail|mailen|neem|"
    r"nemen|regel|regelen|los|lossen|betaal|betalen|storten|stort|ga|gaan)\b"
    r"|\b(terugbellen|bel(len)? u terug|nemen contact|contact met u op|morgen|binnen \d+)\b",
    re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_MAX_QUOTE = 160


class Entry(Protocol):
    id: str
    kind: str
    channel: str
    direction: str
    body: str | None
    meta: dict[str, Any]
    occurred_at: datetime


@dataclass
class CaseSummary:
    case_id: str
    has_history: bool
    channels: list[str] = field(default_factory=list)
    last_contact: dict[str, str] = field(default_factory=dict)  # channel -> ISO time
    asked: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    promises: list[str] = field(default_factory=list)
    written_by: str = "timeline"  # timeline | model
    text: str = ""

    def view(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "has_history": self.has_history,
                "channels": self.channels, "last_contact": self.last_contact,
                "asked": self.asked, "done": self.done, "promises": self.promises,
                "written_by": self.written_by, "text": self.text}


def quote(text: str, limit: int = _MAX_QUOTE) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def promises_in(text: str) -> list[str]:
    return [quote(s) for s in _SENTENCE.split(text) if s.strip() and _PROMISE.search(s)]


def summarise(case_id: str, entries: Sequence[Entry]) -> CaseSummary:
    """The summary of a case from its timeline (oldest first)."""
    channels: list[str] = []
    last: dict[str, datetime] = {}
    asked: list[str] = []
    done: list[str] = []
    promises: list[str] = []
    replies: dict[str, int] = {}
    calls = 0
    ivr_choices: list[str] = []
    agent_work = False
    for e in entries:
        if e.channel != "internal":
            if e.channel not in channels:
                channels.append(e.channel)
            last[e.channel] = e.occurred_at
        meta = e.meta or {}
        if is_customer_message(e):
            asked.append(quote(e.body or ""))
        elif is_agent_reply(e):
            agent_work = True
            replies[e.channel] = replies.get(e.channel, 0) + 1
            promises += promises_in(e.body or "")
        elif e.kind == "call" and meta.get("event") == "started":
            calls += 1
        elif e.kind == "ivr_step" and meta.get("type") in ("menu", "collect") and e.body:
            ivr_choices.append(quote(e.body, 80))
        elif e.kind == "note" and e.body:
            agent_work = True
            done.append("Note: " + quote(e.body))
            promises += promises_in(e.body)
        elif e.kind == "wrap_up":
            agent_work = True
            code, notes = meta.get("code"), meta.get("notes")
            done.append(f"Wrap-up {code or '(no code)'}" + (f": {quote(notes)}" if notes else ""))
            if notes:
                promises += promises_in(str(notes))
        elif e.kind in ("callback_request", "callback"):
            promises.append(quote(e.body or "Callback requested"))
        elif e.kind == "system" and meta.get("event") == "case_closed":
            promises = []  # what was promised before a close was kept, or closed
    if calls:
        done.insert(0, f"{calls} call{'s' if calls != 1 else ''}"
                       + (f" (IVR: {'; '.join(ivr_choices[-3:])})" if ivr_choices else ""))
    for channel, count in replies.items():
        done.insert(0, f"{count} agent repl{'ies' if count != 1 else 'y'} on {channel}")
    summary = CaseSummary(
        case_id=case_id,
        has_history=agent_work or len(channels) > 1 or calls > 1,
        channels=channels,
        last_contact={ch: at.isoformat() for ch, at in last.items()},
        asked=_first_and_latest(asked),
        done=done[-6:],
        promises=list(dict.fromkeys(promises))[-3:])
    summary.text = render(summary)
    return summary


def _first_and_latest(asked: list[str]) -> list[str]:
    if len(asked) <= 2:
        return asked
    return [asked[0], asked[-1]]


def render(s: CaseSummary) -> str:
    """The summary as the few lines that go on the timeline at a transfer."""
    lines = []
    if s.channels:
        lines.append("Channels: " + ", ".join(
            f"{ch} (last {s.last_contact[ch][:16].replace('T', ' ')})" for ch in s.channels))
    if s.asked:
        lines.append("Customer asked: " + " … ".join(f"“{a}”" for a in s.asked))
    if s.done:
        lines.append("Done: " + "; ".join(s.done))
    if s.promises:
        lines.append("Open promises: " + "; ".join(f"“{p}”" for p in s.promises))
    return "\n".join(lines) or "Nothing on the timeline yet."
