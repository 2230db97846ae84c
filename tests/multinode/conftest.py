"""Fixtures for the multi-node tests: shared ACD state on the real Redis, under the
per-test key prefix (tests/conftest.py deletes its keys afterwards); a fresh PostgreSQL
database; the demo site without the embedded SIP core."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from queues.shared import SharedAcdState
from tests.multinode.nodes import REPO
from tests.multinode.private_redis import PrivateRedis

POSTGRES_ADMIN_URL = os.environ.get(
    "CENTRALE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    """An empty database of its own (the session-wide one is shared with tests that
    drop and create tables)."""
    name = f"centrale_multinode_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def site_config(tmp_path: Path) -> Path:
    dest = tmp_path / "cfg"
    shutil.copytree(REPO / "examples" / "demo", dest)
    # Web only: the embedded SIP core binds fixed ports and has its own tests.
    text = (dest / "centrale.yaml").read_text().replace("enabled: true", "enabled: false")
    (dest / "centrale.yaml").write_text(text)
    return dest


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


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis server of this test's own, which it may kill and restart."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
