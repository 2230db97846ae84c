"""Group commit of timeline entries (cases.timeline_writer) against real SQLite and
PostgreSQL: many cases' entries in few transactions, each case's order kept, the
events after the commit, a bad entry not taking its batch down; and SQLite writers
queued in-process instead of failing with `database is locked`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cases import CaseService, IdentityRef
from core.bus import InMemoryBus
from core.clock import ManualClock
from core.events import Event


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def bus() -> InMemoryBus:
    return InMemoryBus()


@pytest.fixture
def cases(database, bus: InMemoryBus, clock: ManualClock) -> CaseService:  # type: ignore[no-untyped-def]
    return CaseService(database, bus, clock, default_region="NL",
                       reopen_window=timedelta(days=7))


async def test_entries_of_many_cases_in_few_commits_in_order(
        cases: CaseService, bus: InMemoryBus) -> None:
    added: list[Event] = []

    async def grab(e: Event) -> None:
        added.append(e)

    await bus.subscribe("timeline.added", grab)
    resolved = [await cases.resolve(IdentityRef("phone", f"+3120{5000000 + i:07d}"))
                for i in range(30)]
    case_ids = [r.case.id for r in resolved]
    # 30 calls, 8 steps each, interleaved as concurrent calls would write them; the
    # clock does not move (a manual clock): the order must still be the append order
    for step in range(8):
        for case_id in case_ids:
            cases.append_timeline(case_id, kind="ivr_step", channel="voice",
                                  direction="inbound", body=f"step {step}",
                                  meta={"step": step})
    for case_id in case_ids:
        await cases.timeline_settled(case_id)
    assert cases.writer.entries == 240
    assert cases.writer.batches <= 8, cases.writer.batches  # not one commit per entry
    for case_id in case_ids:
        timeline = await cases.timeline(case_id)
        assert [e.body for e in timeline] == [f"step {i}" for i in range(8)]
        assert [e.meta["step"] for e in timeline] == list(range(8))
    assert len(added) == 240
    assert {e.payload["case_id"] for e in added} == set(case_ids)


async def test_an_entry_for_a_missing_case_does_not_lose_the_others(
        cases: CaseService) -> None:
    good = (await cases.resolve(IdentityRef("phone", "+31206000000"))).case.id
    a = cases.append_timeline(good, kind="ivr_step", channel="voice", direction="inbound",
                              body="first")
    bad = cases.append_timeline("no-such-case", kind="ivr_step", channel="voice",
                                direction="inbound", body="lost")
    b = cases.append_timeline(good, kind="ivr_step", channel="voice", direction="inbound",
                              body="second")
    assert await bad is None  # logged, not raised
    assert (await a) is not None and (await b) is not None
    assert [e.body for e in await cases.timeline(good)] == ["first", "second"]


async def test_settled_waits_for_the_commit(cases: CaseService) -> None:
    case_id = (await cases.resolve(IdentityRef("phone", "+31206000001"))).case.id
    for i in range(5):
        cases.append_timeline(case_id, kind="ivr_step", channel="voice",
                              direction="inbound", body=f"s{i}")
    await cases.timeline_settled(case_id)
    assert len(await cases.timeline(case_id)) == 5
    await cases.timeline_settled("never-written")  # nothing pending: returns at once


async def test_many_writers_at_once_queue_instead_of_failing(
        cases: CaseService, database) -> None:  # type: ignore[no-untyped-def]
    """60 first contacts resolved at once, each its own write transaction: on SQLite they
    used to sleep in the busy handler and some failed with `database is locked`."""
    results = await asyncio.gather(*(
        cases.resolve(IdentityRef("phone", f"+3120{7000000 + i:07d}")) for i in range(60)))
    assert len({r.customer.id for r in results}) == 60
    assert all(r.case_created for r in results)
