"""Pieces working together: the ledger on both databases, a webhook subscribed through
the API and delivered from a bus event, Secure cookies behind https, customer edits and
merge undo permissions."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

from aiohttp import web
from aiohttp.test_utils import TestServer

from cases import IdentityRef
from core.clock import SystemClock
from core.events import Event
from tests.web.harness import demo_config, form_csrf
from web.desktop.access import TaskLedger


async def test_ledger_grants_and_revokes_on_both_databases(database) -> None:
    ledger = TaskLedger(database, SystemClock())
    offered = Event("task.offered", {"offer_id": "o1", "task_id": "t1", "agent_id": "anna",
                                     "case_id": "k1", "customer_id": "c1",
                                     "channel": "whatsapp", "queue_id": "sales"})
    await ledger.record(offered)
    await ledger.record(offered)  # at-least-once: the same event twice
    assert await TaskLedger(database, SystemClock()).may_open_case("anna", "k1")
    assert not await ledger.may_open_case("bram", "k1")
    await ledger.record(Event("task.missed", {"offer_id": "o1", "task_id": "t1",
                                              "agent_id": "anna"}))
    assert not await TaskLedger(database, SystemClock()).may_open_case("anna", "k1")
    await ledger.record(Event("task.offered", {**offered.payload, "offer_id": "o2"}))
    await ledger.record(Event("task.accepted", {"task_id": "t1", "agent_id": "anna",
                                                "case_id": "k1"}))
    await ledger.record(Event("task.rejected", {"task_id": "t1", "agent_id": "anna"}))
    fresh = TaskLedger(database, SystemClock())
    assert await fresh.may_open_case("anna", "k1")  # accepted: kept for good
    rows = await fresh.tasks_of("anna")
    assert [(r.task_id, r.status) for r in rows] == [("t1", "accepted")]


async def test_an_offer_again_never_undoes_an_accept_on_both_databases(database) -> None:
    """The offer is one upsert: over an accepted task it changes the offer id only;
    over a finished one (the task came back) it is an offer again."""
    ledger = TaskLedger(database, SystemClock())
    offer = {"task_id": "t9", "agent_id": "anna", "case_id": "k9", "channel": "whatsapp",
             "customer_id": "c9", "queue_id": "sales"}
    await ledger.record(Event("task.offered", {**offer, "offer_id": "o1"}))
    await ledger.record(Event("task.accepted", {"task_id": "t9", "agent_id": "anna",
                                                "case_id": "k9"}))
    await ledger.record(Event("task.offered", {**offer, "offer_id": "o2",
                                               "customer_id": None}))
    [row] = await ledger.tasks_of("anna")
    assert (row.status, row.offer_id, row.customer_id) == ("accepted", "o2", "c9")
    await ledger.record(Event("task.wrap_up_ended", {"task_id": "t9", "agent_id": "anna"}))
    assert await ledger.tasks_of("anna") == []  # done
    await ledger.record(Event("task.offered", {**offer, "offer_id": "o3"}))
    [row] = await ledger.tasks_of("anna")
    assert (row.status, row.offer_id, row.queue_id) == ("offered", "o3", "sales")


async def test_webhook_subscribed_through_the_api_gets_case_events(web_env) -> None:
    got: list[tuple[dict, bytes]] = []
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        arrived.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/crm", receive)
    server = TestServer(app)
    await server.start_server()
    try:
        csrf = await web_env.login("admin")
        resp = await web_env.post_json("/api/webhooks", {
            "url": str(server.make_url("/crm")), "topics": ["case.opened"]}, csrf)
        assert resp.status == 201
        secret = (await resp.json())["secret"]
        res = await web_env.h.ctx.cases.resolve(IdentityRef("phone", "+31201112233"))
        await asyncio.wait_for(arrived.wait(), 10)
        headers, body = got[0]
        ts = headers["X-Centrale-Timestamp"]
        mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        assert headers["X-Centrale-Signature"] == f"sha256={mac}"
        assert json.loads(body)["payload"]["case_id"] == res.case.id
        async with asyncio.timeout(5):  # the receiver answered; the row is updated next
            while True:
                deliveries = await (await web_env.client.get("/api/webhooks/deliveries")).json()
                if deliveries["deliveries"][0]["status"] != "pending":
                    break
                await asyncio.sleep(0.01)
        assert deliveries["deliveries"][0]["status"] == "delivered"
    finally:
        await server.close()


async def test_bad_webhook_url_and_short_secret_are_refused(web_env) -> None:
    csrf = await web_env.login("admin")
    resp = await web_env.post_json("/api/webhooks", {"url": "javascript:alert(1)"}, csrf)
    assert resp.status == 422
    resp = await web_env.post_json("/api/webhooks", {"url": "https://crm.example/h",
                                                     "secret": "short"}, csrf)
    assert resp.status == 422
    assert (await (await web_env.client.get("/api/webhooks")).json())["webhooks"] == []


async def test_cookie_is_secure_behind_https(make_web) -> None:
    config = demo_config()
    web_settings = config.server.web.model_copy(update={"public_url": "https://cc.example"})
    config = config.model_copy(update={"server": config.server.model_copy(
        update={"web": web_settings})})
    web_ = await make_web(config=config)
    page = await web_.client.get("/login")
    login_cookie = page.cookies["centrale_login_csrf"]
    assert login_cookie["secure"] is True
    token = form_csrf(await page.text())
    web_.client.session.cookie_jar.clear()
    resp = await web_.client.post("/login", data={
        "username": "anna", "password": "demo", "csrf_token": token},
        headers={"Cookie": f"centrale_login_csrf={login_cookie.value}"}, allow_redirects=False)
    assert resp.status == 302
    assert resp.cookies["centrale_session"]["secure"] is True


async def test_customer_edits_and_merge_undo_permissions(web_env) -> None:
    h = web_env.h
    a = await h.ctx.cases.resolve(IdentityRef("phone", "+31201112233"))
    b = await h.ctx.cases.resolve(IdentityRef("email", "b@example.com"))
    await h.acd.offer(agent_id="anna", case_id=a.case.id, customer_id=a.customer.id,
                      channel="voice")
    await web_env.settle()
    csrf = await web_env.login("anna")
    resp = await web_env.client.patch(f"/api/customers/{a.customer.id}",
                                      json={"display_name": "Eva", "tags": ["vip"]},
                                      headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    assert (await h.ctx.cases.get_customer(a.customer.id)).tags == ["vip"]
    resp = await web_env.client.patch(f"/api/customers/{b.customer.id}",
                                      json={"display_name": "x"},
                                      headers={"X-CSRF-Token": csrf})
    assert resp.status == 403
    web_env.client.session.cookie_jar.clear()
    csrf = await web_env.login("sam")
    resp = await web_env.post_json("/api/customers/merge", {
        "source_customer_id": b.customer.id, "target_customer_id": a.customer.id}, csrf)
    assert resp.status == 201
    merge_id = (await resp.json())["id"]
    resp = await web_env.post_json("/api/customers/merge", {
        "source_customer_id": b.customer.id, "target_customer_id": a.customer.id}, csrf)
    assert resp.status == 409
    web_env.client.session.cookie_jar.clear()
    csrf = await web_env.login("anna")
    assert (await web_env.post_json(f"/api/merges/{merge_id}/undo", {}, csrf)).status == 403
    web_env.client.session.cookie_jar.clear()
    csrf = await web_env.login("sam")
    assert (await web_env.post_json(f"/api/merges/{merge_id}/undo", {}, csrf)).status == 200
    assert (await h.ctx.cases.get_customer(b.customer.id)).merged_into is None


async def test_the_in_memory_mirror_forgets_finished_tasks(web_env) -> None:
    h = web_env.h
    res = await h.ctx.cases.resolve(IdentityRef("phone", "+31201112233"))
    offer = await h.acd.offer(agent_id="anna", case_id=res.case.id,
                              customer_id=res.customer.id, channel="voice")
    await h.acd.accept(offer["offer_id"], "anna")
    await h.acd.complete(offer["task_id"], "anna")
    await h.acd.end_wrap_up("anna", offer["task_id"])
    await web_env.settle()
    from web.desktop.state import DESKTOP

    ledger = web_env.client.app[DESKTOP].ledger
    assert ledger._live.get("anna") == {} and not ledger._accepted.get("anna")
    assert await ledger.may_open_case("anna", res.case.id)  # the SQL ledger still grants
