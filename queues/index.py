"""The indexes that keep routing decisions independent of the number of agents.

- `TaskIndex`: waiting tasks per (queue, channel), split into groups of identical skill
  requirements; each group is a heap ordered by (priority, enqueue time, arrival). An
  agent checks its qualification once per group, not once per task.
- `AgentIndex`: per (queue, channel), a heap of the agents that have free capacity for
  that channel, ordered by the queue's strategy.

Both use lazy deletion: an entry carries the version of its task or agent at push time
and is dropped when it is met stale. Whenever a task's or agent's routing-relevant data
changes, the engine bumps the version and pushes fresh entries. Heaps are compacted
when stale entries outnumber live ones, so memory stays proportional to live objects.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from queues.model import Requirements

# (negative priority, enqueue monotonic time, arrival seq, version, task id)
TaskEntry = tuple[int, float, int, int, str]
# (strategy key fields..., agent idx, version, agent id): flat tuples of atoms, which
# CPython's garbage collector stops tracking — heaps stay cheap for the GC at 4k agents.
AgentEntry = tuple[Any, ...]


class TaskGroup:
    __slots__ = ("heap", "requirements")

    def __init__(self, requirements: Requirements) -> None:
        self.requirements = requirements
        self.heap: list[TaskEntry] = []

    def best(
        self,
        is_live: Callable[[TaskEntry], bool],
        accept: Callable[[str], bool] | None = None,
    ) -> TaskEntry | None:
        """The first live entry in order that `accept` admits; stale entries met on the
        way are dropped, live but refused ones are put back."""
        heap = self.heap
        skipped: list[TaskEntry] = []
        found: TaskEntry | None = None
        while heap:
            entry = heap[0]
            if not is_live(entry):
                heapq.heappop(heap)
                continue
            if accept is None or accept(entry[4]):
                found = entry
                break
            skipped.append(heapq.heappop(heap))
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found


class TaskIndex:
    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], dict[Requirements, TaskGroup]] = {}

    def push(self, queue_id: str, channel: str, requirements: Requirements, entry: TaskEntry,
             is_live: Callable[[TaskEntry], bool]) -> None:
        groups = self._groups.setdefault((queue_id, channel), {})
        group = groups.get(requirements)
        if group is None:
            group = groups[requirements] = TaskGroup(requirements)
        heapq.heappush(group.heap, entry)
        if len(group.heap) > 64 and len(group.heap) % 64 == 0:
            live = [e for e in group.heap if is_live(e)]
            if len(live) * 2 < len(group.heap):
                heapq.heapify(live)
                group.heap = live
            if not live:
                del groups[requirements]

    def groups(self, queue_id: str, channel: str) -> Iterable[TaskGroup]:
        groups = self._groups.get((queue_id, channel))
        return groups.values() if groups else ()


class AgentHeap:
    __slots__ = ("heap",)

    def __init__(self) -> None:
        self.heap: list[AgentEntry] = []

    def best(
        self, is_live: Callable[[AgentEntry], bool], accept: Callable[[str], bool]
    ) -> str | None:
        heap = self.heap
        skipped: list[AgentEntry] = []
        found: str | None = None
        while heap:
            entry = heap[0]
            if not is_live(entry):
                heapq.heappop(heap)
                continue
            if accept(entry[-1]):
                found = entry[-1]
                break
            skipped.append(heapq.heappop(heap))
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found

    def compact(self, is_live: Callable[[AgentEntry], bool]) -> None:
        live = [e for e in self.heap if is_live(e)]
        heapq.heapify(live)
        self.heap = live

    def all_live(self, is_live: Callable[[AgentEntry], bool]) -> list[str]:
        """Every live agent in strategy order (ring-all); stale entries are dropped."""
        live = [e for e in self.heap if is_live(e)]
        live.sort()
        self.heap = list(live)
        return [e[-1] for e in live]


class AgentIndex:
    def __init__(self) -> None:
        self._heaps: dict[tuple[str, str], AgentHeap] = {}

    def heap(self, queue_id: str, channel: str) -> AgentHeap:
        heap = self._heaps.get((queue_id, channel))
        if heap is None:
            heap = self._heaps[(queue_id, channel)] = AgentHeap()
        return heap

