"""Log-in, sessions, CSRF, rate limiting, roles and API tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.clock import ManualClock
from tests.web.harness import form_csrf


async def test_login_sets_a_hardened_cookie_and_lands_on_the_role_home(web_env) -> None:
    page = await web_env.client.get("/login")
    token = form_csrf(await page.text())
    resp = await web_env.client.post("/login", data={"username": "anna", "password": "demo",
                                                     "csrf_token": token},
                                     allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/desktop"
    cookie = resp.cookies["centrale_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]  # plain http in tests; https public_url turns it on
    me = await web_env.client.get("/api/me")
    assert (await me.json())["agent_id"] == "anna"


async def test_demo_password_is_only_kept_as_an_argon2_hash(web_env) -> None:
    from web.desktop.state import DESKTOP

    st = web_env.client.app[DESKTOP]
    user = st.directory.get("anna")
    assert user.password_hash.startswith("$argon2id$")
    assert "demo" not in user.password_hash


async def test_wrong_password_is_refused_without_saying_which_part(web_env) -> None:
    page = await web_env.client.get("/login")
    resp = await web_env.client.post("/login", data={
        "username": "anna", "password": "nope", "csrf_token": form_csrf(await page.text())})
    assert resp.status == 401
    assert "Wrong user name or password" in await resp.text()
    page = await web_env.client.get("/login")
    resp = await web_env.client.post("/login", data={
        "username": "nobody", "password": "demo", "csrf_token": form_csrf(await page.text())})
    assert resp.status == 401


async def test_login_without_the_form_token_is_refused(web_env) -> None:
    await web_env.client.get("/login")
    resp = await web_env.client.post("/login", data={"username": "anna", "password": "demo",
                                                     "csrf_token": "forged"})
    assert resp.status == 403
    assert (await web_env.client.get("/api/me")).status == 401


async def test_login_is_rate_limited_per_user(web_env) -> None:
    for _ in range(5):
        page = await web_env.client.get("/login")
        resp = await web_env.client.post("/login", data={
            "username": "bram", "password": "wrong", "csrf_token": form_csrf(await page.text())})
        assert resp.status == 401
    page = await web_env.client.get("/login")
    resp = await web_env.client.post("/login", data={
        "username": "bram", "password": "demo", "csrf_token": form_csrf(await page.text())})
    assert resp.status == 429  # even the right password waits out the window
    assert "Retry-After" in resp.headers


async def test_state_change_needs_the_session_csrf_token(web_env) -> None:
    csrf = await web_env.login("anna")
    missing = await web_env.post_json("/api/agents/anna/state", {"state": "available"}, None)
    assert missing.status == 403
    assert "CSRF" in (await missing.json())["error"]
    forged = await web_env.post_json("/api/agents/anna/state", {"state": "available"}, "x" * 43)
    assert forged.status == 403
    assert web_env.h.acd.calls == []  # nothing reached the ACD
    ok = await web_env.post_json("/api/agents/anna/state", {"state": "available"}, csrf)
    assert ok.status == 200, await ok.text()
    assert web_env.h.acd.states["anna"] == ("available", None)


async def test_forms_need_the_csrf_token_too(web_env) -> None:
    await web_env.login("admin")
    resp = await web_env.client.post("/admin/tokens", data={"username": "sam",
                                                            "label": "crm"})
    assert resp.status == 403
    resp = await web_env.client.post("/logout", data={})
    assert resp.status == 403


async def test_expired_session_is_refused(make_web) -> None:
    clock = ManualClock()
    web = await make_web(clock=clock)
    await web.login("anna")
    assert (await web.client.get("/api/me")).status == 200
    clock.advance(timedelta(hours=2, minutes=1).total_seconds())  # idle timeout
    resp = await web.client.get("/api/me")
    assert resp.status == 401
    assert "expired" in (await resp.json())["error"]
    page = await web.client.get("/desktop", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/login")


async def test_session_ends_after_the_absolute_limit_even_when_active(make_web) -> None:
    clock = ManualClock()
    web = await make_web(clock=clock)
    await web.login("anna")
    for _ in range(13):
        clock.advance(3600 - 60)
        await web.client.get("/api/me")
    assert (await web.client.get("/api/me")).status == 401


async def test_logout_ends_the_session(web_env) -> None:
    csrf = await web_env.login("anna")
    resp = await web_env.client.post("/logout", data={"csrf_token": csrf},
                                     allow_redirects=False)
    assert resp.status == 302
    web_env.client.session.cookie_jar.clear()
    assert (await web_env.client.get("/api/me")).status == 401


async def test_roles_are_checked_on_every_page_and_endpoint(web_env) -> None:
    await web_env.login("anna")
    for path in ("/wallboard", "/reports", "/admin"):
        resp = await web_env.client.get(path)
        assert resp.status == 403, path
    for path in ("/api/agents", "/api/stats", "/api/reports", "/api/webhooks"):
        resp = await web_env.client.get(path)
        assert resp.status == 403, path
        assert "role" in (await resp.json())["error"]


async def test_supervisor_is_not_admin(web_env) -> None:
    await web_env.login("sam")
    assert (await web_env.client.get("/wallboard")).status == 200
    assert (await web_env.client.get("/admin")).status == 403
    assert (await web_env.client.get("/desktop")).status == 403  # not linked to an agent


async def test_api_token_issued_by_admin_works_without_csrf_and_can_be_revoked(web_env) -> None:
    csrf = await web_env.login("admin")
    resp = await web_env.post_json("/api/tokens", {"username": "sam", "label": "crm"}, csrf)
    assert resp.status == 201
    created = await resp.json()
    token = created["token"]
    web_env.client.session.cookie_jar.clear()
    auth = {"Authorization": f"Bearer {token}"}
    resp = await web_env.client.get("/api/agents", headers=auth)
    assert resp.status == 200
    resp = await web_env.client.post("/api/agents/anna/state", json={"state": "available"},
                                     headers=auth)
    assert resp.status == 200
    assert (await web_env.client.get("/api/agents",
                                     headers={"Authorization": "Bearer wrong"})).status == 401
    csrf = await web_env.login("admin")
    resp = await web_env.client.delete(f"/api/tokens/{created['id']}",
                                       headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    web_env.client.session.cookie_jar.clear()
    assert (await web_env.client.get("/api/agents", headers=auth)).status == 401


@pytest.mark.parametrize("target", [
    "//evil.example/x", "/\t/evil.example/", "/\n/evil.example/", "/\r/evil.example/",
    "/\\evil.example/", " //evil.example/", "/\x00/evil.example/", "https://evil.example/",
    "/\t\\evil.example/",
])
async def test_open_redirect_after_login_is_refused(web_env, target: str) -> None:
    """Issue 18, defect 5: the target is checked as the browser will read it (tabs and
    newlines removed), so `/<TAB>/evil.example/` is refused, not turned into `//evil`."""
    page = await web_env.client.get("/login")
    resp = await web_env.client.post("/login", data={
        "username": "anna", "password": "demo", "csrf_token": form_csrf(await page.text()),
        "next": target}, allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/desktop"


async def test_login_link_with_an_encoded_tab_does_not_carry_the_target(web_env) -> None:
    page = await web_env.client.get("/login?next=/%09/evil.example/")
    assert "evil.example" not in await page.text()
    resp = await web_env.client.post("/login", data={
        "username": "anna", "password": "demo", "csrf_token": form_csrf(await page.text()),
        "next": "/desktop?tab=history"}, allow_redirects=False)
    assert resp.headers["Location"] == "/desktop?tab=history"  # a local target still works


async def test_websocket_refuses_anonymous_and_foreign_origins(web_env) -> None:
    resp = await web_env.client.get("/ws")
    assert resp.status == 401
    await web_env.login("anna")
    resp = await web_env.client.get("/ws", headers={
        "Origin": "https://evil.example", "Connection": "Upgrade", "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert resp.status == 403


def test_client_address_is_the_right_most_untrusted_forwarded_hop() -> None:
    from web.desktop.client_address import resolve_client, trusted_networks

    proxies = trusted_networks(("10.0.0.0/8", "2001:db8::/32"))
    # No trusted proxies configured, or an untrusted peer: the header is the client's
    # own claim and is ignored.
    assert resolve_client("198.51.100.9", ["203.0.113.7"], ()) == "198.51.100.9"
    assert resolve_client("198.51.100.9", ["203.0.113.7"], proxies) == "198.51.100.9"
    # The proxy's own hop is believed; what the client prepended is not.
    assert resolve_client("10.0.0.2", ["203.0.113.7"], proxies) == "203.0.113.7"
    assert resolve_client("10.0.0.2", ["6.6.6.6, 203.0.113.7"], proxies) == "203.0.113.7"
    # A chain of trusted proxies is walked; several headers count as one list.
    assert resolve_client("10.0.0.2", ["6.6.6.6, 203.0.113.7", "10.1.1.1"],
                          proxies) == "203.0.113.7"
    assert resolve_client("2001:db8::5", ["[2001:db8:1::9]:443, 192.0.2.1:5555"],
                          proxies) == "192.0.2.1"
    # No header, or garbage in it: the last address known for sure.
    assert resolve_client("10.0.0.2", [], proxies) == "10.0.0.2"
    assert resolve_client("10.0.0.2", ["unknown"], proxies) == "10.0.0.2"
    assert resolve_client("::ffff:10.0.0.2", ["203.0.113.7"], proxies) == "203.0.113.7"


async def _fail_login(web_env, username: str, forwarded_for: str | None) -> int:
    page = await web_env.client.get("/login")
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    resp = await web_env.client.post("/login", headers=headers, data={
        "username": username, "password": "wrong", "csrf_token": form_csrf(await page.text())})
    return resp.status


async def test_behind_a_trusted_proxy_failures_count_per_forwarded_client(make_web) -> None:
    from tests.web.harness import demo_config

    config = demo_config()
    web_cfg = config.server.web.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]})
    config = config.model_copy(update={"server": config.server.model_copy(
        update={"web": web_cfg})})
    web_env = await make_web(config=config)  # the test client's peer is 127.0.0.1
    for i in range(20):
        assert await _fail_login(web_env, f"guess{i}", "6.6.6.6, 203.0.113.7") == 401
    assert await _fail_login(web_env, "guess-more", "203.0.113.7") == 429
    # Another client behind the same proxy is not locked out by the first one.
    assert await _fail_login(web_env, "someone", "198.51.100.9") == 401


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(web_env) -> None:
    from sqlmodel import select

    from web.tables import LoginAttempt

    for i in range(20):  # a new spoofed address each time: still one peer
        assert await _fail_login(web_env, f"guess{i}", f"203.0.113.{i}") == 401
    assert await _fail_login(web_env, "guess-more", "198.51.100.77") == 429
    async with web_env.h.ctx.db.session() as s:
        remotes = {row.remote for row in await s.exec(select(LoginAttempt))}
    assert remotes == {"127.0.0.1"}


async def test_a_new_token_is_shown_once_after_a_redirect(web_env) -> None:
    csrf = await web_env.login("admin")
    resp = await web_env.client.post("/admin/tokens", allow_redirects=False, data={
        "username": "sam", "label": "crm", "csrf_token": csrf})
    assert resp.status == 303 and resp.headers["Location"] == "/admin"
    cookie = resp.cookies["centrale_new_token"]
    assert cookie["path"] == "/admin" and cookie["httponly"] and cookie["samesite"] == "Strict"
    token = cookie.value
    page = await (await web_env.client.get("/admin")).text()
    assert token in page and "copy it now" in page
    again = await (await web_env.client.get("/admin")).text()  # a reload
    assert token not in again
    me = await web_env.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert (await me.json())["username"] == "sam"
