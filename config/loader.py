"""Load a config directory: every `*.yaml` in it (and in `flows/`), merged by section.

Each file holds one or more top-level sections (`queues:`, `agents:`, ...). List
sections may be split across files; mapping sections (`server`, `channels`, `acd`) may
appear once. The YAML is composed with libyaml (PyYAML's C composer, fast on the large
configs an import produces) into nodes that keep their line, so that
every error (syntax, unknown key, wrong type, duplicate id, dangling reference) is
reported as `file:line: path: message`. Nothing is started on an invalid config.

Secrets are never written in the files: a value `${NAME}` is replaced by the
environment variable NAME (an error if unset; `${NAME:-default}` gives a default, which
only the demo uses), so config can be committed and reviewed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from config.errors import ConfigError, ConfigIssue
from config.schema import SECTIONS, CentraleConfig

MAPPING_SECTIONS = {"server", "channels", "acd", "assist"}
_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")

Loc = tuple[Any, ...]


@dataclass
class SourceMap:
    """Where each value of the merged config came from: path tuple -> (file, line)."""

    locations: dict[Loc, tuple[Path, int]] = field(default_factory=dict)

    def find(self, loc: Loc) -> tuple[Path | None, int | None]:
        """The location of the deepest known prefix of `loc`."""
        for n in range(len(loc), -1, -1):
            hit = self.locations.get(tuple(loc[:n]))
            if hit:
                return hit
        return None, None


@dataclass(frozen=True)
class LoadedConfig:
    config: CentraleConfig
    sources: SourceMap
    directory: Path


def load_config(directory: str | Path, *, env: dict[str, str] | None = None) -> CentraleConfig:
    return load_config_with_sources(directory, env=env).config


def load_config_with_sources(
    directory: str | Path, *, env: dict[str, str] | None = None
) -> LoadedConfig:
    directory = Path(directory)
    env = dict(os.environ) if env is None else env
    if not directory.is_dir():
        raise ConfigError([ConfigIssue(directory, None, "", "config directory not found")])
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    files += sorted((directory / "flows").glob("*.yaml")) if (directory / "flows").is_dir() else []
    if not files:
        raise ConfigError([ConfigIssue(directory, None, "", "no *.yaml files in directory")])

    issues: list[ConfigIssue] = []
    merged: dict[str, Any] = {}
    sources = SourceMap()
    section_origin: dict[str, tuple[Path, int]] = {}
    for path in files:
        doc = _parse_file(path, issues)
        if doc is None:
            continue
        if not isinstance(doc, MappingNode):
            issues.append(ConfigIssue(path, _line(doc), "",
                                      "a config file must be a mapping of sections"))
            continue
        for key_node, value_node in _pairs(doc, path, issues):
            key, line = str(key_node.value), _line(key_node)
            if key not in SECTIONS:
                hint = _closest(key, SECTIONS)
                issues.append(
                    ConfigIssue(path, line, key, f"unknown section{hint}; "
                                f"known: {', '.join(SECTIONS)}")
                )
                continue
            if key in MAPPING_SECTIONS:
                if key in merged:
                    first = section_origin[key]
                    issues.append(
                        ConfigIssue(path, line, key,
                                    f"section already given at {first[0]}:{first[1]}")
                    )
                    continue
                merged[key] = _plain(value_node, path, (key,), sources, env, issues)
                section_origin[key] = (path, line)
                sources.locations.setdefault((key,), (path, line))
            else:
                if _is_null(value_node):
                    continue
                if not isinstance(value_node, SequenceNode):
                    issues.append(ConfigIssue(path, line, key, "must be a list"))
                    continue
                items = merged.setdefault(key, [])
                sources.locations.setdefault((key,), (path, line))
                for item_node in value_node.value:
                    idx = len(items)
                    sources.locations[(key, idx)] = (path, _line(item_node))
                    items.append(_plain(item_node, path, (key, idx), sources, env, issues))
    # Validate what did parse even when some files had problems, so one run reports
    # every mistake rather than one at a time.
    try:
        config = CentraleConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(issues + _pydantic_issues(exc, merged, sources)) from None
    if issues:
        raise ConfigError(issues)

    from config.validate import cross_check

    problems = cross_check(config, sources, base_dir=directory)
    if config.assist.enabled:
        from config.knowledge import load_articles

        problems += load_articles(directory / config.assist.knowledge_dir)[1]
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(config, sources, directory)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_constructor = yaml.constructor.SafeConstructor()


def _parse_file(path: Path, issues: list[ConfigIssue]) -> Node | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        issues.append(ConfigIssue(path, None, "", f"not UTF-8 text ({exc.reason})"))
        return None
    except OSError as exc:
        issues.append(ConfigIssue(path, None, "", f"cannot read: {exc.strerror}"))
        return None
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        issues.append(ConfigIssue(path, line, "", f"YAML syntax: {what}"))
        return None
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(path, None, "", f"YAML syntax: {exc}"))
        return None


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _pairs(node: MappingNode, path: Path, issues: list[ConfigIssue]
           ) -> list[tuple[ScalarNode, Node]]:
    """A mapping's key/value nodes; duplicate and non-scalar keys are errors."""
    seen: dict[str, int] = {}
    out = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode):
            issues.append(ConfigIssue(path, _line(key_node), "", "a key must be a plain value"))
            continue
        key = str(key_node.value)
        if key in seen:
            issues.append(ConfigIssue(path, _line(key_node), key,
                                      f"duplicate key {key!r} (first at line {seen[key]})"))
            continue
        seen[key] = _line(key_node)
        out.append((key_node, value_node))
    return out


def _plain(
    node: Node,
    path: Path,
    loc: Loc,
    sources: SourceMap,
    env: dict[str, str],
    issues: list[ConfigIssue],
) -> Any:
    """Turn YAML nodes into plain Python, recording the line of every value."""
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in _pairs(node, path, issues):
            sub = (*loc, str(key_node.value))
            sources.locations[sub] = (path, _line(key_node))
            out[str(key_node.value)] = _plain(value_node, path, sub, sources, env, issues)
        return out
    if isinstance(node, SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            sources.locations[(*loc, i)] = (path, _line(item))
            items.append(_plain(item, path, (*loc, i), sources, env, issues))
        return items
    try:
        value = _constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(path, _line(node), _dotted(loc), f"bad value: {exc}"))
        return None
    if isinstance(value, str):
        return _expand_env(value, path, loc, sources, env, issues)
    if hasattr(value, "isoformat") or isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)


def _expand_env(
    value: str, path: Path, loc: Loc, sources: SourceMap, env: dict[str, str],
    issues: list[ConfigIssue],
) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name not in env and default is not None:
            return default
        if name not in env:
            _, line = sources.find(loc)
            issues.append(ConfigIssue(path, line, _dotted(loc),
                                      f"environment variable {name} is not set"))
            return ""
        return env[name]

    return _ENV_REF.sub(sub, str(value))


def _pydantic_issues(
    exc: ValidationError, merged: dict[str, Any], sources: SourceMap
) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        # Discriminated unions add the tag (e.g. 'menu') to the path: drop it for lookup.
        lookup = tuple(p for p in loc if not (isinstance(p, str) and _is_tag(merged, loc, p)))
        file, line = sources.find(lookup)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        issues.append(ConfigIssue(file, line, _dotted(lookup, merged), msg))
    return issues


def _is_tag(merged: dict[str, Any], loc: Loc, part: str) -> bool:
    return part in {
        "play", "menu", "collect", "schedule", "condition", "set", "queue",
        "transfer", "voicemail", "hangup",
    } and loc.index(part) > 0 and loc[loc.index(part) - 1] != "type"


def _dotted(loc: Loc, merged: dict[str, Any] | None = None) -> str:
    """queues.1.skills -> queues[sales].skills: name list items by their id when known."""
    out = ""
    node: Any = merged
    for part in loc:
        if isinstance(part, int):
            label = str(part)
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                ident = node[part].get("id") or node[part].get("username") or node[part].get(
                    "number")
                label = str(ident) if ident is not None else label
            out += f"[{label}]"
        else:
            out += f".{part}" if out else str(part)
        if node is not None:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
    return out


def _closest(word: str, choices: tuple[str, ...]) -> str:
    import difflib

    match = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
