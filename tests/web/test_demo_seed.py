"""`centrale demo seed`'s data as the pages read it: customers with open and closed cases
across channels, timelines, report figures — written once — and the guide
`run-demo` prints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cases import CaseService, IdentityRef
from core.bus import InMemoryBus
from core.clock import ManualClock, SystemClock
from tests.web.harness import demo_config
from web.demo.guide import guide
from web.demo.personas import SEEDED
from web.demo.seed import SeedRefused, seed_demo
from web.desktop.figures import History
from web.desktop.reports import report


async def test_seeded_customers_have_open_and_closed_cases_and_report_figures(
        sqlite_db) -> None:
    # A fixed "now" (noon UTC): the seed's history and the day charts do not depend on
    # when the test runs.
    config, clock = demo_config(), ManualClock(datetime(2026, 1, 6, 12, 0, tzinfo=UTC))
    first = await seed_demo(config, sqlite_db, InMemoryBus(), clock)
    assert (first.created, first.customers, first.cases) == (True, 3, 5)
    cases = CaseService(sqlite_db, InMemoryBus(), clock, default_region="NL")
    joost = SEEDED[0]
    res = await cases.resolve(IdentityRef("whatsapp", joost.wa_id))
    assert res.customer.display_name == joost.name and res.customer.language == "nl"
    mine = await cases.cases_of(res.customer.id)
    assert sorted(c.status for c in mine) == ["closed", "open"]
    channels = {e.channel for c in mine for e in await cases.timeline(c.id)}
    assert channels == {"voice", "whatsapp"}
    # The same person by phone: the same customer (what the simulator's call finds).
    by_phone = await cases.resolve(IdentityRef("phone", joost.mobile))
    assert by_phone.customer.id == res.customer.id
    now = clock.now()
    rows = await report(sqlite_db, by="queue", start=now - timedelta(days=30), end=now,
                        interval="day")
    assert {r["key"] for r in rows} == {"sales", "support"}
    assert sum(r["handled"] for r in rows) == 5
    assert {r["aht_seconds"] for r in rows if r["handled"]} >= {312.0}  # the figures' times

    charts = await History(sqlite_db, clock).today()  # the wallboard's day charts
    assert set(charts) == {"sales", "support"}
    assert len(charts["sales"]) == 24 and first.wallboard_points == 48  # 2 h, every 5 min

    again = await seed_demo(config, sqlite_db, InMemoryBus(), clock)
    assert not again.created  # once: a second run writes nothing
    assert len(await cases.cases_of(res.customer.id)) == 2
    rows_after = await report(sqlite_db, by="queue", start=now - timedelta(days=30),
                              end=now, interval="day")
    assert rows_after == rows


async def test_seed_refuses_a_config_without_the_demo(sqlite_db) -> None:
    config = demo_config()
    off = config.model_copy(update={"server": config.server.model_copy(update={
        "demo": config.server.demo.model_copy(update={"enabled": False})})})
    try:
        await seed_demo(off, sqlite_db, InMemoryBus(), SystemClock())
    except SeedRefused as exc:
        assert "server.demo.enabled" in str(exc)
    else:
        raise AssertionError("seeding a non-demo config must be refused")


def test_the_guide_names_what_to_open_and_the_steps() -> None:
    text = guide(demo_config(), host="127.0.0.1", port=8123)
    assert "http://127.0.0.1:8123/desktop" in text and "log in as anna / demo" in text
    assert "http://127.0.0.1:8123/demo" in text
    assert "http://127.0.0.1:8123/wallboard" in text and "sam / demo" in text
    for step in ("1. log in as anna", "2. open the simulator",
                 "3. send 'Mijn router doet het niet'", "4. now call"):
        assert step in text
    assert "(101) plays the closed message" in text
    assert "0.0.0.0" not in guide(demo_config(), host="0.0.0.0", port=8080)
