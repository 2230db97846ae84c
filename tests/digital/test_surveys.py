"""The survey after a WhatsApp conversation, as the customer lives it: the conversation
ends, a CSAT question arrives as a list of quick replies, the customer taps "4" (a real
interactive list_reply webhook, signed like Meta's), and the answer is on the case
timeline and in the reports' CSAT. Out of range → asked again once, then no answer; a
second conversation within the period is not surveyed; a real question is routed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from cases import IdentityRef
from config.schema.reports import ConversationSurvey, ReportsSettings
from core.db import Database
from core.events import Event
from digital.tables import Conversation, ConversationSurveyRow
from reports import ReportService
from tests.waiting import wait_until

from .conftest import FakeGraph, Stack, make_config, make_stack, wa_payload, wa_text


@pytest.fixture
async def survey_stack(database: Database, tmp_path: Path, graph: FakeGraph,
                       ) -> AsyncIterator[tuple[Stack, list[Event]]]:
    config = make_config(graph_url=graph.base_url)
    config = config.model_copy(update={"reports": ReportsSettings(
        conversation_survey=ConversationSurvey(channels=["whatsapp"], period_days=30))})
    st, client = await make_stack(database, tmp_path, config)
    graph.webhook_url = str(client.make_url("/webhooks/whatsapp"))
    answers: list[Event] = []

    async def keep(event: Event) -> None:
        answers.append(event)

    await st.bus.subscribe("survey.answered", keep)
    try:
        yield st, answers
    finally:
        await client.close()
        await st.digital.stop()


def list_reply(wa_id: str, row_id: str, title: str) -> dict[str, Any]:
    return {"from": wa_id, "id": f"wamid.in.{row_id}.{title}", "timestamp": "1767600000",
            "type": "interactive", "interactive": {
                "type": "list_reply", "list_reply": {"id": row_id, "title": title}}}


async def end_conversation(st: Stack, wa_id: str, text: str) -> Conversation:
    assert (await st.post_wa(wa_payload([wa_text(wa_id, text)]))).status == 200
    await st.drain()
    async with st.db.session() as s:
        conv = (await s.exec(select(Conversation).where(Conversation.contact == wa_id)
                             .order_by(Conversation.created_at.desc()))).first()  # type: ignore[attr-defined]
    assert conv is not None
    await st.acd.accept(conv.task_id, "anna")
    await st.conversation_state(conv.id, "assigned")
    await st.acd.complete(conv.task_id, "resolved")
    await st.conversation_state(conv.id, "ended")
    return conv


def surveys_sent(graph: FakeGraph, wa_id: str) -> list[dict[str, Any]]:
    return [m for m in graph.sent if m.get("to") == wa_id and (
        m.get("type") == "interactive" or "number from" in str(m.get("text", {})))]


async def test_quick_reply_answer_reaches_timeline_and_csat(
        survey_stack, graph: FakeGraph, database: Database) -> None:
    st, answers = survey_stack
    reports = ReportService(database, st.bus, st.cases.clock, lambda: st.config)
    await reports.start()
    try:
        conv = await end_conversation(st, "31611112222", "Mijn bestelling is kapot")
        await wait_until(lambda: len(surveys_sent(graph, "31611112222")) == 1)
        question = surveys_sent(graph, "31611112222")[0]
        rows = question["interactive"]["action"]["sections"][0]["rows"]
        assert [r["id"] for r in rows] == [f"survey:{n}" for n in (5, 4, 3, 2, 1)]
        tasks_before = len(st.acd.tasks)

        resp = await st.post_wa(wa_payload([list_reply("31611112222", "survey:4", "4")]))
        assert resp.status == 200
        await st.drain()
        await wait_until(lambda: len(answers) == 1)
        assert (answers[0].payload["kind"], answers[0].payload["score"]) == ("csat", 4)
        assert answers[0].payload["case_id"] == conv.case_id
        assert len(st.acd.tasks) == tasks_before  # an answer is not a new contact
        timeline = await st.cases.timeline(conv.case_id)
        assert any(t.kind == "survey" and t.body == "Survey (CSAT): 4" for t in timeline)
        await wait_until(lambda: any(m.get("text", {}).get("body") == "Thank you for your answer."
                                for m in graph.sent))

        async def recorded() -> bool:
            kpis = await reports.kpis(datetime(2000, 1, 1, tzinfo=UTC),
                                      datetime(2100, 1, 1, tzinfo=UTC))
            return kpis["csat"]["answers"] == 1 and kpis["csat"]["csat"] == 1.0
        await wait_until(recorded)

        # the same customer again within the period: no second survey
        await end_conversation(st, "31611112222", "Nog een vraag")
        await asyncio.sleep(0.2)  # the survey consumer has had its chance
        assert len(surveys_sent(graph, "31611112222")) == 1
    finally:
        await reports.stop()


async def test_out_of_range_is_asked_again_once_then_no_answer(
        survey_stack, graph: FakeGraph) -> None:
    st, answers = survey_stack
    conv = await end_conversation(st, "31633334444", "Hallo")
    await wait_until(lambda: len(surveys_sent(graph, "31633334444")) == 1)
    await st.post_wa(wa_payload([wa_text("31633334444", "7")]))
    await st.drain()
    await wait_until(lambda: len(surveys_sent(graph, "31633334444")) == 2)  # asked again
    assert answers == []
    await st.post_wa(wa_payload([wa_text("31633334444", "0")]))
    await st.drain()
    await wait_until(lambda: len(answers) == 1)
    assert answers[0].payload["score"] is None
    timeline = await st.cases.timeline(conv.case_id)
    assert any(t.body == "Survey (CSAT): no answer" for t in timeline)
    async with st.db.session() as s:
        (row,) = list(await s.exec(select(ConversationSurveyRow).where(
            ConversationSurveyRow.conversation_id == conv.id)))
    assert (row.state, row.attempts, row.score) == ("no_answer", 1, None)


async def test_a_real_question_after_the_survey_is_routed(
        survey_stack, graph: FakeGraph) -> None:
    st, answers = survey_stack
    await end_conversation(st, "31655556666", "Hallo")
    await wait_until(lambda: len(surveys_sent(graph, "31655556666")) == 1)
    tasks = len(st.acd.tasks)
    await st.post_wa(wa_payload([wa_text("31655556666", "Waar is mijn pakket nu?")]))
    await st.drain()
    assert len(st.acd.tasks) == tasks + 1  # a new contact for an agent
    await wait_until(lambda: len(answers) == 1)
    assert answers[0].payload["score"] is None
    res = await st.cases.resolve(IdentityRef("whatsapp", "31655556666"))
    assert any(t.body == "Waar is mijn pakket nu?" for t in await st.cases.timeline(
        res.case.id))


# ---- webchat and SMS: the same survey through each channel's own entry point ---------

async def _channels_stack(database: Database, tmp_path: Path, **urls: str) -> tuple[Stack, Any]:
    config = make_config(**urls).model_copy(update={"reports": ReportsSettings(
        conversation_survey=ConversationSurvey(channels=["webchat", "sms"], period_days=30))})
    return await make_stack(database, tmp_path, config)


async def _end(st: Stack, contact: str) -> Conversation:
    async with st.db.session() as s:
        conv = (await s.exec(select(Conversation).where(Conversation.contact == contact)
                             .order_by(Conversation.created_at.desc()))).first()  # type: ignore[attr-defined]
    assert conv is not None
    await st.acd.accept(conv.task_id, "anna")
    await st.conversation_state(conv.id, "assigned")
    await st.acd.complete(conv.task_id, "resolved")
    await st.conversation_state(conv.id, "ended")
    return conv


async def _csat_is(reports: ReportService, answers: int, share: float) -> bool:
    kpis = await reports.kpis(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    return kpis["csat"]["answers"] == answers and kpis["csat"]["csat"] == share


async def test_webchat_survey_buttons_answered_over_the_websocket(
        database: Database, tmp_path: Path) -> None:
    from .test_webchat import ORIGIN, recv

    st, client = await _channels_stack(database, tmp_path)
    reports = ReportService(database, st.bus, st.cases.clock, lambda: st.config)
    await reports.start()
    answers: list[Event] = []

    async def keep(event: Event) -> None:
        answers.append(event)

    await st.bus.subscribe("survey.answered", keep)
    try:
        ws = await st.client.ws_connect("/webchat/ws", headers=ORIGIN)
        await ws.send_json({"type": "hello", "last_seq": 0, "name": "Vera"})
        welcome = await recv(ws, "welcome")
        await ws.send_json({"type": "message", "client_id": "c1", "text": "Waar blijft het?"})
        assert (await recv(ws, "ack"))["seq"] == 1
        await st.drain()
        conv = await _end(st, welcome["session"])

        question = await recv(ws, "message")  # the survey, pushed when the chat ended
        assert question["from"] == "agent" and "How satisfied" in question["text"]
        assert [q["id"] for q in question["quick_replies"]] == \
            [f"survey:{n}" for n in (5, 4, 3, 2, 1)]
        tasks_before = len(st.acd.tasks)
        # the visitor taps "2" (the widget sends the button's title and id)
        await ws.send_json({"type": "message", "client_id": "c2", "text": "2",
                            "reply": "survey:2"})
        await recv(ws, "ack")
        await st.drain()
        await wait_until(lambda: len(answers) == 1)
        p = answers[0].payload
        assert (p["kind"], p["score"], p["channel"], p["case_id"]) == \
            ("csat", 2, "webchat", conv.case_id)
        assert len(st.acd.tasks) == tasks_before  # an answer is no new contact
        thanks = await recv(ws, "message")
        assert thanks["text"] == "Thank you for your answer." and "quick_replies" not in thanks
        timeline = await st.cases.timeline(conv.case_id)
        assert any(t.kind == "survey" and t.body == "Survey (CSAT): 2" for t in timeline)
        await wait_until(lambda: _csat_is(reports, 1, 0.0))  # a 2 is not satisfied

        # a bad reply id is a clear protocol error, not a crash
        await ws.send_json({"type": "message", "client_id": "c3", "text": "x", "reply": 7})
        error = await recv(ws, "error")
        assert error["code"] == "bad_frame" and "reply" in error["message"]
        await ws.close()
    finally:
        await reports.stop()
        await client.close()
        await st.digital.stop()


async def test_sms_survey_answered_by_signed_twilio_webhooks(
        database: Database, tmp_path: Path) -> None:
    from .test_twilio import PUBLIC, FakeTwilio, post_form, sms

    twilio = FakeTwilio()
    runner = await twilio.start()
    st, client = await _channels_stack(database, tmp_path, twilio_url=twilio.base_url,
                                       public_url=PUBLIC)
    reports = ReportService(database, st.bus, st.cases.clock, lambda: st.config)
    await reports.start()
    answers: list[Event] = []

    async def keep(event: Event) -> None:
        answers.append(event)

    await st.bus.subscribe("survey.answered", keep)
    number = "+31612349999"

    def to_customer() -> list[str]:
        return [m["Body"] for m in twilio.sent if m.get("To") == number]

    try:
        assert (await post_form(st, "/webhooks/twilio/sms",
                                sms("SMa1", "Mijn factuur klopt niet", number))).status == 200
        await st.drain()
        conv = await _end(st, number)
        await wait_until(lambda: any("How satisfied" in b for b in to_customer()))
        # 9 is out of range: asked again once; then 5
        await post_form(st, "/webhooks/twilio/sms", sms("SMa2", "9", number))
        await st.drain()
        await wait_until(lambda: "Please answer with a number from 1 to 5." in to_customer())
        assert answers == []
        await post_form(st, "/webhooks/twilio/sms", sms("SMa3", "5", number))
        await st.drain()
        await wait_until(lambda: len(answers) == 1)
        assert (answers[0].payload["score"], answers[0].payload["channel"]) == (5, "sms")
        await wait_until(lambda: "Thank you for your answer." in to_customer())
        timeline = await st.cases.timeline(conv.case_id)
        assert any(t.kind == "survey" and t.body == "Survey (CSAT): 5" for t in timeline)
        await wait_until(lambda: _csat_is(reports, 1, 1.0))
        assert len(st.acd.tasks) == 1  # neither answer became a contact
    finally:
        await reports.stop()
        await client.close()
        await st.digital.stop()
        await runner.cleanup()


async def test_a_customer_surveyed_after_a_call_is_not_asked_again_in_the_chat(
        survey_stack, graph: FakeGraph) -> None:
    st, _answers = survey_stack
    res = await st.cases.resolve(IdentityRef("whatsapp", "31677778888"))
    # what the voice service writes when the caller was asked after a call
    await st.cases.add_timeline(res.case.id, kind="survey", channel="voice",
                                direction="outbound", body="Survey (CSAT) asked after the call",
                                meta={"event": "asked"})
    await end_conversation(st, "31677778888", "Nog iets")
    await asyncio.sleep(0.2)  # the survey consumer has had its chance
    assert surveys_sent(graph, "31677778888") == []


async def test_a_channel_whose_survey_is_off_routes_a_number_to_an_agent(
        survey_stack, graph: FakeGraph) -> None:
    """Only surveyed channels look a survey up (every inbound message passes the hook, on
    the screen-pop's path): with the channel's survey turned off, a "5" is a message."""
    st, answers = survey_stack
    conv = await end_conversation(st, "31677778888", "Hallo")
    await wait_until(lambda: len(surveys_sent(graph, "31677778888")) == 1)
    st.digital.config = st.config.model_copy(update={"reports": ReportsSettings(
        conversation_survey=ConversationSurvey(channels=[]))})
    tasks = len(st.acd.tasks)
    await st.post_wa(wa_payload([wa_text("31677778888", "5")]))
    await st.drain()
    assert len(st.acd.tasks) == tasks + 1 and answers == []
    async with st.db.session() as s:
        (row,) = list(await s.exec(select(ConversationSurveyRow).where(
            ConversationSurveyRow.conversation_id == conv.id)))
    assert row.state == "asked"
