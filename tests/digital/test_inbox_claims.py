"""Two nodes on one PostgreSQL drain one inbox (issue 10): every stored message is handled
exactly once, each contact's messages in order, and the rows a dead node had claimed are
handled by a live node once its lease has run out.

The nodes are two `InboxProcessor`s, each with its own `Database` (its own engine and
connection pool) on the same real PostgreSQL database, as two processes would be.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, update
from sqlmodel import col, select

from core.db import Database
from digital.inbox import InboxProcessor
from digital.store import InboundRecord
from digital.tables import DigitalMessage
from tests.conftest import import_all_tables


@pytest.fixture
async def pg_url(postgres_url: str) -> AsyncIterator[str]:
    """A database of its own: the session's shared test database is dropped and
    recreated by other tests."""
    import psycopg

    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    name = f"centrale_inbox_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url.rsplit("/", 1)[0] + "/" + name
    import_all_tables()
    db = Database(url)
    await db.create_all()
    await db.dispose()
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Handled:
    """What the nodes did, in the order it happened (one event loop: a total order)."""

    log: list[tuple[str, str, str, str]] = field(default_factory=list)  # (event, node, id, who)
    active: dict[str, str] = field(default_factory=dict)  # contact -> node handling it now
    overlaps: list[str] = field(default_factory=list)

    def handler(self, node: str, db: Database) -> Callable[[DigitalMessage],
                                                           Awaitable[None]]:
        async def handle(row: DigitalMessage) -> None:
            contact = row.sender or row.id
            if contact in self.active:  # two messages of one contact at the same time
                self.overlaps.append(f"{row.id} on {node} while {self.active[contact]}")
            self.active[contact] = node
            self.log.append(("start", node, row.id, contact))
            await asyncio.sleep(random.uniform(0, 0.004))  # the routing's database waits
            async with db.session() as s:
                await s.exec(update(DigitalMessage).where(  # type: ignore[call-overload]
                    col(DigitalMessage.id) == row.id).values(processed=True))
                await s.commit()
            del self.active[contact]
            self.log.append(("end", node, row.id, contact))
        return handle


async def store_backlog(db: Database, contacts: int, per_contact: int) -> list[str]:
    """Messages interleaved across contacts, in a known arrival order; returns row ids
    in that order."""
    now = datetime.now(UTC)
    rows = []
    seq = 1_000_000
    for n in range(per_contact):
        for c in range(contacts):
            seq += 1
            rec = InboundRecord("whatsapp", f"wamid.claim.{c}.{n}", "whatsapp", "text",
                                f"3160000{c:04d}", f"message {n}", now)
            rows.append({**rec.row(now), "received_seq": seq})
    async with db.session() as s:
        await (await s.connection()).execute(DigitalMessage.__table__.insert(),  # type: ignore[attr-defined]
                                             rows)
        await s.commit()
    return [r["id"] for r in rows]


async def wait_processed(db: Database, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            async with db.session() as s:
                left = (await s.exec(select(func.count()).select_from(DigitalMessage).where(
                    DigitalMessage.processed == False))).one()  # noqa: E712
            if left == 0:
                return
            await asyncio.sleep(0.05)


def check_exactly_once_in_order(handled: Handled, order: list[str]) -> dict[str, int]:
    starts = [(node, row_id, contact) for ev, node, row_id, contact in handled.log
              if ev == "start"]
    ids = [row_id for _, row_id, _ in starts]
    assert sorted(ids) == sorted(order), "every message handled"
    assert len(ids) == len(set(ids)), "no message handled twice"
    assert handled.overlaps == []
    position = {row_id: i for i, row_id in enumerate(order)}
    by_contact: dict[str, list[int]] = {}
    for _, row_id, contact in starts:
        by_contact.setdefault(contact, []).append(position[row_id])
    for contact, seen in by_contact.items():
        assert seen == sorted(seen), f"{contact}'s messages out of order"
    per_node: dict[str, int] = {}
    for node, _, _ in starts:
        per_node[node] = per_node.get(node, 0) + 1
    return per_node


async def test_two_nodes_drain_one_inbox_exactly_once_in_order(pg_url: str) -> None:
    db_a, db_b = Database(pg_url), Database(pg_url)
    handled = Handled()
    order = await store_backlog(db_a, contacts=12, per_contact=10)
    node_a = InboxProcessor(db_a, handled.handler("a", db_a), node_id="node-a", batch=8,
                            lanes=4)
    node_b = InboxProcessor(db_b, handled.handler("b", db_b), node_id="node-b", batch=8,
                            lanes=4)
    try:
        await asyncio.gather(node_a.start(), node_b.start())
        await wait_processed(db_a)
    finally:
        await asyncio.gather(node_a.stop(), node_b.stop())
        await db_a.dispose()
        await db_b.dispose()
    per_node = check_exactly_once_in_order(handled, order)
    assert set(per_node) == {"a", "b"}, f"both nodes took part: {per_node}"


async def test_a_dead_nodes_claims_are_handled_after_its_lease(pg_url: str) -> None:
    db_dead, db_live = Database(pg_url), Database(pg_url)
    handled = Handled()
    order = await store_backlog(db_live, contacts=5, per_contact=3)
    # The first node claims the first contacts' messages and dies before handling them:
    # its claims stay in the table, it never renews or releases them.
    dead = InboxProcessor(db_dead, handled.handler("dead", db_dead), node_id="node-dead",
                          batch=3, lease_seconds=1.0)
    claimed = await dead._claim()  # the first message of each of three contacts
    await db_dead.dispose()
    assert len(claimed) == 3
    live = InboxProcessor(db_live, handled.handler("live", db_live), node_id="node-live",
                          lease_seconds=1.0)
    try:
        # While the lease runs, the live node takes only contacts the dead node did not
        # touch (here: none of the claimed contacts' messages).
        claimed_contacts = {r.sender for r in claimed}
        await live.run_once()
        early = {contact for ev, _, _, contact in handled.log if ev == "start"}
        assert early and not early & claimed_contacts
        await asyncio.sleep(1.2)  # the dead node's lease runs out
        await live.start()
        await wait_processed(db_live)
    finally:
        await live.stop()
        await db_live.dispose()
    per_node = check_exactly_once_in_order(handled, order)
    assert per_node == {"live": len(order)}
