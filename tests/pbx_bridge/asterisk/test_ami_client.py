"""The AMI client against recorded Asterisk 20.20.1 replies, at the socket level."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pbx_bridge.asterisk.ami import AmiClient, AmiError, AmiLoginError
from pbx_bridge.asterisk.testing import AmiRecording, FakeAmiServer

from .conftest import make_client


async def test_login_then_resync_makes_client_ready(
    ami_client: AmiClient, ami_server: FakeAmiServer
) -> None:
    assert ami_client.ready
    login = ami_server.actions("Login")[0]
    assert login["username"] == "ccadmin"
    assert login["secret"] == "ccsecret"
    # resync after login: the live channel list was asked for
    assert len(ami_server.actions("CoreShowChannels")) == 1
    assert ami_client.logins == 1 and ami_client.resyncs == 1


async def test_login_refused_raises_clear_error_and_stops(fixtures_dir) -> None:
    recording = AmiRecording.load(fixtures_dir / "jsonl" / "ami_login_and_banner.jsonl")
    refused = AmiRecording.load(fixtures_dir / "jsonl" / "ami_login_and_banner.jsonl", conn=2)
    recording.login_refused = refused.login_refused
    server = await FakeAmiServer(recording, secret="another").start()
    try:
        client = make_client(server)
        with pytest.raises(AmiLoginError, match="Authentication failed"):
            await client.start()
        assert not client.ready
        connections = server.connections
        await asyncio.sleep(0.3)  # several backoff periods: no retry loop after a refusal
        assert server.connections == connections
    finally:
        await server.stop()


async def test_ping_and_actions_return_recorded_replies(ami_client: AmiClient) -> None:
    pong = await ami_client.action("Ping")
    assert pong["Ping"] == "Pong"
    setvar = await ami_client.action(
        "Setvar", Channel="Local/500@hold-00000001;2", Variable="CC_TICKET", Value="T-1001"
    )
    assert setvar["Message"] == "Variable Set"
    got = await ami_client.action(
        "Getvar", Channel="Local/500@hold-00000001;2", Variable="CC_TICKET"
    )
    assert got["Value"] == "T-1001"


async def test_queueadd_completes_with_single_reply(ami_client: AmiClient) -> None:
    # panoramisk's list guess never completes QueueAdd ("Added interface to queue")
    reply = await ami_client.action(
        "QueueAdd", Queue="support", Interface="Local/201@agents/n", Paused="false"
    )
    assert reply["Message"] == "Added interface to queue"


async def test_list_actions_collect_every_event(ami_client: AmiClient) -> None:
    status = await ami_client.action("QueueStatus", Queue="support")
    names = [m.get("Event") for m in status[1:]]
    assert names == ["QueueParams", "QueueMember", "QueueMember", "QueueStatusComplete"]
    assert status[2]["Name"] == "Agent200"


async def test_async_originate_waits_for_originate_response(ami_client: AmiClient) -> None:
    reply = await ami_client.action(
        "Originate",
        Channel="Local/500@hold",
        Application="Wait",
        Data="120",
        Timeout="30000",
        Async="true",
    )
    assert isinstance(reply, list)
    assert reply[0]["Message"] == "Originate successfully queued"
    assert reply[1]["Event"] == "OriginateResponse"
    assert reply[1]["Reason"] == "4"


@pytest.mark.parametrize(
    ("action", "headers", "message"),
    [
        ("QueueRemove", {"Queue": "support", "Interface": "Local/201@agents/n"}, "Not there"),
        ("Hangup", {"Channel": "SIP/nosuchpeer-00000000"}, "No such channel"),
        ("NoSuchAction", {}, "Invalid/unknown command"),
    ],
)
async def test_error_responses_raise_amierror(
    ami_client: AmiClient,
    ami_server: FakeAmiServer,
    action: str,
    headers: dict[str, str],
    message: str,
) -> None:
    if action == "QueueRemove":
        # recorded twice with the same headers: first removed, then "Not there"
        first = await ami_client.action(action, **headers)
        assert first["Message"] == "Removed interface from queue"
    with pytest.raises(AmiError, match=message) as info:
        await ami_client.action(action, **headers)
    assert info.value.response["Response"] == "Error"
    # the connection survived the error
    assert (await ami_client.action("Ping"))["Ping"] == "Pong"


async def test_playdtmf_reply_does_not_break_the_connection(
    ami_client: AmiClient, ami_server: FakeAmiServer
) -> None:
    # Asterisk 20 answers PlayDTMF with "DTMF successfully queued"; panoramisk's own
    # list guess raises KeyError('async') on it and drops the connection.
    def playdtmf(headers: dict[str, str], action_id: str) -> list[bytes]:
        return [
            f"Response: Success\r\nActionID: {action_id}\r\n"
            f"Message: DTMF successfully queued\r\n\r\n".encode()
        ]

    ami_server.on_action("PlayDTMF", playdtmf)
    reply = await ami_client.action("PlayDTMF", Channel="SIP/sipp-00000000", Digit="1")
    assert reply["Message"] == "DTMF successfully queued"
    assert ami_client.disconnects == 0
    assert (await ami_client.action("Ping"))["Ping"] == "Pong"


async def test_unreachable_asterisk_does_not_block_start(caplog) -> None:
    server = await FakeAmiServer(AmiRecording(b"", {}, [], [])).start()
    port = server.port
    await server.stop()  # nothing listens there now
    client = AmiClient("127.0.0.1", port, "u", "s", start_timeout=0.2)
    with caplog.at_level(logging.WARNING):
        await client.start()
    assert not client.ready
    assert "not reachable" in caplog.text
    await client.close()
