"""The stream check the traffic test relies on catches what it is meant to catch: a task
ringing two agents at once, and an agent offered more chats than their capacity — and
accepts a re-offer after a withdrawal or an adoption."""

from __future__ import annotations

from core.events import Event
from tests.multinode.traffic import audit_offers


def offered(task: str, offer: str, agent: str, channel: str = "whatsapp") -> Event:
    return Event("task.offered", {"task_id": task, "offer_id": offer, "agent_id": agent,
                                  "channel": channel})


def test_a_task_ringing_two_agents_at_once_is_a_violation() -> None:
    audit = audit_offers([offered("t1", "o1", "anna"), offered("t1", "o2", "chloe")],
                         {"anna": 1, "chloe": 1})
    assert audit.violations == ["t1 offered to chloe while ringing {'o1': 'anna'}"]


def test_more_chats_than_capacity_is_a_violation() -> None:
    audit = audit_offers([offered("t1", "o1", "anna"), offered("t2", "o2", "anna")],
                         {"anna": 1})
    assert len(audit.violations) == 1 and "anna holds" in audit.violations[0]


def test_offers_again_after_a_withdrawal_or_an_adoption_are_fine() -> None:
    events = [
        offered("t1", "o1", "anna"),
        Event("task.offer_withdrawn", {"task_id": "t1", "offer_id": "o1",
                                       "agent_id": "anna"}),
        offered("t1", "o2", "chloe"),
        Event("task.adopted", {"task_id": "t1", "status": "waiting"}),
        offered("t1", "o3", "chloe"),
        offered("t2", "o4", "anna"),
    ]
    audit = audit_offers(events, {"anna": 1, "chloe": 1})
    assert audit.violations == []
    assert audit.offers == {"t1": ["anna", "chloe", "chloe"], "t2": ["anna"]}
