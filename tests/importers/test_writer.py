"""The YAML writer: whatever text an export holds reads back identically."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from config.importers.writer import dump_yaml

TRICKY = ["yes", "No", "null", "~", "3100", "0201234567", "08:00-17:00", "a: b", "#x",
          "x #y", "M\u00fcller", "", " lead", "trail ", "O'Neill", "1e5", "-x", "[x]", "{x}",
          "@x", "%x", "!x", "*x", "&x", "|", ">", "?x", "0x10", "1_000", "true", ".5",
          "on", "y", "Jansen, Dana", "tab\there", "line\nbreak", '"quoted"', "back\\slash"]


def _load(text: str) -> object:
    return YAML(typ="safe", pure=True).load(text)


def test_tricky_strings_round_trip() -> None:
    data = {"flows": [{"id": "x", "nodes": {s or "empty": {"prompts": [s], "n": 3}}}
                      for s in TRICKY]}
    assert _load(dump_yaml(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12),
                       st.one_of(st.text(max_size=20), st.integers(), st.booleans(),
                                 st.lists(st.text(max_size=8), max_size=3)),
                       max_size=5))
def test_any_plain_data_round_trips(data: dict) -> None:
    assert _load(dump_yaml({"skills": [data]})) == {"skills": [data]}


def _bad_sections() -> dict:
    return {"flows": [{"id": "f", "start": "a",
                       "nodes": {"a": {"type": "queue", "queue": "nowhere"}}}]}


def test_output_that_would_fail_check_config_is_never_written(tmp_path, monkeypatch) -> None:
    import pytest

    from config.importers import writer
    from config.importers.report import MigrationReport

    for limit in (writer.FULL_CHECK_MAX_BYTES, 0):  # real loader, then in-memory checks
        monkeypatch.setattr(writer, "FULL_CHECK_MAX_BYTES", limit)
        out = tmp_path / f"out{limit}"
        with pytest.raises(writer.InvalidOutput, match="unknown queue 'nowhere'"):
            writer.write_output(out, _bad_sections(), MigrationReport("x"), "h", force=False)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
