"""CallControlService's refusals before any backend is asked: targets (422 naming
them), unknown and ended calls (404 / 409), roles (403), on a real loaded config."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from config import load_config_with_sources
from pbx_bridge.control import CallControlError, CallControlService, PhoneActor

SITE = """
server:
  name: t
  default_region: NL
  sip:
    enabled: true
    trunks:
      - {name: local, allowed_ips: [127.0.0.1]}
skills: [{id: sales}]
queues:
  - {id: sales, skills: {sales: 1}}
agents:
  - {id: anna, name: Anna, skills: {sales: 1}, queues: [sales],
     sip: {username: "1001", password: anna-secret}}
  - {id: nophone, name: No Phone, skills: {sales: 1}, queues: [sales]}
users:
  - {username: anna, role: agent, agent: anna, password: demo}
"""


class Backend:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def alive(self, active: Any) -> bool:
        return not active.gone

    def view(self, call: Any) -> Any:
        return SimpleNamespace(held=False, state="talking")

    async def hold(self, call: Any, music_class: str) -> None:
        self.calls.append(f"hold:{music_class}")


@pytest.fixture
def service(tmp_path: Path) -> tuple[CallControlService, Backend, Any]:
    (tmp_path / "site.yaml").write_text(textwrap.dedent(SITE))
    config = load_config_with_sources(tmp_path, env={}).config
    active = SimpleNamespace(call_id="c1", task_id="t1", case_id="k1", agent_id="anna",
                             backend="sip", leg=object(), connected_at=1.0, gone=False)
    voice = SimpleNamespace(config=config, calls_by_id={"c1": active},
                            calls_by_task={"t1": active},
                            acd=SimpleNamespace(task=lambda _id: SimpleNamespace(
                                queue_id="sales")))
    backend = Backend()
    bus = SimpleNamespace(events=[])

    async def publish(event: Any) -> None:
        bus.events.append(event)

    bus.publish = publish
    cases = SimpleNamespace()

    async def add_timeline(*args: Any, **kwargs: Any) -> None:
        return None

    cases.add_timeline = add_timeline
    return CallControlService(voice=voice, cases=cases, bus=bus,  # type: ignore[arg-type]
                              backends={"sip": backend}), backend, active


ANNA = PhoneActor(username="anna", agent_id="anna", role="agent")


@pytest.mark.parametrize(("kind", "target", "named"), [
    ("agent", "zoe", "zoe"), ("agent", "nophone", "nophone"), ("queue", "billing", "billing"),
    ("number", "not-a-number", "not-a-number"),
    ("number", "+31201234567", "+31201234567"),  # no trunk with an outbound host
    ("fax", "x", "fax"),
])
async def test_unknown_targets_are_422_naming_them(service, kind: str, target: str,  # type: ignore[no-untyped-def]
                                                   named: str) -> None:
    control, backend, _ = service
    with pytest.raises(CallControlError) as err:
        await control.blind_transfer("c1", kind, target, ANNA)
    assert err.value.code == "unknown_target" and named in str(err.value)
    assert backend.calls == []


async def test_refusals_by_call_and_role(service) -> None:  # type: ignore[no-untyped-def]
    control, backend, active = service
    with pytest.raises(CallControlError) as err:
        await control.hold("nope", ANNA)
    assert err.value.code == "unknown_call"
    other = PhoneActor(username="bram", agent_id="bram", role="agent")
    with pytest.raises(CallControlError) as err:
        await control.hold("t1", other)
    assert err.value.code == "not_your_call"
    with pytest.raises(CallControlError) as err:
        await control.monitor("c1", "listen", ANNA, "1001")
    assert err.value.code == "not_your_call"
    with pytest.raises(CallControlError) as err:
        await control.send_dtmf("c1", "12x", ANNA)
    assert err.value.code == "invalid_argument"
    await control.hold("t1", ANNA)  # by task id, the queue's music class
    assert backend.calls == ["hold:default"]
    active.gone = True
    with pytest.raises(CallControlError) as err:
        await control.hold("c1", ANNA)
    assert err.value.code == "call_ended"
    control.call_gone("c1", "t1")
    control.voice.calls_by_id.clear()
    control.voice.calls_by_task.clear()
    for ref in ("c1", "t1"):
        with pytest.raises(CallControlError) as err:
            await control.resume(ref, ANNA)
        assert err.value.code == "call_ended"
    assert backend.calls == ["hold:default"]
