"""Folds the ACD's task events, agent state changes and case closes into the reports
tables (consumer group `reports.recorder`).

Delivery is at-least-once, and on a cluster two events of one task may be handled by two
nodes at once: every handler therefore *sets* the columns its event owns (never adds),
with an UPDATE, and inserts the row when the task is not known yet. Replaying an event
writes the same values again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, text, update
from sqlalchemy.exc import IntegrityError

from config.schema import CentraleConfig
from core.db import Database
from core.events import Event
from core.upsert import full_row, insert_on_conflict
from reports.tables import (
    ReportAgentState,
    ReportCaseClosed,
    ReportContact,
    ReportSurveyAnswer,
    bucket_of,
)

log = logging.getLogger(__name__)

SCORE_RANGES = {"csat": (1, 5), "nps": (0, 10)}
# A bucket's totals marked stale (its version moves on): a cacheable statement (see
# core.upsert), run on every task event.
DIRTY = text('INSERT INTO report_dirty_bucket (bucket, version) VALUES (:bucket, 1) '
             'ON CONFLICT (bucket) DO UPDATE SET version = report_dirty_bucket.version + 1')



def _num(p: dict[str, Any], name: str) -> float | None:
    v = p.get(name)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _write_upserts(conn: Connection, table: Any, steps: list[tuple[Any, list[dict[str, Any]]]],
                   tasks: list[str]) -> None:
    """`ContactRecorder._upsert_many`'s statements, synchronous: each (statement, rows)
    step as an executemany in the order given, then the stored rows' buckets read
    back and each marked stale once, in bucket order."""
    for statement, rows in steps:
        conn.execute(statement, rows)
    buckets = sorted(set(conn.execute(
        select(table.c.bucket).where(table.c.task_id.in_(tasks))).scalars()))
    if buckets:
        conn.execute(DIRTY, [{"bucket": b} for b in buckets])


def _write_upsert(conn: Connection, statement: Any, row: dict[str, Any]) -> None:
    """One contact upserted (RETURNING the stored row's bucket) and its bucket marked
    stale, synchronous (`ContactRecorder._upsert_one`)."""
    bucket = conn.execute(statement, row).scalar_one()
    conn.execute(DIRTY, {"bucket": bucket})


class ContactRecorder:
    def __init__(self, db: Database, config: Callable[[], CentraleConfig]) -> None:
        self.db = db
        self.config = config

    async def handle(self, event: Event) -> None:
        p = event.payload
        topic = event.topic
        if topic == "agent.state_changed":
            await self._agent_state(event)
        elif topic == "case.closed":
            await self._case_closed(event)
        elif topic == "survey.answered":
            await self._survey_answer(event)
        elif topic.startswith(("task.", "call.")) and isinstance(p.get("task_id"), str):
            values = self._task_values(topic, p, event.occurred_at)
            if values is not None:
                await self._upsert(p, event.occurred_at, values)

    async def handle_batch(self, events: list[Event]) -> None:
        """Events as the bus hands them over in a batch (`subscribe_batch`): the task
        events' contact upserts of the whole batch in ONE transaction, their buckets
        marked stale once each, instead of a transaction (and on SQLite an fsync inside
        the single writer lock) per event — the recorder was 2-3 of the ~5 commits a
        call made (issue 21, docs/performance.md). Every other event (agent states, a
        case closed, a survey answer, a wrap-up's split of the handle time) is written
        as before, on its own, in stream order after the upserts before it.

        All or nothing: if the batch's transaction fails the bus leaves the whole batch
        pending and delivers it again, and every statement *sets* columns, so writing
        an event twice leaves the same row."""
        upserts: list[tuple[dict[str, Any], datetime, dict[str, Any]]] = []
        for event in events:
            p, topic = event.payload, event.topic
            if topic.startswith(("task.", "call.")) and isinstance(p.get("task_id"), str):
                values = self._task_values(topic, p, event.occurred_at)
                if not values:
                    continue
                if "handle_total" not in values:
                    upserts.append((p, event.occurred_at, values))
                    continue
            elif topic not in ("agent.state_changed", "case.closed", "survey.answered"):
                continue  # not a reports event (timeline entries, cases opened, ...)
            await self._upsert_many(upserts)
            upserts = []
            await self.handle(event)
        await self._upsert_many(upserts)

    async def _upsert_many(self, upserts: list[tuple[dict[str, Any], datetime,
                                                     dict[str, Any]]]) -> None:
        """`_upsert_one` for many events in one transaction and a few statements.

        Each statement is a round trip (on SQLite a hop to the connection's thread,
        inside the single writer lock), so the rows go in as executemany: in rounds —
        round k holds the k-th event of every task in the batch, so a task's own
        events keep their stream order — one executemany per distinct statement of a
        round, rows in task order. Then the stored rows' buckets in one SELECT (an
        update never moves a contact to another interval) and each marked stale once,
        in bucket order. Two nodes writing overlapping batches therefore lock rows in
        the same (ascending) order and cannot deadlock."""
        if not upserts:
            return
        if len(upserts) == 1:
            await self._upsert_one(*upserts[0])
            return
        table = ReportContact.__table__  # type: ignore[attr-defined]
        per_task: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        for p, at, values in upserts:
            per_task.setdefault(p["task_id"], []).append(
                self._upsert_statement(table, p, at, values, returning=False))
        tasks = sorted(per_task)
        steps: list[tuple[Any, list[dict[str, Any]]]] = []
        for k in range(max(len(v) for v in per_task.values())):
            groups: dict[Any, list[dict[str, Any]]] = {}
            for task in tasks:
                if k < len(per_task[task]):
                    statement, row = per_task[task][k]
                    groups.setdefault(statement, []).append(row)
            steps.extend(groups.items())
        await self._write(lambda conn: _write_upserts(conn, table, steps, tasks))

    async def _write(self, work: Callable[[Connection], None]) -> None:
        """`work` and its commit in one transaction: on a SQLite file in ONE hand-over
        to the writer thread (core.db.Database.write_in_thread) instead of an aiosqlite
        round trip per statement and one for the commit, all inside the writer lock —
        the recorder's batch was the largest write left on aiosqlite per call (issue
        21); elsewhere (PostgreSQL) through `run_sync` on a pooled connection, the same
        statements in the same order."""
        if self.db.writes_in_thread:
            await self.db.write_in_thread(work)
            return
        async with self.db.session() as s:
            connection = await s.connection()
            await connection.run_sync(work)
            await s.commit()

    def _sl_seconds(self, queue_id: str | None) -> float:
        for q in self.config().queues:
            if q.id == queue_id:
                return float(q.service_level_seconds)
        return 20.0

    def _task_values(self, topic: str, p: dict[str, Any],
                     at: datetime) -> dict[str, Any] | None:
        wait = _num(p, "wait_seconds")
        if topic == "task.enqueued":
            return {"queue_id": p.get("queue_id"), "channel": p.get("channel")}
        if topic == "task.accepted":
            return {"answered": 1, "answered_at": at, "agent_id": p.get("agent_id"),
                    "wait_seconds": wait,
                    "answered_in_sl": int(wait is not None
                                          and wait <= self._sl_seconds(p.get("queue_id")))}
        if topic == "task.abandoned":
            return {"abandoned": 1, "ended_at": at, "wait_seconds": wait,
                    "short_abandoned": int(bool(p.get("short")))}
        if topic == "task.exited":
            return {"exited": 1, "ended_at": at, "wait_seconds": wait}
        if topic == "task.moved" and p.get("reason") == "transfer":
            return {"transferred": 1}
        if topic == "task.completed":
            values: dict[str, Any] = {"talk_seconds": _num(p, "talk_seconds"),
                                      "wrap_up_code": p.get("wrap_up_code")}
            if (hold := _num(p, "hold_seconds")) is not None:
                values["hold_seconds"] = hold
            return values
        if topic == "task.wrap_up_ended":
            handle = _num(p, "handle_seconds")
            values = {"handled": 1, "ended_at": at, "agent_id": p.get("agent_id")}
            if p.get("wrap_up_code") is not None:
                values["wrap_up_code"] = p.get("wrap_up_code")
            if handle is not None:
                values["handle_total"] = handle  # split into talk/wrap below
            return values
        if topic in ("call.resume", "call.hold_ended"):  # call control's running total
            total = _num(p, "hold_total_seconds")
            return {"hold_seconds": total} if total is not None else None
        return None

    async def _upsert(self, p: dict[str, Any], at: datetime, values: dict[str, Any]) -> None:
        task_id = p["task_id"]
        handle_total = values.pop("handle_total", None)
        if handle_total is None and values:
            await self._upsert_one(p, at, values)
            return
        for _attempt in range(3):
            async with self.db.session() as s:
                if handle_total is not None:
                    row = await s.get(ReportContact, task_id)
                    talk = row.talk_seconds if row is not None else None
                    values["wrap_seconds"] = (max(0.0, handle_total - talk) if talk is not None
                                              else 0.0)
                    if talk is None:
                        values["talk_seconds"] = handle_total
                result = await s.exec(update(ReportContact)  # type: ignore[call-overload]
                                         .where(ReportContact.task_id == task_id)  # type: ignore[arg-type]
                                         .values(**values).returning(ReportContact.bucket))
                bucket = result.scalar_one_or_none()
                if bucket is not None:
                    await s.exec(self._dirty(bucket))
                    await s.commit()
                    return
                entered = at
                if (wait := values.get("wait_seconds")) is not None:
                    entered = at - timedelta(seconds=float(wait))
                if p.get("enqueued_at"):
                    try:
                        entered = datetime.fromisoformat(p["enqueued_at"])
                    except (TypeError, ValueError):
                        pass
                row_values = {"queue_id": p.get("queue_id"), "channel": p.get("channel"),
                              "case_id": p.get("case_id"), "customer_id": p.get("customer_id"),
                              **{k: v for k, v in values.items() if v is not None}}
                s.add(ReportContact(task_id=task_id, entered_at=entered,
                                    bucket=bucket_of(entered), **row_values))
                try:
                    await s.flush()
                except IntegrityError:
                    await s.rollback()  # another node inserted it: update instead
                    continue
                await s.exec(self._dirty(bucket_of(entered)))
                await s.commit()
                return
        log.warning("reports: could not record %s for task %s", values, task_id)

    @staticmethod
    def _entered(p: dict[str, Any], at: datetime, values: dict[str, Any]) -> datetime:
        """When the contact entered: the event's enqueue time, else its time less the
        wait it reports, else the event's time."""
        entered = at
        if (wait := values.get("wait_seconds")) is not None:
            entered = at - timedelta(seconds=float(wait))
        if p.get("enqueued_at"):
            try:
                entered = datetime.fromisoformat(p["enqueued_at"])
            except (TypeError, ValueError):
                pass
        return entered

    async def _upsert_one(self, p: dict[str, Any], at: datetime,
                          values: dict[str, Any]) -> None:
        """The row inserted, or its event's columns set when it exists, in one
        statement (INSERT ... ON CONFLICT DO UPDATE ... RETURNING its bucket) and the
        bucket marked stale in the same transaction: two statements per task event, on
        the database the screen-pop's routing writes to, instead of a missed UPDATE, an
        INSERT and a retry on a race between nodes. The bucket returned is the stored
        row's, so an update never moves a contact to another interval."""
        table = ReportContact.__table__  # type: ignore[attr-defined]
        statement, row = self._upsert_statement(table, p, at, values)
        await self._write(lambda conn: _write_upsert(conn, statement, row))

    def _upsert_statement(self, table: Any, p: dict[str, Any], at: datetime,
                          values: dict[str, Any], *, returning: bool = True,
                          ) -> tuple[Any, dict[str, Any]]:
        """The contact's INSERT ... ON CONFLICT DO UPDATE of the event's columns
        (RETURNING the stored row's bucket, unless for an executemany) and its
        parameters."""
        entered = self._entered(p, at, values)
        row_values = {"queue_id": p.get("queue_id"), "channel": p.get("channel"),
                      "case_id": p.get("case_id"), "customer_id": p.get("customer_id"),
                      **{k: v for k, v in values.items() if v is not None}}
        statement = insert_on_conflict(table, ("task_id",), update=tuple(sorted(values)),
                                       returning=("bucket",) if returning else ())
        row = full_row(table, {"task_id": p["task_id"], "entered_at": entered,
                               "bucket": bucket_of(entered), **row_values})
        return statement, row

    def _dirty(self, bucket: int) -> Any:
        """Mark the bucket's totals stale, in the contact's own transaction."""
        return DIRTY.bindparams(bucket=bucket)

    async def _agent_state(self, event: Event) -> None:
        p = event.payload
        if not isinstance(p.get("agent_id"), str) or not isinstance(p.get("state"), str):
            return
        try:
            async with self.db.session() as s:
                s.add(ReportAgentState(event_id=event.event_id, agent_id=p["agent_id"],
                                       state=p["state"], at=event.occurred_at))
                await s.commit()
        except IntegrityError:
            pass  # the same event delivered twice

    async def _case_closed(self, event: Event) -> None:
        case_id = event.payload.get("case_id")
        if not isinstance(case_id, str):
            return
        try:
            async with self.db.session() as s:
                s.add(ReportCaseClosed(case_id=case_id, closed_at=event.occurred_at))
                await s.commit()
        except IntegrityError:
            pass  # closed before (a reopened case keeps its first close)

    async def _survey_answer(self, event: Event) -> None:
        p = event.payload
        kind = p.get("kind")
        score = p.get("score")
        if kind not in SCORE_RANGES:
            return
        low, high = SCORE_RANGES[kind]
        if not (isinstance(score, int) and not isinstance(score, bool)
                and low <= score <= high):
            score = None  # out of range reaching here is "no answer", never a figure
        try:
            async with self.db.session() as s:
                s.add(ReportSurveyAnswer(
                    event_id=event.event_id, kind=kind, score=score, at=event.occurred_at,
                    **{k: p.get(k) if isinstance(p.get(k), str) else None
                       for k in ("case_id", "customer_id", "task_id", "queue_id", "agent_id",
                                 "channel")}))
                await s.commit()
        except IntegrityError:
            pass  # the same event delivered twice
