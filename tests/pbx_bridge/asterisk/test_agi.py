"""FastAGI server and AgiCallLeg against recorded res_agi sessions (Asterisk 20.20.1).

A fake Asterisk connects to the real server over TCP, sends the recorded `agi_*`
environment and answers each command with the recorded reply bytes (bare LF).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ivr.call_leg import CallerHangup
from pbx_bridge.asterisk.agi import (
    AgiCommandError,
    AgiHangup,
    AgiProtocolError,
    AgiServer,
    AgiSession,
)
from pbx_bridge.asterisk.call_leg import AgiCallLeg
from pbx_bridge.asterisk.caller import caller_from_env
from pbx_bridge.asterisk.testing import AgiScript, FakeAgiClient


def identity(prompt: str, language: str) -> str:
    return prompt


async def serve(
    route: Callable[[AgiSession], Awaitable[None]], client: FakeAgiClient, path: str = "ivr"
) -> AgiServer:
    server = AgiServer(env_timeout=2.0, reply_timeout=5.0)
    server.add_route(path, route)
    port = await server.start("127.0.0.1", 0)
    try:
        await asyncio.wait_for(client.run("127.0.0.1", port), 10)
    finally:
        await server.stop()
    return server


@pytest.fixture(scope="module")
def ivr_script(fixtures_dir: Path) -> AgiScript:
    return AgiScript.load(fixtures_dir / "agi_session_ivr.txt")


async def test_recorded_ivr_session_and_caller_hangup_mid_ivr(ivr_script: AgiScript) -> None:
    """Every reply kind of the recorded session, ending with the caller's BYE during
    a prompt: STREAM FILE gets result=-1, the probe gets Asterisk's HANGUP line."""
    seen: dict[str, object] = {}

    async def route(session: AgiSession) -> None:
        leg = AgiCallLeg(session, caller_from_env(session.env, "call-1"), prompt_resolver=identity)
        await leg.answer()
        seen["status"] = (await session.command("CHANNEL STATUS")).number
        await session.command('VERBOSE "cc fixture session" 1')
        with pytest.raises(AgiCommandError) as unknown:
            await session.command("FOO BAR")
        seen["unknown"] = unknown.value.code
        with pytest.raises(AgiCommandError) as usage:
            await session.command("GET DATA")
        seen["usage"] = usage.value.message
        seen["barge_in"] = (await leg.play(["vm-intro"], "en", barge_in=True)).interrupted_by
        seen["digit"] = await leg.collect_digits(1, first_digit_timeout=5, inter_digit_timeout=5)
        seen["get_data"] = await leg.get_data("beep", "en", timeout=5, max_digits=4)
        seen["get_data_timeout"] = await leg.get_data("beep", "en", timeout=2, max_digits=3)
        await leg.set_variable("IVR_CHOICE", "57")
        seen["var"] = await leg.get_variable("IVR_CHOICE")
        seen["unset"] = await leg.get_variable("NO_SUCH_VAR")
        await session.command("EXEC Playback hello-world")
        with pytest.raises(CallerHangup):
            await leg.play(["tt-monkeys"], "en")
        seen["gone"] = leg.gone
        with pytest.raises(CallerHangup):  # no command reaches the socket any more
            await leg.play(["beep"], "en")
        with pytest.raises(AgiHangup):  # the recorded 511 on a dead channel
            await session.command('STREAM FILE beep ""')

    client = FakeAgiClient(ivr_script.env, ivr_script.steps, match="verb")
    await serve(route, client)
    assert client.errors == []
    assert seen == {
        "status": 6,
        "unknown": 510,
        "usage": "Invalid command syntax.  Proper usage follows:\n"
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
        "Returns the digits received from the channel at the other end.\n"
        "End of proper usage.",
        "barge_in": "1",
        "digit": "3",
        "get_data": "57",
        "get_data_timeout": "",
        "var": "57",
        "unset": None,
        "gone": True,
    }
    # barge-in sends every DTMF key as escape digits, exactly as recorded
    assert 'STREAM FILE vm-intro "0123456789*#"' in client.commands
    # after result=-1 the leg probed with a dead-channel-safe GET VARIABLE
    assert client.commands[-2].startswith("GET VARIABLE")


async def test_recorded_server_hangup_session(fixtures_dir: Path) -> None:
    script = AgiScript.load(fixtures_dir / "agi_session_server_hangup.txt")
    seen: dict[str, object] = {}

    async def route(session: AgiSession) -> None:
        leg = AgiCallLeg(session, caller_from_env(session.env, "call-2"), prompt_resolver=identity)
        await leg.answer()
        seen["played"] = (await leg.play(["hello-world"], "en")).interrupted_by
        await leg.hangup()
        seen["gone"] = leg.gone
        reply = await session.command("NOOP")  # Asterisk: "HANGUP" then "200 result=0"
        seen["noop"] = (reply.result, session.hung_up)
        with pytest.raises(AgiHangup):
            await session.command("ANSWER")  # 511 on a dead channel
        with pytest.raises(CallerHangup):
            await leg.start_music_on_hold()

    client = FakeAgiClient(script.env, script.steps)  # verbatim, in order
    await serve(route, client)
    assert client.errors == []
    assert seen == {"played": None, "gone": True, "noop": ("0", True)}


async def test_get_data_timeout_and_wait_for_digit_timeout(ivr_script: AgiScript) -> None:
    timeout_reply = dict(ivr_script.steps)["GET DATA beep 2000 3"]
    assert timeout_reply == b"200 result= (timeout)\n"
    steps = [("WAIT FOR DIGIT 3000", b"200 result=0\n"), ("GET DATA beep 2000 3", timeout_reply)]
    got: list[str] = []

    async def route(session: AgiSession) -> None:
        leg = AgiCallLeg(session, caller_from_env(session.env, "c"), prompt_resolver=identity)
        got.append(await leg.collect_digits(4, first_digit_timeout=3, inter_digit_timeout=2))
        got.append(await leg.get_data("beep", "en", timeout=2, max_digits=3))

    client = FakeAgiClient(ivr_script.env, steps)
    await serve(route, client)
    assert client.errors == []
    assert got == ["", ""]


async def test_collect_digits_stops_at_terminator_and_max(ivr_script: AgiScript) -> None:
    # the recorded WAIT FOR DIGIT reply format (result=<ascii code>) for 3, 5 and #
    steps = [
        ("WAIT FOR DIGIT 5000", b"200 result=51\n"),
        ("WAIT FOR DIGIT 2000", b"200 result=53\n"),
        ("WAIT FOR DIGIT 2000", b"200 result=35\n"),
    ]
    got: list[str] = []

    async def route(session: AgiSession) -> None:
        leg = AgiCallLeg(session, caller_from_env(session.env, "c"), prompt_resolver=identity)
        got.append(await leg.collect_digits(6, first_digit_timeout=5, inter_digit_timeout=2))

    client = FakeAgiClient(ivr_script.env, steps)
    await serve(route, client)
    assert client.errors == [] and got == ["35"]


async def test_missing_prompt_is_skipped_not_a_hangup(ivr_script: AgiScript) -> None:
    """STREAM FILE of a missing file also says result=-1; the channel is alive (the
    probe gets a plain reply, no HANGUP line), so playback goes on."""
    steps = [
        ('STREAM FILE nosuchfile ""', b"200 result=-1 endpos=0\n"),
        ("GET VARIABLE CENTRALE_CALL_ID", b"200 result=0\n"),
        ('STREAM FILE hello-world ""', b"200 result=0 endpos=11234\n"),
    ]
    results = []

    async def route(session: AgiSession) -> None:
        leg = AgiCallLeg(session, caller_from_env(session.env, "c"), prompt_resolver=identity)
        results.append(await leg.play(["nosuchfile", "hello-world"], "en"))
        results.append(leg.gone)

    client = FakeAgiClient(ivr_script.env, steps)
    await serve(route, client)
    assert client.errors == []
    assert results[1] is False and results[0].interrupted_by is None


async def test_garbage_reply_and_dead_peer_end_the_session_cleanly(
    ivr_script: AgiScript, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[str] = []

    async def route(session: AgiSession) -> None:
        try:
            await session.command("ANSWER")
        except AgiProtocolError:
            outcomes.append("garbage")
            raise

    client = FakeAgiClient(ivr_script.env, [("ANSWER", b"\x00\xffnot agi at all\n")])
    await serve(route, client)
    assert outcomes == ["garbage"]
    assert "failed" in caplog.text  # logged by the server, which kept running

    # a peer that stops answering: the reply timeout ends the session
    server = AgiServer(env_timeout=1.0, reply_timeout=0.2)
    timed_out: list[bool] = []

    async def slow(session: AgiSession) -> None:
        with pytest.raises(AgiHangup):
            await session.command("ANSWER")
        timed_out.append(True)

    server.add_route("ivr", slow)
    port = await server.start("127.0.0.1", 0)
    mute = FakeAgiClient(ivr_script.env, [("ANSWER", b"200 result=0\n")], reply_delay=5)
    task = asyncio.create_task(mute.run("127.0.0.1", port))
    for _ in range(100):
        if timed_out:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await server.stop()
    assert timed_out == [True]


async def test_bad_environments_are_rejected_without_spinning(ivr_script: AgiScript) -> None:
    called: list[str] = []

    async def route(session: AgiSession) -> None:
        called.append(session.env["agi_channel"])

    server = AgiServer(env_timeout=0.5)
    server.add_route("ivr", route)
    port = await server.start("127.0.0.1", 0)
    try:
        # EOF before the env ends (panoramisk's handler loops forever on this)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(ivr_script.env[:40])
        writer.close()
        # garbage instead of an env
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        # unknown route
        env = ivr_script.env.replace(b"agi_network_script: ivr", b"agi_network_script: nope")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(env)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        # and a good session still works afterwards
        client = FakeAgiClient(ivr_script.env, [])
        await asyncio.wait_for(client.run("127.0.0.1", port), 5)
    finally:
        await server.stop()
    assert called == ["SIP/sipp-00000002"]
    assert server.rejected == 3


async def test_plain_function_route_is_refused() -> None:
    server = AgiServer()

    def not_async(session: AgiSession) -> None:  # panoramisk would crash on 3.11
        return None

    with pytest.raises(TypeError, match="async handler"):
        server.add_route("ivr", not_async)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "caller_id", "withheld", "dialled"),
    [
        ({}, "5551001", False, "100"),
        ({"agi_callerid": "anonymous"}, None, True, "100"),
        ({"agi_callerid": "unknown"}, None, True, "100"),
        ({"agi_callerid": ""}, None, True, "100"),
        ({"agi_callingpres": "32"}, None, True, "100"),  # presentation restricted
        ({"agi_callingpres": "67"}, None, True, "100"),  # number not available
        ({"agi_dnid": "unknown", "agi_extension": "s"}, "5551001", False, "s"),
        ({"agi_dnid": "", "agi_extension": "0201234567"}, "5551001", False, "0201234567"),
    ],
)
def test_caller_from_recorded_env(
    ivr_script: AgiScript,
    changes: dict[str, str],
    caller_id: str | None,
    withheld: bool,
    dialled: str,
) -> None:
    env = {**ivr_script.env_dict(), **changes}
    caller = caller_from_env(env, "call-9")
    assert (caller.caller_id, caller.withheld, caller.dialled) == (caller_id, withheld, dialled)
    assert caller.display_name == (None if withheld else "Caller 5551001")


def test_dialled_number_from_agi_argument(ivr_script: AgiScript) -> None:
    env = {**ivr_script.env_dict(), "agi_extension": "s"}
    assert caller_from_env(env, "c", args=["+31201234567"]).dialled == "+31201234567"


async def test_hold_music_transfer_and_holding_commands(ivr_script: AgiScript) -> None:
    """The exact commands the leg sends; replies in the recorded formats."""
    ok0, ok1 = b"200 result=0\n", b"200 result=1\n"
    steps = [
        ("SET MUSIC ON queue-music", ok0),
        ("SET MUSIC OFF", ok0),
        ('SET VARIABLE CENTRALE_TASK_ID "task-5"', ok1),
        ('SET VARIABLE CENTRALE_MOH "default"', ok1),
        ('SET VARIABLE CENTRALE_STATE "waiting"', ok1),
        ('SET VARIABLE CENTRALE_NEXT "hold"', ok1),
        ('SET VARIABLE CENTRALE_TRANSFER_TARGET "+31201234567"', ok1),
        ('SET VARIABLE CENTRALE_NEXT "transfer"', ok1),
        ("EXEC Hangup 17", ok0),
    ]
    holding: list[str] = []
    state: list[str] = []

    async def route(session: AgiSession) -> None:
        leg = AgiCallLeg(
            session,
            caller_from_env(session.env, "c"),
            prompt_resolver=identity,
            on_holding=lambda leg, task: holding.append(task),
        )
        await leg.start_music_on_hold("queue-music")
        await leg.stop_music_on_hold()
        await leg.send_to_holding(task_id="task-5")
        state.append(leg.next_step)
        with pytest.raises(ValueError):
            await leg.transfer("123;Dial(evil)")
        await leg.transfer("+31201234567")
        state.append(leg.next_step)
        await leg.hangup("busy")
        state.append(leg.next_step)
        with pytest.raises(ValueError):
            await AgiCallLeg(session, leg.caller).start_music_on_hold("bad class")

    client = FakeAgiClient(ivr_script.env, steps)
    await serve(route, client)
    assert client.errors == [] and len(client.commands) == len(steps)
    assert holding == ["task-5"] and state == ["hold", "transfer", "hangup"]
