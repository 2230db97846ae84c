"""Live statistics counters and the arithmetic of the figures supervisors read.

Definitions (also in docs/acd.md):
- offered: contacts whose wait in this queue ended — answered + abandoned + exited
  (a contact moved to another queue is counted there, and as `moved_out` here).
- service_level = answered within T / offered.
- service_level_excl_short = answered within T / (offered - short abandons).
- asa = total wait of answered contacts / answered.
- aht = total handle time (accept -> end of wrap-up) / handled.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(slots=True)
class Counters:
    entered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    exited: int = 0
    moved_out: int = 0
    offers: int = 0  # offers made to agents (ring-all counts each agent)
    missed: int = 0
    rejected: int = 0
    handled: int = 0  # wrap-up ended
    wait_answered_total: float = 0.0
    handle_total: float = 0.0

    @property
    def offered(self) -> int:
        return self.answered + self.abandoned + self.exited

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        offered = self.offered
        out["offered"] = offered
        out["service_level"] = ratio(self.answered_in_sl, offered)
        out["service_level_excl_short"] = ratio(
            self.answered_in_sl, offered - self.short_abandoned
        )
        out["asa"] = ratio(self.wait_answered_total, self.answered)
        out["aht"] = ratio(self.handle_total, self.handled)
        return out


_FIELDS = tuple(f.name for f in fields(Counters))


def ratio(num: float, den: float) -> float | None:
    """None when there is nothing to divide by: a supervisor sees "—", not 0 % or 100 %."""
    return num / den if den > 0 else None


def occupancy(time_in: dict[str, float]) -> float | None:
    """Time handling (busy + wrap-up) over time handling or available."""
    handling = time_in.get("busy", 0.0) + time_in.get("wrap_up", 0.0)
    return ratio(handling, handling + time_in.get("available", 0.0))
