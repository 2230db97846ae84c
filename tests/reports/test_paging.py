"""Paging an agent report by key: a page's rows are exactly the unpaged report's rows of
that page's agents (sorted keys; `-` for abandoned contacts, which have no agent), the
totals per key and overall cover every key on every page, and a bad page is a 422-style
error naming the field. Before and after the rollup (totals table) alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from seed import History, config, service

from reports import ReportQueryError, parse_query
from reports.rollup import rebuild


def utc(d: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 10, d, hour, minute, tzinfo=UTC)


async def test_pages_of_agents_add_up_to_the_whole_report(database) -> None:  # type: ignore[no-untyped-def]
    cfg = config()
    now = utc(31, 12)
    svc = service(database, cfg, now)
    h = History(svc)
    for i, agent in enumerate(("anna", "bram", "cleo")):
        await h.contact(utc(5, 8 + i, 10), agent=agent, wait=5 + i, talk=60 * (i + 1))
        await h.contact(utc(6, 9, 20 + i), agent=agent, wait=30, wrap=10)
    await h.contact(utc(6, 9, 40), abandon=True, wait=12)  # key "-"
    params = {"by": "agent", "granularity": "60min", "from": "2026-10-01",
              "to": "2026-10-31"}

    for rolled_up in (False, True):
        if rolled_up:
            while await rebuild(database):
                pass
        whole = await svc.report(parse_query(params, cfg, now))
        assert "page" not in whole
        keys = sorted(whole["totals"])
        assert keys == ["-", "anna", "bram", "cleo"]
        seen = []
        for number in (1, 2):
            page = await svc.report(parse_query(
                {**params, "page": str(number), "page_size": "3"}, cfg, now))
            assert page["page"] == {"number": number, "size": 3, "pages": 2, "keys": 4}
            mine = keys[(number - 1) * 3:number * 3]
            assert page["rows"] == [r for r in whole["rows"] if r["key"] in mine]
            assert page["totals"] == whole["totals"]  # every key, on every page
            assert page["overall"] == whole["overall"]
            seen += page["rows"]
        assert sorted(seen, key=lambda r: (r["interval_start"], r["key"])) == whole["rows"]
        beyond = await svc.report(parse_query({**params, "page": "3", "page_size": "3"},
                                              cfg, now))
        assert beyond["rows"] == [] and beyond["overall"] == whole["overall"]
        # a key filter and paging together: the page is of the filtered keys
        two = await svc.report(parse_query({**params, "agent": "bram,cleo",
                                            "page_size": "1"}, cfg, now))
        assert {r["key"] for r in two["rows"]} == {"bram"}
        assert set(two["totals"]) == {"bram", "cleo"} and two["page"]["pages"] == 2


@pytest.mark.parametrize(("field", "value"), [("page", "0"), ("page", "x"),
                                               ("page_size", "1001"), ("page_size", "-1"),
                                               ("page_size", "٣")])
def test_a_bad_page_names_the_field(field: str, value: str) -> None:
    with pytest.raises(ReportQueryError) as err:
        parse_query({"by": "agent", field: value}, config(), utc(31, 12))
    assert err.value.field == field and "whole number from 1" in err.value.message
