"""Recordings on the case, against real SQLite and PostgreSQL: who may hear them (403
for an agent who never handled the case), every access audited, a path outside the
recordings directory is 404, retention and erasure delete files and keep the record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from cases import CaseService, IdentityRef, NotFound
from cases.recordings import Forbidden, RecordingService
from core.bus import InMemoryBus
from core.clock import ManualClock


@dataclass
class User:
    username: str
    role: str
    agent_id: str | None = None


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cases(database, clock: ManualClock) -> CaseService:  # type: ignore[no-untyped-def]
    return CaseService(database, InMemoryBus(), clock, default_region="NL",
                       reopen_window=timedelta(days=7))


@pytest.fixture
def recordings(database, cases: CaseService, clock: ManualClock,  # type: ignore[no-untyped-def]
               tmp_path: Path) -> RecordingService:
    return RecordingService(database, cases, clock, tmp_path / "rec")


async def recorded_call(cases: CaseService, recordings: RecordingService, *,
                        agent: str = "anna", days: int = 30) -> tuple[str, str, Path]:
    case = (await cases.resolve(IdentityRef("phone", "+31612345678"))).case
    row, path = await recordings.begin(case_id=case.id, kind="call", backend="sip",
                                       retention_days=days, call_id="c1", agent_id=agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVE")
    await recordings.finish(row.id, seconds=12.5, size_bytes=12, checksum="sha256:x",
                            pauses=[{"start": 2.0, "end": 5.0, "by": "anna"}])
    return case.id, row.id, path


async def test_who_may_hear_and_every_access_is_audited(
        cases: CaseService, recordings: RecordingService) -> None:
    case_id, rec_id, path = await recorded_call(cases, recordings)
    got = await recordings.open_for(rec_id, User("anna", "agent", "anna"), "play")
    assert got.path == path.resolve() and got.recording.duration_seconds == 12.5
    assert got.recording.pauses == [{"start": 2.0, "end": 5.0, "by": "anna"}]
    await recordings.open_for(rec_id, User("sue", "supervisor"), "download")
    await recordings.open_for(rec_id, User("root", "admin"), "play")
    with pytest.raises(Forbidden):
        await recordings.open_for(rec_id, User("bob", "agent", "bob"), "play")
    # an agent who handled the case through another contact (its timeline) may
    await cases.add_timeline(case_id, kind="call", channel="voice", direction="inbound",
                             body="Call with carl ended", meta={"agent_id": "carl"})
    await recordings.open_for(rec_id, User("carl", "agent", "carl"), "download")
    log = [(a.username, a.action) for a in await recordings.accesses(rec_id)]
    assert log == [("anna", "play"), ("sue", "download"), ("root", "play"),
                   ("bob", "denied"), ("carl", "download")]


async def test_a_path_outside_the_directory_is_not_found(
        cases: CaseService, recordings: RecordingService, tmp_path: Path) -> None:
    _, rec_id, _ = await recorded_call(cases, recordings)
    secret = tmp_path / "secret.txt"
    secret.write_text("not a recording")
    async with recordings.db.session() as s:
        from cases.recording_tables import Recording

        row = await s.get(Recording, rec_id)
        assert row is not None
        row.path = "../secret.txt"
        s.add(row)
        await s.commit()
    with pytest.raises(NotFound):
        await recordings.open_for(rec_id, User("sue", "supervisor"), "download")
    with pytest.raises(NotFound):
        await recordings.open_for("../../etc/passwd", User("sue", "supervisor"), "play")
    assert secret.exists()


async def test_retention_deletes_the_file_and_keeps_the_record(
        cases: CaseService, recordings: RecordingService, clock: ManualClock) -> None:
    case_id, rec_id, path = await recorded_call(cases, recordings, days=30)
    _, _, young_path = await recorded_call(cases, recordings, days=90)
    clock.advance(29 * 86400)
    assert await recordings.apply_retention() == 0 and path.exists()
    clock.advance(2 * 86400)
    assert await recordings.apply_retention() == 1
    assert not path.exists() and young_path.exists()
    row = await recordings.get(rec_id)
    assert row.status == "deleted" and row.deleted_reason == "retention" and row.deleted_at
    assert any(e.meta.get("event") == "recording_deleted" and e.meta["recording_id"] == rec_id
               for e in await cases.timeline(case_id))
    assert await recordings.apply_retention() == 0  # once
    with pytest.raises(NotFound):
        await recordings.open_for(rec_id, User("sue", "supervisor"), "play")


async def test_erasure_deletes_every_recording_of_the_customer(
        cases: CaseService, recordings: RecordingService) -> None:
    case_id, rec_id, path = await recorded_call(cases, recordings, days=365)
    customer_id = (await cases.get_case(case_id)).customer_id
    assert await recordings.erase_customer(customer_id) == 1
    assert not path.exists()
    assert (await recordings.get(rec_id)).deleted_reason == "erasure"
