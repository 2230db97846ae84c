"""The screen-pop's customer record, read in one session (`CaseService.snapshot`),
is the same as what CaseService's own reads give: the same rows in the same order, the
timeline's last page with the case's total, the live customer after a merge. On SQLite
and PostgreSQL (a join and a window function)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cases import IdentityRef
from tests.web.harness import build_harness
from web.desktop.screenpop import (
    build_case_bundle,
    build_screenpop,
    case_view,
    customer_view,
    entry_view,
)

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def _expected(h: Any, case_id: str, limit: int) -> dict[str, Any]:
    """The bundle's customer record as CaseService's one-read-per-session API has it."""
    cases = h.ctx.cases
    case = await cases.get_case(case_id)
    customer = await cases.get_customer(case.customer_id)
    timeline = await cases.timeline(case_id)
    return {"customer": customer_view(customer, await cases.identities(customer.id)),
            "case": case_view(case),
            "timeline": [entry_view(e) for e in timeline[-limit:]],
            "timeline_total": len(timeline),
            "suggestions": [s.id for s in await cases.suggestions(customer.id)]}


def _record(bundle: dict[str, Any]) -> dict[str, Any]:
    keys = ("customer", "case", "timeline", "timeline_total")
    return {**{k: bundle[k] for k in keys},
            "suggestions": [s["id"] for s in bundle["suggestions"]]}


async def test_bundle_is_what_the_case_service_reads_give(database) -> None:
    h = build_harness(database)
    await h.ctx.cases.resolve(IdentityRef("email", "eva@example.com"))
    res = await h.ctx.cases.resolve(IdentityRef("whatsapp", "31612345678"),
                                    display_name="Eva <script>",
                                    unverified=[IdentityRef("email", "eva@example.com")])
    assert res.suggestions
    await h.ctx.cases.resolve(IdentityRef("phone", "+31612345678"))  # her second identity
    # Five entries, three at the same instant: the order falls back to recorded_at, id.
    for n, when in enumerate([AT, AT, AT, AT.replace(hour=8), AT.replace(hour=10)]):
        await h.ctx.cases.add_timeline(res.case.id, kind="message", channel="whatsapp",
                                       direction="inbound", body=f"message {n}",
                                       meta={"n": n}, occurred_at=when)
    for limit in (3, 300):
        bundle = await build_case_bundle(h.ctx, res.case.id, limit=limit)
        assert _record(bundle) == await _expected(h, res.case.id, limit)
    page = await build_case_bundle(h.ctx, res.case.id, limit=3)
    assert [e["body"] for e in page["timeline"]] == ["message 1", "message 2", "message 4"]
    assert page["timeline_total"] == 5
    assert len(page["customer"]["identities"]) == 2
    assert page["customer"]["display_name"] == "Eva <script>"  # escaped by the page, not here
    assert len(page["suggestions"]) == 1


async def test_pop_after_a_merge_shows_the_live_customer(database) -> None:
    h = build_harness(database)
    old = await h.ctx.cases.resolve(IdentityRef("email", "eva@example.com"), display_name="E.")
    live = await h.ctx.cases.resolve(IdentityRef("whatsapp", "31612345678"),
                                     display_name="Eva")
    await h.ctx.cases.add_timeline(old.case.id, kind="note", channel="internal",
                                   direction="internal", body="from the e-mail case")
    await h.ctx.merger.merge(old.customer.id, live.customer.id, actor="sam")
    pop = await build_screenpop(h.ctx, {"case_id": old.case.id, "offer_id": "o1",
                                        "customer_id": old.customer.id,  # the offer's, stale
                                        "channel": "email", "queue_id": "sales"})
    assert pop["customer"]["id"] == live.customer.id
    assert {i["kind"] for i in pop["customer"]["identities"]} == {"email", "whatsapp"}
    assert _record(pop) == await _expected(h, old.case.id, 300)
    assert pop["caller"] == "+31612345678"


async def test_pop_of_a_withheld_caller_and_of_an_unknown_case(database) -> None:
    h = build_harness(database)
    anonymous = await h.ctx.cases.resolve(None)
    pop = await build_screenpop(h.ctx, {"case_id": anonymous.case.id, "channel": "voice"})
    assert pop["customer"]["identities"] == []
    assert pop["timeline"] == [] and pop["timeline_total"] == 0
    assert pop["caller"] is None
    missing = await build_screenpop(h.ctx, {"case_id": "nope", "channel": "voice"})
    assert missing["error"] == "case not found: case nope not found"
    assert "customer" not in missing
