"""Call recording end to end on the real composition root: a sipp caller sending one
tone, pyVoIP agent phones sending others, the REST API as the desktop uses it, and
an FFT of the recorded file's two channels.

- left holds the caller's tone, right the agent's; the length is the talk time ±0.5 s;
- a 3 s pause is 3 s of silence and is in the metadata and on the timeline;
- hold puts no music in the file;
- a blind transfer gives one recording with both agents and a hand-over marker;
- an agent who never handled the case gets 403; every play is audited.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.test_call_control_e2e import ANNA, BRAM, CALLER, MUSIC, Scene, site
from tests.tones import tone_levels
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp

RATE = 8000


def recorded_site(site_dir) -> Path:  # type: ignore[no-untyped-def]
    cfg = site(site_dir)
    yaml = (cfg / "site.yaml").read_text()
    yaml = yaml.replace("rona_seconds: 8, wrap_up_seconds: 5,\n     sticky_agent_seconds: 30}",
                        "rona_seconds: 8, wrap_up_seconds: 5,\n     sticky_agent_seconds: 30,"
                        " recording: {mode: always, retention_days: 30}}", 1)
    assert "recording:" in yaml
    (cfg / "site.yaml").write_text(yaml)
    return cfg


@pytest.fixture
async def scene(site_dir, make_node, tmp_path: Path):  # type: ignore[no-untyped-def]
    node = await make_node(recorded_site(site_dir))
    s = Scene(node, tmp_path)
    yield s
    await s.close()


def channels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    return data[:, 0], data[:, 1]


def share(samples: np.ndarray, freq: float) -> float:
    return tone_levels(samples, [freq])[freq]


def stretch(samples: np.ndarray, start: float, end: float) -> np.ndarray:
    return samples[int(start * RATE):int(end * RATE)]


async def finished_recording(scene: Scene, case_id: str) -> Any:
    recordings = scene.c.services["recordings"]

    async def done() -> list[Any]:
        return [r for r in await recordings.for_case(case_id) if r.status != "recording"]

    found: list[Any] = []

    async def check() -> bool:
        found[:] = await done()
        return bool(found)

    for _ in range(300):
        if await check():
            break
        await asyncio.sleep(0.1)
    assert len(found) == 1, found
    return found[0]


async def timeline_with(scene: Scene, case_id: str, *events: str) -> list[Any]:
    """The case's timeline once it holds an entry of each of `events`: entries are
    written by the timeline writer's group commits, after the call or recording they
    tell of has ended, so a read straight after the hang-up can come before them."""
    timeline: list[Any] = []

    async def complete() -> bool:
        timeline[:] = await scene.c.cases.timeline(case_id)
        seen = {e.meta.get("event") for e in timeline}
        return all(event in seen for event in events)

    await wait_until(complete, timeout=20)
    return timeline


async def test_stereo_pause_hold_and_access(scene: Scene) -> None:
    await scene.phone("1001", "anna-secret", ANNA)
    call_id = await scene.call_in()
    task_id = scene.task_of(call_id)
    case_id = scene.voice.calls_by_id[call_id].case_id
    anna, bram, sam = (await scene.desk("anna"), await scene.desk("bram"),
                       await scene.desk("sam"))

    async def recording_state() -> dict[str, Any]:
        status, body = await anna.get(f"/api/calls/{task_id}/recording")
        assert status == 200, body
        return body

    await wait_until(lambda: call_id in scene.voice.sip_control.recorder.live, timeout=10)
    # a plain recorded call stays on the packet relay (a mixer only from the hold on)
    assert scene.voice.sip_control.sessions[call_id].mixer is None
    body = await recording_state()
    assert body["mode"] == "always" and body["recording"]["status"] == "recording", body
    assert scene.caller is not None
    await scene.caller.listen(100)  # 2 s of talk

    status, body = await anna.post(f"/api/calls/{task_id}/recording/pause")
    assert status == 200 and body["recording"]["status"] == "paused", body
    status, body = await anna.post(f"/api/calls/{task_id}/recording/pause")
    assert status == 409, body  # paused already
    status, body = await bram.post(f"/api/calls/{task_id}/recording/resume")
    assert status == 403, body  # not bram's call
    await scene.caller.listen(150)  # 3 s paused (the caller reads a card number)
    status, body = await anna.post(f"/api/calls/{task_id}/recording/resume")
    assert status == 200 and body["recording"]["status"] == "recording", body
    await scene.caller.listen(75)

    status, body = await anna.post(f"/api/calls/{task_id}/hold")
    assert status == 200, body
    await scene.caller.listen(100)  # 2 s of music for the caller
    status, body = await anna.post(f"/api/calls/{task_id}/resume")
    assert status == 200, body
    await scene.caller.listen(100)

    status, body = await anna.post(f"/api/calls/{task_id}/hangup")
    assert status == 200, body
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors

    rec = await finished_recording(scene, case_id)
    assert rec.status == "complete" and rec.checksum.startswith("sha256:")
    path = scene.c.services["recordings"].absolute(rec)
    left, right = channels(path)
    seconds = len(left) / RATE
    assert seconds == pytest.approx(rec.duration_seconds, abs=0.05)
    timeline = await timeline_with(scene, case_id, "ended", "recording_paused",
                                   "recording_resumed", "recording")
    ended = next(e for e in timeline if e.meta.get("event") == "ended")
    assert abs(seconds - ended.meta["talk_seconds"]) <= 0.5, (seconds, ended.meta)

    # the pause: 3 s of silence on both channels, in the metadata and on the timeline
    [pause] = rec.pauses
    paused = pause["end"] - pause["start"]  # the 3 s the caller spoke + the API round trips
    assert pause["by"] == "anna" and 2.9 <= paused <= 5.0, pause
    assert not np.any(stretch(left, pause["start"], pause["end"]))
    assert not np.any(stretch(right, pause["start"], pause["end"]))
    resumed = next(e for e in timeline if e.meta.get("event") == "recording_resumed")
    assert resumed.meta["actor"] == "anna"
    assert resumed.meta["paused_seconds"] == pytest.approx(paused, abs=0.2)
    assert any(e.meta.get("event") == "recording_paused" for e in timeline)

    # talking: the caller's tone left, anna's right, and never the other way round
    talk = stretch(left, 0.3, pause["start"] - 0.1), stretch(right, 0.3, pause["start"] - 0.1)
    assert share(talk[0], CALLER) > 0.3 and share(talk[0], ANNA) < 0.01
    assert share(talk[1], ANNA) > 0.3 and share(talk[1], CALLER) < 0.01

    # hold: silence, not the music (the caller heard it; the file does not have it)
    hold = next(m for m in rec.markers if m["type"] == "hold")
    unhold = next(m for m in rec.markers if m["type"] == "unhold")
    assert unhold["at"] - hold["at"] >= 1.5
    assert not np.any(stretch(right, hold["at"], unhold["at"]))
    assert share(stretch(right, unhold["at"] + 0.3, seconds - 0.3), MUSIC) < 0.01
    assert rec.parties[0]["agent_id"] == "anna"
    assert any(e.meta.get("event") == "recording" and e.meta["recording_id"] == rec.id
               for e in timeline)

    # access: anna handled it, sam supervises; bram never handled the case
    async with anna.http.get(f"{anna.base}/api/recordings/{rec.id}/play") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
        assert await resp.read() == path.read_bytes()
    async with sam.http.get(f"{sam.base}/api/recordings/{rec.id}/download") as resp:
        assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    async with bram.http.get(f"{bram.base}/api/recordings/{rec.id}/play") as resp:
        assert resp.status == 403
    status, _ = await bram.get(f"/api/cases/{case_id}/recordings")
    assert status == 403
    status, listed = await anna.get(f"/api/cases/{case_id}/recordings")
    assert status == 200 and listed["recordings"][0]["id"] == rec.id
    async with sam.http.get(f"{sam.base}/api/recordings/..%2F..%2Fetc%2Fpasswd/play") as resp:
        assert resp.status == 404
    status, audit = await sam.get(f"/api/recordings/{rec.id}/accesses")
    assert [(a["username"], a["action"]) for a in audit["accesses"]] == [
        ("anna", "play"), ("sam", "download"), ("bram", "denied")]

    # retention: past its 30 days the file goes, the row says so, playing is a 404
    recordings = scene.c.services["recordings"]
    from datetime import timedelta

    assert await recordings.apply_retention(rec.expires_at - timedelta(seconds=1)) == 0
    assert await recordings.apply_retention(rec.expires_at + timedelta(seconds=1)) == 1
    assert not path.exists()
    assert (await recordings.get(rec.id)).deleted_reason == "retention"
    async with sam.http.get(f"{sam.base}/api/recordings/{rec.id}/play") as resp:
        assert resp.status == 404
    await timeline_with(scene, case_id, "recording_deleted")


async def test_a_blind_transfer_is_one_recording_with_both_agents(scene: Scene) -> None:
    """A blind transfer to a named agent goes through the ACD (#14): bram, available
    on his desktop, is offered the call's task, his phone rings and answers, and the
    caller talks to him. The recording follows the customer: one file, anna then bram
    on the right channel, a hand-over marker between them, the caller on the left."""
    from tests.e2e.test_call_control_e2e import assert_hears

    await scene.phone("1001", "anna-secret", ANNA)
    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    offered: list[Any] = []

    async def grab(e) -> None:  # type: ignore[no-untyped-def]
        offered.append(e)

    await scene.c.bus.subscribe("task.offered", grab)
    call_id = await scene.call_in()
    task_id = scene.task_of(call_id)
    case_id = scene.voice.calls_by_id[call_id].case_id
    bram = await scene.desk("bram")
    await scene.acd.agent_login("bram", "desk-bram")
    await scene.acd.set_state("bram", "available")
    anna = await scene.desk("anna")
    caller = scene.caller
    assert caller is not None
    await wait_until(lambda: call_id in scene.voice.sip_control.recorder.live, timeout=10)
    await caller.listen(100)
    status, body = await anna.post(f"/api/calls/{call_id}/transfer",
                                   {"kind": "agent", "target": "bram"})
    assert status == 200 and body["call"]["state"] == "transferring", body
    # what bram and the caller see: the task offered to bram and accepted by his
    # phone answering, then the caller hears bram
    await wait_until(lambda: any(e.payload["agent_id"] == "bram" for e in offered),
                     timeout=20)
    await wait_until(lambda: scene.acd.task(task_id).agent_id == "bram"
                     and scene.voice.calls_by_id[call_id].agent_id == "bram"
                     and len(bram_phone.calls) == 1, timeout=20)
    assert_hears(await caller.listen(), [BRAM], [ANNA], "caller, after the transfer")
    await caller.listen(50)
    status, body = await bram.post(f"/api/calls/{call_id}/hangup")
    assert status == 200, body
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors

    rec = await finished_recording(scene, case_id)
    assert rec.status == "complete", rec
    assert [p["agent_id"] for p in rec.parties] == ["anna", "bram"]
    handover = next(m for m in rec.markers if m["type"] == "handover")
    assert (handover["from_agent"], handover["to_agent"]) == ("anna", "bram")
    first, second = rec.parties
    assert first["to"] == second["from"] == handover["at"]
    left, right = channels(scene.c.services["recordings"].absolute(rec))
    assert share(stretch(right, 0.3, first["to"] - 0.2), ANNA) > 0.3
    after = stretch(right, second["from"] + 0.3, second["to"] - 0.2)
    assert share(after, BRAM) > 0.3 and share(after, ANNA) < 0.01
    assert share(left, CALLER) > 0.3
    timeline = await timeline_with(scene, case_id, "recording")
    entry = next(e for e in timeline if e.meta.get("event") == "recording")
    assert entry.meta["recording_id"] == rec.id and entry.meta["agents"] == ["anna", "bram"]


async def test_an_unwritable_recordings_directory_fails_the_recording_not_the_call(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The recordings path is a file (as good as a read-only or full disk): the call
    goes on, the failure is on the timeline and in the call panel's state, logged,
    and counted in /metrics."""
    cfg = recorded_site(site_dir)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("x")
    yaml = (cfg / "site.yaml").read_text().replace(
        "  prompts_dir: prompts\n", f"  prompts_dir: prompts\n  recordings: {{path: {blocked}}}\n")
    (cfg / "site.yaml").write_text(yaml)
    scene = Scene(await make_node(cfg), tmp_path)
    try:
        await scene.phone("1001", "anna-secret", ANNA)
        call_id = await scene.call_in()
        task_id = scene.task_of(call_id)
        anna = await scene.desk("anna")
        await wait_until(lambda: any(e.payload["operation"] == "recording_failed"
                                     for e in scene.events), timeout=20)
        status, body = await anna.get(f"/api/calls/{task_id}/recording")
        assert status == 200 and body["recording"]["status"] == "failed", body
        assert "NotADirectoryError" in body["recording"]["error"] or \
            "FileExistsError" in body["recording"]["error"], body
        assert scene.caller is not None
        levels = tone_levels(await scene.caller.listen(), [ANNA])
        assert levels[ANNA] > 0.05, "the call goes on"
        async with anna.http.get(f"{scene.base}/metrics") as resp:
            text = await resp.text()
        failed = [line for line in text.splitlines()
                  if line.startswith('centrale_recordings_failed_total{backend="sip"')]
        assert failed and float(failed[0].split()[-1]) >= 1, failed
        status, body = await anna.post(f"/api/calls/{task_id}/hangup")
        assert status == 200
        await asyncio.wait_for(scene.sipp, 30)
    finally:
        await scene.close()
