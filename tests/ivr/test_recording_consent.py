"""The queue's recording consent prompt: played before the caller waits; the decline
key (where the policy allows one) reaches the ACD request, so the call is connected
unrecorded; without a key the caller is told and cannot decline."""

from __future__ import annotations

from typing import Any

from ivr.interpreter import Interpreter, Outcome
from ivr.ports import CustomerContext
from ivr.testing import Barge, ScriptedCallLeg, Then

CASE = CustomerContext(customer_id="cust-1", case_id="case-1", case_open=True, language="en")
NODES = {"q": {"type": "queue", "queue": "sales"}}


def interpreter(config_for, queue, timeline, clock, recording: dict[str, Any]
                ) -> Interpreter:  # type: ignore[no-untyped-def]
    config = config_for(NODES, queues=[{"id": "sales", "recording": recording}])
    return Interpreter(config, queues=queue, timeline=timeline, clock=clock)


async def test_the_decline_key_during_the_consent_prompt(config_for, queue, timeline,
                                                         clock) -> None:  # type: ignore[no-untyped-def]
    interp = interpreter(config_for, queue, timeline, clock, {
        "mode": "always", "consent_prompt": "welcome", "decline_key": "9"})
    leg = ScriptedCallLeg([Barge("9"), Then(lambda: queue.connect("anna"))], clock=clock)
    result = await interp.run(leg, "main", CASE)
    assert result.outcome == Outcome.CONNECTED
    assert leg.prompts()[0] == "welcome"  # before the caller waits for an agent
    assert queue.requests[0].recording_declined is True
    assert any("declined recording" in b for b in timeline.bodies("ivr_step"))


async def test_consent_without_a_key_informs_and_records(config_for, queue, timeline,
                                                         clock) -> None:  # type: ignore[no-untyped-def]
    interp = interpreter(config_for, queue, timeline, clock, {
        "mode": "always", "consent_prompt": "welcome"})
    leg = ScriptedCallLeg([Barge("9"), Then(lambda: queue.connect("anna"))], clock=clock)
    await interp.run(leg, "main", CASE)
    assert leg.prompts()[0] == "welcome"
    assert queue.requests[0].recording_declined is False


async def test_no_prompt_when_the_queue_does_not_record(config_for, queue, timeline,
                                                        clock) -> None:  # type: ignore[no-untyped-def]
    interp = interpreter(config_for, queue, timeline, clock, {
        "mode": "off", "consent_prompt": "welcome"})
    leg = ScriptedCallLeg([Then(lambda: queue.connect("anna"))], clock=clock)
    await interp.run(leg, "main", CASE)
    assert "welcome" not in leg.prompts()
