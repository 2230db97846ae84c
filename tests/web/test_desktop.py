"""The agent desktop's server side: screen-pop over the websocket, what an agent may
open, accept/reply/wrap-up through the API, and customer text escaped on the page."""

from __future__ import annotations

import asyncio
import json

from cases import IdentityRef
from tests.web.harness import meta_csrf


async def _ws_frame(ws, frame_type: str, timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            frame = json.loads(msg.data)
            if frame["type"] == frame_type:
                return frame


async def _whatsapp_inbound(h, body: str, wa_id: str = "31612345678", name: str = "Eva"):
    res = await h.ctx.cases.resolve(IdentityRef("whatsapp", wa_id), display_name=name)
    await h.ctx.cases.add_timeline(res.case.id, kind="message", channel="whatsapp",
                                   direction="inbound", body=body,
                                   meta={"status": "received"})
    return res


async def test_offer_pops_the_case_with_its_timeline_over_the_websocket(web_env) -> None:
    h = web_env.h
    await web_env.login("anna")
    ws = await web_env.client.ws_connect("/ws")
    assert (await _ws_frame(ws, "hello"))["user"]["agent_id"] == "anna"
    res = await _whatsapp_inbound(h, "Hallo, mijn pakket is niet aangekomen")
    h.conversations.open(res.case.id)
    offer = await h.acd.offer(agent_id="anna", case_id=res.case.id,
                              customer_id=res.customer.id, channel="whatsapp",
                              queue_id="sales")
    pop = await _ws_frame(ws, "screenpop")  # latency: bench/screenpop_bench.py
    assert pop["offer_id"] == offer["offer_id"]
    assert pop["customer"]["display_name"] == "Eva"
    assert pop["customer"]["identities"][0]["kind"] == "whatsapp"
    assert [e["body"] for e in pop["timeline"]] == ["Hallo, mijn pakket is niet aangekomen"]
    assert pop["conversations"][0]["window"]["open"] is True
    assert pop["cti_url"] == "https://crm.example.com/search?phone=+31612345678"
    await ws.close()


async def test_pop_goes_only_to_the_offered_agent(web_env, make_web) -> None:
    h = web_env.h
    await web_env.login("bram")
    ws = await web_env.client.ws_connect("/ws")
    await _ws_frame(ws, "hello")
    res = await _whatsapp_inbound(h, "hi")
    await h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                      channel="whatsapp")
    await h.acd.set_state("bram", "available")  # a frame bram does get, after the offer
    frame = await _ws_frame(ws, "agent_state")
    assert frame["payload"]["agent_id"] == "bram"
    await ws.close()


async def test_agent_gets_403_on_a_case_not_offered_to_them(web_env) -> None:
    h = web_env.h
    res = await _whatsapp_inbound(h, "private")
    await h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                      channel="whatsapp")
    await web_env.settle()
    await web_env.login("bram")
    for path in (f"/cases/{res.case.id}", f"/api/cases/{res.case.id}",
                 f"/api/cases/{res.case.id}/timeline", f"/api/customers/{res.customer.id}"):
        resp = await web_env.client.get(path)
        assert resp.status == 403, path
    web_env.client.session.cookie_jar.clear()
    await web_env.login("anna")
    assert (await web_env.client.get(f"/cases/{res.case.id}")).status == 200
    assert (await web_env.client.get(f"/api/customers/{res.customer.id}")).status == 200
    web_env.client.session.cookie_jar.clear()
    await web_env.login("sam")  # supervisors see every case
    assert (await web_env.client.get(f"/cases/{res.case.id}")).status == 200


async def test_rejected_offer_takes_the_case_away_again(web_env) -> None:
    h = web_env.h
    csrf = await web_env.login("anna")
    res = await _whatsapp_inbound(h, "hi")
    offer = await h.acd.offer(agent_id="anna", case_id=res.case.id,
                              customer_id=res.customer.id, channel="whatsapp")
    await web_env.settle()
    assert (await web_env.client.get(f"/api/cases/{res.case.id}")).status == 200
    resp = await web_env.post_json(f"/api/offers/{offer['offer_id']}/reject", {}, csrf)
    assert resp.status == 200
    await web_env.settle()
    assert (await web_env.client.get(f"/api/cases/{res.case.id}")).status == 403


async def test_accept_reply_and_wrap_up(web_env) -> None:
    h = web_env.h
    csrf = await web_env.login("anna")
    res = await _whatsapp_inbound(h, "Waar is mijn bestelling?")
    conv = h.conversations.open(res.case.id)
    offer = await h.acd.offer(agent_id="anna", case_id=res.case.id,
                              customer_id=res.customer.id, channel="whatsapp")
    await web_env.settle()
    resp = await web_env.post_json(f"/api/offers/{offer['offer_id']}/accept", {}, csrf)
    assert resp.status == 200, await resp.text()
    resp = await web_env.post_json(f"/api/conversations/{conv}/messages",
                                   {"case_id": res.case.id, "text": "Ik kijk het na."}, csrf)
    assert resp.status == 201, await resp.text()
    assert h.conversations.sent == [(conv, "anna", "Ik kijk het na.")]
    resp = await web_env.post_json(f"/api/tasks/{offer['task_id']}/complete",
                                   {"wrap_up_code": "nonsense"}, csrf)
    assert resp.status == 422
    resp = await web_env.post_json(f"/api/tasks/{offer['task_id']}/complete",
                                   {"wrap_up_code": "resolved", "notes": "sent tracking"}, csrf)
    assert resp.status == 200
    assert ("complete", (offer["task_id"], "anna", "resolved", "sent tracking")) in h.acd.calls
    resp = await web_env.post_json(f"/api/tasks/{offer['task_id']}/wrap-up/end", {}, csrf)
    assert resp.status == 200
    await web_env.settle()
    tasks = (await (await web_env.client.get("/api/tasks?mine=1&all=1")).json())["tasks"]
    assert tasks[0]["status"] == "done" and tasks[0]["wrap_up_code"] == "resolved"
    case = await h.ctx.cases.get_case(res.case.id)
    assert case.last_agent_id == "anna"


async def test_agent_cannot_accept_or_complete_someone_elses_task(web_env) -> None:
    h = web_env.h
    res = await _whatsapp_inbound(h, "hi")
    offer = await h.acd.offer(agent_id="anna", case_id=res.case.id,
                              customer_id=res.customer.id, channel="whatsapp")
    await web_env.settle()
    csrf = await web_env.login("bram")
    resp = await web_env.post_json(f"/api/offers/{offer['offer_id']}/accept", {}, csrf)
    assert resp.status == 403
    resp = await web_env.post_json(f"/api/tasks/{offer['task_id']}/complete", {}, csrf)
    assert resp.status == 403
    assert not [c for c in h.acd.calls if c[0] in ("accept", "complete")]


async def test_reply_to_a_conversation_of_another_case_is_refused(web_env) -> None:
    h = web_env.h
    mine = await _whatsapp_inbound(h, "mine", wa_id="31611111111")
    other = await _whatsapp_inbound(h, "other", wa_id="31622222222")
    other_conv = h.conversations.open(other.case.id)
    await h.acd.offer(agent_id="anna", case_id=mine.case.id, customer_id=mine.customer.id,
                      channel="whatsapp")
    await web_env.settle()
    csrf = await web_env.login("anna")
    resp = await web_env.post_json(f"/api/conversations/{other_conv}/messages",
                                   {"case_id": mine.case.id, "text": "x"}, csrf)
    assert resp.status == 404
    resp = await web_env.post_json(f"/api/conversations/{other_conv}/messages",
                                   {"case_id": other.case.id, "text": "x"}, csrf)
    assert resp.status == 403
    assert h.conversations.sent == []


async def test_customer_text_is_escaped_on_the_case_page(web_env) -> None:
    h = web_env.h
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    res = await _whatsapp_inbound(h, evil, name="<b>Mallory</b>")
    await h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                      channel="whatsapp")
    await web_env.settle()
    await web_env.login("anna")
    resp = await web_env.client.get(f"/cases/{res.case.id}")
    html = await resp.text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in html
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


async def test_new_timeline_entries_reach_the_agent_holding_the_case(web_env) -> None:
    h = web_env.h
    await web_env.login("anna")
    ws = await web_env.client.ws_connect("/ws")
    await _ws_frame(ws, "hello")
    res = await _whatsapp_inbound(h, "first")
    await h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                      channel="whatsapp")
    await _ws_frame(ws, "screenpop")
    await h.ctx.cases.add_timeline(res.case.id, kind="message", channel="whatsapp",
                                   direction="inbound", body="second")
    bodies = set()
    while "second" not in bodies:  # "first" may come too: the page ignores entries it has
        frame = await _ws_frame(ws, "timeline")
        assert frame["case_id"] == res.case.id
        bodies.add(frame["entry"]["body"])
    await ws.close()


async def test_reloaded_desktop_gets_the_open_offer_again(web_env) -> None:
    h = web_env.h
    await web_env.login("anna")
    res = await _whatsapp_inbound(h, "still waiting")
    offer = await h.acd.offer(agent_id="anna", case_id=res.case.id,
                              customer_id=res.customer.id, channel="whatsapp")
    await web_env.settle()
    ws = await web_env.client.ws_connect("/ws")
    pop = await _ws_frame(ws, "screenpop")
    assert pop["offer_id"] == offer["offer_id"]
    await ws.close()


async def test_agent_may_merge_only_what_was_suggested(web_env) -> None:
    h = web_env.h
    known = await h.ctx.cases.resolve(IdentityRef("email", "eva@example.com"),
                                      display_name="Eva")
    visitor = await h.ctx.cases.resolve(IdentityRef("webchat", "visitor-1"),
                                        unverified=[IdentityRef("email", "eva@example.com")])
    stranger = await h.ctx.cases.resolve(IdentityRef("email", "zed@example.com"))
    assert visitor.suggestions
    await h.acd.offer(agent_id="anna", case_id=visitor.case.id,
                      customer_id=visitor.customer.id, channel="webchat")
    await web_env.settle()
    csrf = await web_env.login("anna")
    bundle = await (await web_env.client.get(f"/api/cases/{visitor.case.id}")).json()
    assert bundle["suggestions"][0]["candidate_customer_id"] == known.customer.id
    resp = await web_env.post_json("/api/customers/merge", {
        "source_customer_id": stranger.customer.id,
        "target_customer_id": visitor.customer.id}, csrf)
    assert resp.status == 403
    resp = await web_env.post_json("/api/customers/merge", {
        "source_customer_id": known.customer.id,
        "target_customer_id": visitor.customer.id}, csrf)
    assert resp.status == 201, await resp.text()
    ids = {i.kind for i in await h.ctx.cases.identities(visitor.customer.id)}
    assert ids == {"webchat", "email"}


async def test_desktop_page_has_the_reason_and_wrap_up_codes(web_env) -> None:
    await web_env.login("anna")
    html = await (await web_env.client.get("/desktop")).text()
    assert 'value="lunch"' in html and 'value="resolved"' in html
    assert 'value="missed"' not in html  # the ACD's own reason, not for agents to pick
    assert meta_csrf(html)


def test_cti_link_gets_the_caller_in_e164_whatever_the_trunk_sent() -> None:
    from web.desktop.screenpop import cti_link, e164

    template = "https://crm.example.com/search?phone={caller}"
    assert cti_link(template, e164("0612345678", "NL")) == \
        "https://crm.example.com/search?phone=+31612345678"
    assert e164("0031612345678", "NL") == "+31612345678"
    assert e164("anonymous", "NL") == "anonymous"  # not a number: left as it came
    assert cti_link("javascript:alert(1)//{caller}", "+31612345678") is None


async def test_a_stored_status_report_reaches_the_agent_holding_the_case(web_env) -> None:
    """`message.status` names only the provider's id; the hub finds the message's case
    and sends the stored maximum (not the report) to the agents holding that case."""
    from core.events import Event
    from digital.tables import DeliveryStatus, DigitalMessage

    h = web_env.h
    await web_env.login("anna")
    ws = await web_env.client.ws_connect("/ws")
    await _ws_frame(ws, "hello")
    res = await _whatsapp_inbound(h, "Waar blijft mijn pakket?")
    await h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                      channel="whatsapp")
    await _ws_frame(ws, "screenpop")
    now = h.ctx.clock.now()
    async with h.ctx.db.session() as s:
        s.add(DigitalMessage(id="msg-out-1", provider="whatsapp",
                             provider_message_id="wamid.OUT1", channel="whatsapp",
                             direction="outbound", body="onderweg", case_id=res.case.id,
                             conversation_id="conv-1", send_state="sent", occurred_at=now,
                             created_at=now))
        s.add(DeliveryStatus(provider="whatsapp", provider_message_id="wamid.OUT1", rank=3,
                             updated_at=now))
        await s.commit()
    # The report says "delivered", but "read" is stored already: the frame says read.
    await h.bus.publish(Event("message.status", {
        "provider": "whatsapp", "provider_message_id": "wamid.OUT1", "our_id": None,
        "rank": 2, "failed": False, "error_code": None}))
    frame = await _ws_frame(ws, "delivery")
    assert frame == {"type": "delivery", "case_id": res.case.id, "message_id": "msg-out-1",
                     "conversation_id": "conv-1", "delivery": "read", "failed": False,
                     "error_code": None}
    # A report for a message that is not ours (or not yet recorded) sends nothing.
    await h.bus.publish(Event("message.status", {
        "provider": "whatsapp", "provider_message_id": "wamid.UNKNOWN", "rank": 1}))
    await web_env.settle()
    await h.acd.set_state("anna", "available")
    types = []
    async with asyncio.timeout(5):
        while not types or types[-1] != "agent_state":
            types.append((await ws.receive_json())["type"])
    assert "delivery" not in types, types
    await ws.close()


def test_cti_link_can_carry_the_case_and_customer() -> None:
    from web.desktop.screenpop import cti_link

    link = cti_link("https://crm.example.com/ticket?case={case_id}&who={customer_id}"
                    "&ch={channel}&q={queue_id}&tel={caller}&keep={other}", "+31612345678",
                    case_id="01case", customer_id="a&b=c", channel="whatsapp",
                    queue_id="sales")
    assert link == ("https://crm.example.com/ticket?case=01case&who=a%26b%3Dc&ch=whatsapp"
                    "&q=sales&tel=+31612345678&keep={other}")
