"""ACD state shared between nodes through Redis (see docs/deploy.md, "Shared ACD state").

The in-memory engine (queues.engine, with `shared=`; see queues.cluster) decides;
`SharedAcdState` confirms each decision atomically cluster-wide and hands a dead node's
tasks to a live one; `attach_shared_state` / `SharedAcdService` wire it to a node.
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
from queues.shared.wiring import SharedAcdService, acd_prefix, attach_shared_state

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
    "SharedAcdService",
    "SharedAcdState",
    "Withdrawn",
    "acd_prefix",
    "attach_shared_state",
]
