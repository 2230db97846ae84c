"""`server.demo.enabled` is for the demo only: a config reachable from other machines
(or pointed at database/Redis servers) that enables it while a demo default secret is in
use is refused with file:line, and `centrale demo seed` refuses a config without it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from centrale.cli import main
from config import ConfigError, load_config_with_sources

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
REAL_SECRETS = {"CENTRALE_WHATSAPP_TOKEN": "t0k3n-real", "CENTRALE_WHATSAPP_APP_SECRET":
                "s3cret-real", "CENTRALE_WHATSAPP_VERIFY_TOKEN": "v3rify-real",
                "CENTRALE_DEMO_PASSWORD": "a-long-real-password",
                "CENTRALE_DEMO_SIP_PASSWORD": "sip-real-password"}


def _copy_demo(tmp_path: Path) -> Path:
    target = tmp_path / "site"
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns("prompts"))
    return target


def _line_of(path: Path, text: str, *, after: str = "") -> int:
    lines = path.read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if after in line) if after else 0
    return next(n for n, line in enumerate(lines[start:], start + 1) if text in line)


def _demo_line(centrale: Path) -> int:
    return _line_of(centrale, "enabled: ${CENTRALE_DEMO", after="  demo:")


def _disable_demo(centrale: Path) -> None:
    text = centrale.read_text()
    assert "enabled: ${CENTRALE_DEMO:-true}" in text
    centrale.write_text(text.replace("enabled: ${CENTRALE_DEMO:-true}", "enabled: false"))


def test_the_demo_config_as_shipped_is_valid_and_enables_the_simulator() -> None:
    loaded = load_config_with_sources(DEMO, env={})
    assert loaded.config.server.demo.enabled
    assert loaded.config.channels.whatsapp is not None
    assert loaded.config.channels.whatsapp.queue == "sales"  # anna's queue


def test_demo_on_a_public_address_with_default_secrets_is_refused_at_its_line(
        tmp_path: Path) -> None:
    site = _copy_demo(tmp_path)
    centrale = site / "centrale.yaml"
    centrale.write_text(centrale.read_text().replace("host: 127.0.0.1\n    port: 8080",
                                                     "host: 0.0.0.0\n    port: 8080"))
    with pytest.raises(ConfigError) as caught:
        load_config_with_sources(site, env={})
    [issue] = caught.value.issues
    assert issue.file == centrale
    assert issue.line == _demo_line(centrale)
    assert "demo simulator is enabled on a production config" in issue.message
    assert "'0.0.0.0'" in issue.message
    assert "channels.whatsapp.app_secret" in issue.message
    assert "demo-app-secret" not in str(issue)  # names the setting, never the secret


def test_demo_on_a_public_address_with_real_secrets_is_accepted(tmp_path: Path) -> None:
    site = _copy_demo(tmp_path)
    centrale = site / "centrale.yaml"
    centrale.write_text(centrale.read_text().replace("port: 8080",
                                                     "port: 8080\n    public_url: "
                                                     "https://demo.example.com"))
    loaded = load_config_with_sources(site, env=REAL_SECRETS)
    assert loaded.config.server.web.public_url == "https://demo.example.com"


def test_a_path_only_graph_url_needs_the_demo(tmp_path: Path) -> None:
    site = _copy_demo(tmp_path)
    centrale = site / "centrale.yaml"
    _disable_demo(centrale)
    with pytest.raises(ConfigError) as caught:
        load_config_with_sources(site, env={})
    [issue] = caught.value.issues
    assert issue.file == site / "channels.yaml"
    assert issue.line == _line_of(site / "channels.yaml", "graph_base_url: ")
    assert "needs server.demo.enabled" in issue.message


def test_the_container_turns_the_demo_off_through_the_environment() -> None:
    env = {"CENTRALE_DEMO": "false",
           "CENTRALE_WHATSAPP_GRAPH_URL": "https://graph.facebook.com"}
    config = load_config_with_sources(DEMO, env=env).config
    assert not config.server.demo.enabled
    assert config.channels.whatsapp is not None
    assert config.channels.whatsapp.graph_base_url == "https://graph.facebook.com"
    dockerfile = (DEMO.parents[1] / "docker" / "Dockerfile").read_text()
    compose = (DEMO.parents[1] / "docker" / "compose.yaml").read_text()
    assert "CENTRALE_DEMO=false" in dockerfile and 'CENTRALE_DEMO: "false"' in compose


def test_run_refuses_the_demo_exposed_by_host_with_default_secrets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = _copy_demo(tmp_path)
    args = ["run", "--config", str(site), "--host", "0.0.0.0", "--pid-file",
            str(tmp_path / "pid")]
    assert main(args) == 2
    err = capsys.readouterr().err
    line = _demo_line(site / "centrale.yaml")
    assert f"{site / 'centrale.yaml'}:{line}: server.demo.enabled:" in err
    assert "--host 0.0.0.0" in err and "nothing was started" in err
    assert "demo-sip" not in err  # the settings are named, never the secrets


def test_demo_seed_refuses_a_config_without_the_demo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    site = _copy_demo(tmp_path)
    _disable_demo(site / "centrale.yaml")
    (site / "channels.yaml").write_text((site / "channels.yaml").read_text().replace(
        "-/demo/graph", "-https://graph.facebook.com"))
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "seed", "--config", str(site)]) == 2
    assert "only runs on a demo config" in capsys.readouterr().err
    assert not (tmp_path / "var").exists()  # no database was even created


def test_demo_seed_runs_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CENTRALE_DATABASE_URL", raising=False)
    assert main(["demo", "seed", "--config", str(DEMO)]) == 0
    assert "demo seeded: 3 customers, 5 cases" in capsys.readouterr().out
    assert main(["demo", "seed", "--config", str(DEMO)]) == 0
    assert "already seeded: nothing written" in capsys.readouterr().out
