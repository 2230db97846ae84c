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

    async def fake_rebuild(_db, *, limit: int) -> int:  # type: ignore[no-untyped-def]
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
