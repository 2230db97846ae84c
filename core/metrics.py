"""Prometheus metrics shared by every package, registered once per process: the one place
where a metric is defined (docs/kpis.md lists them with what an operator reads in them).

Packages record with one call (`count_published`, `message_send_outcome`,
`webhook_rejected`); the gauges that describe a state (queues, agents, calls, RTP, bus
lag, DB pool) are set just before each scrape by the refreshers the composition root
registers (`add_refresher`), so nothing polls in between.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

http_requests = Counter("centrale_http_requests_total", "HTTP requests handled",
                        ["method", "route", "status"], registry=REGISTRY)
http_latency = Histogram("centrale_http_request_seconds", "HTTP request latency",
                         ["route"], registry=REGISTRY,
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
events_published = Counter("centrale_events_published_total",
                           "Domain events published on the bus by this node", ["topic"],
                           registry=REGISTRY)
config_reloads = Counter("centrale_config_reloads_total", "Config reloads",
                         ["result"], registry=REGISTRY)
up_since = Gauge("centrale_start_time_seconds", "Unix time this process started",
                 registry=REGISTRY)

# ---- queues (counters from the ACD's events on the node that owns the task) ----------
queue_entered = Counter("centrale_queue_entered_total", "Contacts that entered a queue",
                        ["queue", "channel"], registry=REGISTRY)
queue_offered = Counter("centrale_queue_offered_total",
                        "Contacts whose wait ended (answered + abandoned + exited)",
                        ["queue", "channel"], registry=REGISTRY)
queue_answered = Counter("centrale_queue_answered_total", "Contacts answered by an agent",
                         ["queue", "channel"], registry=REGISTRY)
queue_abandoned = Counter("centrale_queue_abandoned_total",
                          "Contacts that left before an agent answered",
                          ["queue", "channel", "short"], registry=REGISTRY)
queue_waiting = Gauge("centrale_queue_waiting", "Contacts waiting now", ["queue"],
                      registry=REGISTRY)
queue_oldest_wait = Gauge("centrale_queue_oldest_wait_seconds",
                          "Wait of the longest-waiting contact now", ["queue"],
                          registry=REGISTRY)
queue_service_level = Gauge("centrale_queue_service_level_ratio",
                            "Answered within the threshold / offered, since the ACD started "
                            "counting (NaN when nothing was offered)", ["queue"],
                            registry=REGISTRY)
agents_by_state = Gauge("centrale_agents", "Agents per state", ["state"], registry=REGISTRY)

# ---- voice --------------------------------------------------------------------------
calls_in_progress = Gauge("centrale_calls_in_progress", "Calls this node holds",
                          ["backend"], registry=REGISTRY)
rtp_packets_lost = Counter("centrale_rtp_packets_lost_total",
                           "Inbound RTP packets missing by sequence number (sip: counted by "
                           "the embedded core; asterisk: the cumulative loss of Asterisk's "
                           "RTCP reports, AMI RTCPSent)", ["backend"], registry=REGISTRY)
rtp_late_sends = Counter("centrale_rtp_late_sends_total",
                         "Outbound RTP send rounds 20 ms or more behind schedule (embedded "
                         "core; Asterisk reports jitter, not late sends)", ["backend"],
                         registry=REGISTRY)
rtp_jitter = Gauge("centrale_rtp_jitter_seconds",
                   "Largest interarrival jitter in the RTCP reports of the last scrape "
                   "interval (Asterisk backend)", ["backend"], registry=REGISTRY)
for _backend in ("sip", "asterisk"):  # present from the first scrape, at 0
    rtp_packets_lost.labels(_backend)
rtp_late_sends.labels("sip")
calls_refused = Counter("centrale_calls_refused_total",
                        "New inbound calls answered 503 with Retry-After because the node "
                        "could not take them (setup_backlog: too many calls in setup; "
                        "max_calls: the node's call limit)", ["reason"], registry=REGISTRY)
voice_backend_up = Gauge("centrale_voice_backend_up", "1 when the voice backend is usable",
                         ["backend"], registry=REGISTRY)
# recordings (docs/recording.md): a failed one is a call that went on unrecorded
recordings_started = Counter("centrale_recordings_started_total",
                             "Recordings started (calls and voicemail)", ["backend", "kind"],
                             registry=REGISTRY)
recordings_failed = Counter("centrale_recordings_failed_total",
                            "Recordings that failed (disk full, not writable); the call "
                            "went on", ["backend", "kind"], registry=REGISTRY)
recordings_active = Gauge("centrale_recordings_active", "Recordings being written now",
                          registry=REGISTRY)

# ---- digital channels ---------------------------------------------------------------
messages = Counter("centrale_messages_total", "Messages per channel and direction",
                   ["channel", "direction"], registry=REGISTRY)
messages_out = Counter("centrale_messages_out_total",
                       "Outbound sends per channel and outcome (sent, failed, refused)",
                       ["channel", "outcome"], registry=REGISTRY)
messages_delivery_failed = Counter("centrale_messages_delivery_failed_total",
                                   "Delivery reports saying a sent message failed",
                                   ["provider"], registry=REGISTRY)
webhook_rejects = Counter("centrale_webhook_rejects_total",
                          "Inbound webhooks refused, per channel and reason",
                          ["channel", "reason"], registry=REGISTRY)

# ---- infrastructure -----------------------------------------------------------------
inbox_in_hand = Gauge("centrale_inbox_messages_in_hand",
                      "Inbound messages this node has claimed and is routing now",
                      registry=REGISTRY)
bus_lag = Gauge("centrale_bus_lag_events",
                "Events published but not yet acknowledged, per consumer group",
                ["group"], registry=REGISTRY)
db_pool = Gauge("centrale_db_pool_connections", "Database pool connections by use",
                ["use"], registry=REGISTRY)

_QUEUE_TOPICS = {"task.accepted": "answered", "task.abandoned": "abandoned",
                 "task.exited": "exited"}

Refresher = Callable[[], Awaitable[None]]
_refreshers: dict[str, Refresher] = {}


# The labelled child per topic, looked up once: `labels()` (~6 µs: a lock, a tuple, a
# dict) ran for every event, 13 per call. Children live as long as the counter (nothing
# removes a topic's series).
_published_by_topic: dict[str, Any] = {}


def count_published(topic: str, payload: dict[str, Any]) -> None:
    """Called by the bus for every event this node publishes: counts it, and the events
    that are themselves figures (contacts answered, messages in) by their labels."""
    child = _published_by_topic.get(topic)
    if child is None:
        child = _published_by_topic[topic] = events_published.labels(topic)
    child.inc()
    try:
        if topic.startswith("task."):
            queue, channel = str(payload.get("queue_id")), str(payload.get("channel"))
            if topic == "task.enqueued":
                queue_entered.labels(queue, channel).inc()
            elif (kind := _QUEUE_TOPICS.get(topic)) is not None:
                queue_offered.labels(queue, channel).inc()
                if kind == "answered":
                    queue_answered.labels(queue, channel).inc()
                elif kind == "abandoned":
                    short = "true" if payload.get("short") else "false"
                    queue_abandoned.labels(queue, channel, short).inc()
        elif topic == "conversation.message":
            messages.labels(str(payload.get("channel")), str(payload.get("direction"))).inc()
        elif topic == "message.status" and payload.get("failed"):
            messages_delivery_failed.labels(str(payload.get("provider"))).inc()
    except Exception:  # a metric must never break a publish
        log.exception("counting %s failed", topic)


def message_send_outcome(channel: str, outcome: str) -> None:
    messages_out.labels(channel, outcome).inc()


def webhook_rejected(channel: str, status: int) -> None:
    reason = {400: "malformed", 401: "signature", 403: "signature", 413: "too_large",
              415: "content_type", 429: "rate_limited"}.get(status, f"http_{status}")
    webhook_rejects.labels(channel, reason).inc()


def add_refresher(name: str, refresher: Refresher) -> None:
    _refreshers[name] = refresher


def remove_refresher(name: str) -> None:
    _refreshers.pop(name, None)


async def refresh() -> None:
    for name, refresher in list(_refreshers.items()):
        try:
            await refresher()
        except Exception:
            log.exception("metrics refresher %s failed", name)


def render() -> bytes:
    return generate_latest(REGISTRY)
