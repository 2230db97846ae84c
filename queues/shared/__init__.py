"""ACD state shared between nodes through Redis (see docs/deploy.md, "Shared ACD state").

The in-memory engine (queues.engine) decides; `SharedAcdState` confirms each decision
atomically cluster-wide and hands a dead node's tasks and timers to a live one.
"""

from queues.shared.keys import DEFAULT_PREFIX, Keys
from queues.shared.lease import Lease, LeaseKeeper
from queues.shared.state import (
    AdoptedTask,
    AgentLoad,
    Claim,
    FencedError,
    NodeIdInUseError,
    Outcome,
    SharedAcdState,
    Withdrawn,
)

__all__ = [
    "DEFAULT_PREFIX",
    "AdoptedTask",
    "AgentLoad",
    "Claim",
    "FencedError",
    "Keys",
    "Lease",
    "LeaseKeeper",
    "NodeIdInUseError",
    "Outcome",
    "SharedAcdState",
    "Withdrawn",
]
