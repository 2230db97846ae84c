"""Call control replayed against a real AMI exchange: hold and resume recorded from
the live Asterisk 20.20.1 (tests/fixtures/asterisk/ami_call_control_hold_resume.txt,
captured by tests/asterisk_live/test_live_call_control.py). The fake AMI server
answers with Asterisk's recorded replies, and the actions today's code sends must be
the ones that live Asterisk accepted, header for header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from config.schema.server import AmiSettings, AsteriskSettings
from pbx_bridge.asterisk.ami import Backoff
from pbx_bridge.asterisk.backend import AsteriskBackend
from pbx_bridge.asterisk.channels import VAR_CALL_ID, VAR_ROLE, VAR_TASK_ID
from pbx_bridge.asterisk.control import AsteriskCallControl
from pbx_bridge.asterisk.testing import (
    AmiRecording,
    FakeAmiServer,
    header,
    load_chunks,
    redirect_joining_room,
)
from pbx_bridge.control import ControlledCall

NAME = "ami_call_control_hold_resume"
KEYS = ("action", "channel", "variable", "value", "context", "exten", "priority",
        "extrachannel", "extracontext", "extraexten", "extrapriority")


@pytest.fixture
def recording(fixtures_dir: Path) -> AmiRecording:
    return AmiRecording.load(fixtures_dir / "jsonl" / f"{NAME}.jsonl")


async def test_the_live_asterisk_accepted_each_hold_and_resume_action(
        fixtures_dir: Path) -> None:
    replies = {}
    text = b"".join(c.data for c in load_chunks(fixtures_dir / "jsonl" / f"{NAME}.jsonl")
                    if c.direction == "from_asterisk").decode()
    for message in text.split("\r\n\r\n"):
        action_id = header(message.encode(), "ActionID")
        if action_id and message.startswith("Response:"):
            replies[action_id] = message
    sent = [m for m in b"".join(c.data for c in load_chunks(
        fixtures_dir / "jsonl" / f"{NAME}.jsonl") if c.direction == "to_asterisk"
    ).decode().split("\r\n\r\n") if m.startswith("Action: Redirect")]
    assert len(sent) == 3  # into the room (dual), to hold, back into the room
    for message in sent:
        reply = replies[header(message.encode(), "ActionID")]
        assert reply.startswith("Response: Success"), reply
    assert "Dual Redirect successful" in text
    assert "Event: MusicOnHoldStart" in text and "Event: ConfbridgeJoin" in text


@pytest.fixture
async def replay(recording: AmiRecording) -> AsyncIterator[tuple[AsteriskCallControl,
                                                                  FakeAmiServer, str]]:
    server = await FakeAmiServer(recording, secret="change-me-ami-secret").start()
    server.on_action("CoreShowChannels", lambda headers, action_id: None)
    settings = AsteriskSettings(enabled=True, ami=AmiSettings(
        host="127.0.0.1", port=server.port, username="centrale",
        secret=SecretStr("change-me-ami-secret")))

    async def inbound(leg: object) -> None:
        return None

    backend = AsteriskBackend(settings, inbound=inbound,
                              backoff=Backoff(initial=0.02, maximum=0.1))
    await backend.start(agi_host="127.0.0.1", agi_port=0)
    await backend.ami.wait_ready()
    call_id = next(h["value"] for h in recording.requests["setvar"]
                   if h.get("variable") == VAR_CALL_ID)
    server.on_action("Redirect", redirect_joining_room(server, call_id))
    customer = backend.registry.ensure("1.0", "PJSIP/trunk-00000000")
    customer.variables[VAR_CALL_ID] = call_id
    agent = backend.registry.ensure("1.1", "PJSIP/1001-00000001")
    agent.variables.update({VAR_ROLE: "agent", VAR_TASK_ID: "task-1"})
    control = AsteriskCallControl(backend, agents=lambda: [
        SimpleNamespace(id="anna", sip=SimpleNamespace(username="1001"))])
    yield control, server, call_id
    await backend.stop()
    await server.stop()


async def test_hold_and_resume_send_what_the_live_asterisk_accepted(
        replay: tuple[AsteriskCallControl, FakeAmiServer, str],
        recording: AmiRecording) -> None:
    control, server, call_id = replay
    active = SimpleNamespace(call_id=call_id, task_id="task-1", agent_id="anna")
    call = ControlledCall(call_id, "task-1", "case-1", "anna", "asterisk", "support", active)
    mark = len(server.received)
    await control.hold(call, "default")
    assert control.view(call).held
    assert await control.resume(call) >= 0
    sent = [{k: v for k, v in a.items() if k in KEYS} for a in server.received[mark:]
            if a.get("action", "").lower() in ("setvar", "redirect")]
    recorded = [{k: v for k, v in h.items() if k in KEYS}
                for h in _in_order(recording) if h.get("variable") != "CENTRALE_STATE"]
    assert sent == recorded


def _in_order(recording: AmiRecording) -> list[dict[str, str]]:
    """Setvar and Redirect requests of the recording in the order they were sent."""
    ordered = []
    for name in ("setvar", "redirect"):
        for headers in recording.requests.get(name, []):
            ordered.append((int(headers["actionid"].rsplit("-", 1)[-1]), headers))
    return [h for _, h in sorted(ordered, key=lambda pair: pair[0])]
