"""Shared fixtures: real PostgreSQL and Redis (never skipped: the README's test command
starts them when absent), throw-away databases, and the repo paths."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "CENTRALE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CENTRALE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _pyvoip_rtp_ports_from_the_os() -> None:
    """pyVoIP 1.6.8 picks a call's RTP port at random from the phone's range and binds
    it without a check: with other test workers (and their servers) taking ports
    meanwhile, the bind failed now and then ("Address already in use" in pyVoIP's
    answering thread; the phone never answered and the test waited in vain). Every
    pyVoIP phone in the suite takes its RTP port from the OS instead, as tests do for
    every other port."""
    import socket

    try:
        from pyVoIP.VoIP import VoIPPhone
    except ImportError:
        return

    def request_port(self, blocking: bool = True) -> int:  # type: ignore[no-untyped-def]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((self.myIP, 0))
            port = int(probe.getsockname()[1])
        self.assignedPorts.append(port)
        return port

    VoIPPhone.request_port = request_port  # type: ignore[method-assign]


_pyvoip_rtp_ports_from_the_os()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    import psycopg

    name = f"centrale_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    import redis

    prefix = f"centrale-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator:
    """The same storage tests run against a real SQLite file and a real PostgreSQL."""
    from core.db import Database, sqlite_url

    import_all_tables()
    if request.param == "sqlite":
        db = Database(sqlite_url(tmp_path / "centrale.db"))
    else:
        db = Database(request.getfixturevalue("postgres_url"))
        await db.drop_all()
    await db.create_all()
    try:
        yield db
    finally:
        if request.param == "postgres":
            await db.drop_all()
        await db.dispose()


def import_all_tables() -> None:
    """Register every package's tables on SQLModel.metadata."""
    from centrale.tables import import_all

    import_all()
