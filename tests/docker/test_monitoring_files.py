"""Prometheus and Grafana in the compose site: Prometheus scrapes every node's /metrics,
and every metric the dashboard queries is one Centrale defines (core/metrics.py) — a
renamed metric fails here instead of leaving an empty panel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from core import metrics
from tests.docker.test_deploy_files import DOCKER, NODES, load_compose

ENV = {"POSTGRES_PASSWORD": "s3cret", "GRAFANA_ADMIN_PASSWORD": "s3cret"}
DASHBOARD = DOCKER / "grafana" / "centrale.json"


def defined_metric_names() -> set[str]:
    names = set()
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
    # labelled families with no child yet expose no sample: take their declared names
    for collector in list(metrics.REGISTRY._collector_to_names):
        names.update(metrics.REGISTRY._collector_to_names[collector])
    return names


def test_prometheus_scrapes_every_node() -> None:
    compose = load_compose(ENV)
    prom = compose["services"]["prometheus"]
    (config_mount,) = [v for v in prom["volumes"] if isinstance(v, dict)
                       and v.get("target") == "/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((DOCKER / config_mount["source"]).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{node}:8080" for node in NODES}
    # the UIs are for the operator's machine, not the world
    for name in ("prometheus", "grafana"):
        for port in compose["services"][name]["ports"]:
            assert str(port.get("host_ip", port) if isinstance(port, dict) else port
                       ).startswith("127.0.0.1"), (name, port)


def test_grafana_is_provisioned_with_the_dashboard() -> None:
    compose = load_compose(ENV)
    mounts = {v["target"]: Path(DOCKER / v["source"]).resolve()
              for v in compose["services"]["grafana"]["volumes"] if isinstance(v, dict)
              and v.get("type") == "bind"}
    assert mounts["/var/lib/grafana/dashboards/centrale.json"] == DASHBOARD.resolve()
    providers = yaml.safe_load((mounts["/etc/grafana/provisioning"] / "dashboards" /
                                "centrale.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_dashboard_query_uses_a_defined_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][0]["query"]["query"])
    used = {m for e in exprs for m in re.findall(r"\bcentrale_[a-z_]+", e)}
    defined = defined_metric_names()
    assert used, "the dashboard queries nothing"
    assert used <= defined, used - defined
    wanted = {"centrale_queue_waiting", "centrale_queue_oldest_wait_seconds",
              "centrale_queue_service_level_ratio", "centrale_queue_offered_total",
              "centrale_queue_answered_total", "centrale_queue_abandoned_total",
              "centrale_agents", "centrale_calls_in_progress",
              "centrale_rtp_packets_lost_total", "centrale_messages_total",
              "centrale_webhook_rejects_total", "centrale_bus_lag_events",
              "centrale_db_pool_connections"}
    assert wanted <= used, wanted - used
