"""queues: the ACD — one routing engine for voice and digital tasks.

Public surface: `AcdEngine` (queues.engine), the snapshots in queues.model, the errors in
queues.errors, the store port in queues.store and the publisher port in queues.ports.
See docs/acd.md.
"""

from queues.engine import AcdEngine
from queues.errors import AcdError
from queues.model import AgentView, Offer, Task, WrapUp
from queues.ports import CollectingPublisher, EventPublisher, QueueingPort
from queues.store import AcdStore, InMemoryAcdStore, SqlAcdStore

__all__ = [
    "AcdEngine",
    "AcdError",
    "AcdStore",
    "AgentView",
    "CollectingPublisher",
    "EventPublisher",
    "InMemoryAcdStore",
    "Offer",
    "QueueingPort",
    "SqlAcdStore",
    "Task",
    "WrapUp",
]
