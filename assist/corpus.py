"""What assist reads from a case timeline: the (customer question, agent reply) pairs
that resolved cases teach, and the customer's latest messages that make a query.

Only digital messages count: a call has no transcript. An agent reply is an outbound
message with an `agent_id` (automatic messages — templates sent by the system,
auto-replies — carry none and are not suggestions anyone wrote).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Entry(Protocol):
    """The timeline entry fields assist reads (cases.tables.TimelineEntry has them)."""

    id: str
    kind: str
    channel: str
    direction: str
    body: str | None
    meta: dict[str, Any]


@dataclass(frozen=True)
class ReplyPair:
    entry_id: str
    channel: str
    question: str
    reply: str


def is_customer_message(entry: Entry) -> bool:
    return entry.kind == "message" and entry.direction == "inbound" and bool(entry.body)


def is_agent_reply(entry: Entry) -> bool:
    return (entry.kind == "message" and entry.direction == "outbound" and bool(entry.body)
            and bool((entry.meta or {}).get("agent_id")))


def reply_pairs(entries: Sequence[Entry], *, last_messages: int = 3) -> list[ReplyPair]:
    """Each agent reply with the customer messages it answered (those since the
    previous reply, the last `last_messages` of them)."""
    pairs: list[ReplyPair] = []
    asked: list[str] = []
    for entry in entries:
        if is_customer_message(entry):
            asked.append(entry.body or "")
        elif is_agent_reply(entry):
            if asked:
                pairs.append(ReplyPair(entry.id, entry.channel,
                                       "\n".join(asked[-last_messages:]), entry.body or ""))
            asked = []
    return pairs


def customer_question(entries: Sequence[Entry], *, last_messages: int = 3) -> str:
    """The customer's messages since the last agent reply; when the agent has just
    replied, the customer's last messages all the same (the topic has not changed)."""
    since_reply: list[str] = []
    recent: list[str] = []
    for entry in entries:
        if is_customer_message(entry):
            since_reply.append(entry.body or "")
            recent.append(entry.body or "")
        elif is_agent_reply(entry):
            since_reply = []
    chosen = since_reply or recent
    return "\n".join(chosen[-last_messages:])


def last_wrap_up_code(entries: Sequence[Entry]) -> str | None:
    for entry in reversed(entries):
        if entry.kind == "wrap_up" and (entry.meta or {}).get("code"):
            return str(entry.meta["code"])
    return None
