"""Prometheus metrics shared by every package, registered once per process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

http_requests = Counter("centrale_http_requests_total", "HTTP requests handled",
                        ["method", "route", "status"], registry=REGISTRY)
http_latency = Histogram("centrale_http_request_seconds", "HTTP request latency",
                         ["route"], registry=REGISTRY,
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
events_published = Counter("centrale_events_published_total", "Domain events published",
                           ["topic"], registry=REGISTRY)
config_reloads = Counter("centrale_config_reloads_total", "Config reloads",
                         ["result"], registry=REGISTRY)
up_since = Gauge("centrale_start_time_seconds", "Unix time this process started",
                 registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
