"""Reconnects, resyncs and bad input on the AMI socket: no crash, no call lost or
duplicated. Asterisk's side is the fake server speaking recorded frames."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx_bridge.asterisk.ami import MAX_PENDING_FRAME_BYTES, AmiClient
from pbx_bridge.asterisk.events import (
    CallerAbandoned,
    CallRecovered,
    ChannelCreated,
    ChannelHungUp,
    VoiceEvent,
)
from pbx_bridge.asterisk.testing import (
    AmiRecording,
    FakeAmiServer,
    core_show_channels_reply,
    events_named,
    getvar_reply,
    header,
)

from .conftest import make_client, wait_until

ABANDON_UNIQUEID = "1795704080.3"
ABANDON_CHANNEL = "SIP/sipp-00000001"


@pytest.fixture(scope="module")
def abandon(fixtures_dir: Path) -> AmiRecording:
    return AmiRecording.load(fixtures_dir / "jsonl" / "ami_queue_abandon.jsonl")


@pytest.fixture(scope="module")
def answered(fixtures_dir: Path) -> AmiRecording:
    return AmiRecording.load(fixtures_dir / "jsonl" / "ami_ivr_to_queue_answered.jsonl")


class LiveSet:
    """What the fake Asterisk reports as live (CoreShowChannels) and which Centrale
    variables its channels carry (Getvar)."""

    def __init__(self, server: FakeAmiServer, recording: AmiRecording) -> None:
        self.channels: dict[str, dict[str, str]] = {}
        self.variables: dict[str, dict[str, str]] = {}
        server.on_action(
            "CoreShowChannels",
            lambda h, aid: core_show_channels_reply(recording, aid, list(self.channels.values())),
        )
        server.on_action("Getvar", self._getvar)

    def add(self, uniqueid: str, channel: str, **variables: str) -> None:
        self.channels[uniqueid] = {
            "Channel": channel,
            "Uniqueid": uniqueid,
            "Linkedid": uniqueid,
            "CallerIDNum": "5551001",
        }
        self.variables[channel] = variables

    def _getvar(self, headers: dict[str, str], action_id: str) -> list[bytes]:
        channel = headers.get("channel", "")
        if channel not in self.variables:
            return getvar_reply(action_id, headers.get("variable", ""), None)
        name = headers.get("variable", "")
        return getvar_reply(action_id, name, self.variables[channel].get(name, ""))


@pytest.fixture
async def watched(
    ami_server: FakeAmiServer, actions_recording: AmiRecording
) -> AsyncIterator[tuple[AmiClient, LiveSet, list[VoiceEvent]]]:
    live = LiveSet(ami_server, actions_recording)
    live.add(
        ABANDON_UNIQUEID,
        ABANDON_CHANNEL,
        CENTRALE_CALL_ID="call-7",
        CENTRALE_TASK_ID="task-7",
        CENTRALE_STATE="waiting",
    )
    client = make_client(ami_server)
    events: list[VoiceEvent] = []
    client.add_listener(events.append)
    await client.start()
    await client.drain()
    yield client, live, events
    await client.close()


async def push(server: FakeAmiServer, client: AmiClient, frames: list[bytes]) -> None:
    target = client.counters.received + len(frames)
    server.push_frames(frames)
    await wait_until(lambda: client.counters.received >= target)
    await client.drain()


async def test_resync_adopts_a_waiting_call_and_its_hangup_is_an_abandon(
    watched: tuple[AmiClient, LiveSet, list[VoiceEvent]],
    ami_server: FakeAmiServer,
    abandon: AmiRecording,
) -> None:
    client, _, events = watched
    recovered = [e for e in events if isinstance(e, CallRecovered)]
    assert [(e.call_id, e.task_id, e.state) for e in recovered] == [("call-7", "task-7", "waiting")]
    # replay the recorded abandoned call: the caller BYEs while on hold
    await push(ami_server, client, abandon.events())
    abandons = [e for e in events if isinstance(e, CallerAbandoned)]
    assert [(e.call_id, e.task_id, e.channel) for e in abandons] == [
        ("call-7", "task-7", ABANDON_CHANNEL)
    ]
    hangup = [e for e in events if isinstance(e, ChannelHungUp)]
    assert hangup[0].cause == 0 and hangup[0].cause_text == "Unknown"  # as recorded
    # the recorded Newchannel came after we had adopted the channel: not a second call
    assert [e for e in events if isinstance(e, ChannelCreated)] == []


async def test_reconnect_mid_call_keeps_the_call_once(
    watched: tuple[AmiClient, LiveSet, list[VoiceEvent]],
    ami_server: FakeAmiServer,
    answered: AmiRecording,
) -> None:
    client, live, events = watched
    frames = answered.events()
    first_half = frames[: len(frames) // 2]
    await push(ami_server, client, first_half)
    created_before = [e.uniqueid for e in events if isinstance(e, ChannelCreated)]
    for uniqueid in created_before:  # Asterisk still has those channels
        live.add(uniqueid, client.registry.get(uniqueid).channel)  # type: ignore[union-attr]

    ami_server.drop()
    await wait_until(lambda: client.resyncs == 2)
    await client.drain()
    assert client.logins == 2 and client.disconnects == 1
    assert len(ami_server.actions("Login")) == 2
    # still known, once: no second ChannelCreated, no hang-up invented
    assert [e.uniqueid for e in events if isinstance(e, ChannelCreated)] == created_before
    assert [e for e in events if isinstance(e, ChannelHungUp)] == []
    assert {c.uniqueid for c in client.registry.all()} == {ABANDON_UNIQUEID, *created_before}

    # the rest of the call arrives on the new connection
    await push(ami_server, client, frames[len(frames) // 2 :])
    hung = [e.uniqueid for e in events if isinstance(e, ChannelHungUp)]
    assert sorted(hung) == sorted(set(hung)) and len(hung) == 3


async def test_call_that_ends_during_the_outage_is_reported_once(
    watched: tuple[AmiClient, LiveSet, list[VoiceEvent]],
    ami_server: FakeAmiServer,
    abandon: AmiRecording,
) -> None:
    client, live, events = watched
    live.channels.clear()  # the waiting caller hangs up while we are disconnected
    ami_server.drop()
    await wait_until(lambda: client.resyncs == 2)
    await client.drain()
    abandons = [e for e in events if isinstance(e, CallerAbandoned)]
    assert len(abandons) == 1 and abandons[0].during_outage and abandons[0].task_id == "task-7"
    # a late Hangup event for it (replayed from the recording) is not reported again
    late = [
        f
        for f in events_named(abandon.events(), "Hangup")
        if header(f, "Uniqueid") == ABANDON_UNIQUEID
    ]
    await push(ami_server, client, late)
    assert len([e for e in events if isinstance(e, ChannelHungUp)]) == 1
    assert len([e for e in events if isinstance(e, CallerAbandoned)]) == 1


async def test_event_storm(
    watched: tuple[AmiClient, LiveSet, list[VoiceEvent]],
    ami_server: FakeAmiServer,
    answered: AmiRecording,
    abandon: AmiRecording,
) -> None:
    client, _, events = watched
    calls = answered.events() + abandon.events()
    storm = calls * 40  # > 6000 recorded events, sent in one go
    before = client.counters.received
    await push(ami_server, client, storm)
    assert client.counters.received - before == len(storm)
    assert client.disconnects == 0
    # the same calls repeated are the same channels: each created and hung up once
    created = [e.uniqueid for e in events if isinstance(e, ChannelCreated)]
    assert len(created) == len(set(created))
    assert (await client.action("Ping"))["Ping"] == "Pong"


async def test_unknown_and_malformed_frames_are_skipped(
    watched: tuple[AmiClient, LiveSet, list[VoiceEvent]],
    ami_server: FakeAmiServer,
    answered: AmiRecording,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _, events = watched
    newchannel = events_named(answered.events(), "Newchannel")[0]
    bad = [
        b"Event: SomethingAsterisk30Adds\r\nPrivilege: call,all\r\nFoo: bar\r\n\r\n",
        b"Event: Hangup\r\nUniqueid: \r\n\r\n",  # no channel to speak of
        b"Event: Newchannel\r\nEvent: Newchannel\r\nUniqueid: 1.1\r\n\r\n",  # twice
        b"no colon here at all\r\njust words\r\n\r\n",
        b"\x00\xff\xfe\x80 binary garbage \x81\r\n\r\n",
        b"Event: DTMFEnd\r\nUniqueid: 1795704066.0\r\nDigit: 5\r\n\r\n",  # no Direction
    ]
    ami_server.push(b"".join(bad))
    await push(ami_server, client, [newchannel])
    await client.drain()
    assert client.disconnects == 0
    assert [e.uniqueid for e in events if isinstance(e, ChannelCreated)] == ["1795704066.0"]
    assert client.counters.by_name.get("SomethingAsterisk30Adds") == 1
    assert client.counters.malformed >= 1  # the duplicated Event header
    assert (await client.action("Ping"))["Ping"] == "Pong"


async def test_truncated_event_then_drop_recovers_state(
    watched: tuple[AmiClient, LiveSet, list[VoiceEvent]],
    ami_server: FakeAmiServer,
    abandon: AmiRecording,
) -> None:
    client, _, events = watched
    hangup = next(f for f in events_named(abandon.events(), "Hangup"))
    ami_server.push(hangup[: len(hangup) // 2])  # cut mid-frame, then the socket dies
    await asyncio.sleep(0.05)
    ami_server.drop()
    await wait_until(lambda: client.resyncs == 2)
    await client.drain()
    # the half frame was not taken for a hang-up; the call is still there, once
    assert [e for e in events if isinstance(e, ChannelHungUp)] == []
    assert client.registry.by_call_id("call-7") is not None
    assert len([e for e in events if isinstance(e, CallRecovered)]) == 1


async def test_runaway_frame_drops_connection_and_resyncs(
    watched: tuple[AmiClient, LiveSet, list[VoiceEvent]],
    ami_server: FakeAmiServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _, _ = watched
    with caplog.at_level(logging.ERROR):
        ami_server.push(b"Event: X\r\nData: " + b"A" * (MAX_PENDING_FRAME_BYTES + 10))
        await wait_until(lambda: client.resyncs == 2)
    assert "without a frame end" in caplog.text
    assert client.registry.by_call_id("call-7") is not None


async def test_peer_that_stops_answering_is_detected(
    ami_server: FakeAmiServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(ami_server, ping_interval=0.05, ping_timeout=0.2)
    await client.start()
    try:
        with caplog.at_level(logging.ERROR):
            ami_server.silent = True
            await wait_until(lambda: client.disconnects >= 1)
            ami_server.silent = False
            await wait_until(lambda: client.ready and client.resyncs >= 2)
        assert "stopped answering" in caplog.text
        assert (await client.action("Ping"))["Ping"] == "Pong"
    finally:
        await client.close()


async def test_actions_pending_at_disconnect_fail_instead_of_hanging(
    ami_server: FakeAmiServer, ami_client: AmiClient
) -> None:
    from pbx_bridge.asterisk.ami import AmiConnectionLost

    ami_server.silent = True
    pending = asyncio.create_task(
        ami_client.action("Originate", Channel="PJSIP/alice", Exten="agent", Async="true")
    )
    await wait_until(lambda: bool(ami_server.actions("Originate")))
    ami_server.silent = False
    ami_server.drop()
    with pytest.raises(AmiConnectionLost):
        await asyncio.wait_for(pending, 5)
    await wait_until(lambda: ami_client.resyncs == 2)
    # and it was not re-sent on the new connection (it could ring an agent twice)
    assert len(ami_server.actions("Originate")) == 1
