"""Merging two customers, and undoing it.

A merge moves the source customer's identities and cases to the target and marks the
source `merged_into` the target; the audit row lists exactly what moved, so an undo
moves exactly that back. Nothing is deleted: timelines stay on their cases.
"""

from __future__ import annotations

from sqlmodel import col, select

from cases.service import CaseError, NotFound
from cases.tables import Case, Customer, CustomerMerge, Identity
from core.bus import EventBus
from core.clock import Clock
from core.db import Database
from core.events import Event
from core.ids import new_id


class CustomerMerger:
    def __init__(self, db: Database, bus: EventBus, clock: Clock) -> None:
        self.db, self.bus, self.clock = db, bus, clock

    async def merge(self, source_id: str, target_id: str, *, actor: str,
                    reason: str | None = None) -> CustomerMerge:
        if source_id == target_id:
            raise CaseError("cannot merge a customer into itself")
        async with self.db.session() as s:
            source = await s.get(Customer, source_id)
            target = await s.get(Customer, target_id)
            if source is None or target is None:
                raise NotFound(f"customer {source_id if source is None else target_id} "
                               "not found")
            if source.merged_into:
                raise CaseError(f"customer {source_id} was already merged into "
                                f"{source.merged_into}")
            if target.merged_into:
                raise CaseError(f"customer {target_id} was merged into {target.merged_into}; "
                                "merge into that customer instead")
            identities = list(await s.exec(select(Identity).where(
                Identity.customer_id == source_id)))
            cases = list(await s.exec(select(Case).where(Case.customer_id == source_id)))
            for ident in identities:
                ident.customer_id = target_id
                s.add(ident)
            for case in cases:
                case.customer_id = target_id
                s.add(case)
            source.merged_into = target_id
            s.add(source)
            record = CustomerMerge(
                id=new_id(), source_customer_id=source_id, target_customer_id=target_id,
                moved_identity_ids=[i.id for i in identities], moved_case_ids=[c.id for c in cases],
                actor=actor, reason=reason, merged_at=self.clock.now())
            s.add(record)
            await s.commit()
        await self.bus.publish(Event("customer.merged", {
            "merge_id": record.id, "source_customer_id": source_id,
            "target_customer_id": target_id, "actor": actor}))
        return record

    async def unmerge(self, merge_id: str, *, actor: str) -> CustomerMerge:
        async with self.db.session() as s:
            record = await s.get(CustomerMerge, merge_id)
            if record is None:
                raise NotFound(f"merge {merge_id} not found")
            if record.reverted_at is not None:
                raise CaseError(f"merge {merge_id} was already undone")
            source = await s.get(Customer, record.source_customer_id)
            assert source is not None
            if record.moved_identity_ids:
                for ident in await s.exec(select(Identity).where(
                        col(Identity.id).in_(record.moved_identity_ids))):
                    ident.customer_id = source.id
                    s.add(ident)
            if record.moved_case_ids:
                for case in await s.exec(select(Case).where(
                        col(Case.id).in_(record.moved_case_ids))):
                    case.customer_id = source.id
                    s.add(case)
            source.merged_into = None
            s.add(source)
            record.reverted_at = self.clock.now()
            record.reverted_by = actor
            s.add(record)
            await s.commit()
        await self.bus.publish(Event("customer.unmerged", {
            "merge_id": merge_id, "source_customer_id": record.source_customer_id,
            "target_customer_id": record.target_customer_id, "actor": actor}))
        return record

    async def history(self, customer_id: str) -> list[CustomerMerge]:
        async with self.db.session() as s:
            return list(await s.exec(select(CustomerMerge).where(
                (CustomerMerge.source_customer_id == customer_id)
                | (CustomerMerge.target_customer_id == customer_id))
                .order_by(col(CustomerMerge.merged_at))))
