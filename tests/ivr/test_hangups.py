"""The caller hangs up at every kind of node: the run ends cleanly and says where."""

from __future__ import annotations

from typing import Any

import pytest

from ivr.interpreter import Outcome
from ivr.ports import CustomerContext
from ivr.testing import (
    Hangup,
    HangupAfterPrompt,
    HangupOnPrompt,
    Press,
    ScriptedCallLeg,
    Silence,
)

CASE = CustomerContext(customer_id="cust-1", case_id="case-1", language="en")
END = {"type": "hangup", "prompts": ["goodbye"]}

# node under test, and the caller's script that leaves while the IVR is in it
CASES: dict[str, tuple[dict[str, Any], list[Any]]] = {
    "play": ({"type": "play", "prompts": ["welcome"], "next": "end"},
             [HangupOnPrompt("welcome")]),
    "menu": ({"type": "menu", "prompts": ["menu_main"], "options": {"1": "end"},
              "fallback": "end"}, [Press("9"), Hangup()]),
    "collect": ({"type": "collect", "prompts": ["enter_order_number"], "variable": "o",
                 "max_digits": 6, "next": "end", "fallback": "end"},
                [HangupOnPrompt("enter_order_number")]),
    "schedule": ({"type": "schedule", "schedule": "office", "open": "end",
                  "closed": "end"}, [HangupAfterPrompt("pre")]),
    "condition": ({"type": "condition", "branches": [{"when": "case.open", "next": "end"}],
                   "otherwise": "end"}, [HangupAfterPrompt("pre")]),
    "set": ({"type": "set", "language": "en", "next": "end"}, [HangupAfterPrompt("pre")]),
    "queue": ({"type": "queue", "queue": "sales", "callback_key": "1"},
              [Silence(), Silence(), Hangup()]),
    "transfer": ({"type": "transfer", "target": "1234", "prompts": ["transferring"]},
                 [HangupOnPrompt("transferring")]),
    "voicemail": ({"type": "voicemail", "next": "end"}, [HangupAfterPrompt("leave_message")]),
    "hangup": ({"type": "hangup", "prompts": ["closed"]}, [HangupOnPrompt("closed")]),
}


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_caller_hangs_up_in(kind, make_interpreter, clock, queue, timeline):
    node, script = CASES[kind]
    nodes = {
        "pre": {"type": "play", "prompts": ["pre"], "next": "target"},
        "target": node,
        "end": END,
    }
    leg = ScriptedCallLeg(script, clock=clock)
    result = await make_interpreter(nodes).run(leg, "main", CASE)

    assert result.outcome == Outcome.CALLER_HANGUP
    assert result.node == "target"
    assert result.steps[-1].type == kind
    # the IVR did not try to hang up a leg the caller already left, nor play on
    assert ("hangup", "normal") not in leg.events
    assert "goodbye" not in leg.prompts()
    case_id, kind_, body, meta = timeline.entries[-1]
    assert (case_id, kind_) == ("case-1", "ivr_end")
    assert body.startswith(f"Caller hung up in {kind} target")
    assert meta["outcome"] == "caller_hangup" and meta["node"] == "target"
    if kind == "queue":
        assert queue.abandoned == ["task-1"]
        assert queue.callbacks == []
