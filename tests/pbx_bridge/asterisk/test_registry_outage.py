"""The registry after an outage: hang-ups found by a resync carry how long the link was
down (talk time stops at the outage's start), and an adopted Centrale channel carries
every variable read back (a restarted Centrale queues the caller again from them)."""

from __future__ import annotations

from pbx_bridge.asterisk.channels import (
    STATE_WAITING,
    VAR_CALL_ID,
    VAR_CASE_ID,
    VAR_QUEUE_ID,
    VAR_STATE,
    VAR_TASK_ID,
    ChannelRegistry,
    LiveChannel,
)
from pbx_bridge.asterisk.events import CallerAbandoned, CallRecovered, ChannelHungUp


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def test_channels_gone_in_an_outage_carry_its_length() -> None:
    clock = Clock()
    registry = ChannelRegistry(clock)
    registry.ensure("1.1", "PJSIP/trunk-1")
    registry.set_variable("1.1", VAR_CALL_ID, "call-1")
    registry.set_variable("1.1", VAR_TASK_ID, "task-1")
    registry.set_variable("1.1", VAR_STATE, STATE_WAITING)
    clock.now += 50  # waited 50 s, of which the last 20 s the link was down
    events = registry.reconcile([], {}, known_before={"1.1"}, outage_seconds=20.0)
    hung = next(e for e in events if isinstance(e, ChannelHungUp))
    abandoned = next(e for e in events if isinstance(e, CallerAbandoned))
    assert hung.during_outage and hung.outage_seconds == 20.0
    assert abandoned.outage_seconds == 20.0 and abandoned.waited_seconds == 30.0


def test_an_adopted_channel_reports_every_variable_read_back() -> None:
    registry = ChannelRegistry(Clock())
    live = [LiveChannel("2.1", "PJSIP/trunk-2", "2.1", "+31201234567")]
    variables = {"2.1": {VAR_CALL_ID: "call-2", VAR_TASK_ID: "task-2",
                         VAR_STATE: STATE_WAITING, VAR_CASE_ID: "case-2",
                         VAR_QUEUE_ID: "support"}}
    events = registry.reconcile(live, variables, known_before=set())
    recovered = [e for e in events if isinstance(e, CallRecovered)]
    assert len(recovered) == 1
    assert recovered[0].state == STATE_WAITING and recovered[0].task_id == "task-2"
    assert recovered[0].variables[VAR_CASE_ID] == "case-2"
    assert recovered[0].variables[VAR_QUEUE_ID] == "support"
