"""Searching customers and cases as an agent types: a phone number in national or
international format finds the WhatsApp customer with the same number, an e-mail in
any case, a part of the name, a case id; a merged-away customer is found as the one it
was merged into. Reopening a closed case. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cases import CaseService, CustomerMerger, IdentityRef, NotFound
from core.bus import InMemoryBus
from core.clock import ManualClock


@pytest.fixture
def cases(database) -> CaseService:  # type: ignore[no-untyped-def]
    return CaseService(database, InMemoryBus(), ManualClock(), default_region="NL",
                       reopen_window=timedelta(days=7))


async def found(cases: CaseService, q: str) -> list[str]:
    return [c.display_name or "" for c, _ in await cases.search(q)]


async def test_search_by_every_way_an_agent_knows_a_customer(cases: CaseService) -> None:
    eva = await cases.resolve(IdentityRef("whatsapp", "31612345678"),
                              display_name="Eva de Boer")
    await cases.resolve(IdentityRef("email", "Piet@Example.com"), display_name="Piet Jansen")
    for q in ("0612345678", "06 1234 5678", "+31 6 12345678", "0031612345678", "31612345678"):
        assert await found(cases, q) == ["Eva de Boer"], q
    assert await found(cases, "piet@example.COM") == ["Piet Jansen"]
    assert await found(cases, "de boer") == ["Eva de Boer"]
    assert await found(cases, "jans") == ["Piet Jansen"]
    [(customer, case_list)] = await cases.search(eva.case.id)
    assert customer.id == eva.customer.id and [c.id for c in case_list] == [eva.case.id]
    assert await found(cases, "0699999999") == []
    assert await found(cases, "   ") == []
    assert await found(cases, "%%") == []  # a LIKE wildcard is text, not "everything"


async def test_a_merged_customer_is_found_as_the_one_it_became(
        database, cases: CaseService) -> None:  # type: ignore[no-untyped-def]
    a = await cases.resolve(IdentityRef("phone", "+31201234567"), display_name="A. Visser")
    b = await cases.resolve(IdentityRef("email", "anne@visser.nl"), display_name="Anne Visser")
    merger = CustomerMerger(database, cases.bus, cases.clock)
    await merger.merge(a.customer.id, b.customer.id, actor="sam")
    [(customer, _)] = await cases.search("020 123 4567")
    assert customer.id == b.customer.id


async def test_reopen_a_closed_case(cases: CaseService) -> None:
    res = await cases.resolve(IdentityRef("phone", "+31201234568"))
    await cases.close_case(res.case.id)
    case = await cases.reopen_case(res.case.id)
    assert case.status == "open" and case.closed_at is None
    with pytest.raises(NotFound):
        await cases.reopen_case("nope")
