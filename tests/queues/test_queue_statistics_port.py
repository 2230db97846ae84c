"""The ACD's figures as the IVR reads them in `queue_stats.<queue>.<figure>` conditions
(ivr.queue_statistics.AcdQueueStatistics) on a real AcdEngine."""

from __future__ import annotations

import pytest
from acd_helpers import Rig, agent

from ivr.queue_statistics import AcdQueueStatistics

pytestmark = pytest.mark.asyncio


async def test_figures_follow_logins_waiting_calls_and_busy_agents() -> None:
    r = Rig({"queues": [{"id": "q"}], "agents": [agent("a1", ["q"]), agent("a2", ["q"])]})
    port = AcdQueueStatistics(r.engine)
    empty = await port.statistics("q")
    assert empty is not None
    assert (empty.available_agents, empty.staffed_agents, empty.calls_queued,
            empty.expected_wait) == (0, 0, 0, None)
    t1 = await r.enqueue(case_id="k1")
    await r.enqueue(case_id="k2")
    await r.advance(12)
    waiting = await port.statistics("q")
    assert waiting.calls_queued == 2 and waiting.oldest_wait >= 12
    await r.login("a1", "a2")
    await r.answer(t1.id)
    busy = await port.statistics("q")
    # one agent on the call, the other being offered k2 (not free), k2 still waiting
    assert (busy.staffed_agents, busy.available_agents, busy.calls_queued) == (2, 0, 1)
    assert busy.expected_wait is not None and busy.expected_wait > 0


async def test_an_unknown_queue_has_no_figures() -> None:
    r = Rig({"queues": [{"id": "q"}], "agents": []})
    assert await AcdQueueStatistics(r.engine).statistics("nope") is None
