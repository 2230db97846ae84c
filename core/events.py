"""Domain events: the one shape every package publishes on the bus.

An event is a topic (`case.opened`, `task.offered`, ...) and a JSON-serialisable
payload. Keeping it untyped at the bus level lets the Redis implementation carry it as
it is and lets a consumer on another node read events of packages it does not import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.ids import new_id


@dataclass(frozen=True)
class Event:
    topic: str
    payload: dict[str, Any]
    event_id: str = field(default_factory=new_id)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> str:
        return json.dumps(
            {
                "topic": self.topic,
                "payload": self.payload,
                "event_id": self.event_id,
                "occurred_at": self.occurred_at.isoformat(),
            },
            default=str,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        data = json.loads(raw)
        return cls(
            topic=data["topic"],
            payload=data["payload"],
            event_id=data["event_id"],
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
        )

    def matches(self, pattern: str) -> bool:
        """Topic patterns: exact (`case.opened`), prefix (`case.*`) or everything (`*`)."""
        if pattern == "*":
            return True
        if pattern.endswith(".*"):
            return self.topic.startswith(pattern[:-1])
        return self.topic == pattern
