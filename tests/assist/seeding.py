"""Resolved cases written the way production writes them (CaseService: the customer's
messages, the agent's reply with its agent id, the wrap-up, the close), and a running
AssistService that learns them from the bus."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assist import AssistService
from cases import CaseService, IdentityRef
from config.schema import AssistModel, AssistSettings
from core.bus import InMemoryBus
from core.clock import SystemClock
from core.db import Database


def make_assist(db: Database, *, knowledge_dir: Path, model: Any = None,
                model_settings: AssistModel | None = None,
                wrap_up_codes: Sequence[tuple[str, str]] = (),
                default_language: str = "en") -> tuple[AssistService, CaseService, InMemoryBus]:
    bus = InMemoryBus()
    clock = SystemClock()
    cases = CaseService(db, bus, clock, default_region="NL")
    settings = AssistSettings(model=model_settings or AssistModel(), commit_interval_seconds=0.05)
    assist = AssistService(settings, cases=cases, db=db, bus=bus, clock=clock,
                           knowledge_dir=knowledge_dir, default_language=default_language,
                           wrap_up_codes=wrap_up_codes, model=model)
    return assist, cases, bus


async def settled(assist: AssistService, bus: InMemoryBus, timeout: float = 10.0) -> None:
    """Every event so far handled by assist's consumer and the index committed — waited
    on the bus's own cursor, not a guessed sleep."""
    async with asyncio.timeout(timeout):
        while True:
            group = bus._groups.get("assist")
            if group is not None and group.cursor == bus._end and not group.pending:
                break
            await asyncio.sleep(0.005)
    await assist.commit()


async def resolved_case(cases: CaseService, assist: AssistService, *, number: str,
                        asked: Sequence[str], reply: str, queue: str = "support",
                        language: str | None = None, agent: str = "anna",
                        wrap_up: str | None = None, channel: str = "whatsapp") -> str:
    res = await cases.resolve(IdentityRef("whatsapp", number))
    if language:
        await cases.update_customer(res.customer.id, language=language)
    await assist.remember_queue(res.case.id, queue)
    for text in asked:
        await cases.add_timeline(res.case.id, kind="message", channel=channel,
                                 direction="inbound", body=text)
    await cases.add_timeline(res.case.id, kind="message", channel=channel,
                             direction="outbound", body=reply,
                             meta={"agent_id": agent, "message_id": f"m-{number}"})
    if wrap_up:
        await cases.add_timeline(res.case.id, kind="wrap_up", channel=channel,
                                 direction="internal", body=f"Wrap-up: {wrap_up}",
                                 meta={"code": wrap_up, "agent_id": agent})
    await cases.close_case(res.case.id)
    return res.case.id


async def open_case(cases: CaseService, *, number: str, asked: Sequence[str],
                    language: str | None = None, channel: str = "whatsapp") -> str:
    res = await cases.resolve(IdentityRef("whatsapp", number))
    if language:
        await cases.update_customer(res.customer.id, language=language)
    for text in asked:
        await cases.add_timeline(res.case.id, kind="message", channel=channel,
                                 direction="inbound", body=text)
    return res.case.id
