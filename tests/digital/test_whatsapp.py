"""WhatsApp Cloud API end to end: signed webhooks in, the Graph stand-in out."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from sqlmodel import func, select

from digital.tables import Conversation, DeliveryStatus, DigitalMessage, SendAttempt, WaContact
from tests.waiting import wait_until

from .conftest import (
    PHONE_NUMBER_ID,
    VERIFY_TOKEN,
    FakeGraph,
    Stack,
    raw_http_post,
    wa_payload,
    wa_text,
)


async def count_messages(stack: Stack, **where: Any) -> int:
    async with stack.db.session() as s:
        q = select(func.count()).select_from(DigitalMessage)
        for key, value in where.items():
            q = q.where(getattr(DigitalMessage, key) == value)
        return int((await s.exec(q)).one())


async def test_verify_handshake_echoes_challenge(stack: Stack) -> None:
    ok = await stack.client.get("/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "12345"})
    assert ok.status == 200 and await ok.text() == "12345"
    bad = await stack.client.get("/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "12345"})
    assert bad.status == 403
    assert "verify_token" in (await bad.json())["error"]


async def test_bad_or_missing_signature_is_401_and_stores_nothing(stack: Stack) -> None:
    payload = wa_payload([wa_text()])
    wrong = await stack.post_wa(payload, secret="other-secret")
    assert wrong.status == 401
    raw = json.dumps(payload).encode()
    missing = await stack.client.post("/webhooks/whatsapp", data=raw,
                                      headers={"Content-Type": "application/json"})
    assert missing.status == 401
    assert await count_messages(stack) == 0


async def test_non_ascii_signature_bytes_are_401_not_500(stack: Stack) -> None:
    """Issue 18, defect 6: `sha256=<0xE9>` used to raise UnicodeEncodeError (500)."""
    raw = json.dumps(wa_payload([wa_text()])).encode()
    for value in (b"sha256=\xe9", "sha256=é".encode(), b"sha256=\xff\xfe" + b"0" * 62,
                  "sha256=²".encode() * 3):
        status = await raw_http_post(stack.client, "/webhooks/whatsapp", [
            (b"Content-Type", b"application/json"), (b"X-Hub-Signature-256", value)], raw)
        assert status == 401, value
    assert await count_messages(stack) == 0


async def test_bad_input_gets_clear_4xx_never_500(stack: Stack) -> None:
    cases = [
        (await stack.post_wa(None, raw=b"{not json"), 400, "JSON"),
        (await stack.post_wa(None, raw=b"a=b", headers={"Content-Type": "text/plain"}),
         415, "application/json"),
        (await stack.post_wa({"object": "page"}), 400, "whatsapp_business_account"),
        (await stack.post_wa(wa_payload([wa_text()], phone_number_id="999")), 422, "999"),
        (await stack.post_wa(wa_payload([{"from": "31612345678", "type": "text"}])), 400, "id"),
        (await stack.post_wa(None, raw=b"{" + b" " * 70000 + b"}"), 413, "limit"),
    ]
    for response, status, reason in cases:
        assert response.status == status, await response.text()
        assert reason in (await response.json())["error"]
    assert await count_messages(stack) == 0


async def test_inbound_text_creates_case_task_and_timeline_once(stack: Stack) -> None:
    msg = wa_text(body="my order is late", msg_id="wamid.A1")
    payload = wa_payload([msg, msg])  # the same id twice in one POST
    assert (await stack.post_wa(payload)).status == 200
    assert (await stack.post_wa(payload)).status == 200  # redelivered
    await stack.drain()
    assert await count_messages(stack, provider="whatsapp") == 1
    assert len(stack.acd.tasks) == 1
    task = stack.acd.tasks[0]
    assert task.channel == "whatsapp" and task.queue_id == "support"
    timeline = await stack.cases.timeline(task.case_id)
    assert [e.body for e in timeline] == ["my order is late"]
    customer = await stack.cases.get_customer(task.customer_id)
    assert customer.display_name == "Kerry"
    # the same person calling later lands on the same customer and case
    call = await stack.cases.resolve(__import__("cases").IdentityRef("phone", "+31612345678"))
    assert call.case.id == task.case_id


async def test_many_entries_changes_and_types(stack: Stack, graph: FakeGraph) -> None:
    graph.media["MEDIA1"] = b"\xff\xd8jpegbytes"
    graph.media["BIG"] = b"x" * 5000  # over media_max_bytes=4096
    wa = "31611111111"
    ts = str(int(time.time()))
    messages = [
        {"from": wa, "id": "w.img", "timestamp": ts, "type": "image",
         "image": {"id": "MEDIA1", "mime_type": "image/jpeg", "caption": "the receipt"}},
        {"from": wa, "id": "w.big", "timestamp": ts, "type": "document",
         "document": {"id": "BIG", "mime_type": "application/pdf", "filename": "a.pdf"}},
        {"from": wa, "id": "w.btn", "timestamp": ts, "type": "interactive",
         "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}},
        {"from": wa, "id": "w.list", "timestamp": ts, "type": "interactive",
         "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Refund"}}},
        {"from": wa, "id": "w.react", "timestamp": ts, "type": "reaction",
         "reaction": {"message_id": "w.img", "emoji": "👍"}},
        {"from": wa, "id": "w.loc", "timestamp": ts, "type": "location",
         "location": {"latitude": 52.37, "longitude": 4.89, "name": "Dam"}},
        {"from": wa, "id": "w.card", "timestamp": ts, "type": "contacts",
         "contacts": [{"name": {"formatted_name": "Ann Smith"}, "phones": [{"phone": "+1"}]}]},
        {"from": wa, "id": "w.new", "timestamp": ts, "type": "hologram", "hologram": {}},
    ]
    second = wa_payload([wa_text("31622222222", "other person", "w.other")])
    payload = wa_payload(messages)
    payload["entry"].append(second["entry"][0])
    payload["entry"][0]["changes"].append(
        wa_payload(statuses=[{"id": "wamid.unknown", "status": "delivered",
                              "timestamp": ts, "recipient_id": wa}])["entry"][0]["changes"][0])
    response = await stack.post_wa(payload)
    assert response.status == 200, await response.text()
    assert (await response.json()) == {"messages": 9, "statuses": 1,
                                       "ignored_phone_number_ids": []}
    await stack.drain()
    async with stack.db.session() as s:
        rows = {m.provider_message_id: m for m in await s.exec(select(DigitalMessage))}
    stored = await asyncio.to_thread(Path(rows["w.img"].media_path or "/nonexistent").read_bytes)
    assert stored == graph.media["MEDIA1"]
    assert rows["w.big"].media_path is None and "over 4096" in (rows["w.big"].error or "")
    assert rows["w.btn"].body == "Yes" and rows["w.list"].body == "Refund"
    assert rows["w.loc"].body.startswith("52.37,4.89")
    assert rows["w.card"].body == "Ann Smith"
    assert rows["w.new"].kind == "unsupported"
    assert all(r.processed for r in rows.values())
    case_id = rows["w.img"].case_id
    kinds = [e.kind for e in await stack.cases.timeline(case_id)]
    assert "unsupported" in kinds and len(kinds) == 8
    assert len(stack.acd.tasks) == 2  # one per person, not per message


async def test_bsuid_only_user_and_changed_number(stack: Stack) -> None:
    bsuid_msg = {"from_user_id": "US.12345abcdef", "id": "w.bsuid",
                 "timestamp": str(int(time.time())), "type": "text", "text": {"body": "hi"}}
    contacts = [{"profile": {"username": "@kerry"}, "user_id": "US.12345abcdef"}]
    assert (await stack.post_wa(wa_payload([bsuid_msg], contacts=contacts))).status == 200
    await stack.post_wa(wa_payload([wa_text("31633333333", "before", "w.before")]))
    changed = {"from": "31633333333", "id": "w.sys", "timestamp": str(int(time.time())),
               "type": "system", "system": {"body": "User changed number",
                                            "type": "user_changed_number",
                                            "new_wa_id": "31644444444"}}
    await stack.post_wa(wa_payload([changed]))
    await stack.post_wa(wa_payload([wa_text("31644444444", "after", "w.after")]))
    await stack.drain()
    async with stack.db.session() as s:
        rows = {m.provider_message_id: m for m in await s.exec(select(DigitalMessage))}
    bsuid_customer = await stack.cases.get_customer(rows["w.bsuid"].customer_id)
    assert bsuid_customer.display_name == "@kerry"
    idents = await stack.cases.identities(bsuid_customer.id)
    assert [(i.kind, i.value) for i in idents] == [("whatsapp_bsuid", "US.12345abcdef")]
    # issue 18, defect 9: the username is stored with the message and on its timeline item
    assert rows["w.bsuid"].payload["username"] == "@kerry"
    bsuid_timeline = await stack.cases.timeline(rows["w.bsuid"].case_id)
    assert bsuid_timeline[0].meta["username"] == "@kerry"
    assert rows["w.after"].customer_id == rows["w.before"].customer_id
    assert rows["w.after"].conversation_id == rows["w.before"].conversation_id
    assert rows["w.sys"].conversation_id == rows["w.before"].conversation_id
    # issue 18, defect 7: the old number stays on the customer, marked previous...
    customer_id = rows["w.before"].customer_id
    numbers = {(i.value, i.previous, i.replaced_by)
               for i in await stack.cases.identities(customer_id)}
    assert numbers == {("31633333333", True, "31644444444"), ("31644444444", False, None)}
    # ...the notice is on the timeline, not in the message's error field...
    assert rows["w.sys"].error is None
    notice = next(e for e in await stack.cases.timeline(rows["w.sys"].case_id)
                  if e.kind == "system")
    assert notice.meta["number_change"] == {"old": "31633333333", "new": "31644444444",
                                            "outcome": "added", "suggestion_id": None}
    # ...and a later call from the old number still finds the customer
    from cases import IdentityRef

    call = await stack.cases.resolve(IdentityRef("phone", "+31633333333"))
    assert call.customer.id == customer_id and not call.customer_created


async def test_number_change_after_the_new_number_wrote_is_a_merge_suggestion(
        stack: Stack) -> None:
    """Events out of order: the new number wrote (a new customer) before the notice came.
    The two customers are linked by a suggestion, neither merged nor left strangers."""
    await stack.post_wa(wa_payload([wa_text("31677777777", "old phone", "w.o1")]))
    await stack.drain()
    await stack.post_wa(wa_payload([wa_text("31688888888", "new phone", "w.n1")]))
    await stack.drain()
    changed = {"from": "31677777777", "id": "w.sys2", "timestamp": str(int(time.time())),
               "type": "system", "system": {"body": "User changed number",
                                            "type": "user_changed_number",
                                            "new_wa_id": "31688888888"}}
    for _ in range(2):  # a redelivered notice adds nothing
        assert (await stack.post_wa(wa_payload([changed]))).status == 200
        await stack.drain()
    async with stack.db.session() as s:
        rows = {m.provider_message_id: m for m in await s.exec(select(DigitalMessage))}
    old_customer, new_customer = rows["w.o1"].customer_id, rows["w.n1"].customer_id
    assert old_customer != new_customer
    suggestions = await stack.cases.suggestions(new_customer)
    assert [(x.candidate_customer_id, x.value) for x in suggestions] == [
        (old_customer, "31688888888")]
    notice = next(e for e in await stack.cases.timeline(rows["w.sys2"].case_id)
                  if e.kind == "system")
    assert rows["w.sys2"].customer_id == old_customer
    assert notice.meta["number_change"]["outcome"] == "suggested"
    assert notice.meta["number_change"]["suggestion_id"] == suggestions[0].id
    old_numbers = {(i.value, i.previous) for i in await stack.cases.identities(old_customer)}
    assert old_numbers == {("31677777777", True)}


async def test_unsupported_message_error_code_is_on_the_timeline(stack: Stack) -> None:
    unsupported = {"from": "31699999999", "id": "w.unsup", "timestamp": str(int(time.time())),
                   "type": "unsupported", "errors": [{
                       "code": 131051, "title": "Message type unknown",
                       "message": "Message type unknown",
                       "error_data": {"details": "Message type is currently not supported."}}]}
    assert (await stack.post_wa(wa_payload([unsupported]))).status == 200
    await stack.drain()
    async with stack.db.session() as s:
        row = (await s.exec(select(DigitalMessage).where(
            DigitalMessage.provider_message_id == "w.unsup"))).one()
    item = (await stack.cases.timeline(row.case_id))[0]
    assert item.kind == "unsupported"
    assert item.meta["error_code"] == "131051"
    assert item.meta["error_title"] == "Message type unknown"
    assert "131051" in (item.body or "")


async def _assigned_conversation(stack: Stack, wa: str = "31655555555",
                                 ts: int | None = None) -> Conversation:
    await stack.post_wa(wa_payload([wa_text(wa, "help", ts=ts)]))
    await stack.drain()
    async with stack.db.session() as s:
        conv = (await s.exec(select(Conversation).where(Conversation.contact == wa))).one()
    await stack.acd.accept(stack.acd.ids[-1], "agent-ann")
    conv = await stack.conversation_state(conv.id, "assigned")
    assert conv.state == "assigned" and conv.agent_id == "agent-ann"
    return conv


async def _status(stack: Stack, wamid: str) -> DeliveryStatus | None:
    async with stack.db.session() as s:
        return await s.get(DeliveryStatus, ("whatsapp", wamid))


async def _wait_rank(stack: Stack, wamid: str, rank: int) -> DeliveryStatus:
    for _ in range(200):
        st = await _status(stack, wamid)
        if st is not None and st.rank >= rank:
            return st
        await asyncio.sleep(0.02)
    raise AssertionError(f"no status of rank {rank} for {wamid}")


async def test_reply_sends_once_with_statuses_reordered_and_duplicated(
        stack: Stack, graph: FakeGraph) -> None:
    reports: list[Any] = []

    async def listen(event: Any) -> None:
        reports.append(event.payload)

    await stack.bus.subscribe("message.status", listen)
    conv = await _assigned_conversation(stack)
    result = await stack.conversations.reply(conv.id, "agent-ann", "We are on it")
    assert result.ok, result.reason
    assert len(graph.sent) == 1
    sent = graph.sent[0]
    assert sent["to"] == conv.contact and sent["text"]["body"] == "We are on it"
    assert sent["biz_opaque_callback_data"] == result.message_id
    st = await _wait_rank(stack, result.provider_message_id, 3)
    # The late "sent" and "delivered" reports arrive after "read", one webhook each:
    # wait for all of them to be committed and published (a fixed 0.1 s was too short
    # on a busy machine: one run saw only the first of the four), then check that read
    # stayed read.
    await wait_until(lambda: len(reports) >= len(graph.status_order), timeout=15)
    st = await _status(stack, result.provider_message_id)
    assert st is not None and st.rank == 3 and not st.failed  # read stays read
    async with stack.db.session() as s:
        contact = await s.get(WaContact, conv.contact)
    assert contact is not None and contact.wa_id == conv.contact
    thread = await stack.conversations.messages(conv.id)
    assert thread[-1]["delivery"] == "read"
    # The screen-pop's one-session read gives what the one-by-one reads give.
    [(found, window, messages)] = await stack.conversations.case_threads(conv.case_id)
    assert found.id == conv.id and messages == thread
    assert window == await stack.conversations.window(conv.id) and window.open
    assert {r["our_id"] for r in reports} == {result.message_id}  # pushed to desktops
    assert sorted(r["rank"] for r in reports) == [1, 2, 2, 3]


async def test_failed_status_keeps_flag_and_code_whatever_order(stack: Stack) -> None:
    ts = str(int(time.time()))
    fail = {"id": "wamid.F", "status": "failed", "timestamp": ts, "recipient_id": "1",
            "errors": [{"code": 131026, "title": "Message undeliverable"}]}
    await stack.post_wa(wa_payload(statuses=[{**fail, "status": "delivered"}]))
    await stack.post_wa(wa_payload(statuses=[fail]))
    await stack.post_wa(wa_payload(statuses=[{**fail, "status": "sent", "errors": []}]))
    st = await _status(stack, "wamid.F")
    assert st is not None and st.rank == 2 and st.failed and st.error_code == "131026"


async def test_retries_on_5xx_and_rate_limits_without_sending_twice(
        stack: Stack, graph: FakeGraph) -> None:
    conv = await _assigned_conversation(stack)
    graph.script = ["500", "130429", "131056"]
    result = await stack.conversations.reply(conv.id, "agent-ann", "after retries")
    assert result.ok, result.reason
    assert graph.requests == 4 and len(graph.sent) == 1
    async with stack.db.session() as s:
        outcomes = [a.outcome for a in await s.exec(
            select(SendAttempt).where(SendAttempt.message_id == result.message_id)
            .order_by(SendAttempt.attempt))]
    assert outcomes == ["http_5xx", "rate_limited", "rate_limited", "sent"]


async def test_timeout_after_acceptance_is_not_resent(stack: Stack, graph: FakeGraph) -> None:
    conv = await _assigned_conversation(stack)
    graph.script = ["timeout"]
    result = await stack.conversations.reply(conv.id, "agent-ann", "slow network")
    assert result.ok, result.reason
    assert len(graph.sent) == 1  # the status webhook with our id proved it got through
    assert result.provider_message_id == graph.sent[0]["_wamid"]


async def test_24_hour_window_only_template_outside(stack: Stack, graph: FakeGraph) -> None:
    conv = await _assigned_conversation(stack, "31666666666", ts=int(time.time()) - 25 * 3600)
    window = await stack.conversations.window(conv.id)
    assert window.applies and not window.open
    result = await stack.conversations.reply(conv.id, "agent-ann", "hello again")
    assert not result.ok
    assert result.reason == "outside the WhatsApp 24-hour window: only a template can be sent"
    assert graph.requests == 0
    tpl = await stack.conversations.send_template(conv.id, "agent-ann", "follow_up", "en")
    assert tpl.ok, tpl.reason
    assert graph.sent[0]["type"] == "template"
    assert graph.sent[0]["template"]["name"] == "follow_up"


async def test_meta_window_error_is_shown_to_agent(stack: Stack, graph: FakeGraph) -> None:
    conv = await _assigned_conversation(stack)
    graph.script = ["131047"]
    result = await stack.conversations.reply(conv.id, "agent-ann", "hi")
    assert not result.ok and "24-hour window" in (result.reason or "")


async def test_follow_ups_go_to_agent_and_wrap_up_ends(stack: Stack) -> None:
    seen: list[Any] = []

    async def listen(event: Any) -> None:
        seen.append(event)

    await stack.bus.subscribe("conversation.*", listen)
    conv = await _assigned_conversation(stack)
    await stack.post_wa(wa_payload([wa_text(conv.contact, "any news?")]))
    await stack.drain()
    follow = [e for e in seen if e.topic == "conversation.message"
              and e.payload["body"] == "any news?"]
    assert follow and follow[0].payload["agent_id"] == "agent-ann"
    assert len(stack.acd.tasks) == 1  # no second task while the agent has it
    refusal = await stack.conversations.reply(conv.id, "agent-bob", "me too")
    assert not refusal.ok and "agent-ann" in (refusal.reason or "")
    await stack.acd.complete(stack.acd.ids[0], "resolved")
    ended = await stack.conversation_state(conv.id, "ended")
    assert ended.wrap_up_code == "resolved"
    assert [c.id for c in await stack.conversations.conversations_for_case(conv.case_id)] \
        == [conv.id]
    # the next message starts a new conversation on the same case, preferring ann
    await stack.post_wa(wa_payload([wa_text(conv.contact, "one more thing")]))
    await stack.drain()
    assert len(stack.acd.tasks) == 2
    assert stack.acd.tasks[1].case_id == conv.case_id
    assert stack.acd.tasks[1].preferred_agent_id == "agent-ann"


async def test_unknown_phone_number_id_mixed_with_known_is_stored(stack: Stack) -> None:
    payload = wa_payload([wa_text(msg_id="w.known")])
    other = wa_payload([wa_text(msg_id="w.other")], phone_number_id="555")
    payload["entry"].append(other["entry"][0])
    response = await stack.post_wa(payload)
    assert response.status == 200
    assert (await response.json())["ignored_phone_number_ids"] == ["555"]
    assert await count_messages(stack) == 1
    assert PHONE_NUMBER_ID != "555"


async def test_routes_find_adapters_under_services_digital(stack: Stack) -> None:
    """The node may register the DigitalChannels object as services['digital'] without
    calling install(): the webhook routes still find their adapter there."""
    from web.context import CONTEXT

    ctx = stack.client.server.app[CONTEXT]
    ctx.channels.clear()
    ctx.services["digital"] = stack.digital
    ok = await stack.client.get("/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "7"})
    assert ok.status == 200 and await ok.text() == "7"
    del ctx.services["digital"]
    missing = await stack.client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe"})
    assert missing.status == 404
    assert "not enabled" in (await missing.json())["error"]


async def test_callback_data_is_kept_whole(stack: Stack) -> None:
    """Issue 18, defect 9: `biz_opaque_callback_data` was cut to 32 characters, so a
    longer id never matched again; a value over Meta's 512 limit is not ours at all."""
    long_id = "msg-" + "x" * 60
    statuses = [{"id": "wamid.long", "status": "sent", "timestamp": str(int(time.time())),
                 "recipient_id": "31612345678", "biz_opaque_callback_data": long_id},
                {"id": "wamid.huge", "status": "sent", "timestamp": str(int(time.time())),
                 "recipient_id": "31612345678", "biz_opaque_callback_data": "y" * 600}]
    assert (await stack.post_wa(wa_payload(statuses=statuses))).status == 200
    assert (await _status(stack, "wamid.long")).our_id == long_id
    assert (await _status(stack, "wamid.huge")).our_id is None
