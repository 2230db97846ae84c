"""The REST API: bad bodies get a clear 4xx and change nothing; the OpenAPI document
covers the routes; reports and CSV; admin pages; the wallboard's live figures."""

from __future__ import annotations

import asyncio
import csv
import io
import json

from sqlmodel import select

from cases import IdentityRef
from web.tables import ApiToken


async def test_openapi_document_lists_every_api_route(web_env) -> None:
    doc = await (await web_env.client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = set()
    for route in web_env.client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and path.startswith("/api/") and path != "/api/openapi.json" \
                and route.method not in ("HEAD", "OPTIONS"):
            served.add((route.method, path))
    assert served <= documented, served - documented
    for tag in ("tasks", "agents", "queues", "customers", "cases", "timeline", "messages",
                "merge"):
        assert any(tag in op["tags"] for ops in doc["paths"].values() for op in ops.values())
    body = doc["paths"]["/api/agents/{agent_id}/state"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "state" in doc["components"]["schemas"][ref]["properties"]


async def test_malformed_json_is_a_400_with_the_position(web_env) -> None:
    csrf = await web_env.login("anna")
    resp = await web_env.client.post("/api/agents/anna/state", data=b'{"state": ',
                                     headers={"X-CSRF-Token": csrf,
                                              "Content-Type": "application/json"})
    assert resp.status == 400
    assert "malformed JSON" in (await resp.json())["error"]
    assert web_env.h.acd.calls == []


async def test_wrong_content_type_and_non_object_bodies(web_env) -> None:
    csrf = await web_env.login("anna")
    resp = await web_env.client.post("/api/agents/anna/state", data="state=available",
                                     headers={"X-CSRF-Token": csrf,
                                              "Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await web_env.post_json("/api/agents/anna/state", ["available"], csrf)
    assert resp.status == 400
    assert "JSON object" in (await resp.json())["error"]


async def test_invalid_fields_are_named(web_env) -> None:
    csrf = await web_env.login("anna")
    resp = await web_env.post_json("/api/agents/anna/state", {"state": "dancing"}, csrf)
    assert resp.status == 422
    data = await resp.json()
    assert data["problems"][0]["field"] == "state"
    resp = await web_env.post_json("/api/agents/anna/state",
                                   {"state": "available", "extra": 1}, csrf)
    assert resp.status == 422 and "extra" in (await resp.json())["error"]
    resp = await web_env.post_json("/api/agents/anna/state", {"state": "not_ready"}, csrf)
    assert resp.status == 422 and "reason code" in (await resp.json())["error"]
    assert web_env.h.acd.calls == []


async def test_oversize_body_is_413_and_nothing_is_written(web_env) -> None:
    h = web_env.h
    res = await h.ctx.cases.resolve(IdentityRef("phone", "+31201112233"))
    await h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                      channel="voice")
    await web_env.settle()
    csrf = await web_env.login("anna")
    before = len(await h.ctx.cases.timeline(res.case.id))
    big = {"text": "x" * 70_000}
    resp = await web_env.post_json(f"/api/cases/{res.case.id}/notes", big, csrf)
    assert resp.status == 413
    assert "limit" in (await resp.json())["error"]
    resp = await web_env.post_json(f"/api/cases/{res.case.id}/notes", {"text": "x" * 5000},
                                   csrf)
    assert resp.status == 422
    assert len(await h.ctx.cases.timeline(res.case.id)) == before
    resp = await web_env.post_json(f"/api/cases/{res.case.id}/notes", {"text": "called back"},
                                   csrf)
    assert resp.status == 201
    assert len(await h.ctx.cases.timeline(res.case.id)) == before + 1


async def test_body_over_the_app_limit_is_refused_before_parsing(web_env) -> None:
    csrf = await web_env.login("admin")
    resp = await web_env.client.post("/api/tokens", data=b"{" + b" " * 2_000_000 + b"}",
                                     headers={"X-CSRF-Token": csrf,
                                              "Content-Type": "application/json"})
    assert resp.status == 413
    async with web_env.h.db.session() as s:
        assert list(await s.exec(select(ApiToken))) == []


async def test_unknown_ids_are_404(web_env) -> None:
    csrf = await web_env.login("sam")
    assert (await web_env.client.get("/api/cases/nope")).status == 404
    assert (await web_env.client.get("/api/customers/nope")).status == 404
    resp = await web_env.post_json("/api/agents/ghost/state", {"state": "available"}, csrf)
    assert resp.status == 404


async def test_unwired_services_answer_501_with_what_is_missing(web_env) -> None:
    h = web_env.h
    res = await h.ctx.cases.resolve(IdentityRef("phone", "+31201112233"))
    await h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                      channel="voice")
    await web_env.settle()
    csrf = await web_env.login("anna")
    resp = await web_env.post_json("/api/calls", {"number": "+31201112233"}, csrf)
    assert resp.status == 501 and "dialer" in (await resp.json())["error"]
    resp = await web_env.post_json("/api/callbacks", {"number": "+31201112233",
                                                      "case_id": res.case.id}, csrf)
    assert resp.status == 501 and "callbacks" in (await resp.json())["error"]


async def test_click_to_call_and_callback_reach_their_services(make_web) -> None:
    calls: list[tuple] = []

    async def dialer(agent_id: str, number: str) -> str:
        calls.append(("dial", agent_id, number))
        return "call-1"

    async def callbacks(**kw) -> str:
        calls.append(("callback", kw["case_id"], kw["number"], kw["agent_id"]))
        return "task-9"

    web = await make_web(services={"dialer": dialer, "callbacks": callbacks})
    h = web.h
    res = await h.ctx.cases.resolve(IdentityRef("phone", "+31201112233"))
    await h.acd.offer(agent_id="anna", case_id=res.case.id, customer_id=res.customer.id,
                      channel="voice")
    await web.settle()
    csrf = await web.login("anna")
    resp = await web.post_json("/api/calls", {"number": "+31201112233"}, csrf)
    assert resp.status == 202
    resp = await web.post_json("/api/calls", {"number": "+31 20; rm -rf"}, csrf)
    assert resp.status == 422
    resp = await web.post_json("/api/callbacks", {"number": "+31201112233",
                                                  "case_id": res.case.id}, csrf)
    assert resp.status == 201
    assert calls == [("dial", "anna", "+31201112233"),
                     ("callback", res.case.id, "+31201112233", "anna")]


async def test_reports_aggregate_task_events_and_export_csv(web_env) -> None:
    h = web_env.h
    res = await h.ctx.cases.resolve(IdentityRef("phone", "+31201112233"))
    for agent in ("anna", "bram"):
        offer = await h.acd.offer(agent_id=agent, case_id=res.case.id,
                                  customer_id=res.customer.id, channel="voice",
                                  queue_id="sales")
        await h.acd.accept(offer["offer_id"], agent)
        await h.acd.complete(offer["task_id"], agent, "=cmd|evil", None)
        await h.acd.end_wrap_up(agent, offer["task_id"])
    await web_env.settle()
    await web_env.login("sam")
    data = await (await web_env.client.get("/api/reports?by=agent&granularity=day")).json()
    by_agent = {r["key"]: r for r in data["rows"]}
    assert by_agent["anna"]["answered"] == 1 and by_agent["anna"]["handled"] == 1
    assert by_agent["anna"]["asa_seconds"] == 4.0
    # The fake ACD: 50 s from accept to complete, 60 s from accept to end of wrap-up.
    assert by_agent["anna"]["aht_seconds"] == 60.0
    assert by_agent["anna"]["avg_wrap_seconds"] == 10.0
    resp = await web_env.client.get("/reports?by=queue&granularity=60min&format=csv")
    assert resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert rows[0]["key"] == "sales" and rows[0]["answered"] == "2"
    resp = await web_env.client.get("/api/reports?by=wrap_up_code&format=csv")
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert rows[0]["key"] == "'=cmd|evil"  # a formula is quoted away
    page = await web_env.client.get("/reports?by=channel")
    assert "voice" in await page.text()
    bad = await web_env.client.get("/api/reports?by=moon")
    assert bad.status == 422 and (await bad.json())["field"] == "by"
    bad = await web_env.client.get("/api/reports?from=yesterday")
    assert bad.status == 422 and (await bad.json())["field"] == "from"


async def test_supervisor_websocket_gets_live_stats(web_env) -> None:
    await web_env.login("sam")
    ws = await web_env.client.ws_connect("/ws")
    await ws.receive()  # hello
    await web_env.h.bus.publish_topic("stats.updated", queues={
        "sales": {"waiting": 3, "oldest_wait_seconds": 42.0, "service_level": 0.8,
                  "asa": 12.5, "aht": 200.0, "abandoned": 1,
                  "agents_by_state": {"available": 2}}})
    async with asyncio.timeout(5):
        while True:
            frame = json.loads((await ws.receive()).data)
            if frame["type"] == "stats":
                break
    q = frame["payload"]["queues"][0]
    assert (q["id"], q["waiting"], q["oldest_wait"], q["service_level"]) == \
        ("sales", 3, 42.0, 0.8)
    await ws.close()
    stats = await (await web_env.client.get("/api/stats")).json()
    assert stats["history"]["sales"][-1][1] == 3


async def test_supervisor_changes_an_agents_state(web_env) -> None:
    csrf = await web_env.login("sam")
    resp = await web_env.post_json("/api/agents/bram/state",
                                   {"state": "not_ready", "reason": "meeting"}, csrf)
    assert resp.status == 200
    assert web_env.h.acd.states["bram"] == ("not_ready", "meeting")
    agents = await (await web_env.client.get("/api/agents")).json()
    assert {a["id"]: a["state"] for a in agents["agents"]}["bram"] == "not_ready"


async def test_agent_cannot_change_another_agents_state(web_env) -> None:
    csrf = await web_env.login("anna")
    resp = await web_env.post_json("/api/agents/bram/state", {"state": "available"}, csrf)
    assert resp.status == 403


async def test_admin_page_masks_secrets_and_reloads(make_web, tmp_path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"source": "avaya", "items": [
        {"kind": "hunt-group", "name": "<b>Sales</b>", "outcome": "mapped"}]}))
    reloads: list[int] = []

    async def reload_config() -> list[str]:
        reloads.append(1)
        return ["acd.yaml:12: queues[0].skills: unknown skill 'salez'"]

    web = await make_web(services={"reload_config": reload_config,
                                   "migration_report_path": str(report)})
    csrf = await web.login("admin")
    html = await (await web.client.get("/admin")).text()
    assert "demo-token" not in html and "demo-app-secret" not in html
    assert "********" in html
    assert "&lt;b&gt;Sales&lt;/b&gt;" in html
    resp = await web.client.post("/admin/reload", data={"csrf_token": csrf})
    assert resp.status == 422
    assert "unknown skill" in await resp.text()
    assert reloads == [1]
    resp = await web.post_json("/api/admin/reload", {}, csrf)
    assert (await resp.json())["errors"]


RANK = {"agent": 0, "supervisor": 1, "admin": 2}
PAGE_ROLES = {"/desktop": "agent", "/cases/{case_id}": "agent", "/logout": "agent",
              "/wallboard": "supervisor", "/reports": "supervisor", "/admin": "admin",
              "/admin/reload": "admin", "/admin/tokens": "admin",
              "/admin/tokens/{token_id}/revoke": "admin", "/admin/webhooks": "admin"}


async def test_every_route_needs_a_login_its_role_and_the_csrf_token(web_env) -> None:
    """A sweep over the app's own router, so a route added without `@requires` (or
    missing from the role table) fails here: anonymous → 401 (a page: to the log-in
    form); a user below the route's
    role → 403; a write with the session but without the CSRF token → 403."""
    doc = await (await web_env.client.get("/api/openapi.json")).json()
    roles = {(m.upper(), p): op["x-minimum-role"] for p, ops in doc["paths"].items()
             for m, op in ops.items()}
    routes = []
    for route in web_env.client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method in ("HEAD", "OPTIONS"):
            continue
        if path.startswith("/api/") and path != "/api/openapi.json":
            routes.append((route.method, path, roles[(route.method, path)]))
        elif path in PAGE_ROLES:
            routes.append((route.method, path, PAGE_ROLES[path]))
    assert len(routes) >= 40
    json_only = {"Accept": "application/json"}

    def url(path: str) -> str:
        return path.replace("{", "x").replace("}", "")

    for method, path, _ in routes:
        resp = await web_env.client.request(method, url(path), headers=json_only,
                                            allow_redirects=False)
        if path in PAGE_ROLES and method == "GET":  # a page sends the browser to log in
            assert resp.status == 302, (method, path, resp.status)
            assert resp.headers["Location"].startswith("/login?next="), path
        else:
            assert resp.status == 401, (method, path, resp.status)
    for username, role in (("anna", "agent"), ("sam", "supervisor"), ("admin", "admin")):
        web_env.client.session.cookie_jar.clear()
        await web_env.login(username)
        for method, path, needed in routes:
            if RANK[role] < RANK[needed]:
                resp = await web_env.client.request(method, url(path), headers=json_only,
                                                    allow_redirects=False)
                assert resp.status == 403, (username, method, path, resp.status)
            elif method not in ("GET", "HEAD"):
                resp = await web_env.client.request(method, url(path), headers=json_only,
                                                    json={}, allow_redirects=False)
                assert resp.status == 403, (username, method, path, resp.status)
                text = await resp.text()  # JSON, or the HTML error page
                assert "CSRF" in text or "not linked to an agent" in text, (method, path)
