"""Voicemail on the embedded SIP core, end to end: a sipp caller picks the voicemail
option and sends a tone; the message ends on `#`; it is a recording on the case
timeline that plays back the tone that was sent, and a callback task waits in the
queue for an agent."""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_call_control_e2e import CALLER, Desk
from tests.e2e.tone_parties import ToneCallerMedia, caller_scenario
from tests.tones import tone_levels
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp


def voicemail_site(site_dir) -> Path:  # type: ignore[no-untyped-def]
    cfg = site_dir()
    yaml = (cfg / "site.yaml").read_text()
    yaml = yaml.replace('options: {"1": to_sales, "2": to_support}',
                        'options: {"1": to_sales, "2": to_support, "3": message}', 1)
    yaml += ("      message: {type: voicemail, prompts: [leave_message], max_seconds: 20,\n"
             "                silence_stop_seconds: 10, end_key: \"#\", queue: sales,\n"
             "                next: bye}\n"
             "      bye: {type: hangup, prompts: [message_saved]}\n")
    (cfg / "site.yaml").write_text(yaml)
    return cfg


async def test_a_voicemail_is_a_recording_on_the_case_and_a_callback_task(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sip_testkit import run_sipp

    node = await make_node(voicemail_site(site_dir))
    c = node.c
    sip, acd = c.services["sip"], c.services["acd"]
    caller = await ToneCallerMedia.open(CALLER)
    sipp = asyncio.ensure_future(run_sipp(caller_scenario(caller.port), tmp_path, sip.port,
                                          service="100", timeout=90))
    desk = None
    try:
        await wait_until(lambda: caller.remote is not None, timeout=20)
        await asyncio.sleep(0.5)  # the menu prompt is playing
        caller.press("3")
        # the greeting, then the beep: a 1 kHz tone reaches the caller
        await wait_until(lambda: tone_levels(caller.heard_since(max(0, caller.mark() - 12)),
                                             [1000.0])[1000.0] > 0.3, timeout=30)
        # 3 s of message (the caller's tone) on disk: the file grows as it is written
        spool = tmp_path / "var" / "recordings" / "voicemail"

        def written() -> int:
            return max((p.stat().st_size for p in spool.rglob("*.wav")), default=0)

        await wait_until(lambda: written() >= 44 + 3 * 16000, timeout=30)
        caller.press("#")
        result = await asyncio.wait_for(sipp, 60)  # goodbye, then our BYE
        assert result.returncode == 0, result.stderr + result.errors
    finally:
        caller.close()
        if not sipp.done():
            sipp.cancel()

    recordings = c.services["recordings"]
    case_id = None
    for entry_case in [e for e in await _all_cases(c)]:
        if any(e.kind == "voicemail" for e in await c.cases.timeline(entry_case)):
            case_id = entry_case
    assert case_id is not None
    timeline = await c.cases.timeline(case_id)
    vm = next(e for e in timeline if e.kind == "voicemail")
    [rec] = await recordings.for_case(case_id)
    assert vm.meta["recording_id"] == rec.id and rec.kind == "voicemail"
    assert rec.status == "complete" and 2.5 <= rec.duration_seconds <= 5.0, rec
    with wave.open(str(recordings.absolute(rec))) as w:
        assert (w.getnchannels(), w.getframerate()) == (1, 8000)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert tone_levels(audio, [CALLER])[CALLER] > 0.5

    # a callback task for the caller's number waits in sales, on the same case
    task = acd.task(vm.meta["task_id"])
    assert task.queue_id == "sales" and task.case_id == case_id and task.callback_number

    # the agent plays it from the desktop (the case is theirs once they take the task;
    # here a supervisor, and an agent who never handled it is refused)
    base = f"http://127.0.0.1:{node.port}"
    desk = await Desk(base, "sam").login()
    bram = await Desk(base, "bram").login()
    try:
        async with desk.http.get(f"{base}/api/recordings/{rec.id}/play") as resp:
            assert resp.status == 200
            body = await resp.read()
        with wave.open(io.BytesIO(body)) as w:
            played = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        assert tone_levels(played, [CALLER])[CALLER] > 0.5
        async with bram.http.get(f"{base}/api/recordings/{rec.id}/play") as resp:
            assert resp.status == 403
    finally:
        await desk.close()
        await bram.close()


async def _all_cases(c) -> list[str]:  # type: ignore[no-untyped-def]
    from sqlmodel import select

    from cases.tables import Case

    async with c.db.session() as s:
        return [row.id for row in await s.exec(select(Case))]
