"""Which tasks and cases each agent may see: a ledger kept from the ACD's task events.

An agent may open a case only while it is the case of a task offered to them (until the
offer is withdrawn or rejected) or assigned to them (for good: the case stays in their
history). The ledger is written by one consumer group across the cluster (durable, at
least once, idempotent) and mirrored in memory on every node from the broadcast, so the
screen-pop link works the moment the pop arrives.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from core.clock import Clock
from core.db import Database
from core.events import Event
from core.ids import new_id
from core.upsert import full_row, insert_on_conflict
from web.tables import AgentTask

log = logging.getLogger(__name__)

OFFERED, ACCEPTED, WRAP_UP, DONE = "offered", "accepted", "wrap_up", "done"
WITHDRAW_TOPICS = ("task.offer_withdrawn", "task.rejected", "task.offer_rejected",
                   "task.offer_expired", "task.missed")
LEDGER_TOPICS = ("task.offered", "task.accepted", "task.completed", "task.wrap_up_ended",
                 *WITHDRAW_TOPICS)
# A node that dies between confirming a change in Redis and publishing its event takes
# that event with it; the adopter's `task.adopted` (with the task's status and agent as
# Redis has them) restates it, so the ledger reads it as the event it may have missed.
ADOPTED_AS = {"assigned": "task.accepted", "wrap_up": "task.completed"}
# An offer for a row that exists: the new offer, customer and queue (kept when the
# event has none), status offered again only from offered or done.
_REOFFER = (
    "offer_id = excluded.offer_id, "
    "customer_id = coalesce(excluded.customer_id, web_agent_task.customer_id), "
    "queue_id = coalesce(excluded.queue_id, web_agent_task.queue_id), "
    "status = CASE WHEN web_agent_task.status IN ('done', 'offered') THEN 'offered' "
    "ELSE web_agent_task.status END")


class TaskLedger:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock
        # agent -> task -> case, for offers and assignments seen on this node
        self._live: dict[str, dict[str, str]] = {}
        self._accepted: dict[str, set[str]] = {}  # agent -> tasks accepted (never revoked)

    # ---- the in-memory mirror (broadcast, this node) ---------------------------

    def note(self, event: Event) -> None:
        p = event.payload
        agent, task = p.get("agent_id"), p.get("task_id")
        if not agent or not task:
            return
        if event.topic == "task.offered" and p.get("case_id"):
            self._live.setdefault(agent, {})[task] = p["case_id"]
        elif event.topic == "task.accepted":
            self._accepted.setdefault(agent, set()).add(task)
            if p.get("case_id"):
                self._live.setdefault(agent, {})[task] = p["case_id"]
        elif event.topic in WITHDRAW_TOPICS and task not in self._accepted.get(agent, set()):
            self._live.get(agent, {}).pop(task, None)
        elif event.topic in ("task.wrap_up_ended", "task.abandoned", "task.exited"):
            # Done: the durable ledger keeps granting an accepted task's case; the mirror
            # only has to cover the moments before that row is written, so it forgets.
            self._live.get(agent, {}).pop(task, None)
            self._accepted.get(agent, set()).discard(task)

    # ---- the durable ledger (consumer group) -------------------------------------

    async def record(self, event: Event) -> None:
        topic = event.topic
        if topic == "task.adopted":
            topic = ADOPTED_AS.get(str(event.payload.get("status")), "")
        if topic not in LEDGER_TOPICS:
            return
        p = event.payload
        agent, task = p.get("agent_id"), p.get("task_id")
        if not agent or not task:
            return
        now = event.occurred_at or self.clock.now()
        for _ in range(2):
            try:
                await self._apply(topic, p, agent, task, now)
                return
            except IntegrityError:  # two nodes inserted the same row: apply as an update
                continue

    async def _apply(self, topic: str, p: dict[str, Any], agent: str, task: str,
                     now: datetime) -> None:
        if topic == "task.offered":
            await self._offered(p, agent, task, now)
            return
        async with self.db.session() as s:
            row = (await s.exec(select(AgentTask).where(AgentTask.agent_id == agent,
                                                        AgentTask.task_id == task))).first()
            if row is None:
                if topic != "task.accepted" or not p.get("case_id"):
                    return
                row = AgentTask(id=new_id(), agent_id=agent, task_id=task, case_id=p["case_id"],
                                channel=str(p.get("channel") or "unknown")[:16],
                                queue_id=p.get("queue_id"), customer_id=p.get("customer_id"),
                                offered_at=now, status=ACCEPTED, accepted_at=now)
            elif topic == "task.accepted":
                row.status, row.accepted_at = ACCEPTED, now
            elif topic == "task.completed":
                row.status, row.completed_at = WRAP_UP, now
                row.wrap_up_code = p.get("wrap_up_code") or row.wrap_up_code
            elif topic == "task.wrap_up_ended":
                row.status = DONE
            elif topic in WITHDRAW_TOPICS:
                if row.status == OFFERED:
                    await s.delete(row)
                    await s.commit()
                return
            s.add(row)
            await s.commit()

    async def _offered(self, p: dict[str, Any], agent: str, task: str,
                       now: datetime) -> None:
        """An offer: the agent's row inserted, or the existing one (an offer made again,
        a task back after done) given the new offer, in one statement — every inbound
        contact passes here, on the database its routing writes to. The row's status
        goes back to offered only from offered or done, never over an accepted task."""
        if not p.get("case_id"):
            return
        table = AgentTask.__table__  # type: ignore[attr-defined]
        statement = insert_on_conflict(table, ("agent_id", "task_id"), raw_update=_REOFFER)
        row = full_row(table, {
            "id": new_id(), "agent_id": agent, "task_id": task, "case_id": p["case_id"],
            "offer_id": p.get("offer_id"), "customer_id": p.get("customer_id") or None,
            "queue_id": p.get("queue_id") or None, "status": OFFERED, "offered_at": now,
            "channel": str(p.get("channel") or "unknown")[:16]})
        async with self.db.session() as s:
            await (await s.connection()).execute(statement, row)
            await s.commit()

    # ---- questions ---------------------------------------------------------------

    async def may_open_case(self, agent_id: str, case_id: str) -> bool:
        if case_id in self._live.get(agent_id, {}).values():
            return True
        async with self.db.session() as s:
            row = (await s.exec(select(AgentTask.id).where(
                AgentTask.agent_id == agent_id, AgentTask.case_id == case_id))).first()
        return row is not None

    async def may_see_customer(self, agent_id: str, customer_id: str,
                               case_ids_of_customer: list[str]) -> bool:
        for case_id in case_ids_of_customer:
            if await self.may_open_case(agent_id, case_id):
                return True
        return False

    async def may_handle_task(self, agent_id: str, task_id: str) -> bool:
        if task_id in self._live.get(agent_id, {}):
            return True
        async with self.db.session() as s:
            row = (await s.exec(select(AgentTask.id).where(
                AgentTask.agent_id == agent_id, AgentTask.task_id == task_id))).first()
        return row is not None

    async def tasks_of(self, agent_id: str, *, include_done: bool = False) -> list[AgentTask]:
        async with self.db.session() as s:
            q = select(AgentTask).where(AgentTask.agent_id == agent_id)
            if not include_done:
                q = q.where(AgentTask.status != DONE)
            return list(await s.exec(q.order_by(col(AgentTask.offered_at).desc()).limit(200)))

    async def all_open(self) -> list[AgentTask]:
        async with self.db.session() as s:
            return list(await s.exec(select(AgentTask).where(AgentTask.status != DONE)
                                     .order_by(col(AgentTask.offered_at).desc()).limit(1000)))
