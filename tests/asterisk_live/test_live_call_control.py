"""Call control against the live Asterisk 20.20.1 (docker/asterisk config set): a sipp
trunk caller that echoes its RTP, pyVoIP agent phones each sending its own tone, and
`CallControlService` as the desktop and the REST API call it. What each phone hears
is checked by its spectrum (FFT); what the caller hears on hold by Asterisk's own log
(the caller's media only comes back through the echo while it is bridged)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ami_capture import AmiCapture
from live_asterisk import ToneAgentPhone, dominant_frequency, rms
from live_rig import Rig
from test_live_asterisk import call_in, payloads, registered, timeline_when, until

from pbx_bridge.control import CallControlError, PhoneActor
from tests.tones import tone_levels
from tests.waiting import wait_until

pytestmark = pytest.mark.asterisk

ANNA_HZ, BRAM_HZ, SVEN_HZ = 1000.0, 1500.0, 2300.0

class Supervisor:
    username, role, agent_id = "sam", "supervisor", None


def anna_actor() -> PhoneActor:
    return PhoneActor(username="anna", agent_id="anna", role="agent")


def control(r: Rig) -> Any:
    return r.c.services["call_control"]


async def phone(r: Rig, username: str, hz: float) -> ToneAgentPhone:
    p = ToneAgentPhone(r.asterisk.sip_port, username, tone_hz=hz)
    await p.start()
    await wait_until(lambda: registered(r, username), timeout=30, step=0.3)
    return p


def recent(p: ToneAgentPhone, since: int) -> np.ndarray:
    """What the phone heard since sample `since`, silent frames dropped."""
    heard = p.heard[since:]
    frames = [heard[i:i + 160] for i in range(0, len(heard) - 159, 160)]
    return np.array([v for f in frames if max(abs(x) for x in f) > 2 for v in f])


async def listen(p: ToneAgentPhone, seconds: float = 2.5) -> np.ndarray:
    since = len(p.heard)
    await wait_until(lambda: len(recent(p, since)) >= int(8000 * seconds), timeout=30,
                     step=0.2)
    return recent(p, since)


async def listen_any(p: ToneAgentPhone, seconds: float = 2.0) -> np.ndarray:
    """Everything the phone heard over the next samples, silent frames included (a
    phone that hears nothing hears silence)."""
    since = len(p.heard)
    await wait_until(lambda: len(p.heard) - since >= int(8000 * seconds), timeout=30,
                     step=0.2)
    return np.array(p.heard[since:])


async def hears_within(p: ToneAgentPhone, freq: float, who: str,
                       timeout: float = 20.0) -> None:
    """The tone shows up in what the phone hears (a redirect takes a moment)."""
    levels: dict[float, float] = {}

    async def heard() -> bool:
        levels.update(tone_levels(await listen(p, 1.5), [freq]))
        return levels[freq] > 0.05

    try:
        await wait_until(heard, timeout=timeout, step=0.1)
    except AssertionError:
        raise AssertionError(f"{who} should hear {freq} Hz: {levels}") from None


async def stops_hearing(p: ToneAgentPhone, freq: float, who: str,
                        timeout: float = 20.0) -> None:
    """The tone disappears from what the phone hears (the phone's jitter buffer may
    still play a moment of the audio from before the change)."""
    levels: dict[float, float] = {}

    async def gone() -> bool:
        levels.update(tone_levels(await listen_any(p, 1.5), [freq]))
        return levels[freq] < 0.01

    try:
        await wait_until(gone, timeout=timeout, step=0.1)
    except AssertionError:
        raise AssertionError(f"{who} should stop hearing {freq} Hz: {levels}") from None


def assert_hears(samples: np.ndarray, present: list[float], absent: list[float],
                 who: str) -> None:
    levels = tone_levels(samples, present + absent)
    for f in present:
        assert levels[f] > 0.05, (f"{who} should hear {f} Hz: {levels}; dominant "
                                  f"{dominant_frequency(list(samples[-8192:])):.0f} Hz, "
                                  f"rms {rms(list(samples)):.1f}")
    for f in absent:
        assert levels[f] < 0.01, f"{who} should not hear {f} Hz: {levels}"


async def connected_call(r: Rig, anna: ToneAgentPhone) -> tuple[str, Any]:
    await r.agent_ready("anna")
    caller = await call_in(r, "ctl", digits="1")
    await until(r, lambda: payloads(r, "task.accepted"), 60, "task.accepted")
    task_id = payloads(r, "task.accepted")[0]["task_id"]
    await listen(anna)  # the bridge is up: anna hears her tone echoed by the caller
    return task_id, caller


async def test_hold_plays_the_queue_music_to_the_caller_and_resume_reconnects(
        rig, monkeypatch: pytest.MonkeyPatch) -> None:
    record_to = os.environ.get("CENTRALE_RECORD_AMI")
    capture = AmiCapture()
    if record_to:  # refresh tests/fixtures/asterisk/ami_call_control_hold_resume.*
        capture.install(monkeypatch)
    r = await rig(rona=20)
    anna = await phone(r, "1001", ANNA_HZ)
    try:
        task_id, caller = await connected_call(r, anna)
        started = r.asterisk.text().count("Started music on hold")  # the queue's, so far
        view = await control(r).hold(task_id, anna_actor())
        assert view.held and view.backend == "asterisk"
        # Asterisk plays the music class to the customer's channel (its own log says
        # so, from the centrale-control hold extension) ...
        await wait_until(lambda: r.asterisk.text().count("Started music on hold") > started,
                         timeout=20, step=0.2)
        assert "hold@centrale-control" in r.asterisk.text()
        # ... and anna no longer hears the caller (no echo of her tone).
        await stops_hearing(anna, ANNA_HZ, "anna, caller on hold")
        with pytest.raises(CallControlError) as held_twice:
            await control(r).hold(task_id, anna_actor())
        assert held_twice.value.code == "invalid_state"
        view = await control(r).resume(task_id, anna_actor())
        assert not view.held and view.hold_seconds > 0
        await hears_within(anna, ANNA_HZ, "anna, after resume")
        assert "Stopped music on hold" in r.asterisk.text()

        def is_resume(e: Any) -> bool:
            return e.kind == "call_control" and e.meta.get("event") == "resume"

        resume = next(e for e in await timeline_when(
            r, payloads(r, "task.accepted")[0]["case_id"],
            lambda tl: any(is_resume(e) for e in tl), "the resume on the timeline")
            if is_resume(e))
        assert resume.meta["hold_seconds"] > 0
        anna.hangup()
        assert await caller.wait(60) == 0, caller.errors()
        if record_to:
            capture.write(Path(record_to), "ami_call_control_hold_resume", [
                "Captured by tests/asterisk_live/test_live_call_control.py (CENTRALE_RECORD_AMI)",
                "from a live Asterisk 20.20.1 (PJSIP, app_confbridge, res_musiconhold) with the",
                "docker/asterisk config set: Centrale's AMI connection while a trunk caller is",
                "queued, rung to agent 1001, then held and resumed through call control.",
                "Line ending: CRLF as sent; client messages start with 'Action:'.",
                "Chunks with directions and times: jsonl/<same name>.jsonl"])
    finally:
        await anna.stop()


async def test_blind_transfer_to_a_named_agent_gives_bram_the_task(rig) -> None:
    r = await rig(rona=20)
    anna = await phone(r, "1001", ANNA_HZ)
    bram = await phone(r, "1002", BRAM_HZ)
    try:
        task_id, caller = await connected_call(r, anna)
        await r.agent_ready("bram")
        view = await control(r).blind_transfer(task_id, "agent", "bram", anna_actor(),
                                               reason="billing")
        assert view.state in ("transferring", "talking")
        await until(r, lambda: r.acd.task(task_id).agent_id == "bram", 60,
                    "bram accepted the transferred task")
        offered = payloads(r, "task.offered")[-1]
        assert offered["agent_id"] == "bram"
        assert offered["attributes"]["transfer"] == {
            "by": "anna", "reason": "billing", "to_agent_id": "bram",
            "at": offered["attributes"]["transfer"]["at"]}
        # The caller is bridged with bram: bram hears his own tone echoed by the caller.
        await hears_within(bram, BRAM_HZ, "bram, after the transfer")
        await wait_until(lambda: "ANSWERED" not in anna.states(), timeout=20, step=0.2)
        assert r.acd.agent("bram").state == "busy"
        bram.hangup()
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await anna.stop()
        await bram.stop()


async def test_conference_in_confbridge_every_agent_hears_the_other(rig) -> None:
    r = await rig(rona=20)
    anna = await phone(r, "1001", ANNA_HZ)
    bram = await phone(r, "1002", BRAM_HZ)
    try:
        task_id, caller = await connected_call(r, anna)
        view = await control(r).conference(task_id, anna_actor(), "agent", "bram")
        assert view.state == "conference"
        await asyncio.gather(hears_within(anna, BRAM_HZ, "anna, in the conference"),
                             hears_within(bram, ANNA_HZ, "bram, in the conference"))
        _, rooms = await r.asterisk.cli("confbridge list")
        assert "centrale" in rooms.lower() or rooms.count("\n") >= 3, rooms
        anna.hangup()  # the last agent leaving ends it (end_marked): bram is marked too
        bram.hangup()
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await anna.stop()
        await bram.stop()


async def test_listen_with_chanspy_the_supervisor_hears_and_is_not_heard(rig) -> None:
    r = await rig(rona=20)
    anna = await phone(r, "1001", ANNA_HZ)
    sven = await phone(r, "1003", SVEN_HZ)
    try:
        task_id, caller = await connected_call(r, anna)
        with pytest.raises(CallControlError) as refused:  # agents may not monitor
            await control(r).monitor(task_id, "listen", anna_actor(), "1003")
        assert refused.value.code == "not_your_call"
        view = await control(r).monitor(task_id, "listen", Supervisor(), "1003")
        assert view.monitors and view.monitors[0]["mode"] == "listen"
        await hears_within(sven, ANNA_HZ, "the supervisor, listening")
        assert_hears(await listen(sven), [], [SVEN_HZ], "the supervisor, listening")
        assert_hears(await listen(anna), [ANNA_HZ], [SVEN_HZ], "anna, while monitored")
        anna.hangup()
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await anna.stop()
        await sven.stop()


async def test_whisper_only_the_agent_hears_the_supervisor(rig) -> None:
    """ChanSpy `w` on the agent's channel: anna hears sven; sven hears the call (anna's
    tone, echoed by the caller too); the caller does not hear sven — if it did, its echo
    would carry sven's tone back into the call and sven would hear himself."""
    r = await rig(rona=20)
    anna = await phone(r, "1001", ANNA_HZ)
    sven = await phone(r, "1003", SVEN_HZ)
    try:
        task_id, caller = await connected_call(r, anna)
        view = await control(r).monitor(task_id, "whisper", Supervisor(), "1003")
        assert view.monitors and view.monitors[0]["mode"] == "whisper"
        await asyncio.gather(hears_within(anna, SVEN_HZ, "anna, whispered to"),
                             hears_within(sven, ANNA_HZ, "the supervisor, whispering"))
        assert_hears(await listen(sven), [ANNA_HZ], [SVEN_HZ], "the supervisor, whispering")
        anna.hangup()
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await anna.stop()
        await sven.stop()


async def test_barge_all_three_talk(rig) -> None:
    """ChanSpy `B`: anna hears sven, sven hears anna, and the caller hears sven (its
    echo brings sven's tone back: sven hears himself through the caller)."""
    r = await rig(rona=20)
    anna = await phone(r, "1001", ANNA_HZ)
    sven = await phone(r, "1003", SVEN_HZ)
    try:
        task_id, caller = await connected_call(r, anna)
        view = await control(r).monitor(task_id, "barge", Supervisor(), "1003")
        assert view.monitors and view.monitors[0]["mode"] == "barge"
        await asyncio.gather(hears_within(anna, SVEN_HZ, "anna, barged"),
                             hears_within(sven, ANNA_HZ, "the supervisor, barging"),
                             hears_within(sven, SVEN_HZ, "the supervisor, through the caller"))
        anna.hangup()
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await anna.stop()
        await sven.stop()


async def consulting(r: Rig, anna: ToneAgentPhone, bram: ToneAgentPhone) -> tuple[str, Any]:
    """A call with anna, then a consult of bram: the caller on hold (not in the room:
    bram does not hear his own tone come back), anna and bram hear each other."""
    task_id, caller = await connected_call(r, anna)
    await r.agent_ready("bram")
    view = await control(r).consult(task_id, "agent", "bram", anna_actor())
    assert view.state == "consulting" and view.held, view
    await asyncio.gather(hears_within(anna, BRAM_HZ, "anna, consulting"),
                         hears_within(bram, ANNA_HZ, "bram, consulted"))
    assert_hears(await listen(bram), [ANNA_HZ], [BRAM_HZ], "bram, caller on hold")
    return task_id, caller


def own_tone_level(p: ToneAgentPhone, samples: np.ndarray) -> float:
    return tone_levels(samples, [p.tone_hz])[p.tone_hz]


async def test_consult_then_complete_gives_the_caller_and_the_task_to_bram(rig) -> None:
    r = await rig(rona=20)
    anna = await phone(r, "1001", ANNA_HZ)
    bram = await phone(r, "1002", BRAM_HZ)
    try:
        task_id, caller = await consulting(r, anna, bram)
        view = await control(r).complete_consult(task_id, anna_actor(), reason="billing")
        assert view.agent_id == "bram" and view.state == "talking", view
        # bram is with the caller now: his tone comes back through the caller's echo
        await hears_within(bram, BRAM_HZ, "bram, after the consult")
        await wait_until(lambda: "ANSWERED" not in anna.states(), timeout=20, step=0.2)
        await until(r, lambda: r.acd.task(task_id).agent_id == "bram", 30,
                    "the task followed the call to bram")
        assert len(bram.calls) == 1  # the offer did not ring him a second time
        bram.hangup()
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await anna.stop()
        await bram.stop()


async def test_consult_then_cancel_brings_anna_back_to_the_caller(rig) -> None:
    r = await rig(rona=20)
    anna = await phone(r, "1001", ANNA_HZ)
    bram = await phone(r, "1002", BRAM_HZ)
    try:
        task_id, caller = await consulting(r, anna, bram)
        view = await control(r).cancel_consult(task_id, anna_actor())
        assert view.state == "talking" and not view.held, view
        await wait_until(lambda: "ANSWERED" not in bram.states(), timeout=20, step=0.2)
        await hears_within(anna, ANNA_HZ, "anna, back with the caller")
        await stops_hearing(anna, BRAM_HZ, "anna, after the cancel")
        assert r.acd.task(task_id).agent_id == "anna"
        anna.hangup()
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await anna.stop()
        await bram.stop()


async def test_consult_turned_into_a_conference(rig) -> None:
    """The caller leaves hold into the room where anna and bram are: each agent hears
    the other, and their own tone comes back through the caller's echo — the only path
    by which it can reach them, so it shows that the caller hears them.

    What anna receives from bram's phone arrives loud and distorted (rms ~57 of 128
    against ~12 the other way, bram's tone only ~17% of the energy; seen in every run,
    probably pyVoIP 1.6.8's PCMA frames being µ-law encoded), so anna's own tone
    through the caller is a small share of what she hears (~1%): it is checked against
    its level while the caller was on hold (no echo path: ~0.01%)."""
    r = await rig(rona=20)
    anna = await phone(r, "1001", ANNA_HZ)
    bram = await phone(r, "1002", BRAM_HZ)
    try:
        task_id, caller = await consulting(r, anna, bram)
        anna_alone = own_tone_level(anna, await listen(anna))
        view = await control(r).conference(task_id, anna_actor())
        assert view.state == "conference" and not view.held, view
        await hears_within(bram, BRAM_HZ, "bram, caller in the conference")
        assert_hears(await listen(bram), [ANNA_HZ, BRAM_HZ], [], "bram, in the conference")

        async def anna_through_the_caller() -> bool:
            level = own_tone_level(anna, await listen(anna, 1.5))
            return level > 0.004 and level > 20 * anna_alone

        await until(r, anna_through_the_caller, 20,
                    f"anna's tone back through the caller (on hold: {anna_alone:.5f})")
        assert_hears(await listen(anna), [BRAM_HZ], [], "anna, in the conference")
        anna.hangup()
        bram.hangup()
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await anna.stop()
        await bram.stop()


async def test_blind_transfer_to_a_number_through_the_trunk(rig, tmp_path) -> None:
    """To an external number: the customer is dialled out through the trunk (sipp as
    the carrier answers and echoes); anna's leg ends and her part of the task is
    completed (wrap-up: notes say to whom); the call is nobody's here after."""
    from live_asterisk import Sipp

    carrier = Sipp(tmp_path, "carrier")
    r = await rig(rona=20, carrier=carrier)
    anna = await phone(r, "1001", ANNA_HZ)
    try:
        task_id, caller = await connected_call(r, anna)
        view = await control(r).blind_transfer(task_id, "number", "020 765 4321",
                                               anna_actor(), reason="the supplier")
        assert view.state == "transferring", view

        def carrier_invited() -> bool:
            return any("INVITE sip:+31207654321@" in p.read_text(errors="replace")
                       for p in carrier.dir.glob("*messages.log"))

        await until(r, carrier_invited, 30, "the carrier got the INVITE to the number")
        await wait_until(lambda: "ANSWERED" not in anna.states(), timeout=20, step=0.2)
        await until(r, lambda: payloads(r, "task.completed"), 30, "anna's part completed")
        assert payloads(r, "task.completed")[0]["task_id"] == task_id

        async def bridged_out() -> bool:  # the customer talks to the carrier's leg
            _, out = await r.asterisk.cli("core show channels concise")
            return any(line.startswith("PJSIP/trunk-") and "Up" in line
                       for line in out.splitlines())

        await until(r, bridged_out, 30, "the customer's call is up through the trunk")
        caller_line = [line for line in (await r.asterisk.cli(
            "core show channels concise"))[1].splitlines() if "blind@centrale-control" in
            line or "centrale-control!blind" in line]
        assert caller_line, "the caller is in the blind-transfer Dial"
        await r.asterisk.cli("channel request hangup all")
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await anna.stop()
