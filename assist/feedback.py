"""What agents do with suggestions — used as is, edited, ignored — and the use rate per
queue that the reports show. One row per suggestion shown and acted on; the desktop's
key makes a retried POST count once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from assist.tables import AssistFeedback
from core.db import Database

OUTCOMES = ("used", "edited", "ignored")
SOURCES = ("case", "article", "model")


async def record_feedback(db: Database, *, key: str, case_id: str, queue_id: str | None,
                          agent_id: str | None, source: str, source_ref: str | None,
                          outcome: str, at: datetime) -> bool:
    """Store one outcome; False when this key was stored before."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    async with db.session() as s:
        s.add(AssistFeedback(feedback_key=key, case_id=case_id, queue_id=queue_id or "",
                             agent_id=agent_id, source=source, source_ref=source_ref,
                             outcome=outcome, created_at=at))
        try:
            await s.commit()
        except IntegrityError:
            await s.rollback()
            return False
    return True


async def use_rate_by_queue(db: Database, *, start: datetime, end: datetime,
                            ) -> list[dict[str, Any]]:
    """Per queue: suggestions acted on, how many were used as is, edited or ignored,
    and the use rate ((used + edited) / all)."""
    used = func.sum(case((col(AssistFeedback.outcome) == "used", 1), else_=0))
    edited = func.sum(case((col(AssistFeedback.outcome) == "edited", 1), else_=0))
    ignored = func.sum(case((col(AssistFeedback.outcome) == "ignored", 1), else_=0))
    async with db.session() as s:
        rows = list(await s.exec(
            select(AssistFeedback.queue_id, func.count(), used, edited, ignored)
            .where(col(AssistFeedback.created_at) >= start, col(AssistFeedback.created_at) < end)
            .group_by(col(AssistFeedback.queue_id)).order_by(col(AssistFeedback.queue_id))))
    out = []
    for queue_id, total, n_used, n_edited, n_ignored in rows:
        total = int(total or 0)
        taken = int(n_used or 0) + int(n_edited or 0)
        out.append({"queue_id": queue_id or None, "suggestions": total,
                    "used": int(n_used or 0), "edited": int(n_edited or 0),
                    "ignored": int(n_ignored or 0),
                    "use_rate": round(taken / total, 4) if total else None})
    return out
