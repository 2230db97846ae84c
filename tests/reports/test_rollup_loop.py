"""The rollup loop rebuilds once per interval while contacts keep coming, and at once
again only for a backlog: a loop that went again whenever a bucket was dirty rebuilt
the current bucket back to back under load (issue 21)."""

from __future__ import annotations

import asyncio

import pytest

from reports import rollup


@pytest.mark.parametrize(("dirty", "expected"), [(3, 1), (rollup.REBUILD_LIMIT, 2)],
                         ids=["a-few-dirty-buckets", "a-backlog"])
async def test_rollup_goes_again_at_once_only_for_a_backlog(
        monkeypatch: pytest.MonkeyPatch, dirty: int, expected: int) -> None:
    calls: list[int] = []
    again = asyncio.Event()

    async def fake_rebuild(_db, *, limit: int, **_which) -> int:  # type: ignore[no-untyped-def]
        calls.append(limit)
        # every call finds buckets dirty (contacts keep coming); a backlog once
        result = dirty if len(calls) == 1 else 3
        if len(calls) >= expected:
            again.set()
        return result

    monkeypatch.setattr(rollup, "rebuild", fake_rebuild)
    loop = rollup.Rollup(None, interval=3600)  # type: ignore[arg-type]
    await loop.start()
    try:
        await asyncio.wait_for(again.wait(), 5)
        for _ in range(50):  # let a loop that does not sleep show itself
            await asyncio.sleep(0)
        assert len(calls) == expected
    finally:
        await loop.stop()


async def test_loop_leaves_the_open_bucket_and_rebuilds_an_ended_one_once_per_gap(
        database) -> None:  # type: ignore[no-untyped-def]
    """The open bucket stays dirty (reports read its contacts: exact), an ended one is
    rebuilt, and marked again by a late event it is not rebuilt again before `gap`
    seconds: a rebuild reads all of a bucket's contacts, and rebuilding the open bucket
    every 5 s grew with the square of its contacts (issue 21)."""
    from datetime import UTC, datetime, timedelta

    from seed import History, config, service
    from sqlmodel import select

    from reports.tables import BUCKET_SECONDS, ReportBucketTotal, ReportDirtyBucket, bucket_of

    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    svc = service(database, config(), t0)
    h = History(svc)
    ended = await h.contact(t0 + timedelta(minutes=1), wait=0, talk=None)
    await h.contact(t0 + timedelta(minutes=16), wait=0, talk=None)  # the open bucket
    first, open_ = bucket_of(t0), bucket_of(t0) + 1
    clock = {"now": float(open_ * BUCKET_SECONDS + 60)}  # one minute into the open one

    async def dirty() -> set[int]:
        async with database.session() as s:
            return set((await s.exec(select(ReportDirtyBucket.bucket))).all())

    async def totals() -> set[int]:
        async with database.session() as s:
            return set((await s.exec(select(ReportBucketTotal.bucket))).all())

    loop = rollup.Rollup(database, interval=0.01, gap=3600, now=lambda: clock["now"])
    await loop.start()
    try:
        for _ in range(500):
            if await dirty() == {open_}:
                break
            await asyncio.sleep(0.01)
        assert await dirty() == {open_}
        assert await totals() == {first}
        # a late event of the ended bucket's contact marks it again: held for `gap`
        await h.emit("task.wrap_up_ended", t0 + timedelta(minutes=17), task_id=ended,
                     queue_id="sales", channel="voice", agent_id="anna",
                     handle_seconds=30.0)
        await asyncio.sleep(0.2)
        assert await dirty() == {first, open_}
        loop.gap = 0.0  # the gap over: rebuilt again, with the late event's figures
        clock["now"] += BUCKET_SECONDS  # and the open bucket has ended too
        for _ in range(500):
            if not await dirty():
                break
            await asyncio.sleep(0.01)
        assert not await dirty()
        assert await totals() == {first, open_}
    finally:
        await loop.stop()
