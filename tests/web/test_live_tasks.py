"""/api/tasks?mine=1 answers with the ACD's own view of the agent, not the ledger's
possibly lagging one: a call a desk phone answered is "accepted" even before the
ledger caught up; a wrap-up carries its end time and code; what the ACD no longer holds
is gone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from web.desktop.api import live_tasks
from web.tables import AgentTask


@dataclass
class Wrap:
    task_id: str
    ends_at: datetime
    wrap_up_code: str | None = None


@dataclass
class View:
    offers: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    wrap_ups: tuple[Wrap, ...] = field(default_factory=tuple)


class Acd:
    def __init__(self, view: View | None) -> None:
        self.view = view

    def agent(self, agent_id: str) -> View:
        if self.view is None:
            raise LookupError(agent_id)
        return self.view


def row(task: str, status: str, offer: str | None = None) -> AgentTask:
    return AgentTask(id=task, agent_id="anna", task_id=task, offer_id=offer or f"o-{task}",
                     case_id=f"c-{task}", channel="voice", status=status,
                     offered_at=datetime(2026, 12, 7, 9, 0))  # naive, as SQLite gives it


def test_the_acd_decides_each_status() -> None:
    ends = datetime(2026, 12, 7, 9, 5, tzinfo=UTC)
    rows = [row("answered", "offered"), row("ringing", "offered"),
            row("wrapping", "accepted"), row("gone", "accepted"), row("withdrawn", "offered")]
    acd = Acd(View(offers=("o-ringing",), tasks=("answered",),
                   wrap_ups=(Wrap("wrapping", ends, "sale"),)))
    out = {t["task_id"]: t for t in live_tasks(acd, "anna", rows)}
    assert set(out) == {"answered", "ringing", "wrapping"}
    assert out["answered"]["status"] == "accepted"  # the phone answered; ledger lagging
    assert out["ringing"]["status"] == "offered"
    assert out["wrapping"]["status"] == "wrap_up"
    assert out["wrapping"]["wrap_up_ends_at"] == ends.isoformat()
    assert out["wrapping"]["wrap_up_code"] == "sale"
    assert out["answered"]["offered_at"] == "2026-12-07T09:00:00+00:00"  # UTC, with offset


def test_without_an_acd_view_the_ledger_is_all_there_is() -> None:
    rows = [row("a", "accepted")]
    assert [t["status"] for t in live_tasks(Acd(None), "anna", rows)] == ["accepted"]
    assert [t["status"] for t in live_tasks(None, "anna", rows)] == ["accepted"]
