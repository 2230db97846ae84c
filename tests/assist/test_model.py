"""The optional model through the chat-completions protocol, against a local server
that speaks it: plain and streamed answers; the prompt carries the retrieved replies and
articles and the draft cites them; phone numbers, e-mail addresses and IBANs masked
when configured; a 429, a model that never answers, malformed JSON and a garbage stream
all leave the agent with the retrieval suggestions and a quiet note."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from centrale.model_client import ChatCompletionsClient
from config.schema import AssistModel
from tests.assist.chat_server import ChatServer
from tests.assist.seeding import make_assist, open_case, resolved_case, settled

REPO = Path(__file__).resolve().parents[2]
KNOWLEDGE = REPO / "examples" / "demo" / "knowledge"
REPLY = ("Sorry for the delay! Your parcel is at the depot and will be delivered tomorrow. "
         "You'll get a new tracking link tonight.")
QUESTION = ("Where is my parcel? It is late. Call me on +31 6 1234 5678 or mail "
            "eva.deboer@example.com; refund to NL91 ABNA 0417 1643 00 if lost.")


@pytest.fixture
async def server():  # type: ignore[no-untyped-def]
    s = ChatServer()
    await s.start()
    yield s
    await s.stop()


async def _assist(database, tmp_path, server, **model):  # type: ignore[no-untyped-def]
    settings = AssistModel(enabled=True, base_url=server.base_url, model="llama3.1",
                           timeout_seconds=model.pop("timeout_seconds", 5),
                           cooldown_seconds=model.pop("cooldown_seconds", 0), **model)
    client = ChatCompletionsClient(settings, api_key="sk-test-key")
    assist, cases, bus = make_assist(
        database, knowledge_dir=KNOWLEDGE, model=client, model_settings=settings,
        wrap_up_codes=[("resolved", "Resolved"), ("follow_up", "Needs follow-up")])
    await assist.start()
    seeded = await resolved_case(cases, assist, number="31611110000", language="en",
                                 asked=["My parcel has not been delivered, it is late."],
                                 reply=REPLY, wrap_up="follow_up")
    await settled(assist, bus)
    asking = await open_case(cases, number="31622220000", asked=[QUESTION], language="en")
    return assist, cases, seeded, asking


@pytest.mark.parametrize("mode", ["json", "stream"])
async def test_the_draft_is_grounded_in_the_retrieved_context_and_cites_it(
        database, tmp_path, server, mode: str) -> None:
    server.mode = mode
    server.answer = ("Sorry for the delay: your parcel will be delivered tomorrow [C1]. If "
                     "tracking stands still for 3 days we send a replacement [K1]. [C7]")
    assist, _cases, seeded, asking = await _assist(database, tmp_path, server,
                                                   stream=mode == "stream")
    try:
        got = await assist.draft(asking, queue_id="support")
        assert got.note is None
        assert got.draft is not None and got.draft["text"] == server.answer
        cited = {c["label"]: c for c in got.draft["cited"]}
        assert set(cited) == {"C1", "K1"}  # [C7] names nothing that was sent
        assert cited["C1"]["ref"] == seeded
        assert cited["K1"]["ref"].startswith("en/delivery#")
        # the prompt carries the retrieved reply and article section, labelled
        request = server.requests[-1]
        assert request["model"] == "llama3.1" and request["stream"] is (mode == "stream")
        prompt = server.last_prompt
        assert f"[C1] (earlier reply: case {seeded})\n{REPLY}" in prompt
        assert "[K1] (article: Parcel not delivered — " in prompt
        assert "cite its label in square brackets" in prompt
        assert server.headers[-1]["Authorization"] == "Bearer sk-test-key"
        # the retrieval suggestions are there too
        assert got.replies[0].case_id == seeded
    finally:
        await assist.stop()


async def test_personal_data_is_masked_before_it_leaves_the_node(database, tmp_path,
                                                                 server) -> None:
    assist, _cases, _seeded, asking = await _assist(database, tmp_path, server,
                                                    mask_personal_data=True)
    try:
        await assist.draft(asking, queue_id="support")
        prompt = server.last_prompt
        for secret in ("6 1234 5678", "eva.deboer@example.com", "NL91 ABNA 0417 1643 00"):
            assert secret not in prompt
        assert "Call me on [phone] or mail [email]; refund to [iban] if lost." in prompt
    finally:
        await assist.stop()


async def test_masking_can_be_switched_off(database, tmp_path, server) -> None:
    assist, _cases, _seeded, asking = await _assist(database, tmp_path, server,
                                                    mask_personal_data=False)
    try:
        await assist.draft(asking, queue_id="support")
        assert QUESTION in server.last_prompt
    finally:
        await assist.stop()


@pytest.mark.parametrize(("mode", "note"), [
    ("429", "rate limited (429), retry after 20 s"),
    ("hang", "no answer within 0.5 s"),
    ("malformed", "the model's answer is not JSON"),
    ("garbage_stream", "the model's stream holds a chunk that is not JSON"),
    ("500", "the model server answered HTTP 500"),
])
async def test_a_failing_model_leaves_the_retrieval_suggestions_and_a_note(
        database, tmp_path, server, mode: str, note: str) -> None:
    server.mode = mode
    assist, _cases, seeded, asking = await _assist(database, tmp_path, server,
                                                   stream=mode == "garbage_stream",
                                                   timeout_seconds=0.5)
    try:
        started = time.monotonic()
        got = await assist.draft(asking, queue_id="support")
        assert time.monotonic() - started < 3  # the agent is never kept waiting long
        assert got.draft is None
        assert got.note == (f"The assistant model did not answer ({note}); "
                            "showing suggestions from earlier cases.")
        assert got.replies[0].case_id == seeded
        assert got.articles and got.articles[0].article_id == "en/delivery"
        # the summary falls back to the timeline's
        summary = await assist.summary(seeded)
        assert summary.written_by == "timeline"
    finally:
        await assist.stop()


async def test_after_a_failure_the_model_rests_instead_of_delaying_every_agent(
        database, tmp_path, server) -> None:
    server.mode = "429"
    assist, _cases, _seeded, asking = await _assist(database, tmp_path, server,
                                                    cooldown_seconds=600)
    try:
        await assist.draft(asking, queue_id="support")
        asked = len(server.requests)
        got = await assist.draft(asking, queue_id="support")
        assert len(server.requests) == asked  # not asked again during the pause
        assert "paused after an error (rate limited (429)" in (got.note or "")
        assert got.replies
    finally:
        await assist.stop()


async def test_summary_and_wrap_up_code_written_by_the_model(database, tmp_path,
                                                             server) -> None:
    assist, _cases, seeded, asking = await _assist(database, tmp_path, server)
    try:
        server.answer = "Customer waited for a late parcel; agent promised a new date."
        summary = await assist.summary(seeded)
        assert (summary.written_by, summary.text) == ("model", server.answer)
        assert "Customer asked: “My parcel has not been delivered, it is late.”" \
            in server.last_prompt
        server.answer = "follow_up"
        assert await assist.suggest_wrap_up(asking, queue_id="support") == {
            "code": "follow_up", "by": "model"}
        assert "- follow_up: Needs follow-up" in server.last_prompt
        server.answer = "escalate_to_ceo"  # not a configured code: similar cases decide
        assert await assist.suggest_wrap_up(asking, queue_id="support") == {
            "code": "follow_up", "by": "similar_cases"}
    finally:
        await assist.stop()


def test_the_api_key_is_never_in_the_client_repr() -> None:
    client = ChatCompletionsClient(AssistModel(enabled=True), api_key="sk-secret-123")
    assert "sk-secret-123" not in repr(client)


async def test_a_reload_that_turns_the_model_off_stops_using_it_at_once(
        database, tmp_path, server) -> None:
    assist, _cases, _seeded, asking = await _assist(database, tmp_path, server)
    try:
        await assist.draft(asking, queue_id="support")
        asked = len(server.requests)
        settings = assist.settings.model_copy(update={
            "model": assist.settings.model.model_copy(update={"enabled": False})})
        config = _config_with(settings)
        await assist.apply_config(config)
        got = await assist.draft(asking, queue_id="support")
        assert got.model is False and got.draft is None
        assert (await assist.summary(asking)).written_by == "timeline"
        assert len(server.requests) == asked
    finally:
        await assist.stop()


def _config_with(assist_settings):  # type: ignore[no-untyped-def]
    from config.schema import CentraleConfig

    return CentraleConfig(assist=assist_settings.model_copy(
        update={"knowledge_dir": str(KNOWLEDGE)}))
