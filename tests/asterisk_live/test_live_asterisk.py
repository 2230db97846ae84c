"""Centrale against a live Asterisk 20.20.1 with the docker/asterisk config set: sipp as
the trunk (RFC 2833 digits with distinct timestamps), pyVoIP phones as the agents
(sending a 1 kHz tone that sipp echoes back, so what the agent hears is checked by its
spectrum), Centrale in this process with its real wiring.

Each test is one user story and names the defect of issue 19 it keeps fixed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest
from live_asterisk import (
    LANGUAGE_TONES,
    Sipp,
    ToneAgentPhone,
    caller_scenario,
    dominant_frequency,
    rms,
)
from live_rig import Rig

from tests.waiting import wait_until

pytestmark = pytest.mark.asterisk


# ------------------------------------------------------------------------- helpers
async def registered(rig: Rig, username: str) -> bool:
    _, out = await rig.asterisk.cli(f"pjsip show aor {username}")
    return f"contact : {username}/sip:" in out.replace("  ", " ") or \
        f"{username}/sip:" in out


async def agent_phone(rig: Rig, username: str) -> ToneAgentPhone:
    phone = ToneAgentPhone(rig.asterisk.sip_port, username)
    await phone.start()
    await wait_until(lambda: registered(rig, username), timeout=30, step=0.3)
    return phone


async def call_in(rig: Rig, name: str, *, digits: str = "2", then: str = "wait_bye",
                  hold_ms: int = 0) -> Sipp:
    caller = Sipp(rig.tmp, name)
    await caller.start(caller_scenario(caller.dir, digits=digits, then=then,
                                       hold_ms=hold_ms),
                       target=f"127.0.0.1:{rig.asterisk.sip_port}",
                       extra=["-cid_str", f"{name}-%u"])
    return caller


def hang_up_caller(caller: Sipp, name: str) -> None:
    """Tell a `then="signal"` caller to hang up now: an INFO in its own dialog."""
    message = (f"INFO sip:sipp@127.0.0.2:{caller.port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-{name}\r\n"
               "From: <sip:test@127.0.0.1>;tag=t\r\nTo: <sip:sipp@127.0.0.2>\r\n"
               f"Call-ID: {name}-1\r\nCSeq: 9 INFO\r\nContent-Length: 0\r\n\r\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), ("127.0.0.2", caller.port))


async def until(rig: Rig, predicate: Any, timeout: float, what: str) -> None:
    """wait_until, with what the test saw so far when it fails."""
    try:
        await wait_until(predicate, timeout=timeout, step=0.1)
    except AssertionError:
        raise AssertionError(f"{what} not within {timeout} s; task events: {rig.topics()}; "
                             f"Asterisk:\n{rig.asterisk.tail(25)}") from None


async def timeline_when(rig: Rig, case_id: str, holds: Any, what: str) -> list[Any]:
    """The case's timeline once `holds(timeline)`: entries are written by the timeline
    writer's group commits, after the event that tells of them, so a read straight
    after that event can come before them."""
    timeline: list[Any] = []

    async def written() -> bool:
        timeline[:] = await rig.timeline(case_id)
        return bool(holds(timeline))

    await until(rig, written, 20, what)
    return timeline


def payloads(rig: Rig, topic: str) -> list[dict[str, Any]]:
    return [e.payload for e in rig.events if e.topic == topic]


async def bodies(rig: Rig, case_id: str) -> list[str]:
    return [t.body for t in await rig.timeline(case_id)]


def loud_samples(phone: ToneAgentPhone) -> list[float]:
    """What the agent heard, in 20 ms frames, without the silent ones (before the
    bridge pyVoIP returns silence); frames are kept whole so the waveform is too."""
    out: list[float] = []
    for i in range(0, len(phone.heard) - 159, 160):
        frame = phone.heard[i:i + 160]
        if max(abs(v) for v in frame) > 2:
            out += frame
    return out


def heard_tone(phone: ToneAgentPhone) -> float:
    """The dominant frequency of what the agent heard."""
    loud = loud_samples(phone)
    return dominant_frequency(loud[-8192:]) if len(loud) > 2048 else 0.0


async def assert_agent_hears_own_tone(phone: ToneAgentPhone) -> None:
    """The agent's 1 kHz tone went through Asterisk's bridge to the trunk caller (sipp
    echoes it) and back: audio flows both ways between caller and agent."""
    try:
        await wait_until(lambda: len(loud_samples(phone)) > 8192, timeout=30, step=0.3)
    except AssertionError:
        loud = loud_samples(phone)
        raise AssertionError(f"the agent heard {len(phone.heard)} samples, {len(loud)} "
                             f"not silent (states {phone.states()})") from None
    freq = heard_tone(phone)
    assert abs(freq - phone.tone_hz) < 15, f"agent heard {freq:.0f} Hz, not its tone"
    assert rms(loud_samples(phone)[-4000:]) > 5


# --------------------------------------------------------------------------- tests
async def test_asterisk_uses_the_directories_of_asterisk_conf(rig) -> None:
    """Defect 5: `[directories](!)` is a template and was ignored; the shipped file
    now names a real section, and Asterisk runs from the paths it gives."""
    r = await rig()
    _, settings = await r.asterisk.cli("core show settings")
    assert str(r.asterisk.log_dir) in settings
    assert str(r.asterisk.run_dir) in settings
    assert (r.asterisk.run_dir / "asterisk.ctl").exists()


async def test_ivr_dtmf_queue_agent_rung_at_first_offer_and_bridged(rig) -> None:
    """The whole path; defect 1: the first offer rings the agent (no refusal while the
    caller is still in the IVR, no RONA wait, no false rejection)."""
    r = await rig()
    phone = await agent_phone(r, "1001")
    try:
        await r.agent_ready("anna")
        caller = await call_in(r, "answered")
        await until(r, lambda: payloads(r, "task.accepted"), 60, "task.accepted")
        first_offer = payloads(r, "task.offered")[0]
        accepted = payloads(r, "task.accepted")[0]
        assert accepted["offer_id"] == first_offer["offer_id"]
        assert not payloads(r, "task.rejected") and not payloads(r, "task.missed")
        await assert_agent_hears_own_tone(phone)
        phone.hangup()  # the agent ends the call; Bridge(x) hangs the caller up
        assert await caller.wait(60) == 0, caller.errors()
        await until(r, lambda: payloads(r, "task.completed"), 30, "task.completed")
        timeline = await bodies(r, accepted["case_id"])
        assert any(b.startswith("Call with anna ended") for b in timeline), timeline
        assert any("IVR main started" in b for b in timeline), timeline
    finally:
        await phone.stop()


async def test_dutch_caller_hears_dutch_hold_announcements_then_abandons(rig) -> None:
    """Defect 2: hold announcements in the language chosen in the IVR (Asterisk's own
    log says which file it played in which language); defect 3: the caller hanging up
    while held reaches the case timeline."""
    r = await rig()
    caller = await call_in(r, "abandon", digits="2", then="signal")
    await until(r, lambda: payloads(r, "task.enqueued"), 60, "task.enqueued")
    task = payloads(r, "task.enqueued")[0]
    await wait_until(lambda: "centrale/nl/queue/" in r.asterisk.text(), timeout=60,
                     step=0.2)
    played = [line for line in r.asterisk.text().splitlines() if "centrale/" in line
              and "Playing" in line and "/queue/" in line]
    assert played and all("centrale/nl/" in line for line in played), played
    assert all("language 'nl'" in line for line in played), played
    assert LANGUAGE_TONES["nl"] != LANGUAGE_TONES["en"]
    hang_up_caller(caller, "abandon")
    assert await caller.wait(30) == 0, caller.errors()
    await until(r, lambda: payloads(r, "task.abandoned"), 30, "task.abandoned")
    timeline = await bodies(r, task["case_id"])
    assert any(b.startswith("Caller hung up in queue support") for b in timeline), timeline


async def test_callback_rings_agent_then_customer_through_the_trunk(rig, tmp_path) -> None:
    """A callback: Asterisk rings the agent first, then dials the customer through the
    trunk (sipp as the carrier); agent and customer hear each other."""
    carrier = Sipp(tmp_path, "carrier")
    r = await rig(carrier=carrier)
    phone = await agent_phone(r, "1001")
    try:
        await r.agent_ready("anna")
        from cases import IdentityRef

        customer = await r.c.cases.resolve(IdentityRef("phone", "020 123 4567"))
        task_id = await r.c.services["voice"].schedule_callback(
            case_id=customer.case.id, customer_id=customer.customer.id,
            number="020 123 4567", queue_id="support", agent_id="anna")
        await until(r, lambda: payloads(r, "task.offered"), 30, "task.offered")
        offer = payloads(r, "task.offered")[0]
        assert offer["task_id"] == task_id
        await r.acd.accept(offer["offer_id"], "anna")
        await assert_agent_hears_own_tone(phone)
        messages = "".join(p.read_text(errors="replace")
                           for p in carrier.dir.glob("*messages.log"))
        assert "INVITE sip:+31201234567@" in messages
        phone.hangup()
        await until(r, lambda: payloads(r, "task.completed"), 30, "task.completed")
        timeline = await bodies(r, customer.case.id)
        assert "Call to +31201234567" in timeline, timeline
    finally:
        await phone.stop()


async def test_asterisk_crash_mid_call_closes_call_with_talk_time_up_to_the_crash(
        rig) -> None:
    """Defect 7: Asterisk killed while caller and agent talk, then started again: the
    call is closed after the outage, its talk time stops at the crash."""
    r = await rig()
    phone = await agent_phone(r, "1001")
    try:
        await r.agent_ready("anna")
        caller = await call_in(r, "crash")
        await until(r, lambda: payloads(r, "task.accepted"), 60, "task.accepted")
        accepted_at = time.monotonic()
        accepted = payloads(r, "task.accepted")[0]
        await assert_agent_hears_own_tone(phone)
        await r.asterisk.kill()
        killed_at = time.monotonic()
        await wait_until(lambda: not r.backend.ami.ready, timeout=30)
        await asyncio.sleep(2.0)  # the outage lasts: Asterisk is down for a while
        await r.asterisk.start()
        await until(r, lambda: payloads(r, "task.completed"), 90, "task.completed")
        ended = [t for t in await timeline_when(
            r, accepted["case_id"], lambda tl: any(t.meta.get("event") == "ended" for t in tl),
            "the call's end on the timeline") if t.meta.get("event") == "ended"]
        assert len(ended) == 1
        assert "closed after an Asterisk outage" in ended[0].body
        assert ended[0].meta["talk_seconds"] <= killed_at - accepted_at + 1.0
        await caller.kill()
    finally:
        await phone.stop()


async def test_centrale_restart_while_caller_waits_connects_them_after(rig) -> None:
    """Defect 4: Centrale restarts while a caller waits in Asterisk's holding loop; the
    restarted Centrale adopts the call, queues it again, and connects it to an agent."""
    r = await rig()
    caller = await call_in(r, "restart")
    await until(r, lambda: payloads(r, "task.enqueued"), 60, "task.enqueued")
    task = payloads(r, "task.enqueued")[0]
    await wait_until(lambda: r.backend.registry.by_call_id(
        task["attributes"]["call_id"]) is not None and r.backend.registry.by_call_id(
        task["attributes"]["call_id"]).state == "waiting", timeout=30)
    await r.stop_centrale()
    r.events.clear()
    await r.start_centrale()
    await r.backend.ami.wait_ready()
    await wait_until(lambda: _task_waiting(r, task["task_id"]), timeout=30)
    phone = await agent_phone(r, "1001")
    try:
        await r.agent_ready("anna")
        await until(r, lambda: payloads(r, "task.accepted"), 60, "task.accepted")
        assert payloads(r, "task.accepted")[0]["task_id"] == task["task_id"]
        await assert_agent_hears_own_tone(phone)
        phone.hangup()
        assert await caller.wait(60) == 0, caller.errors()
        timeline = await bodies(r, task["case_id"])
        assert any(b.startswith("Call recovered after a Centrale restart") for b in timeline)
    finally:
        await phone.stop()


def _task_waiting(rig: Rig, task_id: str) -> bool:
    try:
        return rig.acd.task(task_id).status in ("waiting", "offered")
    except Exception:
        return False


async def test_unregistered_and_missing_agent_phones_go_not_ready(rig, caplog) -> None:
    """Defect 6 and bad input: Originate to an unregistered phone (1001) and to an
    endpoint Asterisk does not have (1999) fails; after two such offers in a row each
    agent is not-ready with `phone_unreachable`, and the caller reaches the agent whose
    phone works."""
    caplog.set_level(logging.INFO)
    r = await rig(rona=4, extra_agent=True)
    await r.agent_ready("anna")  # no phone registered for 1001
    await r.agent_ready("cleo")  # PJSIP/1999: no such endpoint
    caller = await call_in(r, "unreachable")
    await wait_until(lambda: r.acd.agent("anna").state == "not_ready"
                     and r.acd.agent("cleo").state == "not_ready", timeout=90)
    assert r.acd.agent("anna").reason == "phone_unreachable"
    assert r.acd.agent("cleo").reason == "phone_unreachable"
    assert "phone unreachable on 2 offers in a row" in caplog.text
    assert "agent endpoint PJSIP/1999 unreachable" in caplog.text
    phone = await agent_phone(r, "1002")
    try:
        await r.agent_ready("bram")
        await until(r, lambda: payloads(r, "task.accepted"), 60, "task.accepted")
        assert payloads(r, "task.accepted")[0]["agent_id"] == "bram"
        await assert_agent_hears_own_tone(phone)
        phone.hangup()
        assert await caller.wait(60) == 0, caller.errors()
    finally:
        await phone.stop()


async def test_caller_hangs_up_in_ivr_and_actions_on_dead_channels(rig, caplog) -> None:
    """Bad input: AGI commands on a channel that hung up in the IVR end the IVR
    cleanly (a log line, the timeline says where, no task left); Hangup and Redirect
    of that gone channel get Asterisk's error, reported, nothing stuck."""
    from pbx_bridge.asterisk import AmiError

    caplog.set_level(logging.INFO)
    r = await rig()
    channels: list[Any] = []
    r.backend.add_listener(lambda e: channels.append(e))
    caller = await call_in(r, "ivr-hangup", digits="", then="bye", hold_ms=0)
    assert await caller.wait(30) == 0, caller.errors()
    await wait_until(lambda: "hung up in the IVR" in caplog.text, timeout=30)
    await wait_until(lambda: any(type(e).__name__ == "ChannelHungUp" and e.call_id
                                 for e in channels), timeout=30)
    hung = [e for e in channels if type(e).__name__ == "ChannelHungUp" and e.call_id]
    call_id = hung[0].call_id
    assert not payloads(r, "task.enqueued")
    from cases import IdentityRef

    case = (await r.c.cases.resolve(IdentityRef("phone", "+31201234567"))).case
    timeline = await bodies(r, case.id)
    assert any(b.startswith("Caller hung up in menu choose") for b in timeline), timeline
    assert await r.backend.hangup_call(call_id) is False  # gone: nothing to hang up
    with pytest.raises(AmiError, match=r"(?i)no such channel|channel .*not exist"):
        await r.backend.ami.action("Redirect", Channel=hung[0].channel,
                                   Context="centrale-hold", Exten="s", Priority="1")
    assert r.backend.ami.ready  # the errors did not cost the connection


SURVEY_FLOW = """
  - id: after_call
    languages: [en, nl]
    start: ask
    nodes:
      ask: {type: survey, kind: csat, prompts: [choose_language],
            thanks_prompts: [goodbye], retry_prompts: [choose_language],
            timeout_seconds: 30}
"""


async def test_agent_hangs_up_and_the_caller_answers_the_survey(rig) -> None:
    """Issue 24: the queue names a survey flow; when the agent hangs up, Asterisk's
    `Bridge(...,F(centrale-survey^s^1))` sends the caller to the survey route instead of
    hanging up (option x). The caller presses 4 (RFC 2833 from sipp, sent once the
    question is playing), the answer is on the case timeline, the CSAT figure counts
    it, and Asterisk hangs the caller up after the thanks."""
    from datetime import UTC, datetime

    from live_asterisk import SIPP_INVITE, SIPP_SIGNAL, SIPP_WAIT_BYE, rfc2833_pcap

    r = await rig()
    # the site with the survey: the queue names it (a config reload, as an admin does)
    await r.stop_centrale()
    site = r.config_dir / "site.yaml"
    text = site.read_text().replace("wrap_up_seconds: 0}",
                                    "wrap_up_seconds: 0, survey_flow: after_call}")
    site.write_text(text.rstrip("\n") + "\n" + SURVEY_FLOW)
    await r.start_centrale()
    await r.backend.ami.wait_ready()
    phone = await agent_phone(r, "1001")
    answers: list[Any] = []

    async def keep(event: Any) -> None:
        answers.append(event)

    await r.c.bus.subscribe("survey.answered", keep)
    caller = Sipp(r.tmp, "survey")
    body = SIPP_INVITE.format(caller="+31201234567") + '  <pause milliseconds="1500"/>\n'
    menu = rfc2833_pcap(caller.dir / "dtmf-0-1.pcap", "1", 0)
    answer = rfc2833_pcap(caller.dir / "dtmf-1-4.pcap", "4", 1)
    body += f'  <nop><action><exec play_pcap_audio="{menu}"/></action></nop>\n'
    body += SIPP_SIGNAL  # wait for the test's INFO: the survey question is playing
    body += f'  <nop><action><exec play_pcap_audio="{answer}"/></action></nop>\n'
    # the second wait loop needs labels of its own (sipp refuses a scenario with two)
    second = SIPP_WAIT_BYE
    for label in ("wait", "reinvite", "until"):
        second = second.replace(f'id="{label}"', f'id="{label}2"').replace(
            f'next="{label}"', f'next="{label}2"')
    body += second
    scenario = ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="survey">\n'
                + body + "</scenario>\n")
    try:
        await r.agent_ready("anna")
        await caller.start(scenario, target=f"127.0.0.1:{r.asterisk.sip_port}",
                           extra=["-cid_str", "survey-%u"])
        try:
            await until(r, lambda: payloads(r, "task.accepted"), 60, "task.accepted")
        except AssertionError:
            raise AssertionError(f"sipp: {caller.errors()}") from None
        case_id = payloads(r, "task.accepted")[0]["case_id"]
        await assert_agent_hears_own_tone(phone)
        phone.hangup()  # the agent ends the call: the caller goes on to the survey

        async def asked() -> bool:
            return "Survey (CSAT) asked after the call" in await bodies(r, case_id)
        await until(r, asked, 60, "the survey question")
        await until(r, lambda: payloads(r, "task.completed"), 30, "task.completed")
        hang_up_caller(caller, "survey")  # the INFO: sipp now presses 4
        assert await caller.wait(60) == 0, caller.errors()  # BYE after the thanks
        await until(r, lambda: answers, 30, "survey.answered")
        p = answers[0].payload
        assert (p["kind"], p["score"], p["channel"], p["agent_id"]) == \
            ("csat", 4, "voice", "anna")
        timeline = await bodies(r, case_id)
        assert "Survey (CSAT): 4" in timeline, timeline
        reports = r.c.services["reports"]

        async def counted() -> bool:
            kpis = await reports.kpis(datetime(2000, 1, 1, tzinfo=UTC),
                                      datetime(2100, 1, 1, tzinfo=UTC))
            return kpis["csat"]["answers"] == 1
        await until(r, counted, 30, "the CSAT figure")
    finally:
        await phone.stop()
        await caller.kill()
