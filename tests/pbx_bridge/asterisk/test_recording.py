"""Recording on the Asterisk backend against a fake AMI answering as Asterisk 20's
app_mixmonitor.c does (MixMonitor: Success + MixMonitorID; MixMonitorMute: Success):
the exact actions for start, hold, pause and resume; at the hang-up the interleaved
`.raw` Asterisk wrote becomes a stereo WAV on the case (left customer, right agent),
and a file Asterisk's spool never delivered is a failed recording, counted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from cases import CaseService, IdentityRef
from cases.recordings import RecordingService
from core import metrics
from core.bus import InMemoryBus
from core.clock import ManualClock
from pbx_bridge.asterisk.events import ChannelHungUp
from pbx_bridge.asterisk.recording import AsteriskCallRecorder
from pbx_bridge.asterisk.testing import ami_frame
from tests.pbx_bridge.asterisk.test_call_control import (  # noqa: F401 - the fixture
    CUSTOMER,
    Setup,
    ack,
    brief,
    setup,
)
from tests.tones import tone_levels, tone_linear


def mixmonitor_started(headers, action_id):  # type: ignore[no-untyped-def]
    return [ami_frame(("Response", "Success"), ("ActionID", action_id),
                      ("MixMonitorID", "0x7f0c2c00a1b0"))]


@pytest.fixture
async def recorder(setup: Setup, database, tmp_path: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    clock = ManualClock()
    cases = CaseService(database, InMemoryBus(), clock, default_region="NL",
                        reopen_window=timedelta(days=7))
    case = (await cases.resolve(IdentityRef("phone", "+31612345678"))).case
    setup.call.case_id = case.id
    setup.ami.on_action("MixMonitor", mixmonitor_started)
    setup.ami.on_action("MixMonitorMute", ack(""))
    recordings = RecordingService(database, cases, clock, tmp_path / "rec")
    rec = AsteriskCallRecorder(setup.backend, recordings)
    setup.control.recorder = rec
    return rec


async def test_mixmonitor_layout_hold_pause_and_the_wav_at_the_end(
        setup: Setup, recorder: AsteriskCallRecorder) -> None:  # noqa: F811
    state = await recorder.begin(setup.call, retention_days=30)
    rec_id = state["recording_id"]
    [start] = [a for a in setup.sent() if a["action"] == "MixMonitor"]
    assert brief(start, "Channel", "File", "Options") == (
        "MixMonitor", CUSTOMER, f"centrale/{rec_id}.raw", "D")

    mark = setup.mark()
    await setup.control.hold(setup.call, "default")
    await setup.control.resume(setup.call)
    await recorder.pause(setup.call, "anna")
    _, paused = await recorder.resume(setup.call, "anna")
    mutes = [brief(a, "Channel", "Direction", "State") for a in setup.sent(mark)
             if a["action"] == "MixMonitorMute"]
    assert mutes == [("MixMonitorMute", CUSTOMER, "both", "1"),
                     ("MixMonitorMute", CUSTOMER, "both", "0"),
                     ("MixMonitorMute", CUSTOMER, "both", "1"),
                     ("MixMonitorMute", CUSTOMER, "both", "0")]
    assert paused >= 0

    # what Asterisk wrote: 2 s interleaved, from the channel (caller 600 Hz) left,
    # to the channel (agent 1000 Hz) right
    spool = recorder.recordings.root / "asterisk" / "centrale"
    spool.mkdir(parents=True)
    stereo = np.stack([tone_linear(600, 2.0), tone_linear(1000, 2.0)], axis=1)
    (spool / f"{rec_id}.raw").write_bytes(stereo.astype("<i2").tobytes())
    await recorder.on_event(ChannelHungUp(uniqueid="1795704066.0", channel=CUSTOMER,
                                          linkedid="1795704066.0", call_id="call-1"))
    row = await recorder.recordings.get(rec_id)
    assert row.status == "complete" and row.duration_seconds == pytest.approx(2.0)
    assert [m["type"] for m in row.markers] == ["hold", "unhold", "pause", "resume"]
    assert row.pauses[0]["by"] == "anna" and row.parties[0]["agent_id"] == "anna"
    import wave

    with wave.open(str(recorder.recordings.absolute(row))) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert tone_levels(data[:, 0], [600])[600] > 0.5
    assert tone_levels(data[:, 1], [1000])[1000] > 0.5
    assert not (spool / f"{rec_id}.raw").exists()


async def test_a_file_asterisk_never_delivered_is_a_failed_recording(
        setup: Setup, recorder: AsteriskCallRecorder) -> None:  # noqa: F811
    before = metrics.recordings_failed.labels("asterisk", "call")._value.get()
    state = await recorder.begin(setup.call, retention_days=30)
    await recorder.on_event(ChannelHungUp(uniqueid="1795704066.0", channel=CUSTOMER,
                                          linkedid="1795704066.0", call_id="call-1"))
    row = await recorder.recordings.get(state["recording_id"])
    assert row.status == "failed" and "monitor spool mounted" in (row.error or "")
    assert metrics.recordings_failed.labels("asterisk", "call")._value.get() == before + 1
