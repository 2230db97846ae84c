"""AssistService: what the desktop asks of agent assist, and the bus consumers that keep
its index up to date.

- Suggestions: for a case in hand, the customer's latest messages are the query; the
  answer is up to N agents' replies from resolved cases of the same queue and language
  and the best knowledge-base sections. Retrieval only, on the node, in milliseconds.
- Draft: with a model, a reply written from those same replies and articles, citing
  them; any failure answers with the retrieval suggestions and a short note.
- Summary: from the timeline; with a model, written by it (falls back the same way).
- Learning (assist/learning.py): the reply index kept up to date as cases close, on
  every node, and rebuilt from `assist_reply` at start.
- Hand-over: `task.moved` with reason `transfer` puts the summary on the timeline.

Nothing here sends anything to a customer: the desktop inserts a suggestion into the
reply box and the agent sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from assist.corpus import customer_question
from assist.drafting import Drafting
from assist.feedback import record_feedback, use_rate_by_queue
from assist.knowledge import ArticleMatch, KnowledgeBase
from assist.learning import Learning
from assist.ports import ChatModel, ModelUnavailable
from assist.prompts import (
    Source,
    citations,
    draft_messages,
    number_sources,
    summary_messages,
    wrap_up_messages,
)
from assist.replies import ReplyIndex, ReplySuggestion
from assist.summary import CaseSummary, render, summarise
from assist.text import detect_language
from cases import CaseService
from config.knowledge import load_articles
from config.schema import AssistSettings, CentraleConfig
from core.bus import EventBus, Subscription
from core.clock import Clock
from core.db import Database
from core.events import Event

log = logging.getLogger(__name__)

# The last timeline entries a suggestion reads: enough for the customer's latest
# messages past an IVR path and a few notes, few enough to read and build quickly.
QUERY_TIMELINE = 30


@dataclass
class Suggestions:
    case_id: str
    queue_id: str | None
    language: str
    question: str
    replies: list[ReplySuggestion] = field(default_factory=list)
    articles: list[ArticleMatch] = field(default_factory=list)
    model: bool = False  # a model is configured: the desktop may ask for a draft
    draft: dict[str, Any] | None = None
    note: str | None = None  # why there is no draft (quiet, for the agent)

    def view(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "queue_id": self.queue_id, "language": self.language,
                "question": self.question, "replies": [r.view() for r in self.replies],
                "articles": [a.view() for a in self.articles], "model": self.model,
                "draft": self.draft, "note": self.note}


class AssistService:
    def __init__(self, settings: AssistSettings, *, cases: CaseService, db: Database,
                 bus: EventBus, clock: Clock, knowledge_dir: Path, node_id: str = "node-1",
                 default_language: str = "en", wrap_up_codes: Sequence[tuple[str, str]] = (),
                 model: ChatModel | None = None) -> None:
        self.settings = settings
        self.cases = cases
        self.db = db
        self.bus = bus
        self.clock = clock
        self.knowledge_dir = knowledge_dir
        self.node_id = node_id
        self.default_language = default_language
        self.wrap_up_codes = list(wrap_up_codes)
        self.replies = ReplyIndex()
        self.knowledge = KnowledgeBase(default_language)
        self.drafting = Drafting(model, settings.model, clock.monotonic)
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.learning = Learning(self.replies, lambda: self.settings, cases=cases, db=db,
                                 bus=bus, clock=clock, default_language=default_language)

    @classmethod
    def from_config(cls, config: CentraleConfig, *, config_dir: Path, cases: CaseService,
                    db: Database, bus: EventBus, clock: Clock, node_id: str,
                    model: ChatModel | None) -> AssistService:
        return cls(config.assist, cases=cases, db=db, bus=bus, clock=clock,
                   knowledge_dir=config_dir / config.assist.knowledge_dir, node_id=node_id,
                   default_language=config.server.default_language,
                   wrap_up_codes=[(w.id, w.name or w.id) for w in config.wrap_up_codes],
                   model=model)

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        sections = await self.load_knowledge()
        log.info("assist starting", extra={"node": self.node_id, "kb_sections": sections,
                                           "model": self.drafting.available})
        self._subs.append(await self.bus.subscribe("*", self.handle, group="assist"))
        self._subs.append(await self.bus.subscribe("assist.learned",
                                                   self.learning.on_learned))
        self._tasks.append(asyncio.create_task(self.learning.rebuild(), name="assist-rebuild"))
        self._tasks.append(asyncio.create_task(self.learning.committer(),
                                               name="assist-commit"))

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.close()
        self._subs.clear()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.drafting.model is not None:
            await self.drafting.model.close()

    async def apply_config(self, config: CentraleConfig) -> None:
        """A reload: new knowledge-base articles, codes and limits, masking and time
        limits; `model.enabled: false` stops using the model at once. The HTTP client
        stays the one the node started with: a new endpoint, model name or key, or
        turning a model on, needs a restart."""
        self.settings = config.assist
        self.drafting.settings = config.assist.model
        self.wrap_up_codes = [(w.id, w.name or w.id) for w in config.wrap_up_codes]
        await self.load_knowledge()

    async def load_knowledge(self) -> int:
        articles, issues = load_articles(self.knowledge_dir)
        for issue in issues:  # check-config refuses these; a file edited since is skipped
            log.warning("knowledge base: %s", issue)
        return await asyncio.to_thread(self.knowledge.load, articles)

    # ------------------------------------------------------------------ events

    async def handle(self, event: Event) -> None:
        p = event.payload
        case_id = p.get("case_id")
        if not case_id:
            return
        if event.topic == "task.accepted" and p.get("queue_id"):
            await self.remember_queue(case_id, str(p["queue_id"]))
        elif (event.topic == "task.moved" and p.get("reason") == "transfer") \
                or event.topic == "task.transferred":
            await self._hand_over(case_id, p, event.event_id)
        elif event.topic == "case.closed":
            await self.learn_case(case_id)

    # the index's upkeep, for the wiring, tests and the bench
    async def remember_queue(self, case_id: str, queue_id: str) -> None:
        await self.learning.remember_queue(case_id, queue_id)

    async def queue_of(self, case_id: str) -> str | None:
        return await self.learning.queue_of(case_id)

    async def learn_case(self, case_id: str) -> int:
        return await self.learning.learn_case(case_id)

    async def index_case(self, case_id: str) -> int:
        return await self.learning.index_case(case_id)

    async def commit(self) -> int:
        return await self.learning.commit()

    @property
    def ready(self) -> asyncio.Event:
        return self.learning.ready

    async def _hand_over(self, case_id: str, payload: dict[str, Any], event_id: str) -> None:
        """A transfer: the summary goes on the timeline for whoever takes over (once per
        transfer event, however often it is delivered)."""
        summary = await self.summary(case_id)
        task_id = payload.get("task_id")
        await self.cases.add_timeline(
            case_id, kind="note", channel="internal", direction="internal",
            body="Hand-over summary\n" + summary.text,
            meta={"author": "assist", "summary": True, "written_by": summary.written_by,
                  "task_id": task_id, "from_agent_id": payload.get("agent_id")},
            dedup_key=f"assist:handover:{event_id}")

    # ------------------------------------------------------------------ the desktop

    async def suggest(self, case_id: str, *, queue_id: str | None = None) -> Suggestions:
        """Retrieval only: replies from resolved cases and knowledge-base sections."""
        snap = await self.cases.snapshot(case_id, timeline_limit=QUERY_TIMELINE)
        question = customer_question(snap.timeline, last_messages=self.settings.query_messages)
        language = snap.customer.language if snap.customer.language in ("en", "nl") else \
            detect_language(question, self.default_language)
        queue_id = queue_id or await self.queue_of(case_id)
        out = Suggestions(case_id, queue_id, language, question, model=self.drafting.available)
        if not question:
            return out
        out.replies = self.replies.search(question, language=language, queue_id=queue_id,
                                          exclude_case=case_id,
                                          limit=self.settings.suggestions)
        out.articles = self.knowledge.search(question, language=language, queue_id=queue_id,
                                             limit=self.settings.articles)
        return out

    async def draft(self, case_id: str, *, queue_id: str | None = None) -> Suggestions:
        """Suggestions plus, with a model, a reply draft grounded in them. The model's
        failure leaves the suggestions and a note."""
        out = await self.suggest(case_id, queue_id=queue_id)
        if not self.drafting.available:
            out.note = "No assistant model is configured; suggestions from earlier cases."
            return out
        if not out.question:
            out.note = "The customer has not written anything to answer yet."
            return out
        n = self.settings.model.context_items
        sources = number_sources(
            [(r.case_id, f"case {r.case_id}", r.text) for r in out.replies[:n]],
            [(f"{a.article_id}#{a.heading}", a.title + (f" — {a.heading}" if a.heading else ""),
              a.snippet) for a in out.articles[:n]])
        messages = draft_messages(out.question, sources, out.language, self.drafting.protect)
        try:
            text = await self.drafting.ask(messages)
        except ModelUnavailable as exc:
            out.note = f"The assistant model did not answer ({exc.reason}); " \
                       "showing suggestions from earlier cases."
            return out
        out.draft = {"text": text, "cited": [_source_view(s) for s in citations(text, sources)]}
        return out

    async def summary(self, case_id: str, *, use_model: bool = True) -> CaseSummary:
        """From the timeline; with a model configured, its wording of the same facts."""
        entries = await self.cases.timeline(case_id)
        summary = summarise(case_id, entries)
        if not use_model or not self.drafting.available or not summary.has_history:
            return summary
        try:
            text = await self.drafting.ask(summary_messages(render(summary),
                                                            self.drafting.protect))
        except ModelUnavailable as exc:
            log.info("summary of %s from the timeline: %s", case_id, exc.reason)
            return summary
        summary.text, summary.written_by = text, "model"
        return summary

    async def suggest_wrap_up(self, case_id: str, *, queue_id: str | None = None,
                              ) -> dict[str, Any]:
        """A wrap-up code: the model's pick (checked against the configured codes), else
        the most common code among the similar resolved cases."""
        out = await self.suggest(case_id, queue_id=queue_id)
        codes = {code for code, _ in self.wrap_up_codes}
        if self.drafting.available and codes and out.question:
            summary = summarise(case_id, await self.cases.timeline(case_id))
            try:
                answer = await self.drafting.ask(wrap_up_messages(
                    out.question, summary.text, self.wrap_up_codes, self.drafting.protect))
                picked = answer.strip().strip("`'\".").split()[0] if answer.strip() else ""
                if picked in codes:
                    return {"code": picked, "by": "model"}
            except ModelUnavailable:
                pass
        votes: dict[str, float] = {}
        for reply in out.replies:
            if reply.wrap_up_code and (not codes or reply.wrap_up_code in codes):
                votes[reply.wrap_up_code] = votes.get(reply.wrap_up_code, 0) + reply.score
        if not votes:
            return {"code": None, "by": None}
        return {"code": max(votes, key=lambda c: votes[c]), "by": "similar_cases"}

    # ------------------------------------------------------------------ feedback

    async def record_feedback(self, *, key: str, case_id: str, queue_id: str | None,
                              agent_id: str | None, source: str, source_ref: str | None,
                              outcome: str) -> bool:
        return await record_feedback(
            self.db, key=key, case_id=case_id,
            queue_id=queue_id or await self.queue_of(case_id), agent_id=agent_id,
            source=source, source_ref=source_ref, outcome=outcome, at=self.clock.now())

    async def use_rate(self, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return await use_rate_by_queue(self.db, start=start, end=end)


def _source_view(source: Source) -> dict[str, str]:
    return {"label": source.label, "kind": source.kind, "ref": source.ref,
            "title": source.title}
