"""Agent assist's REST endpoints: an agent gets suggestions, the summary and a wrap-up
code for the cases of their own tasks only (403 otherwise, 401 logged out); writes need
the CSRF token; feedback is validated and counted once per key; the use rate per queue
is for supervisors; a node without assist answers 501."""

from __future__ import annotations

from pathlib import Path

import pytest

from assist import AssistService
from cases import IdentityRef
from config.schema import AssistSettings
from tests.web.conftest import Web

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def env(make_web, tmp_path):  # type: ignore[no-untyped-def]
    web = await make_web()
    ctx = web.h.ctx
    assist = AssistService(AssistSettings(commit_interval_seconds=0.05), cases=ctx.cases,
                           db=ctx.db, bus=ctx.bus, clock=ctx.clock,
                           knowledge_dir=REPO / "examples" / "demo" / "knowledge",
                           default_language="nl")
    await assist.start()
    ctx.services["assist"] = assist
    # a resolved case to learn from, and anna's open case
    old = await ctx.cases.resolve(IdentityRef("whatsapp", "31611112222"))
    await assist.remember_queue(old.case.id, "support")
    await ctx.cases.add_timeline(old.case.id, kind="message", channel="whatsapp",
                                 direction="inbound", body="Mijn pakket is niet bezorgd")
    await ctx.cases.add_timeline(old.case.id, kind="message", channel="whatsapp",
                                 direction="outbound", body="Het pakket komt morgen.",
                                 meta={"agent_id": "bram"})
    await ctx.cases.close_case(old.case.id)
    res = await ctx.cases.resolve(IdentityRef("whatsapp", "31633334444"))
    await ctx.cases.add_timeline(res.case.id, kind="message", channel="whatsapp",
                                 direction="inbound", body="Waar blijft mijn pakket?")
    await web.h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                          channel="whatsapp", queue_id="support")
    await assist.remember_queue(res.case.id, "support")  # what task.accepted tells assist
    await web.settle()
    await assist.index_case(old.case.id)
    await assist.commit()
    yield web, assist, res.case.id, old.case.id
    await assist.stop()


async def test_an_agent_gets_suggestions_for_their_own_case(env) -> None:
    web, _assist, case_id, old = env
    await web.login("anna")
    resp = await web.client.get(f"/api/assist/cases/{case_id}/suggestions")
    assert resp.status == 200
    data = await resp.json()
    assert data["language"] == "nl"
    assert data["replies"][0] == {**data["replies"][0], "case_id": old,
                                  "text": "Het pakket komt morgen.", "kind": "case"}
    assert data["articles"][0]["article_id"] == "nl/bezorging"
    assert data["model"] is False
    resp = await web.client.get(f"/api/assist/cases/{case_id}/summary")
    assert resp.status == 200 and (await resp.json())["asked"] == ["Waar blijft mijn pakket?"]
    resp = await web.client.get(f"/api/assist/cases/{case_id}/wrap-up")
    assert resp.status == 200
    resp = await web.client.get(f"/api/assist/cases/{case_id}/suggestions?queue_id=nope")
    assert resp.status == 422 and "unknown queue" in (await resp.json())["error"]


async def test_another_agents_case_is_403_and_logged_out_is_401(env) -> None:
    web, _assist, case_id, _old = env
    for path in (f"/api/assist/cases/{case_id}/suggestions",
                 f"/api/assist/cases/{case_id}/summary", f"/api/assist/cases/{case_id}/wrap-up"):
        assert (await web.client.get(path)).status == 401
    csrf = await web.login("bram")
    for path in (f"/api/assist/cases/{case_id}/suggestions",
                 f"/api/assist/cases/{case_id}/summary", f"/api/assist/cases/{case_id}/wrap-up"):
        resp = await web.client.get(path)
        assert resp.status == 403, path
    resp = await web.post_json(f"/api/assist/cases/{case_id}/draft", {}, csrf)
    assert resp.status == 403
    resp = await web.post_json("/api/assist/feedback", {
        "key": "fb-123456789", "case_id": case_id, "source": "case", "outcome": "used"}, csrf)
    assert resp.status == 403
    resp = await web.client.get("/api/assist/cases/nope/suggestions")
    assert resp.status == 404


async def test_writes_need_the_csrf_token(env) -> None:
    web, assist, case_id, _old = env
    await web.login("anna")
    resp = await web.post_json("/api/assist/feedback", {
        "key": "fb-123456789", "case_id": case_id, "source": "case", "outcome": "used"}, None)
    assert resp.status == 403 and "CSRF" in (await resp.json())["error"]
    resp = await web.post_json(f"/api/assist/cases/{case_id}/draft", {}, None)
    assert resp.status == 403
    assert await assist.use_rate(start=_long_ago(), end=_far_ahead()) == []


async def test_draft_without_a_model_is_the_suggestions_and_a_note(env) -> None:
    web, _assist, case_id, old = env
    csrf = await web.login("anna")
    resp = await web.post_json(f"/api/assist/cases/{case_id}/draft", {}, csrf)
    assert resp.status == 200
    data = await resp.json()
    assert data["draft"] is None and data["replies"][0]["case_id"] == old
    assert data["note"] == "No assistant model is configured; suggestions from earlier cases."


async def test_feedback_is_validated_counted_once_and_makes_the_use_rate(env) -> None:
    web, _assist, case_id, _old = env
    csrf = await web.login("anna")
    bad = await web.post_json("/api/assist/feedback", {
        "key": "fb-123456789", "case_id": case_id, "source": "case", "outcome": "loved"}, csrf)
    assert bad.status == 422 and "outcome" in (await bad.json())["error"]
    bad = await web.post_json("/api/assist/feedback", {
        "key": "x", "case_id": case_id, "source": "case", "outcome": "used"}, csrf)
    assert bad.status == 422
    for key, outcome in (("fb-aaaaaaaa1", "used"), ("fb-aaaaaaaa2", "edited"),
                         ("fb-aaaaaaaa3", "ignored"), ("fb-aaaaaaaa4", "ignored")):
        resp = await web.post_json("/api/assist/feedback", {
            "key": key, "case_id": case_id, "source": "case", "outcome": outcome}, csrf)
        assert resp.status == 201
    again = await web.post_json("/api/assist/feedback", {
        "key": "fb-aaaaaaaa1", "case_id": case_id, "source": "case", "outcome": "used"}, csrf)
    assert again.status == 200 and (await again.json())["recorded"] is False
    assert (await web.client.get("/api/assist/use-rate")).status == 403  # agents: no
    await web.client.post("/logout", data={"csrf_token": csrf})
    sup = Web(web.client, web.h)
    await sup.login("sam")
    resp = await sup.client.get("/api/assist/use-rate")
    assert resp.status == 200
    rows = (await resp.json())["rows"]
    assert rows == [{"queue_id": "support", "suggestions": 4, "used": 1,
                     "edited": 1, "ignored": 2, "use_rate": 0.5}]
    assert (await sup.client.get("/api/assist/use-rate?from=garbage")).status == 400


async def test_a_node_without_assist_answers_501(make_web) -> None:
    web = await make_web()
    res = await web.h.ctx.cases.resolve(IdentityRef("whatsapp", "31655556666"))
    await web.h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                          channel="whatsapp")
    await web.settle()
    await web.login("anna")
    resp = await web.client.get(f"/api/assist/cases/{res.case.id}/suggestions")
    assert resp.status == 501


def _long_ago():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime
    return datetime(2000, 1, 1, tzinfo=UTC)


def _far_ahead():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime
    return datetime(2100, 1, 1, tzinfo=UTC)
