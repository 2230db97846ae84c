"""The survey after a conversation: when a WhatsApp, webchat or SMS conversation ends,
the customer gets one CSAT (1–5) or NPS (0–10) question — on WhatsApp as a list of
quick replies — unless surveyed within `period_days`. The answer lands on the case
timeline and goes out as `survey.answered`, which `reports/` turns into CSAT and NPS.

An answer out of range (or not a number) is asked once more; a second one is recorded
as "no answer". A longer text is not taken for an answer: the survey ends without one
and the message is routed like any other (the customer has a new question).

Config: `reports.conversation_survey`; definitions: docs/kpis.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from cases import CaseService
from config.schema import CentraleConfig
from core.bus import EventBus, Subscription
from core.clock import Clock
from core.db import Database
from core.events import Event
from core.ids import new_id
from digital.adapter import Prepared
from digital.conversations import ConversationService
from digital.tables import ConversationSurveyRow, DigitalMessage

log = logging.getLogger(__name__)

RANGES = {"csat": (1, 5), "nps": (0, 10)}
QUESTIONS = {
    "csat": "How satisfied are you with our help? Answer 1 (very unsatisfied) to "
            "5 (very satisfied).",
    "nps": "How likely are you to recommend us to a friend? Answer 0 (not at all) to "
           "10 (extremely likely).",
}
RETRIES = {"csat": "Please answer with a number from 1 to 5.",
           "nps": "Please answer with a number from 0 to 10."}
CSAT_LABELS = {1: "Very unsatisfied", 2: "Unsatisfied", 3: "Neutral", 4: "Satisfied",
               5: "Very satisfied"}
ANSWER_WINDOW = timedelta(hours=24)  # an answer later than this is a new message
ANSWER_ID = re.compile(r"^survey:(\d{1,2})$")


class ConversationSurveys:
    def __init__(self, db: Database, bus: EventBus, clock: Clock, cases: CaseService,
                 conversations: ConversationService,
                 config: Callable[[], CentraleConfig]) -> None:
        self.db, self.bus, self.clock, self.cases = db, bus, clock, cases
        self.conversations = conversations
        self.config = config
        self._sub: Subscription | None = None
        conversations.inbound_hooks.append(self.take_answer)

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self.bus.subscribe("conversation.ended", self.on_ended,
                                                 group="digital-surveys")

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.close()
            self._sub = None

    # ---- asking ----------------------------------------------------------------------

    async def on_ended(self, event: Event) -> None:
        settings = self.config().reports.conversation_survey
        p = event.payload
        channel, conv_id = p.get("channel"), p.get("conversation_id")
        if channel not in settings.channels or not isinstance(conv_id, str):
            return
        conv = await self.conversations.get(conv_id)
        now = self.clock.now()
        since = now - timedelta(days=settings.period_days)
        async with self.db.session() as s:
            recent = (await s.exec(select(ConversationSurveyRow.id).where(
                ConversationSurveyRow.customer_id == conv.customer_id,
                col(ConversationSurveyRow.asked_at) >= since))).first()
        if recent is not None:
            return  # surveyed within the period (or this conversation's event again)
        if await self.cases.has_entry_since(conv.customer_id, "survey", since):
            return  # asked on another channel within the period (a call's survey)
        survey = ConversationSurveyRow(
            id=new_id(), conversation_id=conv.id, case_id=conv.case_id,
            customer_id=conv.customer_id, channel=conv.channel, contact=conv.contact,
            kind=settings.kind, queue_id=conv.queue_id, agent_id=conv.agent_id,
            task_id=conv.task_id, asked_at=now)
        try:
            async with self.db.session() as s:
                s.add(survey)
                await s.commit()
        except IntegrityError:
            return  # another node asks
        question = settings.question or QUESTIONS[settings.kind]
        window = await self.conversations.window(conv.id)
        if window.open:
            result = await self.conversations.send_system(
                conv.id, question, interactive=self._quick_replies(conv.channel,
                                                                   settings.kind, question))
        elif settings.whatsapp_template and conv.channel == "whatsapp":
            result = await self.conversations.send_system(
                conv.id, question, template={"name": settings.whatsapp_template,
                                             "language": {"code": settings.template_language}})
        else:
            result = None
        if result is None or not result.ok:
            log.info("survey for conversation %s not sent: %s", conv.id,
                     "window closed" if result is None else result.reason)
            await self._finish(survey, None, state="not_sent")

    @staticmethod
    def _quick_replies(channel: str, kind: str, question: str) -> dict[str, Any] | None:
        """WhatsApp: a list message (its rows are quick replies; buttons stop at 3,
        rows at 10, so NPS's 11 answers are typed). Webchat: a button per answer under
        the question (the widget sends the button's id with its text). SMS has no
        buttons: the question itself names the answers, the reply is typed."""
        low, high = RANGES[kind]
        if channel == "webchat":
            options = [{"id": f"survey:{n}", "title": str(n)} for n in range(high, low - 1, -1)]
            return {"type": "quick_replies", "options": options}
        if channel != "whatsapp" or kind != "csat":
            return None
        rows = [{"id": f"survey:{n}", "title": str(n), "description": CSAT_LABELS[n]}
                for n in range(5, 0, -1)]
        return {"type": "list", "body": {"text": question[:1024]},
                "action": {"button": "Answer", "sections": [{"title": "Your rating",
                                                             "rows": rows}]}}

    # ---- answers -----------------------------------------------------------------------

    async def take_answer(self, row: DigitalMessage, prepared: Prepared) -> bool:
        """The inbound hook: True when the message answered (or failed to answer) a
        pending survey of this contact.

        Only channels that ask surveys look one up: every inbound message passes here,
        on the routing path of the screen-pop, and a channel without surveys (the
        default: none) has nothing to answer. Turning a channel's survey off therefore
        also stops taking answers to questions it asked before (they stay `asked`)."""
        if row.channel not in self.config().reports.conversation_survey.channels:
            return False
        since = self.clock.now() - ANSWER_WINDOW
        async with self.db.session() as s:
            survey = (await s.exec(select(ConversationSurveyRow).where(
                ConversationSurveyRow.channel == row.channel,
                ConversationSurveyRow.contact == prepared.contact,
                ConversationSurveyRow.state == "asked",
                col(ConversationSurveyRow.asked_at) >= since,
            ).order_by(col(ConversationSurveyRow.asked_at).desc()))).first()
        if survey is None:
            return False
        text = (row.body or "").strip()
        reply = (row.payload or {}).get("reply") or {}
        chosen = ANSWER_ID.match(str(reply.get("id") or ""))
        candidate = chosen.group(1) if chosen else text
        if not re.fullmatch(r"\d{1,3}", candidate):
            if len(text) > 3 or row.kind not in ("text", "interactive"):
                await self._finish(survey, None, state="no_answer", row=row)
                return False  # a new question, not an answer: route it
            return await self._invalid(survey, row)
        score = int(candidate)
        low, high = RANGES[survey.kind]
        if not low <= score <= high:
            return await self._invalid(survey, row)
        await self._finish(survey, score, state="answered", row=row)
        await self.conversations.send_system(
            survey.conversation_id, self.config().reports.conversation_survey.thanks)
        return True

    async def _invalid(self, survey: ConversationSurveyRow, row: DigitalMessage) -> bool:
        if survey.attempts == 0:
            async with self.db.session() as s:
                stored = await s.get(ConversationSurveyRow, survey.id)
                if stored is not None:
                    stored.attempts = 1
                    s.add(stored)
                    await s.commit()
            settings = self.config().reports.conversation_survey
            question = settings.question or QUESTIONS[survey.kind]
            await self.conversations.send_system(
                survey.conversation_id, settings.retry or RETRIES[survey.kind],
                interactive=self._quick_replies(survey.channel, survey.kind, question))
            return True
        await self._finish(survey, None, state="no_answer", row=row)
        return True

    async def _finish(self, survey: ConversationSurveyRow, score: int | None, *,
                      state: str, row: DigitalMessage | None = None) -> None:
        async with self.db.session() as s:
            stored = await s.get(ConversationSurveyRow, survey.id)
            if stored is None or stored.state != "asked":
                return  # finished already (a replayed message)
            stored.state, stored.score = state, score
            stored.answered_at = self.clock.now()
            s.add(stored)
            await s.commit()
        if state == "not_sent":
            return
        label = "CSAT" if survey.kind == "csat" else "NPS"
        body = f"Survey ({label}): {score}" if score is not None else \
            f"Survey ({label}): no answer"
        await self.cases.add_timeline(
            survey.case_id, kind="survey", channel=survey.channel, direction="inbound",
            body=body, meta={"survey_id": survey.id, "kind": survey.kind, "score": score,
                             "conversation_id": survey.conversation_id,
                             "message_id": row.id if row else None},
            dedup_key=f"survey:{survey.id}")
        await self.bus.publish(Event("survey.answered", {
            "survey_id": survey.id, "kind": survey.kind, "score": score,
            "case_id": survey.case_id, "customer_id": survey.customer_id,
            "task_id": survey.task_id, "queue_id": survey.queue_id,
            "agent_id": survey.agent_id, "channel": survey.channel}))
