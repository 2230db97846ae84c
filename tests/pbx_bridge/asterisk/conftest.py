"""Shared fixtures: where the recorded Asterisk traffic lives, and fake peers on it.

The recordings are copied into the repository (`tests/fixtures/asterisk`, from the
team's `../shared/fixtures/asterisk`), so a clone alone runs these tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx_bridge.asterisk.ami import AmiClient, Backoff
from pbx_bridge.asterisk.testing import AmiRecording, FakeAmiServer, replace_action_id

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "asterisk"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"recorded Asterisk fixtures missing at {FIXTURES}"
    return FIXTURES


@pytest.fixture(scope="session")
def actions_recording(fixtures_dir: Path) -> AmiRecording:
    return AmiRecording.load(fixtures_dir / "jsonl" / "ami_actions.jsonl")


@pytest.fixture
async def ami_server(actions_recording: AmiRecording) -> AsyncIterator[FakeAmiServer]:
    server = await FakeAmiServer(actions_recording).start()
    # Resync after login sees no live channel (the recorded empty CoreShowChannels)
    # unless a test installs its own list.
    server.on_action(
        "CoreShowChannels",
        lambda headers, action_id: [
            replace_action_id(frame, action_id)
            for frame in actions_recording.replies["coreshowchannels"][1]
        ],
    )
    yield server
    await server.stop()


def make_client(server: FakeAmiServer, **kwargs: object) -> AmiClient:
    options: dict[str, object] = {
        "backoff": Backoff(initial=0.02, maximum=0.1),
        "action_timeout": 2.0,
        "ping_interval": 3600.0,
        "start_timeout": 5.0,
    }
    options.update(kwargs)
    return AmiClient("127.0.0.1", server.port, "ccadmin", "ccsecret", **options)  # type: ignore[arg-type]


@pytest.fixture
async def ami_client(ami_server: FakeAmiServer) -> AsyncIterator[AmiClient]:
    client = make_client(ami_server)
    await client.start()
    yield client
    await client.close()


async def wait_until(condition, *, limit: float = 5.0, step: float = 0.01) -> None:
    """Poll `condition` (bounded): fails the test with a clear message when it never
    holds. The limit is a safety net, not a timing assertion."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition never held: {condition}")
        await asyncio.sleep(step)
