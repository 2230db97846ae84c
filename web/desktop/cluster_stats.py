"""The wallboard's figures for the whole cluster, from each node's own `stats.updated`.

With several nodes on the shared ACD state, every node publishes `stats.updated` for
the tasks *it owns* (the payload carries its `node_id`; docs/deploy.md). A supervisor
wants the site, not one node, so every node's web layer keeps the latest payload per
node and merges them:

* counts add up: waiting, entered, answered, answered within the service level,
  abandoned (and short), exited, moved, offers, missed, rejected, handled, and the wait
  and handle totals;
* the oldest wait is the maximum;
* service level, ASA and AHT are recomputed over the sums, i.e. each node's figure
  weighted by its own count (offered, answered, handled) — an average of averages
  would let a quiet node weigh as much as a busy one;
* what describes *agents* (per-queue agents by state and occupancy, per-channel
  capacity, load, utilisation) is not summed: every node sees every agent through the
  shared state, so the freshest node's view is taken.

A node's figures are dropped when a peer adopts its tasks (`task.adopted` names the
dead node: its tasks are counted by the adopter from then on) and when nothing came
from it for `stale_after` seconds (it died with nothing to adopt). A payload without
`node_id` (one node, in-process ACD) is passed through untouched, so a single node's
wallboard is exactly what it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SUMMED = ("entered", "answered", "answered_in_sl", "abandoned", "short_abandoned",
          "exited", "moved_out", "offers", "missed", "rejected", "handled",
          "wait_answered_total", "handle_total", "waiting", "offered")
OLDEST = ("oldest_wait_seconds", "oldest_wait")
# ratio: (its weight, the count subtracted from the weight), recomputed as a weighted mean
WEIGHTED = {"service_level": ("offered", None),
            "service_level_excl_short": ("offered", "short_abandoned"),
            "asa": ("answered", None), "aht": ("handled", None)}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def merge_figures(figs: list[dict[str, Any]]) -> dict[str, Any]:
    """One queue's (or channel's) figures from several nodes; `figs[0]` is the freshest
    node's and gives everything that is not a count (agents, capacity, thresholds)."""
    if len(figs) == 1:
        return dict(figs[0])
    out = dict(figs[0])
    for name in SUMMED:
        values = [_num(f.get(name)) for f in figs]
        if any(v is not None for v in values):
            total = sum(v for v in values if v is not None)
            out[name] = int(total) if all(isinstance(f.get(name, 0), int) for f in figs) \
                else total
    for name in OLDEST:
        values = [v for f in figs if (v := _num(f.get(name))) is not None]
        if values:
            out[name] = max(values)
    for name, (weight_key, minus) in WEIGHTED.items():
        num = den = 0.0
        seen = False
        for f in figs:
            ratio, weight = _num(f.get(name)), _num(f.get(weight_key))
            if name in f:
                seen = True
            if ratio is None or weight is None:
                continue
            if minus is not None:
                weight -= _num(f.get(minus)) or 0.0
            num += ratio * weight
            den += weight
        if seen:
            out[name] = num / den if den > 0 else None
    return out


def _sections(payloads: list[dict[str, Any]], key: str) -> dict[str, Any]:
    ids: list[str] = []
    for p in payloads:
        for item_id in p.get(key) or {}:
            if item_id not in ids:
                ids.append(item_id)
    return {item_id: merge_figures([p[key][item_id] for p in payloads
                                    if isinstance(p.get(key), dict)
                                    and isinstance(p[key].get(item_id), dict)])
            for item_id in ids}


def merge_node_stats(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Several nodes' `stats()` payloads (freshest first) as one, same shape."""
    if len(payloads) == 1:
        return payloads[0]
    out = dict(payloads[0])
    out["queues"] = _sections(payloads, "queues")
    out["channels"] = _sections(payloads, "channels")
    out["at"] = max(str(p.get("at") or "") for p in payloads) or payloads[0].get("at")
    out["nodes"] = sorted(str(p.get("node_id")) for p in payloads)
    out.pop("node_id", None)
    if "decisions" in out:
        out["decisions"] = sum(int(_num(p.get("decisions")) or 0) for p in payloads)
    return out


class ClusterStats:
    """The latest `stats.updated` per node, and their merge (see the module doc)."""

    def __init__(self, monotonic: Callable[[], float], *, own_node: str | None = None,
                 stale_after: float = 300.0) -> None:
        self._mono = monotonic
        self.own_node = own_node  # this process: never stale while it runs
        self.stale_after = stale_after
        self._latest: dict[str, tuple[float, dict[str, Any]]] = {}  # node -> (seen, payload)
        self._single: dict[str, Any] | None = None  # the last payload without node_id

    def add(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Keep `payload` as its node's latest; return the cluster's figures."""
        node = payload.get("node_id")
        if node is None:
            self._single = payload
            return payload
        self._latest[str(node)] = (self._mono(), payload)
        return self.current()

    def seen(self, node: str | None) -> None:
        """Any event a node published shows it is alive."""
        if node is not None and str(node) in self._latest:
            seen_at, payload = self._latest[str(node)]
            self._latest[str(node)] = (max(seen_at, self._mono()), payload)

    def drop(self, node: str | None) -> None:
        """The node is gone (its tasks were adopted): its figures no longer count."""
        if node is not None and str(node) != self.own_node:
            self._latest.pop(str(node), None)

    def nodes(self) -> list[str]:
        self._expire()
        return sorted(self._latest)

    def current(self, fresh_own: dict[str, Any] | None = None) -> dict[str, Any]:
        """The merged figures; `fresh_own` is this node's `stats()` read just now."""
        if fresh_own is not None:
            if fresh_own.get("node_id") is None:
                return fresh_own
            self._latest[str(fresh_own["node_id"])] = (self._mono(), fresh_own)
        self._expire()
        if not self._latest:
            return self._single or {}
        ordered = sorted(self._latest.values(), key=lambda item: item[0], reverse=True)
        return merge_node_stats([payload for _, payload in ordered])

    def _expire(self) -> None:
        limit = self._mono() - self.stale_after
        for node in [n for n, (seen, _) in self._latest.items()
                     if seen < limit and n != self.own_node]:
            del self._latest[node]

