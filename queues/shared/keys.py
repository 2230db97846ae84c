"""Key names of the shared ACD state, in one place so the Lua scripts and the Python
side cannot drift apart.

Every key starts with the prefix, which by default carries a Redis Cluster hash tag
(`{centrale}`): all keys of one site then live in one slot, which the scripts need,
because they touch keys they compute (an agent's slots while releasing a task's offers).
"""

from __future__ import annotations

DEFAULT_PREFIX = "{centrale}:acd:"


class Keys:
    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"invalid key prefix {prefix!r}")
        self.prefix = prefix

    def agent(self, agent_id: str) -> str:
        """Hash: presence, voice_exclusive, cap:<channel>, load:<channel> (an agent's
        total load is the sum of its channels' loads)."""
        return f"{self.prefix}agent:{agent_id}"

    def slots(self, agent_id: str) -> str:
        """Hash: token (a task id) -> channel, one per capacity slot the agent holds."""
        return f"{self.prefix}agent:{agent_id}:slots"

    @property
    def agent_revisions(self) -> str:
        """Hash: agent id -> revision, bumped by every script that changes the agent."""
        return f"{self.prefix}agent-rev"

    def task(self, task_id: str) -> str:
        """Hash: status, owner, channel, ring_all, agent, data."""
        return f"{self.prefix}task:{task_id}"

    def ended(self, task_id: str) -> str:
        """String with a TTL (a day): the task ended; its id cannot be registered again."""
        return f"{self.prefix}ended:{task_id}"

    def offers(self, task_id: str) -> str:
        """Hash: offer id -> agent id, the task's open offers."""
        return f"{self.prefix}task:{task_id}:offers"

    def node(self, node_id: str) -> str:
        """String with a TTL: the node's lease. Gone = the node is dead."""
        return f"{self.prefix}node:{node_id}"

    @property
    def nodes(self) -> str:
        """Set of node ids that ever held a lease and were not taken over yet."""
        return f"{self.prefix}nodes"

    def owned(self, node_id: str) -> str:
        """Set of task ids the node owns (holds in memory, runs the timers of)."""
        return f"{self.prefix}owned:{node_id}"

    def timers(self, node_id: str) -> str:
        """Sorted set: timer -> due time (epoch ms), the node's timers."""
        return f"{self.prefix}timers:{node_id}"

    def inbox(self, node_id: str) -> str:
        """List: calls forwarded to the node (it owns the task they act on)."""
        return f"{self.prefix}inbox:{node_id}"

    def reply(self, call_id: str) -> str:
        """List (short-lived): the answer to one forwarded call."""
        return f"{self.prefix}reply:{call_id}"

    def lease(self, name: str) -> str:
        """String with a TTL: a named lease (a singleton job)."""
        return f"{self.prefix}lease:{name}"
