"""kill -9 of the node (a real `centrale run` process) during a recorded call: the
file left behind is a valid WAV that plays the call up to its last seconds, the
caller's tone on the left and the agent's on the right."""

from __future__ import annotations

import asyncio
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_call_control_e2e import ANNA, CALLER, Desk
from tests.e2e.test_recording_e2e import recorded_site
from tests.e2e.tone_parties import ToneCallerMedia, TonePhone, caller_scenario
from tests.node_process import NodeProcess
from tests.tones import tone_levels
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp

RATE = 8000


async def test_kill_9_during_a_recorded_call_leaves_a_playable_file(
        site_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sip_testkit import run_sipp

    cfg = recorded_site(site_dir)
    node = NodeProcess("crash", tmp_path / "node", cfg, {})
    phone = caller = sipp = None
    desks: list[Desk] = []
    try:
        base = await asyncio.to_thread(node.wait_listening)

        def sip_port() -> int:
            found = re.search(r"SIP listening on [0-9.]+:(\d+)", node.log.read_text())
            return int(found.group(1)) if found else 0

        await wait_until(lambda: sip_port() > 0, timeout=30)
        port = sip_port()
        phone = TonePhone(port, "1001", "anna-secret", ANNA)
        await phone.start()
        anna, sam = Desk(base, "anna"), Desk(base, "sam")
        desks += [anna, sam]
        await anna.login()
        await sam.login()
        ws = await anna.http.ws_connect(f"{base}/ws", heartbeat=10)  # anna's desktop
        status, body = await sam.post("/api/agents/anna/state", {"state": "available"})
        assert status == 200, body

        caller = await ToneCallerMedia.open(CALLER)
        sipp = asyncio.ensure_future(run_sipp(caller_scenario(caller.port), tmp_path, port,
                                              service="100", timeout=90))
        await wait_until(lambda: caller.remote is not None, timeout=30)
        await asyncio.sleep(0.5)  # the menu prompt is playing
        caller.press("1")

        recordings = tmp_path / "node" / "var" / "recordings"

        def data_bytes() -> int:
            files = [p for p in recordings.rglob("*.wav") if "voicemail" not in p.parts]
            return max((p.stat().st_size - 44 for p in files), default=0)

        # 6 s of the call on disk, then the node dies without a chance to finish
        await wait_until(lambda: data_bytes() >= 6 * RATE * 4, timeout=60)
        await ws.close()
        node.kill9()
        written = data_bytes()
    finally:
        for desk in desks:
            await desk.close()
        if caller is not None:
            caller.close()
        if phone is not None:
            await phone.stop()
        if sipp is not None and not sipp.done():
            sipp.cancel()
        node.stop()

    [path] = [p for p in recordings.rglob("*.wav") if "voicemail" not in p.parts]
    copy = tmp_path / "after-crash.wav"
    shutil.copy(path, copy)
    with wave.open(str(copy)) as w:  # the header is valid: it opens as it is
        assert (w.getnchannels(), w.getframerate()) == (2, RATE)
        seconds = w.getnframes() / RATE
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert seconds >= written / (RATE * 4) - 2.5, (seconds, written)
    assert seconds >= 3.5
    talk = data[int(0.5 * RATE):]
    assert tone_levels(talk[:, 0], [CALLER])[CALLER] > 0.3
    assert tone_levels(talk[:, 1], [ANNA])[ANNA] > 0.3
