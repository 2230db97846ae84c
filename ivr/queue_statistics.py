"""The ACD's live figures as the IVR's `QueueStatisticsPort`.

Conditions such as `queue_stats.hg1_sales.available_agents == 0` (Avaya's `goto step N
if available-agents in skill 1 = 0`) read these. The figures come from the engine's
public `stats()` (the same figures the wallboard shows), so on a multi-node site they
are this node's view, as the wallboard's are (docs/acd.md).
"""

from __future__ import annotations

from ivr.ports import QueueStatistics
from queues.engine import AcdEngine

__all__ = ["AcdQueueStatistics"]


class AcdQueueStatistics:
    def __init__(self, acd: AcdEngine) -> None:
        self.acd = acd

    async def statistics(self, queue_id: str) -> QueueStatistics | None:
        figures = self.acd.stats(agents=False)["queues"].get(queue_id)
        if figures is None:  # unknown or closed queue
            return None
        by_state: dict[str, int] = figures.get("agents", {})
        staffed = sum(n for state, n in by_state.items() if state != "logged_out")
        try:
            expected = await self.acd.queue_estimated_wait(queue_id, "voice")
        except Exception:  # a queue without voice: no estimate
            expected = None
        return QueueStatistics(
            available_agents=by_state.get("available", 0), staffed_agents=staffed,
            calls_queued=int(figures.get("waiting", 0)),
            oldest_wait=float(figures.get("oldest_wait_seconds", 0.0)),
            expected_wait=expected)
