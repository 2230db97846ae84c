"""Fixtures for the tests against a live Asterisk 20.20.1 (marker `asterisk`).

The Asterisk comes from `scripts/build-asterisk` (built once into a cache outside the
work tree). When its source (../shared/asterisk) is absent these tests are skipped
with that reason; when the source is there and the build fails, they fail.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # live_asterisk

from live_asterisk import CARRIER_SCENARIO, AsteriskBuild, Sipp, find_build
from live_rig import Rig

_BUILD: AsteriskBuild | None = None


def asterisk_build() -> AsteriskBuild:
    global _BUILD
    if _BUILD is None:
        _BUILD = find_build()
    return _BUILD


@pytest.fixture(scope="session")
def build() -> AsteriskBuild:
    found = asterisk_build()
    if found.prefix is None:
        pytest.skip(f"no live Asterisk: {found.why_missing}")
    return found


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig(tmp_path: Path, build: AsteriskBuild, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[RigFactory]:
    monkeypatch.chdir(tmp_path)
    rigs: list[Rig] = []

    async def make(*, rona: float = 12, carrier: Sipp | None = None,
                   extra_agent: bool = False, recording: bool = False) -> Rig:
        r = Rig(tmp_path, build, rona, carrier=carrier, extra_agent=extra_agent,
                recording=recording)
        rigs.append(r)
        if carrier is not None:  # up before Asterisk qualifies the trunk
            await carrier.start(CARRIER_SCENARIO, calls=1000, limit=100, rate=100,
                                extra=["-trace_msg"])
        await r.asterisk.start()
        await r.start_centrale()
        await r.backend.ami.wait_ready()
        return r

    yield make
    for r in rigs:
        await r.stop_centrale()
        await r.asterisk.stop()
        if r.carrier is not None:
            await r.carrier.kill()
