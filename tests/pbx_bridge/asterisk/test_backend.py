"""The backend end to end: a fake Asterisk on both sockets, speaking recorded bytes.

The AGI half of the recorded "IVR to queue, answered" call (agi_session_ivr_to_queue)
and its AMI half (ami_ivr_to_queue_answered) concern the same channel,
SIP/sipp-00000000 / Uniqueid 1795704066.0, so they are replayed together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.schema.server import AmiSettings, AsteriskSettings
from pbx_bridge.asterisk.ami import Backoff
from pbx_bridge.asterisk.backend import AsteriskBackend
from pbx_bridge.asterisk.call_leg import AgiCallLeg
from pbx_bridge.asterisk.channels import STATE_CONNECTED, STATE_WAITING
from pbx_bridge.asterisk.events import (
    BridgeEntered,
    BridgeLeft,
    CallerAbandoned,
    ChannelCreated,
    ChannelHungUp,
    DialEnded,
    DialStarted,
    DtmfReceived,
    VoiceEvent,
)
from pbx_bridge.asterisk.ports import AgentOffer, CallbackRequest, RingOutcome
from pbx_bridge.asterisk.testing import (
    AgiScript,
    AmiRecording,
    FakeAgiClient,
    FakeAmiServer,
    core_show_channels_reply,
    edit_frame,
    events_named,
    getvar_reply,
    header,
    replace_action_id,
)

from .conftest import wait_until

CALLER_UNIQUEID = "1795704066.0"


@dataclass
class Harness:
    backend: AsteriskBackend
    ami: FakeAmiServer
    answered: AmiRecording
    agi_script: AgiScript
    events: list[VoiceEvent] = field(default_factory=list)
    legs: list[AgiCallLeg] = field(default_factory=list)

    def of_type(self, kind: type) -> list[VoiceEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    async def park_caller(self, task_id: str = "task-1") -> AgiCallLeg:
        """Run the recorded AGI session through the inbound route."""
        # The recording's dialplan called agi://.../ivr; Centrale's dialplan calls
        # agi://.../inbound. Only those two env lines are re-addressed.
        env = self.agi_script.env.replace(
            b"agi_network_script: ivr\n", b"agi_network_script: inbound\n"
        )
        env = env.replace(b"4573/ivr\n", b"4573/inbound\n")
        client = FakeAgiClient(env, self.agi_script.steps, match="verb")
        assert self.backend.agi_port is not None
        await asyncio.wait_for(client.run("127.0.0.1", self.backend.agi_port), 10)
        assert client.errors == []
        return self.legs[-1]

    async def push(self, frames: list[bytes]) -> None:
        """Send recorded event frames; return once the listeners have seen them."""
        counters = self.backend.ami.counters
        target = counters.received + len(frames)
        self.ami.push_frames(frames)
        await wait_until(lambda: counters.received >= target)
        await self.backend.ami.drain()


@pytest.fixture
async def harness(
    fixtures_dir: Path, actions_recording: AmiRecording, ami_server: FakeAmiServer
) -> AsyncIterator[Harness]:
    answered = AmiRecording.load(fixtures_dir / "jsonl" / "ami_ivr_to_queue_answered.jsonl")
    script = AgiScript.load(fixtures_dir / "agi_session_ivr_to_queue.txt")
    legs: list[AgiCallLeg] = []

    async def inbound(leg: AgiCallLeg) -> None:
        legs.append(leg)
        await leg.answer()
        choice = await leg.play(["vm-intro"], "en", barge_in=True)
        assert choice.interrupted_by == "2"
        await leg.send_to_holding(task_id="task-1")

    settings = AsteriskSettings(
        enabled=True,
        ami=AmiSettings(
            host="127.0.0.1", port=ami_server.port, username="ccadmin", secret=SecretStr("ccsecret")
        ),
    )
    backend = AsteriskBackend(settings, inbound=inbound, backoff=Backoff(initial=0.02, maximum=0.1))
    h = Harness(backend, ami_server, answered, script, legs=legs)
    backend.add_listener(h.events.append)
    await backend.start(agi_host="127.0.0.1", agi_port=0)
    yield h
    await backend.stop()


def caller_events(recording: AmiRecording) -> tuple[list[bytes], list[bytes]]:
    """The recorded events, cut where app_queue started dialling the agent."""
    frames = recording.events()
    cut = next(i for i, f in enumerate(frames) if header(f, "Event") == "AgentCalled")
    return frames[:cut], frames[cut:]


async def test_ivr_to_agent_answered(harness: Harness) -> None:
    before, after = caller_events(harness.answered)
    await harness.push(before)
    leg = await harness.park_caller()
    call_id = leg.caller.call_id
    assert (leg.caller.caller_id, leg.caller.dialled) == ("5551001", "101")
    tracked = harness.backend.registry.by_call_id(call_id)
    assert tracked is not None and tracked.uniqueid == CALLER_UNIQUEID
    assert tracked.state == STATE_WAITING and tracked.task_id == "task-1"

    result = await harness.backend.ring_agent(
        AgentOffer(
            offer_id="offer-1",
            call_id=call_id,
            endpoint=harness.backend.agent_endpoint("alice"),
            ring_timeout=5,
            task_id="task-1",
        )
    )
    assert result.outcome is RingOutcome.ANSWERED
    originate = next(
        f
        for f in harness.ami.received_raw
        if f.startswith(b"Action: Originate") or b"\r\nAction: Originate\r\n" in f
    )
    assert b"Channel: PJSIP/alice\r\n" in originate
    assert b"Context: centrale-dial\r\n" in originate
    assert b"Variable: CENTRALE_CALLER_CHANNEL=SIP/sipp-00000000\r\n" in originate
    assert b"Timeout: 5000\r\n" in originate
    assert tracked.state == STATE_CONNECTED
    # a second offer for the same, now connected, caller rings nobody
    again = await harness.backend.ring_agent(AgentOffer("offer-1b", call_id, "PJSIP/bob"))
    assert again.outcome is RingOutcome.FAILED
    assert len(harness.ami.actions("Originate")) == 1

    await harness.push(after)
    assert [e.digit for e in harness.of_type(DtmfReceived)] == ["2"]
    assert len(harness.of_type(DialStarted)) == 1
    assert [e.dial_status for e in harness.of_type(DialEnded)] == ["ANSWER"]
    assert len(harness.of_type(BridgeEntered)) == 2 and len(harness.of_type(BridgeLeft)) == 2
    hangups = harness.of_type(ChannelHungUp)
    assert len(hangups) == 3
    caller_hangup = next(e for e in hangups if e.uniqueid == CALLER_UNIQUEID)
    assert caller_hangup.call_id == call_id and caller_hangup.cause == 16
    assert harness.of_type(CallerAbandoned) == []  # answered, not abandoned
    created = [e.uniqueid for e in harness.of_type(ChannelCreated)]
    assert len(created) == len(set(created)) == 3
    assert len(harness.backend.registry) == 0


async def test_caller_hangs_up_while_waiting_is_an_abandon(harness: Harness) -> None:
    before, after = caller_events(harness.answered)
    await harness.push(before)
    leg = await harness.park_caller()
    # the caller's own recorded Hangup (Cause 16), with nobody having answered
    hangup = [f for f in events_named(after, "Hangup") if header(f, "Uniqueid") == CALLER_UNIQUEID]
    await harness.push(hangup)
    abandons = harness.of_type(CallerAbandoned)
    assert len(abandons) == 1
    assert abandons[0].call_id == leg.caller.call_id and abandons[0].task_id == "task-1"
    assert abandons[0].to_bus_event().topic == "voice.abandoned"
    # a late ring for that task finds nobody
    result = await harness.backend.ring_agent(
        AgentOffer("offer-2", leg.caller.call_id, "PJSIP/alice")
    )
    assert result.outcome is RingOutcome.CALLER_GONE
    assert harness.ami.actions("Originate") == []


def originate_failure(recording: AmiRecording, action_id: str, reason: str) -> list[bytes]:
    """Asterisk's reply shape for an Originate that did not connect: the recorded
    "successfully queued" response and OriginateResponse with Response: Failure."""
    queued, response = recording.replies["originate"][0]
    return [
        replace_action_id(queued, action_id),
        edit_frame(
            replace_action_id(response, action_id),
            {
                "Response": "Failure",
                "Reason": reason,
                "Channel": "PJSIP/alice",
                "Uniqueid": "<null>",
            },
        ),
    ]


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("3", RingOutcome.NO_ANSWER),
        ("1", RingOutcome.NO_ANSWER),
        ("5", RingOutcome.BUSY),
        ("0", RingOutcome.FAILED),
    ],
)
async def test_agent_not_answering_is_rona_and_caller_keeps_waiting(
    harness: Harness, actions_recording: AmiRecording, reason: str, outcome: RingOutcome
) -> None:
    harness.ami.on_action(
        "Originate", lambda h, aid: originate_failure(actions_recording, aid, reason)
    )
    leg = await harness.park_caller()
    result = await harness.backend.ring_agent(
        AgentOffer("offer-3", leg.caller.call_id, "PJSIP/alice", ring_timeout=1)
    )
    assert result.outcome is outcome
    tracked = harness.backend.registry.by_call_id(leg.caller.call_id)
    assert tracked is not None and tracked.state == STATE_WAITING


async def test_caller_hangs_up_while_agent_rings(
    harness: Harness, actions_recording: AmiRecording
) -> None:
    queued = actions_recording.replies["originate"][0][0]
    harness.ami.on_action("Originate", lambda h, aid: [replace_action_id(queued, aid)])
    before, after = caller_events(harness.answered)
    await harness.push(before)
    leg = await harness.park_caller()
    ring = asyncio.create_task(
        harness.backend.ring_agent(
            AgentOffer("offer-4", leg.caller.call_id, "PJSIP/alice", ring_timeout=30)
        )
    )
    await wait_until(lambda: bool(harness.ami.actions("Originate")))
    # the agent leg appears with our offer variable (a recorded VarSet, re-addressed)
    varset = events_named(harness.answered.events(), "VarSet")[0]
    await harness.push(
        [
            edit_frame(
                varset,
                {
                    "Channel": "PJSIP/alice-00000007",
                    "Uniqueid": "1795704070.9",
                    "Variable": "CENTRALE_OFFER_ID",
                    "Value": "offer-4",
                },
            )
        ]
    )
    hangup = [f for f in events_named(after, "Hangup") if header(f, "Uniqueid") == CALLER_UNIQUEID]
    await harness.push(hangup)
    result = await asyncio.wait_for(ring, 5)
    assert result.outcome is RingOutcome.CALLER_GONE
    assert [a["channel"] for a in harness.ami.actions("Hangup")] == ["PJSIP/alice-00000007"]
    assert len(harness.of_type(CallerAbandoned)) == 1


async def test_place_callback_rings_agent_then_customer(harness: Harness) -> None:
    result = await harness.backend.place_callback(
        CallbackRequest(
            callback_id="cb-1",
            number="+31201234567",
            endpoint="PJSIP/bob",
            ring_timeout=10,
            task_id="task-9",
        )
    )
    assert result.outcome is RingOutcome.ANSWERED
    raw = next(f for f in harness.ami.received_raw if b"Action: Originate" in f)
    assert b"Exten: callback\r\n" in raw
    assert b"Variable: CENTRALE_CALLBACK_NUMBER=+31201234567\r\n" in raw
    with pytest.raises(ValueError, match="dialable"):
        await harness.backend.place_callback(CallbackRequest("cb-2", "123;evil", "PJSIP/bob"))


async def test_ring_fails_cleanly_when_ami_is_down(harness: Harness) -> None:
    leg = await harness.park_caller()
    await harness.backend.ami.close()
    result = await harness.backend.ring_agent(
        AgentOffer("offer-5", leg.caller.call_id, "PJSIP/alice")
    )
    assert result.outcome is RingOutcome.FAILED and "not connected" in result.reason


async def test_hold_route_plays_position_and_wait_time(
    fixtures_dir: Path, ami_server: FakeAmiServer
) -> None:
    """`centrale-hold` calls agi://.../hold every N seconds; Centrale answers with the
    announcement the ACD gives for the caller's task (reply formats as recorded)."""
    asked: list[tuple[str, str]] = []

    async def announcer(task_id: str, language: str) -> list[str | int]:
        asked.append((task_id, language))
        return ["queue/you_are_number", 2, "queue/minutes_wait"]

    async def inbound(leg: AgiCallLeg) -> None:
        raise AssertionError("not an inbound call")

    settings = AsteriskSettings(
        ami=AmiSettings(port=ami_server.port, username="ccadmin", secret=SecretStr("ccsecret"))
    )
    backend = AsteriskBackend(settings, inbound=inbound, hold_announcer=announcer)
    await backend.start(agi_host="127.0.0.1", agi_port=0)
    try:
        script = AgiScript.load(fixtures_dir / "agi_session_ivr.txt")
        env = script.env.replace(b"agi_network_script: ivr\n", b"agi_network_script: hold\n")
        client = FakeAgiClient(
            env,
            [
                ("GET VARIABLE CENTRALE_TASK_ID", b"200 result=1 (task-1)\n"),
                ('STREAM FILE centrale/en/queue/you_are_number ""', b"200 result=0 endpos=11234\n"),
                ('SAY NUMBER 2 ""', b"200 result=0\n"),
                ('STREAM FILE centrale/en/queue/minutes_wait ""', b"200 result=0 endpos=11234\n"),
            ],
        )
        assert backend.agi_port is not None
        await asyncio.wait_for(client.run("127.0.0.1", backend.agi_port), 5)
    finally:
        await backend.stop()
    assert client.errors == [] and len(client.commands) == 4
    assert asked == [("task-1", "en")]


async def test_hangup_call_by_id(harness: Harness) -> None:
    leg = await harness.park_caller()
    assert await harness.backend.hangup_call(leg.caller.call_id) is True
    # the recorded reply to a Hangup of an existing channel is "Channel Hungup"
    assert harness.ami.actions("Hangup")[-1]["channel"] == "SIP/sipp-00000000"
    assert await harness.backend.hangup_call("no-such-call") is False


@pytest.mark.parametrize(
    ("bridge_id", "outcome"),
    [("5e1c0f3a-0000-4b4b-9c9c-000000000001", RingOutcome.ANSWERED), ("", RingOutcome.FAILED)],
)
async def test_ami_drop_while_agent_rings_is_settled_after_resync(
    harness: Harness, actions_recording: AmiRecording, bridge_id: str, outcome: RingOutcome
) -> None:
    """The OriginateResponse is lost with the connection. After the resync the agent
    leg (found by its CENTRALE_OFFER_ID) tells: bridged = answered, else dropped."""
    leg = await harness.park_caller()
    agent = "PJSIP/alice-0000000a"
    harness.ami.on_action("Originate", lambda h, aid: [])  # reply lost in the outage
    live = [
        {"Channel": "SIP/sipp-00000000", "Uniqueid": CALLER_UNIQUEID, "BridgeId": bridge_id},
        {"Channel": agent, "Uniqueid": "1795704070.10", "BridgeId": bridge_id},
    ]
    harness.ami.on_action(
        "CoreShowChannels",
        lambda h, aid: core_show_channels_reply(actions_recording, aid, live),
    )
    harness.ami.on_action(
        "Getvar",
        lambda h, aid: getvar_reply(
            aid,
            h["variable"],
            {"CENTRALE_OFFER_ID": "offer-9", "CENTRALE_ROLE": "agent"}.get(h["variable"], "")
            if h["channel"] == agent
            else None,
        ),
    )
    ring = asyncio.create_task(
        harness.backend.ring_agent(
            AgentOffer("offer-9", leg.caller.call_id, "PJSIP/alice", ring_timeout=5)
        )
    )
    await wait_until(lambda: bool(harness.ami.actions("Originate")))
    harness.ami.drop()
    result = await asyncio.wait_for(ring, 10)
    assert result.outcome is outcome
    assert len(harness.ami.actions("Originate")) == 1  # never re-sent
    hangups = [a["channel"] for a in harness.ami.actions("Hangup")]
    tracked = harness.backend.registry.by_call_id(leg.caller.call_id)
    assert tracked is not None and tracked.channel == "SIP/sipp-00000000"
    if outcome is RingOutcome.ANSWERED:
        assert hangups == [] and tracked.state == STATE_CONNECTED
    else:
        assert hangups == [agent] and tracked.state == STATE_WAITING


async def test_the_agent_leg_carries_the_survey_flow(harness: Harness) -> None:
    """Originate sets CENTRALE_SURVEY on the agent's leg only when a survey is due."""
    leg = await harness.park_caller()
    await harness.backend.ring_agent(AgentOffer(
        offer_id="offer-1", call_id=leg.caller.call_id, endpoint="PJSIP/alice",
        ring_timeout=5, task_id="task-1", survey_flow="after_call"))
    (originate,) = harness.ami.actions("Originate")
    raw = b"".join(f for f in harness.ami.received_raw if b"Action: Originate" in f)
    assert b"Variable: CENTRALE_SURVEY=after_call\r\n" in raw, originate


async def test_rtp_loss_and_jitter_from_asterisks_rtcp_reports(harness: Harness) -> None:
    """Asterisk's recorded RTCPSent (its report of what it received), with the loss
    raised as a lossy network would: the counter grows by the new loss only, the
    jitter gauge shows the worst live call, and a hang-up forgets the channel."""
    from core import metrics

    def lost() -> float:
        return metrics.REGISTRY.get_sample_value(
            "centrale_rtp_packets_lost_total", {"backend": "asterisk"}) or 0.0

    (rtcp,) = events_named(harness.answered.events(), "RTCPSent")
    assert header(rtcp, "Report0CumulativeLost") == "0"  # as recorded: a clean call
    before = lost()
    await harness.push([
        rtcp,
        edit_frame(rtcp, {"Report0CumulativeLost": "7", "Report0IAJitter": "0.0125"}),
        edit_frame(rtcp, {"Report0CumulativeLost": "5",  # duplicates: no new loss
                          "Report0IAJitter": "0.0125"}),
        edit_frame(rtcp, {"Report0CumulativeLost": "12",  # the latest jitter stays
                          "Report0IAJitter": "bogus"}),
    ])
    assert lost() - before == 12
    jitter = metrics.REGISTRY.get_sample_value("centrale_rtp_jitter_seconds",
                                               {"backend": "asterisk"})
    assert jitter == 0.0125
    assert harness.backend.rtcp.tracked == 2
    hangup = next(f for f in harness.answered.events() if header(f, "Event") == "Hangup"
                  and header(f, "Uniqueid") == CALLER_UNIQUEID)
    await harness.push([hangup])
    assert harness.backend.rtcp.tracked == 0
    assert metrics.REGISTRY.get_sample_value("centrale_rtp_jitter_seconds",
                                             {"backend": "asterisk"}) == 0.0
