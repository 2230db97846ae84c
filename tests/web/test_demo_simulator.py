"""The demo's customer simulator as an HTTP surface: its routes exist only on a config
that enables the demo, it is behind the log-in with CSRF on writes, bad input gets a
clear 400, and its Graph API stand-in checks the access token as Meta does."""

from __future__ import annotations

import pytest

from tests.web.harness import demo_config

GRAPH = "/demo/graph/v21.0/106540352242922/messages"


def _without_demo():  # type: ignore[no-untyped-def]
    config = demo_config()
    server = config.server.model_copy(update={"demo": config.server.demo.model_copy(
        update={"enabled": False})})
    return config.model_copy(update={"server": server})


@pytest.mark.parametrize("method,path", [
    ("GET", "/demo"), ("GET", "/demo/api/state?wa_id=31612345678"),
    ("POST", "/demo/api/whatsapp"), ("POST", "/demo/api/calls"), ("POST", GRAPH)])
async def test_without_the_demo_flag_the_routes_do_not_exist(make_web, method: str,
                                                             path: str) -> None:
    web = await make_web(config=_without_demo())
    await web.login("admin")
    resp = await web.client.request(method, path, json={})
    assert resp.status == 404


async def test_the_simulator_needs_a_login_and_its_page_runs_only_its_own_scripts(
        make_web) -> None:
    web = await make_web()
    resp = await web.client.get("/demo", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login?next=")
    api = await web.client.get("/demo/api/state?wa_id=31612345678",
                               headers={"Accept": "application/json"})
    assert api.status == 401
    await web.login("anna")
    page = await web.client.get("/demo")
    html = await page.text()
    assert page.status == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    # anna's page is in Dutch (the demo site's language): the button reads "Bel …"
    assert "Eva de Boer" in html and "Bel After-hours test number (101)" in html
    assert 'data-dial="101"' in html
    assert "<script>" not in html.replace('<script src="/static/common.js"></script>', "") \
        .replace('<script src="/static/demo.js"></script>', "")


async def test_writes_need_the_csrf_token(make_web) -> None:
    web = await make_web()
    await web.login("anna")
    resp = await web.post_json("/demo/api/whatsapp", {"wa_id": "31612345678",
                                                      "text": "hallo"}, csrf=None)
    assert resp.status == 403
    assert "CSRF" in (await resp.json())["error"]


@pytest.mark.parametrize("path,body,status,fragment", [
    ("/demo/api/whatsapp", {"wa_id": "12ab", "text": "x"}, 400, "7 to 15 digits"),
    ("/demo/api/whatsapp", {"wa_id": "31612345678", "text": "  "}, 400, "type a message"),
    ("/demo/api/whatsapp", {"wa_id": "31612345678", "text": "x" * 4097}, 400,
     "at most 4096"),
    ("/demo/api/whatsapp", {"wa_id": "31612345678", "name": "n" * 61, "text": "x"}, 400,
     "longer than 60"),
    ("/demo/api/whatsapp", ["not", "an", "object"], 400, "JSON object"),
    ("/demo/api/calls", {"number": "+31612345678", "dial": "0900-evil"}, 400,
     "dial one of the demo's numbers"),
    ("/demo/api/calls", {"number": "sip:x@evil", "dial": "100"}, 400, "3 to 15 digits"),
    ("/demo/api/calls/nosuchcall/dtmf", {"digit": "1"}, 404, "no such call"),
    ("/demo/api/calls/nosuchcall/hangup", {}, 404, "no such call"),
])
async def test_bad_input_gets_a_clear_error(make_web, path: str, body: object, status: int,
                                            fragment: str) -> None:
    web = await make_web()
    csrf = await web.login("anna")
    resp = await web.post_json(path, body, csrf)
    assert resp.status == status
    assert fragment in (await resp.json())["error"]


async def test_a_body_that_is_not_json_is_a_400(make_web) -> None:
    web = await make_web()
    csrf = await web.login("anna")
    resp = await web.client.post("/demo/api/whatsapp", data=b"{nope",
                                 headers={"X-CSRF-Token": csrf,
                                          "Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "body must be JSON"


async def test_the_graph_stand_in_wants_the_channels_access_token(make_web) -> None:
    web = await make_web()
    body = {"messaging_product": "whatsapp", "to": "31612345678", "type": "text",
            "text": {"body": "hoi"}}
    wrong = await web.client.post(GRAPH, json=body,
                                  headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status == 401
    assert (await wrong.json())["error"]["code"] == 190
    none = await web.client.post(GRAPH, json=body)
    assert none.status == 401
    other = await web.client.post("/demo/graph/v21.0/999/messages", json=body,
                                  headers={"Authorization": "Bearer demo-token"})
    assert other.status == 400
    bad = await web.client.post(GRAPH, json={"to": "31612345678"},
                                headers={"Authorization": "Bearer demo-token"})
    assert bad.status == 400
    ok = await web.client.post(GRAPH, json=body,
                               headers={"Authorization": "Bearer demo-token"})
    assert ok.status == 200
    answer = await ok.json()
    assert answer["messages"][0]["id"].startswith("wamid.")
    assert answer["contacts"][0]["wa_id"] == "31612345678"
