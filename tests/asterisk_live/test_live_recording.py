"""Call recording against the live Asterisk 20.20.1 (docker/asterisk config set): a
sipp trunk caller that speaks one tone (a pcap, not an echo), a pyVoIP agent phone
that speaks another, the queue's policy `always`, and Asterisk's monitor spool shared
as the `asterisk/` folder of Centrale's recordings directory, as docker/compose.yaml
shares it.

The stereo file MixMonitor wrote (option `D`, made a WAV by Centrale at the hang-up)
holds the caller's tone on the left and the agent's on the right (FFT), its length is
the recorded time, and a pause through the AMI action (`MixMonitorMute`) is silence
in both channels and in the metadata.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live_asterisk import Sipp, ToneAgentPhone, caller_scenario, speaking_caller_pcap
from live_rig import Rig
from test_live_asterisk import payloads, registered, timeline_when, until

from pbx_bridge.control import PhoneActor
from tests.tones import tone_levels
from tests.waiting import wait_until

pytestmark = pytest.mark.asterisk

CALLER_HZ, ANNA_HZ = 440.0, 1000.0
RATE = 8000


def anna_actor() -> PhoneActor:
    return PhoneActor(username="anna", agent_id="anna", role="agent")


def heard_levels(phone: ToneAgentPhone, since: int) -> dict[float, float]:
    return tone_levels(np.array(phone.heard[since:]), [CALLER_HZ, ANNA_HZ])


async def talk(phone: ToneAgentPhone, seconds: float) -> None:
    """Let `seconds` of the call go by, as the agent's phone counts them."""
    since = len(phone.heard)
    await wait_until(lambda: len(phone.heard) - since >= int(RATE * seconds), timeout=30,
                     step=0.1)


def channels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    return data[:, 0], data[:, 1]


def stretch(samples: np.ndarray, start: float, end: float) -> np.ndarray:
    return samples[int(start * RATE):int(end * RATE)]


async def test_mixmonitor_stereo_caller_left_agent_right_and_a_pause_is_silence(
        rig: Any) -> None:
    r: Rig = await rig(rona=20, recording=True)
    anna = ToneAgentPhone(r.asterisk.sip_port, "1001", tone_hz=ANNA_HZ)
    await anna.start()
    caller = Sipp(r.tmp, "speaker")
    try:
        await wait_until(lambda: registered(r, "1001"), timeout=30, step=0.3)
        await r.agent_ready("anna")
        pcap = speaking_caller_pcap(caller.dir / "speaks.pcap", "1", CALLER_HZ, 90.0)
        await caller.start(caller_scenario(caller.dir, speaks=pcap),
                           target=f"127.0.0.1:{r.asterisk.sip_port}", rtp_echo=False,
                           extra=["-cid_str", "speaker-%u"])
        await until(r, lambda: payloads(r, "task.accepted"), 60, "task.accepted")
        accepted = payloads(r, "task.accepted")[0]
        task_id, case_id = accepted["task_id"], accepted["case_id"]
        recorder = r.c.services["call_recordings"].backends["asterisk"]
        await until(r, lambda: bool(recorder.live), 30, "MixMonitor started")
        # the bridge is up: anna hears the caller's tone
        since = len(anna.heard)
        await wait_until(lambda: heard_levels(anna, since)[CALLER_HZ] > 0.05, timeout=30,
                         step=0.3)
        await talk(anna, 2.5)

        recordings = r.c.services["call_recordings"]
        view = await recordings.pause(task_id, anna_actor())  # MixMonitorMute State: 1
        assert view["recording"]["status"] == "paused", view
        await talk(anna, 3.0)
        view = await recordings.resume(task_id, anna_actor())  # MixMonitorMute State: 0
        assert view["recording"]["status"] == "recording", view
        await talk(anna, 2.5)
        # hold: the customer's channel is redirected to the music and back into the
        # bridge; MixMonitor stays on it (one file) and the music is not recorded
        control = r.c.services["call_control"]
        await control.hold(task_id, anna_actor())
        await talk(anna, 2.5)
        await control.resume(task_id, anna_actor())
        since = len(anna.heard)
        await wait_until(lambda: heard_levels(anna, since)[CALLER_HZ] > 0.05, timeout=30,
                         step=0.3)
        await talk(anna, 2.0)
        anna.hangup()
        assert await caller.wait(60) == 0, caller.errors()

        store = r.c.services["recordings"]

        async def finished() -> bool:
            return any(x.status != "recording" for x in await store.for_case(case_id))

        await until(r, finished, 30, "the recording finished")
        [rec] = await store.for_case(case_id)
        assert rec.status == "complete", (rec.status, rec.error)
        assert rec.backend == "asterisk" and rec.checksum.startswith("sha256:")
        path = store.absolute(rec)
        assert path is not None and path.parent == r.recordings / "asterisk" / "centrale"
        assert not path.with_suffix(".raw").exists()  # made a WAV, the .raw is gone
        left, right = channels(path)
        seconds = len(left) / RATE
        assert seconds == pytest.approx(rec.duration_seconds, abs=0.05)
        # Asterisk's file clock and Centrale's markers: the same call, within 0.5 s
        assert abs(seconds - rec.parties[0]["to"]) <= 0.5, (seconds, rec.parties)

        [pause] = rec.pauses
        assert pause["by"] == "anna" and pause["resumed_by"] == "anna"
        assert 2.9 <= pause["end"] - pause["start"] <= 5.0, pause
        # talking before the pause: the caller left, anna right, never the other way
        before = stretch(left, pause["start"] - 2.0, pause["start"] - 0.3), \
            stretch(right, pause["start"] - 2.0, pause["start"] - 0.3)
        levels = tone_levels(before[0], [CALLER_HZ, ANNA_HZ])
        assert levels[CALLER_HZ] > 0.3 and levels[ANNA_HZ] < 0.01, levels
        levels = tone_levels(before[1], [CALLER_HZ, ANNA_HZ])
        assert levels[ANNA_HZ] > 0.3 and levels[CALLER_HZ] < 0.01, levels
        # the pause: silence on both channels (PCI DSS: the card number is not there)
        for channel in (left, right):
            paused = stretch(channel, pause["start"] + 0.3, pause["end"] - 0.3)
            assert len(paused) > 2 * RATE and np.abs(paused).max() == 0, \
                np.abs(paused).max()
        # and after it, both speak again
        hold = next(m["at"] for m in rec.markers if m["type"] == "hold")
        unhold = next(m["at"] for m in rec.markers if m["type"] == "unhold")
        after = stretch(left, pause["end"] + 0.5, hold - 0.3), \
            stretch(right, pause["end"] + 0.5, hold - 0.3)
        assert tone_levels(after[0], [CALLER_HZ])[CALLER_HZ] > 0.3
        assert tone_levels(after[1], [ANNA_HZ])[ANNA_HZ] > 0.3
        # the hold: silence, not the music (300 Hz in this rig), on both channels
        held = stretch(left, hold + 0.3, unhold - 0.3), stretch(right, hold + 0.3, unhold - 0.3)
        assert len(held[0]) > RATE and not np.any(held[0]) and not np.any(held[1])
        # after the hold, the same file goes on with both of them
        back = stretch(left, unhold + 1.0, seconds - 0.5), \
            stretch(right, unhold + 1.0, seconds - 0.5)
        assert tone_levels(back[0], [CALLER_HZ])[CALLER_HZ] > 0.3
        assert tone_levels(back[1], [ANNA_HZ])[ANNA_HZ] > 0.3
        assert [m["type"] for m in rec.markers] == ["pause", "resume", "hold", "unhold"]
        timeline = await timeline_when(
            r, case_id, lambda tl: {"recording", "recording_paused"}
            <= {e.meta.get("event") for e in tl}, "the recording's entries on the timeline")
        assert any(e.meta.get("event") == "recording" and e.meta["recording_id"] == rec.id
                   for e in timeline)
        assert any(e.meta.get("event") == "recording_paused" for e in timeline)
    finally:
        await caller.kill()
        await anna.stop()
