"""The arithmetic of the contact figures (definitions in docs/kpis.md).

`Totals` holds additive sums only, so that rows of any interval or grouping can be added
together and the ratios are computed once, at the end (averaging averages would be
wrong). The ratios agree with the ACD's live figures (queues/stats.py) for the same
contacts: offered = answered + abandoned + exited; SL = answered within the queue's
threshold / offered; ASA = wait of answered / answered.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from queues.stats import ratio

SL_VARIANTS = ("offered", "offered_excl_short", "answered")


@dataclass(slots=True)
class Totals:
    contacts: int = 0  # entered a queue (still waiting ones included)
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    exited: int = 0
    handled: int = 0
    transferred: int = 0
    wait_answered_total: float = 0.0
    talk_total: float = 0.0  # of handled contacts, hold included
    hold_total: float = 0.0
    wrap_total: float = 0.0

    def add(self, other: Totals) -> None:
        for f in _FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    @property
    def offered(self) -> int:
        return self.answered + self.abandoned + self.exited

    def figures(self, sl_variant: str = "offered") -> dict[str, Any]:
        # Called once per report row (30,000 rows for a month of quarter hours by
        # queue): plain arithmetic, no helper calls.
        answered, handled = self.answered, self.handled
        offered = answered + self.abandoned + self.exited
        counted = offered - self.short_abandoned
        in_sl = self.answered_in_sl
        sl_offered = in_sl / offered if offered > 0 else None
        sl_excl = in_sl / counted if counted > 0 else None
        sl_answered = in_sl / answered if answered > 0 else None
        headline = (sl_offered if sl_variant == "offered" else
                    sl_excl if sl_variant == "offered_excl_short" else sl_answered)
        return {
            "contacts": self.contacts, "offered": offered, "answered": answered,
            "answered_in_sl": in_sl, "abandoned": self.abandoned,
            "short_abandoned": self.short_abandoned, "exited": self.exited,
            "handled": handled, "transferred": self.transferred,
            "service_level": headline,
            "service_level_offered": sl_offered,
            "service_level_offered_excl_short": sl_excl,
            "service_level_answered": sl_answered,
            "asa_seconds": self.wait_answered_total / answered if answered > 0 else None,
            # Short abandons are neither in the numerator nor in the denominator.
            "abandon_rate": ((self.abandoned - self.short_abandoned) / counted
                             if counted > 0 else None),
            "aht_seconds": ((self.talk_total + self.wrap_total) / handled
                            if handled > 0 else None),
            "avg_talk_seconds": ((self.talk_total - self.hold_total) / handled
                                 if handled > 0 else None),
            "avg_hold_seconds": self.hold_total / handled if handled > 0 else None,
            "avg_wrap_seconds": self.wrap_total / handled if handled > 0 else None,
            "transfer_rate": self.transferred / answered if answered > 0 else None,
        }


_FIELDS = tuple(f.name for f in fields(Totals))
FIGURES = tuple(Totals().figures().keys())


def csat(scores: list[int | None]) -> dict[str, Any]:
    """CSAT: share of 4s and 5s among valid 1–5 answers (no answer is not counted)."""
    valid = [s for s in scores if s is not None]
    return {"answers": len(valid), "no_answer": len(scores) - len(valid),
            "csat": ratio(sum(1 for s in valid if s >= 4), len(valid)),
            "average": ratio(sum(valid), len(valid))}


def nps(scores: list[int | None]) -> dict[str, Any]:
    """NPS: % promoters (9–10) minus % detractors (0–6), from −100 to 100."""
    valid = [s for s in scores if s is not None]
    promoters = sum(1 for s in valid if s >= 9)
    detractors = sum(1 for s in valid if s <= 6)
    score = ratio(100.0 * (promoters - detractors), len(valid))
    return {"answers": len(valid), "no_answer": len(scores) - len(valid),
            "promoters": promoters, "passives": len(valid) - promoters - detractors,
            "detractors": detractors, "nps": score}
