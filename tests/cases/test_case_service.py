"""The customer record against real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cases import CaseError, CaseService, CustomerMerger, IdentityRef, NotFound
from core.bus import InMemoryBus
from core.clock import ManualClock
from core.events import Event


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def bus() -> InMemoryBus:
    return InMemoryBus()


@pytest.fixture
async def events(bus: InMemoryBus) -> list[Event]:
    got: list[Event] = []

    async def grab(e: Event) -> None:
        got.append(e)

    await bus.subscribe("*", grab)
    return got


@pytest.fixture
def cases(database, bus: InMemoryBus, clock: ManualClock) -> CaseService:  # type: ignore[no-untyped-def]
    return CaseService(database, bus, clock, default_region="NL",
                       reopen_window=timedelta(days=7))


async def test_whatsapp_then_national_call_is_one_customer_and_one_case(
        cases: CaseService, clock: ManualClock, events: list[Event]) -> None:
    first = await cases.resolve(IdentityRef("whatsapp", "31612345678"), display_name="Jan")
    await cases.add_timeline(first.case.id, kind="message", channel="whatsapp",
                             direction="inbound", body="Mijn pakket is niet aangekomen")
    clock.advance(3600)
    second = await cases.resolve(IdentityRef("phone", "0612345678"))
    await cases.add_timeline(second.case.id, kind="call", channel="voice", direction="inbound",
                             meta={"duration": 125})

    assert second.customer.id == first.customer.id
    assert second.case.id == first.case.id
    assert not second.customer_created and not second.case_created
    timeline = await cases.timeline(first.case.id)
    assert [(t.channel, t.kind) for t in timeline] == [("whatsapp", "message"), ("voice", "call")]
    kinds = sorted(i.kind for i in await cases.identities(first.customer.id))
    assert kinds == ["phone", "whatsapp"]
    assert [e.topic for e in events].count("case.opened") == 1


async def test_case_closed_within_the_window_is_reopened_after_it_a_new_case(
        cases: CaseService, clock: ManualClock) -> None:
    r1 = await cases.resolve(IdentityRef("email", "jan@example.nl"))
    await cases.close_case(r1.case.id)
    clock.advance(timedelta(days=6).total_seconds())
    r2 = await cases.resolve(IdentityRef("email", "JAN@example.nl"))
    assert r2.case.id == r1.case.id and r2.case_reopened
    await cases.close_case(r2.case.id)
    clock.advance(timedelta(days=7, seconds=1).total_seconds())
    r3 = await cases.resolve(IdentityRef("email", "jan@example.nl"))
    assert r3.case.id != r1.case.id and r3.case_created
    assert r3.customer.id == r1.customer.id


async def test_withheld_callers_never_match(cases: CaseService) -> None:
    a = await cases.resolve(None)
    b = await cases.resolve(None)
    assert a.customer.id != b.customer.id
    assert a.customer.anonymous and b.customer.anonymous


async def test_unverified_prechat_email_becomes_a_suggestion_not_a_merge(
        cases: CaseService) -> None:
    known = await cases.resolve(IdentityRef("email", "jan@example.nl"))
    visitor = await cases.resolve(IdentityRef("webchat", "visitor-abc"),
                                  unverified=[IdentityRef("email", "jan@example.nl")])
    assert visitor.customer.id != known.customer.id
    [sug] = await cases.suggestions(visitor.customer.id)
    assert sug.candidate_customer_id == known.customer.id
    # The visitor did not gain the e-mail identity.
    assert [i.kind for i in await cases.identities(visitor.customer.id)] == ["webchat"]


async def test_ambiguous_brazilian_number_is_suggested_not_linked(cases: CaseService) -> None:
    old = await cases.resolve(IdentityRef("whatsapp", "551187654321"))
    new = await cases.resolve(IdentityRef("phone", "+5511987654321"))
    assert new.customer.id != old.customer.id
    assert [s.candidate_customer_id for s in new.suggestions] == [old.customer.id]


async def test_concurrent_first_contacts_create_one_customer(cases: CaseService) -> None:
    results = await asyncio.gather(*[
        cases.resolve(IdentityRef("phone", "+31201234567")) for _ in range(8)])
    assert len({r.customer.id for r in results}) == 1
    assert len({r.case.id for r in results}) >= 1
    assert len(await cases.identities(results[0].customer.id)) == 1


async def test_timeline_dedup_key_stores_once(cases: CaseService) -> None:
    r = await cases.resolve(IdentityRef("whatsapp", "31612345678"))
    e1, created1 = await cases.add_timeline(r.case.id, kind="message", channel="whatsapp",
                                            direction="inbound", body="hi",
                                            dedup_key="wamid.X1")
    e2, created2 = await cases.add_timeline(r.case.id, kind="message", channel="whatsapp",
                                            direction="inbound", body="hi",
                                            dedup_key="wamid.X1")
    assert created1 and not created2 and e1.id == e2.id
    assert len(await cases.timeline(r.case.id)) == 1


async def test_merge_moves_everything_is_audited_and_reversible(
        cases: CaseService, database, bus: InMemoryBus, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    merger = CustomerMerger(database, bus, clock)
    a = await cases.resolve(IdentityRef("email", "jan@example.nl"))
    b = await cases.resolve(IdentityRef("phone", "+31201111111"))
    await cases.add_timeline(b.case.id, kind="call", channel="voice", direction="inbound")
    record = await merger.merge(b.customer.id, a.customer.id, actor="sam", reason="same person")
    assert sorted(i.kind for i in await cases.identities(a.customer.id)) == ["email", "phone"]
    assert {c.id for c in await cases.cases_of(a.customer.id)} == {a.case.id, b.case.id}
    # A later call from the merged-away number lands on the surviving customer.
    again = await cases.resolve(IdentityRef("phone", "020 111 1111"))
    assert again.customer.id == a.customer.id
    with pytest.raises(CaseError):
        await merger.merge(b.customer.id, a.customer.id, actor="sam")

    await merger.unmerge(record.id, actor="admin")
    assert [i.kind for i in await cases.identities(a.customer.id)] == ["email"]
    assert [c.id for c in await cases.cases_of(b.customer.id)] == [b.case.id]
    assert len(await cases.timeline(b.case.id)) == 1  # history never deleted
    history = await merger.history(a.customer.id)
    assert history[0].reverted_by == "admin"
    with pytest.raises(CaseError):
        await merger.unmerge(record.id, actor="admin")


async def test_unknown_ids_are_clear_errors(cases: CaseService) -> None:
    with pytest.raises(NotFound, match="case nope not found"):
        await cases.add_timeline("nope", kind="note", channel="internal", direction="internal")
    with pytest.raises(NotFound):
        await cases.get_customer("nope")


async def test_first_contacts_on_two_channels_at_once_are_one_customer(
        cases: CaseService) -> None:
    """An SMS and a WhatsApp message from the same new number, resolved concurrently,
    must not create two customers (the identities differ in kind, so no UNIQUE
    constraint catches it: resolution of one person is serialised)."""
    results = await asyncio.gather(*[
        cases.resolve(IdentityRef(kind, raw)) for kind, raw in
        [("phone", "+31687654321"), ("whatsapp", "31687654321")] * 4])
    assert len({r.customer.id for r in results}) == 1
    assert len({r.case.id for r in results}) == 1


async def test_contacts_identified_at_once_are_group_committed_like_one_by_one(
        cases: CaseService, events: list[Event]) -> None:
    """Twenty calls identified at the same moment go into few transactions (the
    resolution batcher's group commit, set-wise) and leave the records and events of twenty
    resolutions one at a time: a customer, an identity, a case and the call's entry
    each; a number seen before joins its customer's case; the events in call order."""
    from cases.service import TimelineDraft

    known = await cases.resolve(IdentityRef("phone", "+31201110000"))
    events.clear()
    numbers = [f"+3120111{i:04d}" for i in range(1, 20)] + ["+31201110000"]
    recorded = await asyncio.gather(*[
        cases.resolve_and_record(IdentityRef("phone", n), TimelineDraft(
            kind="call", channel="voice", direction="inbound", body=f"call from {n}"))
        for n in numbers])
    assert cases.resolver.batches >= 1 and cases.resolver.batched >= 2
    assert cases.resolver.fallbacks == 0
    assert len({r.resolution.customer.id for r in recorded}) == 20
    last = recorded[-1].resolution
    assert last.customer.id == known.customer.id and last.case.id == known.case.id
    assert not last.customer_created and not last.case_created
    for n, r in zip(numbers, recorded, strict=True):
        timeline = await cases.timeline(r.resolution.case.id)
        assert [t.body for t in timeline] == [f"call from {n}"]
        assert [i.value for i in await cases.identities(r.resolution.customer.id)] == [n]
    created = [e.payload["customer_id"] for e in events if e.topic == "customer.created"]
    expected = [r.resolution.customer.id for r in recorded[:19]]
    assert created == expected  # one batch after the other: the order the calls came in
    assert [e.topic for e in events].count("timeline.added") == 20


async def test_a_failing_resolution_in_a_batch_fails_alone(cases: CaseService) -> None:
    """One contact's `within` raises: its batch is rolled back and run one by one, so
    only that contact fails and every other is recorded once."""
    from cases.service import TimelineDraft

    async def bad(_s, _r):  # type: ignore[no-untyped-def]
        raise RuntimeError("the caller's own write failed")

    numbers = [f"+3120222{i:04d}" for i in range(10)]
    results = await asyncio.gather(*[
        cases.resolve_and_record(IdentityRef("phone", n), TimelineDraft(
            kind="call", channel="voice", direction="inbound", body=n),
            within=bad if i == 4 else None)
        for i, n in enumerate(numbers)], return_exceptions=True)
    assert isinstance(results[4], RuntimeError)
    assert cases.resolver.fallbacks >= (1 if cases.db.is_sqlite else 0)
    for i, r in enumerate(results):
        if i == 4:
            continue
        assert not isinstance(r, BaseException)
        assert [t.body for t in await cases.timeline(r.resolution.case.id)] == [numbers[i]]


async def test_a_set_wise_batch_decides_as_the_orm_path_one_by_one(
        database, bus: InMemoryBus, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    """The same contacts resolved in one set-wise batch (every one plain) and one by one
    on the ORM path, each against its own copy of the same records: a known number, its
    WhatsApp twin, a case closed within the window (reopened) and one closed too long
    ago (a new case), a merged-away customer, a name filled in, a Brazilian look-alike
    (suggested), a withheld caller, two identities of one customer in the same batch —
    the same decisions, events and timelines."""
    from cases.service import TimelineDraft

    async def scenario(prefix: str, setwise: bool) -> list[tuple]:  # type: ignore[type-arg]
        cases = CaseService(database, bus, clock, default_region="NL",
                            reopen_window=timedelta(days=7))
        got: list[Event] = []

        async def grab(e: Event) -> None:
            got.append(e)

        merger = CustomerMerger(database, bus, clock)
        p = prefix
        known = await cases.resolve(IdentityRef("phone", f"+3120{p}0001"))
        twin = await cases.resolve(IdentityRef("whatsapp", f"3120{p}0002"))
        recent = await cases.resolve(IdentityRef("phone", f"+3120{p}0003"))
        await cases.close_case(recent.case.id)
        old = await cases.resolve(IdentityRef("email", f"old{p}@example.nl"))
        await cases.close_case(old.case.id)
        clock.advance(timedelta(days=8).total_seconds())
        recent2 = await cases.resolve(IdentityRef("phone", f"+3120{p}0004"))
        await cases.close_case(recent2.case.id)
        gone = await cases.resolve(IdentityRef("phone", f"+3120{p}0005"))
        await merger.merge(gone.customer.id, known.customer.id, actor="t")
        both = await cases.resolve(IdentityRef("email", f"both{p}@example.nl"))
        await cases.close_case(both.case.id)
        clock.advance(timedelta(days=8).total_seconds())
        await cases.update_customer(both.customer.id, display_name="")
        # the second identity of `both`: an anonymous-ish record gains a name below
        from cases.tables import Identity
        from core.ids import new_id
        async with database.session() as s:
            s.add(Identity(id=new_id(), customer_id=both.customer.id, kind="sip",
                           value=f"sip:both{p}@example.org", raw=f"both{p}@example.org",
                           created_at=clock.now()))
            await s.commit()
        brazil = await cases.resolve(IdentityRef("whatsapp", f"55118{p}54321"))
        await cases.reopen_case(recent2.case.id)
        await cases.close_case(recent2.case.id)
        pre = {known.customer.id: "known", twin.customer.id: "twin",
               recent.customer.id: "recent", old.customer.id: "old",
               recent2.customer.id: "recent2", both.customer.id: "both",
               brazil.customer.id: "brazil"}
        pre_cases = {known.case.id: "known", twin.case.id: "twin", recent.case.id: "recent",
                     old.case.id: "old", recent2.case.id: "recent2", both.case.id: "both",
                     gone.case.id: "gone"}
        await bus.subscribe("*", grab)
        if not setwise:
            cases.resolver._setwise = None  # the ORM path, one resolution at a time
        refs: list[tuple[IdentityRef | None, str | None]] = [
            (IdentityRef("phone", f"+3120{p}0001"), None),
            (IdentityRef("phone", f"+3120{p}0002"), "Twin"),
            (IdentityRef("phone", f"+3120{p}0003"), None),
            (IdentityRef("email", f"old{p}@example.nl"), None),
            (IdentityRef("phone", f"+3120{p}0004"), None),
            (IdentityRef("phone", f"+3120{p}0005"), None),
            (IdentityRef("email", f"both{p}@example.nl"), "Both"),
            (IdentityRef("sip", f"both{p}@example.org"), "Other"),
            (IdentityRef("phone", f"+551198{p}54321"), None),  # brazil's look-alike
            (None, "Withheld"),
            (IdentityRef("phone", f"+3120{p}0009"), "New"),
        ]

        def draft(i: int) -> TimelineDraft:
            return TimelineDraft(kind="call", channel="voice", direction="inbound",
                                 body=f"call {i}", meta={"i": i})

        if setwise:
            before = cases.resolver.batched
            recorded = await asyncio.gather(*[
                cases.resolve_and_record(ref, draft(i), display_name=name)
                for i, (ref, name) in enumerate(refs)])
            assert cases.resolver.batched - before == len(refs)
            assert cases.resolver.fallbacks == 0
        else:
            recorded = [await cases._resolve_once(ref, name, [], None, entry=draft(i))
                        for i, (ref, name) in enumerate(refs)]
            for rec in recorded:
                for e in rec[1]:
                    await bus.publish(e)
            recorded = [rec[0] for rec in recorded]
        out = []
        new_customers: dict[str, str] = {}
        for i, rec in enumerate(recorded):
            r = rec.resolution
            cust = pre.get(r.customer.id) or new_customers.setdefault(r.customer.id, f"n{i}")
            case = pre_cases.get(r.case.id, "new")
            stored = await cases.get_customer(r.customer.id)
            timeline = await cases.timeline(r.case.id)
            out.append((cust, case, r.customer_created, r.case_created, r.case_reopened,
                        r.identity_id is not None, len(r.suggestions), stored.display_name,
                        r.customer.display_name, (await cases.get_case(r.case.id)).status,
                        sorted(str(t.body) for t in timeline), rec.entry_created))
        return [*out, tuple(e.topic for e in got)]

    setwise = await scenario("55", True)
    orm = await scenario("66", False)
    assert setwise == orm
    # the merged-away customer's open case came with the merge, the latest activity
    assert setwise[0][:5] == ("known", "gone", False, False, False)
    assert setwise[2][:5] == ("recent", "new", False, True, False)  # closed 16 days ago
    assert setwise[4][:5] == ("recent2", "recent2", False, False, True)
    assert setwise[5][:2] == ("known", "gone")  # merged away: the survivor's case
    assert setwise[8][6] == 1  # the Brazilian look-alike suggested


async def test_last_agent_of_a_case_opened_here_needs_no_read_until_one_is_set(
        cases: CaseService, database) -> None:  # type: ignore[no-untyped-def]
    """Sticky routing asks every new call's case for its last agent: a case this node
    just opened has none, answered without a SELECT; once `set_last_agent` wrote one,
    it is read (and a case opened elsewhere is always read)."""
    from sqlalchemy import event

    opened = await cases.resolve(IdentityRef("phone", "+31208880001"))
    selects: list[str] = []

    def count(_c, _cur, statement, *_a) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await cases.last_agent(opened.case.id) is None
        assert selects == []
        await cases.set_last_agent(opened.case.id, "agent-7")
        assert await cases.last_agent(opened.case.id) == "agent-7"
        assert selects
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    # a node on a shared bus (Redis: another node's consumer may set the last agent)
    # reads the row even for a case it opened
    from core.bus.redis import RedisStreamsBus

    shared = CaseService(database, RedisStreamsBus("redis://127.0.0.1:6379/0"), ManualClock(),
                         default_region="NL")
    assert shared._agentless is None
    assert await shared.last_agent(opened.case.id) == "agent-7"
