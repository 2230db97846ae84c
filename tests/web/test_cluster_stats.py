"""The wallboard across nodes: each node's own `stats.updated` kept per node_id and
merged (counts add, oldest wait is the max, service level / ASA / AHT weighted by their
counts), dead nodes dropped, the single node untouched."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from core.events import Event
from queues.stats import Counters
from web.desktop.cluster_stats import ClusterStats, merge_node_stats
from web.desktop.figures import normalise_stats


def queue_fig(*, waiting: int, oldest: float, entered: int, answered: int, in_sl: int,
              abandoned: int, wait_total: float, handled: int, handle_total: float,
              agents: dict[str, int]) -> dict[str, Any]:
    """A queue's figures the way queues.AcdEngine.stats() builds them."""
    c = Counters(entered=entered, answered=answered, answered_in_sl=in_sl,
                 abandoned=abandoned, handled=handled, wait_answered_total=wait_total,
                 handle_total=handle_total)
    fig = c.figures()
    fig.update(waiting=waiting, oldest_wait_seconds=oldest, agents=agents, occupancy=0.5,
               service_level_seconds=20)
    return fig


def node_payload(node: str, at: str, sales: dict[str, Any], *,
                 capacity: int = 10) -> dict[str, Any]:
    chan = Counters(answered=sales["answered"], handled=sales["handled"]).figures()
    chan.update(waiting=sales["waiting"], oldest_wait_seconds=sales["oldest_wait_seconds"],
                capacity=capacity, load=3, utilisation=3 / capacity)
    return {"at": at, "decisions": 5, "node_id": node, "queues": {"sales": sales},
            "channels": {"voice": chan}}


A = queue_fig(waiting=3, oldest=40.0, entered=20, answered=10, in_sl=9, abandoned=0,
              wait_total=100.0, handled=10, handle_total=1000.0,
              agents={"available": 2, "busy": 1})
B = queue_fig(waiting=2, oldest=95.0, entered=14, answered=2, in_sl=0, abandoned=2,
              wait_total=120.0, handled=1, handle_total=400.0,
              agents={"available": 1, "busy": 2})


def test_counts_add_oldest_is_the_max_and_ratios_are_weighted_by_their_counts() -> None:
    merged = merge_node_stats([node_payload("b", "2026-11-26T10:00:02+00:00", B),
                               node_payload("a", "2026-11-26T10:00:01+00:00", A)])
    q = merged["queues"]["sales"]
    assert q["waiting"] == 5 and q["entered"] == 34 and q["answered"] == 12
    assert q["abandoned"] == 2 and q["offered"] == 14
    assert q["oldest_wait_seconds"] == 95.0
    # Service level: (9 + 0) / (10 + 4) offered, not the mean of 90 % and 0 %.
    assert q["service_level"] == pytest.approx(9 / 14)
    # ASA over all answered: (100 + 120) / 12; AHT over all handled: 1400 / 11.
    assert q["asa"] == pytest.approx(220 / 12)
    assert q["aht"] == pytest.approx(1400 / 11)
    # Agents are seen by every node: the freshest node's view, not a sum.
    assert q["agents"] == {"available": 1, "busy": 2}
    voice = merged["channels"]["voice"]
    assert voice["waiting"] == 5 and voice["capacity"] == 10 and voice["load"] == 3
    assert merged["at"] == "2026-11-26T10:00:02+00:00" and merged["nodes"] == ["a", "b"]
    # What the wallboard draws from it.
    row = normalise_stats(merged)["queues"][0]
    assert (row["waiting"], row["oldest_wait"], row["abandoned"]) == (5, 95.0, 2)
    assert row["agents_by_state"] == {"available": 1, "busy": 2}


def test_a_ratio_without_any_count_behind_it_stays_unknown() -> None:
    idle = queue_fig(waiting=1, oldest=3.0, entered=1, answered=0, in_sl=0, abandoned=0,
                     wait_total=0.0, handled=0, handle_total=0.0, agents={})
    merged = merge_node_stats([node_payload("a", "t1", idle), node_payload("b", "t0", idle)])
    q = merged["queues"]["sales"]
    assert q["service_level"] is None and q["asa"] is None and q["aht"] is None
    assert q["waiting"] == 2


def test_single_node_figures_pass_through_untouched() -> None:
    clock = [0.0]
    stats = ClusterStats(lambda: clock[0])
    payload = node_payload("a", "t", A)
    del payload["node_id"]  # in-process ACD: no node id
    before = json.dumps(payload, sort_keys=True)
    assert stats.add(payload) is payload
    assert json.dumps(payload, sort_keys=True) == before
    assert stats.current() is payload
    # One node on the shared state: its own figures, as they are.
    one = node_payload("a", "t", A)
    assert ClusterStats(lambda: 0.0).add(one) == one


def test_a_node_not_heard_of_for_a_while_is_dropped_but_this_node_never() -> None:
    clock = [0.0]
    stats = ClusterStats(lambda: clock[0], own_node="a", stale_after=60)
    stats.add(node_payload("a", "t0", A))
    stats.add(node_payload("b", "t0", B))
    assert stats.current()["queues"]["sales"]["waiting"] == 5
    clock[0] = 50.0
    stats.seen("b")  # any event from b: alive
    clock[0] = 100.0
    assert stats.nodes() == ["a", "b"]
    clock[0] = 200.0  # b silent for 150 s, a for 200 s (but a is this node)
    assert stats.nodes() == ["a"]
    assert stats.current()["queues"]["sales"]["waiting"] == 3
    stats.drop("a")  # this node is never dropped
    assert stats.nodes() == ["a"]


async def _stats_frame(ws) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            frame = json.loads((await ws.receive()).data)
            if frame["type"] == "stats":
                return frame["payload"]


async def test_wallboard_frames_show_the_cluster_and_forget_an_adopted_node(web_env) -> None:
    h = web_env.h
    await web_env.login("sam")
    ws = await web_env.client.ws_connect("/ws")
    await h.bus.publish(Event("stats.updated", node_payload("node-1", "t1", A)))
    first = await _stats_frame(ws)
    assert first["queues"][0]["waiting"] == 3
    await h.bus.publish(Event("stats.updated", node_payload("node-2", "t2", B)))
    both = await _stats_frame(ws)
    assert both["queues"][0]["waiting"] == 5
    assert both["queues"][0]["service_level"] == pytest.approx(9 / 14)
    # node-2 died: node-1 adopted its tasks and counts them from now on.
    await h.bus.publish(Event("task.adopted", {"task_id": "t", "from_node": "node-2",
                                               "node_id": "node-1"}))
    grown = {**A, "waiting": 5}
    await h.bus.publish(Event("stats.updated", node_payload("node-1", "t3", grown)))
    after = await _stats_frame(ws)
    assert after["queues"][0]["waiting"] == 5  # not 7: node-2's old figures are gone
    await ws.close()
