"""Config loading: the demo loads; every kind of mistake is reported as file:line."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from config import ConfigError, load_config, load_config_with_sources

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo"


def write(dir_: Path, name: str, text: str) -> Path:
    path = dir_ / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "cfg"
    shutil.copytree(DEMO, dest)
    return dest


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(directory, env={})
    return [str(i) for i in info.value.issues]


def test_the_demo_config_loads() -> None:
    config = load_config(DEMO, env={})
    assert {q.id for q in config.queues} == {"sales", "support"}
    assert len(config.agents) == 4
    assert config.flows[0].languages == ["nl", "en"]
    assert config.server.timezone == "Europe/Amsterdam"
    assert config.channels.whatsapp is not None and config.channels.webchat is not None


def test_secrets_come_from_the_environment_and_are_masked(demo_copy: Path) -> None:
    config = load_config(demo_copy, env={"CENTRALE_WHATSAPP_APP_SECRET": "s3cr3t"})
    assert config.channels.whatsapp is not None
    assert config.channels.whatsapp.app_secret.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(config) and "s3cr3t" not in str(config.model_dump())


def test_missing_environment_variable_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", """
        skills: [{id: sales}]
        queues: [{id: q, skills: {sales: 1}}]
        channels:
          whatsapp:
            queue: q
            phone_number_id: "1"
            access_token: ${WA_TOKEN}
            app_secret: x
            verify_token: y
    """)
    [err] = errors_of(tmp_path)
    assert err.endswith("a.yaml:7: channels.whatsapp.access_token: environment variable "
                        "WA_TOKEN is not set")


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", """
        queues:
          - id: sales
            skills: {sales: 1
        agents: []
    """)
    [err] = errors_of(tmp_path)
    assert "bad.yaml:" in err and "YAML syntax" in err


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "dup.yaml", """
        server:
          name: a
          name: b
    """)
    [err] = errors_of(tmp_path)
    assert "dup.yaml:" in err and "duplicate key" in err


def test_unknown_key_and_unknown_section(tmp_path: Path) -> None:
    write(tmp_path, "q.yaml", """
        skills: [{id: sales}]
        queues:
          - id: sales
            strategy: longest_idle
            wrapup_seconds: 30
        queus: []
    """)
    errs = errors_of(tmp_path)
    assert any("q.yaml:6: queus: unknown section (did you mean 'queues'?)" in e for e in errs)
    assert any("q.yaml:5: queues[sales].wrapup_seconds: unknown key 'wrapup_seconds'" in e
               for e in errs), errs


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    write(tmp_path, "q.yaml", """
        queues:
          - id: sales
            rona_seconds: soon
    """)
    [err] = errors_of(tmp_path)
    assert "q.yaml:3: queues[sales].rona_seconds:" in err and "number" in err


def test_duplicate_ids_across_files_name_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "queues:\n  - id: sales\n")
    write(tmp_path, "b.yaml", "queues:\n  - id: support\n  - id: sales\n")
    [err] = errors_of(tmp_path)
    assert "b.yaml:3: queues[sales].id: duplicate id 'sales' (first at" in err
    assert "a.yaml:2)" in err


def test_dangling_references(tmp_path: Path) -> None:
    write(tmp_path, "acd.yaml", """
        skills: [{id: sales}]
        queues:
          - id: sales
            skills: {salse: 1}
        agents:
          - id: anna
            name: Anna
            queues: [sales, billing]
        numbers:
          - {number: "+31201234567", flow: mian}
    """)
    errs = errors_of(tmp_path)
    assert any("acd.yaml:4: queues[sales].skills.salse: unknown skill 'salse' "
               "(did you mean 'sales'?)" in e for e in errs), errs
    assert any("acd.yaml:8: agents[anna].queues: unknown queue 'billing'" in e for e in errs)
    assert any("acd.yaml:10: numbers[+31201234567].flow: unknown flow 'mian'" in e
               for e in errs), errs


def test_ivr_node_pointing_at_a_missing_node(demo_copy: Path) -> None:
    flow = demo_copy / "flows" / "main.yaml"
    flow.write_text(flow.read_text().replace("open: known_customer", "open: known_custmer"))
    errs = errors_of(demo_copy)
    assert any("main.yaml:" in e and "known_custmer" in e for e in errs), errs


def test_non_utf8_file_and_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "latin.yaml").write_bytes("server: {name: caf\xe9}\n".encode("latin-1"))
    [err] = errors_of(tmp_path)
    assert "latin.yaml" in err and "not UTF-8" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    [err] = errors_of(empty)
    assert "no *.yaml files" in err


def test_sources_map_values_to_lines() -> None:
    loaded = load_config_with_sources(DEMO, env={})
    file, line = loaded.sources.find(("queues", 0, "wrap_up_seconds"))
    assert file is not None and file.name == "acd.yaml"
    assert line is not None and "wrap_up_seconds" in file.read_text().splitlines()[line - 1]


def test_a_trusted_proxy_that_is_not_an_address_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "server.yaml", """
        server:
          web:
            host: 127.0.0.1
            trusted_proxies: [10.0.0.0/8, proxy.example.com]
    """)
    [err] = errors_of(tmp_path)
    assert err.endswith("server.yaml:4: server.web.trusted_proxies: Value error, "
                        "'proxy.example.com' is not an IP address or CIDR network"), err
