"""Fixtures for the multi-node tests: shared ACD state on the real Redis, under the
per-test key prefix (tests/conftest.py deletes its keys afterwards)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from queues.shared import SharedAcdState


@pytest.fixture
def acd_prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}:acd:"


@pytest.fixture
async def make_state(redis_url: str, acd_prefix: str
                     ) -> AsyncIterator[Callable[..., SharedAcdState]]:
    made: list[SharedAcdState] = []

    def make(node_id: str, **kwargs: object) -> SharedAcdState:
        state = SharedAcdState.from_url(redis_url, node_id, prefix=acd_prefix, **kwargs)
        made.append(state)
        return state

    yield make
    for state in made:
        await state.leave(release=True)
        await state.redis.aclose()
