"""Suggestions from resolved cases: agents' replies, found by what the customer asked
in a similar case of the same queue and language."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from assist.index import LexicalIndex
from assist.privacy import mask
from assist.text import tokens

NO_QUEUE = "-"  # a case that never went through a queue
_QUESTION_CHARS = 500


class ReplyRow(Protocol):
    entry_id: str
    case_id: str
    queue_id: str
    language: str
    channel: str
    question: str
    reply: str
    wrap_up_code: str | None


@dataclass(frozen=True)
class ReplySuggestion:
    text: str
    case_id: str
    entry_id: str
    channel: str
    wrap_up_code: str | None
    score: float
    question: str = ""  # what that customer asked, masked (shown on demand)

    def view(self) -> dict[str, object]:
        return {"kind": "case", "text": self.text, "case_id": self.case_id,
                "entry_id": self.entry_id, "channel": self.channel, "question": self.question,
                "wrap_up_code": self.wrap_up_code, "score": round(self.score, 3)}


class ReplyIndex:
    def __init__(self) -> None:
        self.index = LexicalIndex(filters=("queue", "language"),
                                  stored=("reply", "case_id", "entry_id", "channel", "wrap_up",
                                          "question"))
        self._known: set[str] = set()

    def __len__(self) -> int:
        return len(self._known)

    def knows(self, entry_id: str) -> bool:
        return entry_id in self._known

    def add(self, row: ReplyRow) -> bool:
        """Buffer a resolved reply (searchable after the next commit); False when this
        node indexed it already (a case closed twice, an event delivered again)."""
        if row.entry_id in self._known:
            return False
        self._known.add(row.entry_id)
        self.index.add(tokens(row.question, row.language),
                       filters={"queue": row.queue_id or NO_QUEUE, "language": row.language},
                       stored={"reply": row.reply, "case_id": row.case_id,
                               "entry_id": row.entry_id, "channel": row.channel,
                               "wrap_up": row.wrap_up_code or "",
                               "question": mask(row.question)[:_QUESTION_CHARS]})
        return True

    def search(self, question: str, *, language: str, queue_id: str | None,
               exclude_case: str | None = None, limit: int = 3) -> list[ReplySuggestion]:
        filters = {"language": language}
        if queue_id:
            filters["queue"] = queue_id
        hits = self.index.search(tokens(question, language), filters=filters,
                                 limit=limit * 5 + 5)
        out: list[ReplySuggestion] = []
        seen: set[str] = set()
        for hit in hits:
            f = hit.fields
            if f["case_id"] == exclude_case:
                continue
            key = _same_text(f["reply"])
            if key in seen:  # the same canned answer from many cases: show it once
                continue
            seen.add(key)
            out.append(ReplySuggestion(f["reply"], f["case_id"], f["entry_id"], f["channel"],
                                       f["wrap_up"] or None, hit.score, f["question"]))
            if len(out) == limit:
                break
        return out


def _same_text(text: str) -> str:
    return re.sub(r"\W+", " ", text.casefold()).strip()
