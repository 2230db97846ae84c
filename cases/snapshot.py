"""A case's customer record in one database session and three statements: what a
screen-pop shows (`CaseService.snapshot`).

Read one by one (`get_case`, `identities`, `timeline`, `suggestions`) that is six
sessions: on PostgreSQL six connections checked out (and pre-pinged) at once per pop,
on SQLite six pool hand-offs to aiosqlite's thread in a row. This reads the same rows,
ordered the same way, through one connection:

1. the case with its customer and the customer's identities (one join; the case's
   customer is the live one, so a merge between the offer and the pop needs no re-read),
2. the last `limit` timeline entries with the case's total count (a window function:
   no second query, and a long timeline is not loaded whole to show its end),
3. the customer's open merge suggestions.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select

from cases.tables import Case, Customer, Identity, IdentitySuggestion, TimelineEntry
from core.db import Database


@dataclass(frozen=True)
class CaseSnapshot:
    case: Case
    customer: Customer
    identities: list[Identity]
    timeline: list[TimelineEntry]  # the last `limit` entries, oldest first
    timeline_total: int  # every entry of the case
    suggestions: list[IdentitySuggestion]


async def read_case_snapshot(db: Database, case_id: str, *, limit: int) -> CaseSnapshot | None:
    """Everything a pop shows of the customer record; None for an unknown case."""
    async with db.session() as s:
        rows = list(await s.exec(
            select(Case, Customer, Identity)
            .join(Customer, col(Customer.id) == col(Case.customer_id))
            .outerjoin(Identity, col(Identity.customer_id) == col(Customer.id))
            .where(col(Case.id) == case_id)
            .order_by(col(Identity.created_at), col(Identity.id))))
        if not rows:
            return None
        case, customer = rows[0][0], rows[0][1]
        identities = [row[2] for row in rows if row[2] is not None]

        page = list(await s.exec(
            select(TimelineEntry, func.count().over())
            .where(col(TimelineEntry.case_id) == case_id)
            .order_by(col(TimelineEntry.occurred_at).desc(),
                      col(TimelineEntry.recorded_at).desc(), col(TimelineEntry.id).desc())
            .limit(limit)))
        timeline = [row[0] for row in reversed(page)]
        total = int(page[0][1]) if page else 0

        suggestions = list(await s.exec(select(IdentitySuggestion).where(
            col(IdentitySuggestion.customer_id) == customer.id,
            col(IdentitySuggestion.status) == "open")))
    return CaseSnapshot(case, customer, identities, timeline, total, suggestions)
