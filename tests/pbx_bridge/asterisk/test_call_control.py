"""Call control on the Asterisk backend against a fake AMI speaking Asterisk 20's
replies: the recorded ones (Redirect, Setvar, Hangup, Originate + OriginateResponse
from ../shared/fixtures/asterisk/ami_actions) and, for actions the recordings lack
(ConfbridgeMute/Unmute, PlayDTMF), the replies Asterisk 20 documents and sends
(`astman_send_ack` with "User muted", "User unmuted", "DTMF successfully queued").
Each test checks the exact AMI actions Centrale sends for one operation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from config.schema.server import AmiSettings, AsteriskSettings
from pbx_bridge.asterisk.ami import Backoff
from pbx_bridge.asterisk.backend import AsteriskBackend
from pbx_bridge.asterisk.channels import VAR_CALL_ID, VAR_ROLE, VAR_STATE, VAR_TASK_ID
from pbx_bridge.asterisk.control import AsteriskCallControl
from pbx_bridge.asterisk.testing import (
    AmiRecording,
    FakeAmiServer,
    ami_frame,
    edit_frame,
    redirect_joining_room,
    replace_action_id,
)
from pbx_bridge.control import CallControlError, ControlledCall, Target
from tests.waiting import wait_until

CUSTOMER = "PJSIP/trunk-00000001"
AGENT = "PJSIP/1001-00000002"
ANNA = SimpleNamespace(id="anna", sip=SimpleNamespace(username="1001"))
BRAM = Target("agent", "bram", "1002", "agent bram")


@dataclass
class FakeAcd:
    transfers: list[tuple[str, str, str]] = field(default_factory=list)
    completed: list[tuple[str, str, str | None]] = field(default_factory=list)

    directed: list[tuple[str, str, str, str | None, bool]] = field(default_factory=list)
    refuse_answered: bool = False  # the target cannot take the task (not logged in)

    async def transfer(self, task_id: str, agent_id: str, queue_id: str,
                       reason: str | None = None) -> None:
        self.transfers.append((task_id, agent_id, queue_id))

    async def transfer_to_agent(self, task_id: str, agent_id: str, by: str,
                                reason: str | None = None, *, answered: bool = False
                                ) -> None:
        if answered and self.refuse_answered:
            raise RuntimeError(f"agent {agent_id} cannot take it now")
        self.directed.append((task_id, agent_id, by, reason, answered))

    async def complete(self, task_id: str, agent_id: str, notes: str | None = None) -> None:
        self.completed.append((task_id, agent_id, notes))


@dataclass
class Setup:
    control: AsteriskCallControl
    ami: FakeAmiServer
    backend: AsteriskBackend
    acd: FakeAcd
    recording: AmiRecording
    call: ControlledCall

    def sent(self, since: int = 0) -> list[dict[str, str]]:
        skip = {"login", "coreshowchannels", "getvar", "filter", "events", "ping"}
        return [a for a in self.ami.received[since:] if a.get("action", "").lower() not in skip]

    def mark(self) -> int:
        return len(self.ami.received)


def ack(message: str):  # type: ignore[no-untyped-def]
    return lambda headers, action_id: [ami_frame(("Response", "Success"),
                                                 ("ActionID", action_id), ("Message", message))]


def originate_answered(recording: AmiRecording, channel: str):  # type: ignore[no-untyped-def]
    def reply(headers: dict[str, str], action_id: str) -> list[bytes]:
        queued, response = recording.replies["originate"][0]
        return [replace_action_id(queued, action_id),
                edit_frame(replace_action_id(response, action_id), {"Channel": channel})]
    return reply


def originate_unanswered(recording: AmiRecording):  # type: ignore[no-untyped-def]
    def reply(headers: dict[str, str], action_id: str) -> list[bytes]:
        queued, response = recording.replies["originate"][0]
        return [replace_action_id(queued, action_id),
                edit_frame(replace_action_id(response, action_id),
                           {"Response": "Failure", "Reason": "3", "Uniqueid": "<null>"})]
    return reply


@pytest.fixture
async def setup(actions_recording: AmiRecording, ami_server: FakeAmiServer
                ) -> AsyncIterator[Setup]:
    settings = AsteriskSettings(enabled=True, ami=AmiSettings(
        host="127.0.0.1", port=ami_server.port, username="ccadmin",
        secret=SecretStr("ccsecret")))

    async def inbound(leg: Any) -> None:
        return None

    backend = AsteriskBackend(settings, inbound=inbound,
                              backoff=Backoff(initial=0.02, maximum=0.1))
    await backend.start(agi_host="127.0.0.1", agi_port=0)
    customer = backend.registry.ensure("1795704066.0", CUSTOMER)
    customer.variables[VAR_CALL_ID] = "call-1"
    agent = backend.registry.ensure("1795704066.1", AGENT)
    agent.variables.update({VAR_ROLE: "agent", VAR_TASK_ID: "task-1"})
    ami_server.on_action("ConfbridgeMute", ack("User muted"))
    ami_server.on_action("ConfbridgeUnmute", ack("User unmuted"))
    ami_server.on_action("PlayDTMF", ack("DTMF successfully queued"))
    ami_server.on_action("Redirect", redirect_joining_room(ami_server, "call-1"))
    acd = FakeAcd()
    control = AsteriskCallControl(backend, acd=acd, agents=lambda: [ANNA])
    active = SimpleNamespace(call_id="call-1", task_id="task-1", agent_id="anna")
    call = ControlledCall("call-1", "task-1", "case-1", "anna", "asterisk", "support", active)
    yield Setup(control, ami_server, backend, acd, actions_recording, call)
    await backend.stop()


def brief(action: dict[str, str], *keys: str) -> tuple[str, ...]:
    return (action["action"], *(action.get(k.lower(), "") for k in keys))


async def test_hold_moves_both_into_the_room_then_the_customer_to_music(setup: Setup) -> None:
    await setup.control.hold(setup.call, "jazz")
    sent = setup.sent()
    assert [brief(a, "Channel", "Variable", "Value") for a in sent[:1]] == [
        ("Setvar", AGENT, VAR_CALL_ID, "call-1")]
    redirect = sent[1]
    assert brief(redirect, "Channel", "Context", "Exten", "ExtraChannel", "ExtraContext",
                 "ExtraExten") == ("Redirect", CUSTOMER, "centrale-control", "conf", AGENT,
                                   "centrale-control", "conf")
    assert brief(sent[2], "Channel", "Variable", "Value") == (
        "Setvar", CUSTOMER, "CENTRALE_MOH", "jazz")
    assert brief(sent[3], "Channel", "Context", "Exten") == (
        "Redirect", CUSTOMER, "centrale-control", "hold")
    assert setup.control.view(setup.call).held

    mark = setup.mark()
    seconds = await setup.control.resume(setup.call)
    assert seconds >= 0
    assert [brief(a, "Channel", "Exten") for a in setup.sent(mark)] == [
        ("Redirect", CUSTOMER, "conf")]  # already in the room: only the customer moves
    assert not setup.control.view(setup.call).held


async def test_mute_dtmf_and_hangup(setup: Setup) -> None:
    await setup.control.mute(setup.call, True)
    await setup.control.mute(setup.call, False)
    mutes = [brief(a, "Conference", "Channel") for a in setup.sent()
             if a["action"].startswith("Confbridge")]
    assert mutes == [("ConfbridgeMute", "call-1", AGENT), ("ConfbridgeUnmute", "call-1", AGENT)]
    mark = setup.mark()
    await setup.control.send_dtmf(setup.call, "1#")
    await setup.control.hangup(setup.call)
    assert [brief(a, "Channel", "Digit", "Cause") for a in setup.sent(mark)] == [
        ("PlayDTMF", CUSTOMER, "1", ""), ("PlayDTMF", CUSTOMER, "#", ""),
        ("Hangup", AGENT, "", "16")]


async def test_hold_right_after_entering_the_room_waits_out_the_pending_redirect(
        setup: Setup) -> None:
    """Asterisk answers a Redirect of a channel whose previous Redirect is still pending
    with "Redirect failed, channel not up." (live Asterisk 20.20.1, ast_check_hangup
    counts the async-goto flag): the hold asks again and succeeds."""
    answered: list[str] = []

    def redirect(headers, action_id):  # type: ignore[no-untyped-def]
        exten = headers.get("exten", "")
        answered.append(exten)
        if exten == "hold" and answered.count("hold") == 1:
            return [ami_frame(("Response", "Error"), ("ActionID", action_id),
                              ("Message", "Redirect failed, channel not up."))]
        return [ami_frame(("Response", "Success"), ("ActionID", action_id),
                          ("Message", "Redirect successful")), *joins(headers, exten)]

    setup.ami.on_action("Redirect", redirect)
    await setup.control.hold(setup.call, "default")
    assert answered == ["conf", "hold", "hold"]
    assert setup.control.view(setup.call).held


def joins(headers: dict[str, str], exten: str) -> list[bytes]:
    if exten != "conf":
        return []
    return [ami_frame(("Event", "ConfbridgeJoin"), ("Conference", "call-1"),
                      ("Channel", channel))
            for channel in (headers.get("channel"), headers.get("extrachannel")) if channel]


async def test_hold_waits_until_asterisk_has_put_the_customer_in_the_room(
        setup: Setup) -> None:
    """A Redirect to hold sent while the customer's ConfBridge() has not yet joined
    the room left the agent in an orphaned room on the live Asterisk (the customer
    came back from hold to an empty room): the hold waits for ConfbridgeJoin."""
    setup.ami.on_action("Redirect", lambda headers, action_id: [ami_frame(
        ("Response", "Success"), ("ActionID", action_id), ("Message", "Redirect successful"))])
    hold = asyncio.create_task(setup.control.hold(setup.call, "default"))
    await wait_until(lambda: setup.ami.actions("Redirect"), timeout=10)
    await asyncio.sleep(0.3)  # time enough for a wrong hold Redirect to be sent
    assert [a.get("exten") for a in setup.ami.actions("Redirect")] == ["conf"]
    setup.ami.push_frames(joins({"channel": CUSTOMER, "extrachannel": AGENT}, "conf"))
    await asyncio.wait_for(hold, timeout=10)
    assert [a.get("exten") for a in setup.ami.actions("Redirect")] == ["conf", "hold"]
    assert setup.control.view(setup.call).held


async def test_blind_transfer_to_an_agent_goes_through_the_acd(setup: Setup) -> None:
    """The call has a task: bram gets it as a directed offer (the ACD falls back to
    anna, then the queue); the caller waits in the holding context with music and
    the offer rings bram like any other."""
    setup.call.note = "billing"
    outcome = await setup.control.blind_transfer(setup.call, BRAM, "default")
    assert outcome == "queued"
    assert setup.acd.directed == [("task-1", "bram", "anna", "billing", False)]
    sent = setup.sent()
    assert brief(sent[1], "Variable", "Value") == ("Setvar", VAR_STATE, "waiting")
    assert brief(sent[2], "Channel", "Context", "Exten") == (
        "Redirect", CUSTOMER, "centrale-hold", "s")
    assert setup.call.active.agent_id is None
    assert setup.acd.completed == []


async def test_blind_transfer_to_an_agent_rings_with_music_and_returns(setup: Setup) -> None:
    """Without a task (a call the ACD never had): the dialplan's own blind transfer."""
    setup.call.task_id = None
    setup.call.active.task_id = None
    outcome = await setup.control.blind_transfer(setup.call, BRAM, "default")
    assert outcome == "ringing"
    assert [brief(a, "Channel", "Variable", "Value", "Context", "Exten")
            for a in setup.sent()] == [
        ("Setvar", CUSTOMER, "CENTRALE_MOH", "default", "", ""),
        ("Setvar", CUSTOMER, "CENTRALE_TRANSFER_TARGET", "PJSIP/1002", "", ""),
        ("Setvar", CUSTOMER, "CENTRALE_RETURN_TO", "PJSIP/1001", "", ""),
        ("Redirect", CUSTOMER, "", "", "centrale-control", "blind")]
    assert setup.control.view(setup.call).state == "transferring"
    assert setup.acd.completed == []  # no task to complete
    assert setup.call.active.agent_id is None


async def test_blind_transfer_to_a_queue_requeues_the_task(setup: Setup) -> None:
    await setup.control.blind_transfer(setup.call, Target("queue", "billing"), "default")
    assert setup.acd.transfers == [("task-1", "anna", "billing")]
    sent = setup.sent()
    assert brief(sent[1], "Variable", "Value") == ("Setvar", VAR_STATE, "waiting")
    assert brief(sent[2], "Channel", "Context", "Exten") == (
        "Redirect", CUSTOMER, "centrale-hold", "s")
    assert setup.backend.registry.by_call_id("call-1").state == "waiting"  # ringable again


async def test_consult_then_complete(setup: Setup) -> None:
    setup.ami.on_action("Originate", originate_answered(setup.recording, "PJSIP/1002-00000003"))
    assert await setup.control.consult(setup.call, BRAM, "default") == "connected"
    originate = next(a for a in setup.sent() if a["action"] == "Originate")
    assert brief(originate, "Channel", "Context", "Exten", "Async") == (
        "Originate", "PJSIP/1002", "centrale-control", "conf", "true")
    assert setup.control.view(setup.call).state == "consulting"
    mark = setup.mark()
    target = await setup.control.complete_consult(setup.call)
    assert target == BRAM
    assert [brief(a, "Channel", "Exten") for a in setup.sent(mark)] == [
        ("Redirect", CUSTOMER, "conf"), ("Hangup", AGENT, "")]
    # the consulted party is now the agent side: a later hold keeps them in the room
    assert setup.control.sessions["call-1"].agent_channel == "PJSIP/1002-00000003"
    assert setup.call.active.agent_id == "bram"
    # The task follows the call to bram, accepted at once (he talks already).
    assert setup.acd.directed == [("task-1", "bram", "anna", None, True)]
    assert setup.acd.completed == []


async def test_consult_complete_to_an_agent_who_cannot_take_the_task(setup: Setup) -> None:
    setup.acd.refuse_answered = True
    setup.ami.on_action("Originate", originate_answered(setup.recording, "PJSIP/1002-00000003"))
    await setup.control.consult(setup.call, BRAM, "default")
    await setup.control.complete_consult(setup.call)
    assert setup.call.active.agent_id == "bram"
    assert setup.acd.completed == [("task-1", "anna", "transferred to agent bram")]
    assert setup.call.active.task_id is None


async def test_consult_not_answered_takes_the_customer_off_hold(setup: Setup) -> None:
    setup.ami.on_action("Originate", originate_unanswered(setup.recording))
    with pytest.raises(CallControlError) as err:
        await setup.control.consult(setup.call, BRAM, "default")
    assert err.value.code == "target_unavailable"
    last = setup.sent()[-1]
    assert brief(last, "Channel", "Exten") == ("Redirect", CUSTOMER, "conf")
    assert not setup.control.view(setup.call).held


@pytest.mark.parametrize(("mode", "options"),
                         [("listen", "qE"), ("whisper", "qEw"), ("barge", "qEB")])
async def test_monitoring_is_chanspy_from_the_supervisors_phone(setup: Setup, mode: str,
                                                                 options: str) -> None:
    setup.ami.on_action("Originate", originate_answered(setup.recording, "PJSIP/1009-0004"))
    await setup.control.monitor(setup.call, mode, "1009")  # type: ignore[arg-type]
    originate = next(a for a in setup.sent() if a["action"] == "Originate")
    assert brief(originate, "Channel", "Application", "Data") == (
        "Originate", "PJSIP/1009", "ChanSpy", f"{AGENT},{options}")
    row = setup.control.view(setup.call).monitors[0]
    assert (row["role"], row["mode"]) == ("monitor", mode)  # as on the embedded core


async def test_asterisk_refusing_an_action_is_a_clear_error(setup: Setup) -> None:
    setup.ami.on_action("Redirect", lambda headers, action_id: [ami_frame(
        ("Response", "Error"), ("ActionID", action_id), ("Message", "Channel not found"))])
    with pytest.raises(CallControlError) as err:
        await setup.control.hold(setup.call, "default")
    assert err.value.code == "invalid_state" and "Channel not found" in str(err.value)


async def test_a_call_that_left_asterisk_has_ended(setup: Setup) -> None:
    setup.backend.registry._channels.clear()
    assert not setup.control.alive(SimpleNamespace(call_id="call-1"))
    with pytest.raises(CallControlError) as err:
        await setup.control.send_dtmf(setup.call, "1")
    assert err.value.code == "call_ended"
