"""Read SAT screens by label, never by column.

A form line holds one or more `Label: value` or `Label? y` fields; a label starts at the
line start or after two spaces, a value runs until the next label. Releases move fields
between columns and pages, so we only ever look fields up by their (normalised) label.

Tables (agent skills `SN RL SL`, member lists) are read by their header labels: each
cell is assigned to the header label whose column it overlaps, so an empty `RL` cell
does not shift `SL` left.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_LABEL = re.compile(
    r"(?:^|(?<=\s\s)|(?<=^\s))"
    r"([A-Za-z0-9][A-Za-z0-9/.\-()'&#%*]*(?: [A-Za-z0-9/.\-()'&#%*]+)*?)\s?([:?])(?=\s|$)"
)


def norm_label(label: str) -> str:
    """'Name*' -> 'name', 'Queue  Limit' -> 'queue limit', 'Skill?' -> 'skill'."""
    return re.sub(r"\s+", " ", label.replace("*", "")).strip().lower()


@dataclass(frozen=True)
class Field:
    label: str  # normalised
    value: str  # whitespace-collapsed, may be ""
    line: int


def parse_fields(lines: Iterable[tuple[int, str]]) -> list[Field]:
    out: list[Field] = []
    for number, text in lines:
        if not text or text == "\f":
            continue
        matches = list(_LABEL.finditer(text))
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            value = re.sub(r"\s+", " ", text[m.end() : end]).strip()
            out.append(Field(norm_label(m.group(1)), value, number))
    return out


class Form:
    """Fields of one SAT screen, looked up by label (first occurrence wins)."""

    def __init__(self, lines: Iterable[tuple[int, str]]) -> None:
        self.fields = parse_fields(lines)
        self._by_label: dict[str, Field] = {}
        for f in self.fields:
            self._by_label.setdefault(f.label, f)

    def get(self, *labels: str) -> Field | None:
        for label in labels:
            hit = self._by_label.get(label)
            if hit is not None:
                return hit
        return None

    def value(self, *labels: str, default: str = "") -> str:
        hit = self.get(*labels)
        return hit.value if hit is not None else default

    def flag(self, *labels: str) -> bool | None:
        hit = self.get(*labels)
        if hit is None or not hit.value:
            return None
        return hit.value.lower().startswith("y")


@dataclass(frozen=True)
class Column:
    label: str
    start: int
    end: int  # exclusive


def header_columns(header: str, labels: Iterable[str]) -> list[Column]:
    """Locate each wanted label in a header line; a column spans from its label's start
    to the next label's start."""
    found = []
    for label in labels:
        m = re.search(r"(?<!\S)" + re.escape(label) + r"(?!\S)", header)
        if m:
            found.append((m.start(), label))
    found.sort()
    cols = []
    for i, (start, label) in enumerate(found):
        end = found[i + 1][0] if i + 1 < len(found) else 10_000
        cols.append(Column(label, start, end))
    return cols


def cells(line: str, columns: list[Column]) -> dict[str, str]:
    """Split a table row: each whitespace-separated token goes to the column that its
    start falls in, with a tolerance of the token's own width (right-aligned numbers)."""
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"\S+", line):
        pos, end = m.start(), m.end()
        target = None
        for col in columns:
            if col.start <= pos < col.end or (pos < col.start < end):
                target = col
                break
        if target is None:
            target = columns[0] if columns and pos < columns[0].start else None
        if target is not None:
            out.setdefault(target.label, []).append(m.group())
    return {k: " ".join(v) for k, v in out.items()}
