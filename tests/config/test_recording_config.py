"""Recording policy and voicemail stop rules: good values load, bad ones name file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from config import ConfigError, load_config


def write(dir_: Path, name: str, text: str) -> None:
    (dir_ / name).write_text(textwrap.dedent(text).lstrip("\n"))


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(directory, env={})
    return [str(i) for i in info.value.issues]


def test_a_queue_policy_and_the_storage_load(tmp_path: Path) -> None:
    write(tmp_path, "c.yaml", """
        server:
          recordings: {path: /srv/rec, retention_days: 30}
        queues:
          - id: sales
            recording: {mode: always, consent_prompt: recorded, decline_key: "9",
                        retention_days: 365}
          - id: hr
    """)
    config = load_config(tmp_path, env={})
    assert config.queue("sales").recording.mode == "always"
    assert config.queue("sales").recording.decline_key == "9"
    assert config.queue("sales").recording.retention_days == 365
    assert config.queue("hr").recording.mode == "off"  # nothing is recorded unless asked
    assert config.server.recordings.path == "/srv/rec"


def test_an_unknown_mode_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "q.yaml", """
        queues:
          - id: sales
            recording:
              mode: sometimes
    """)
    [err] = errors_of(tmp_path)
    assert "q.yaml:4: queues[sales].recording.mode:" in err
    assert "'off', 'always' or 'on_demand'" in err


def test_retention_must_be_positive_and_decline_needs_consent(tmp_path: Path) -> None:
    write(tmp_path, "q.yaml", """
        queues:
          - id: sales
            recording: {mode: on_demand, retention_days: 0}
          - id: support
            recording: {mode: always, decline_key: "9"}
    """)
    errs = errors_of(tmp_path)
    assert any("q.yaml:3: queues[sales].recording.retention_days:" in e
               and "greater than or equal to 1" in e for e in errs), errs
    assert any("q.yaml:5: queues[support].recording" in e and "decline_key needs a "
               "consent_prompt" in e for e in errs), errs


def test_voicemail_stop_rules_and_their_queue(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", """
        queues:
          - id: sales
        flows:
          - id: main
            start: vm
            nodes:
              vm: {type: voicemail, max_seconds: 60, silence_stop_seconds: 4,
                   end_key: "#", queue: sales}
    """)
    node = load_config(tmp_path, env={}).flow("main").nodes["vm"]
    assert (node.max_seconds, node.silence_stop_seconds, node.end_key, node.queue) == \
        (60, 4, "#", "sales")
    write(tmp_path, "f.yaml", """
        flows:
          - id: main
            start: vm
            nodes:
              vm: {type: voicemail, end_key: "##", queue: nowhere}
    """)
    errs = errors_of(tmp_path)
    assert any("f.yaml:5: flows[main].nodes.vm.end_key" in e for e in errs), errs
