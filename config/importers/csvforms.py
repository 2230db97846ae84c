"""Read vendor CSV exports by header name, whatever Excel did to them.

A `FormSpec` names a form (e.g. Mitel "ACD Paths") by the headers that identify it and
the aliases each field goes by across releases. `read_csv` finds the header line (a
title line or two before it are allowed), the delimiter (`,` `;` tab `|`, so a file
saved by a European Excel still reads) and the form, then yields rows as
`{field: value}` with their line numbers. Unknown columns are tolerated and listed in a
warning, so nothing is dropped silently.

Excel damage is detected per cell: scientific notation (`3.1201E+10`: digits lost, the
cell is refused with an error), a trailing `.0`, and leading zeros lost (a number one
digit shorter than its column's other values, which start with 0).
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from config.importers.errors import ImportFailure
from config.importers.report import MigrationReport, Outcome, SourceRef
from config.importers.textfile import TextFile, read_text
from core.numbers import is_ascii_digits

DELIMITERS = (",", ";", "\t", "|")


def norm_header(text: str) -> str:
    """A header as compared: case, spaces, punctuation and a trailing unit in
    parentheses ignored, so 'Work Timer (sec)', 'work_timer' and 'WORK-TIMER' match."""
    text = text.replace("\ufeff", "").strip().lower()
    text = re.sub(r"\s*\((?:s|sec|secs|seconds|min|mins|minutes|hh:mm|yyyy-mm-dd)\)\s*$", "",
                  text)
    return re.sub(r"[^a-z0-9]+", "", text)


@dataclass(frozen=True)
class FormSpec:
    name: str
    fields: dict[str, tuple[str, ...]]  # field -> header aliases (normalised on use)
    required: tuple[str, ...]  # fields whose header must be present to recognise the form

    def lookup(self) -> dict[str, str]:
        return _lookup(self)

    def label(self, name: str) -> str:
        """The field's header as the vendor's documentation names it."""
        aliases = self.fields.get(name, ())
        return aliases[0] if aliases else name


_LOOKUPS: dict[int, dict[str, str]] = {}


def _lookup(spec: FormSpec) -> dict[str, str]:
    cached = _LOOKUPS.get(id(spec))
    if cached is None:
        cached = {}
        for name, aliases in spec.fields.items():
            for alias in (name, *aliases):
                cached.setdefault(norm_header(alias), name)
        _LOOKUPS[id(spec)] = cached
    return cached


class FormNotRecognised(ImportFailure):
    """A file whose header row matches no form: reported, the other files still import."""


@dataclass
class CsvRow:
    source: SourceRef
    values: dict[str, str]
    extra: dict[str, str] = field(default_factory=dict)  # unknown columns, by header

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default).strip()


@dataclass
class CsvTable:
    spec: FormSpec
    text: TextFile
    rows: list[CsvRow]
    delimiter: str
    columns: dict[str, str]  # header as written -> field ("" = unknown)


def read_tables(paths: Sequence[Path], specs: Sequence[FormSpec], report: MigrationReport,
                progress: Callable[[int], None] | None = None) -> dict[str, list[CsvTable]]:
    """Every file read as the form it turns out to be, grouped by form name.

    A file that cannot be read (header of no known form, empty, CSV syntax) is reported
    unsupported with its file:line and the others still import; only when no file is
    usable does the first failure stop the import (nothing to write)."""
    tables: dict[str, list[CsvTable]] = {}
    failures: list[ImportFailure] = []
    for path in paths:
        try:
            table = read_csv(path, specs, report)
        except ImportFailure as exc:
            failures.append(exc)
            continue
        tables.setdefault(table.spec.name, []).append(table)
        if progress:
            progress(len(table.text.lines))
    if not tables and failures:
        raise failures[0]
    for exc in failures:
        report.error(exc.message, exc.where)
        report.add("export file", exc.where.file, Outcome.UNSUPPORTED, exc.where,
                   reason=f"not imported: {exc.message}")
    return tables


def read_csv(path: Path, specs: Sequence[FormSpec], report: MigrationReport) -> CsvTable:
    text = read_text(path)
    report.issues.extend(text.issues)
    if not any(line.strip() for line in text.lines):
        raise ImportFailure("empty file", text.ref(1))
    best: tuple[int, int, str, FormSpec, list[str]] | None = None  # score, line, delim
    candidates = [(i, line) for i, line in enumerate(text.lines[:8]) if line.strip()][:4]
    for index, line in candidates:
        for delim in DELIMITERS:
            headers = next(csv.reader([line], delimiter=delim))
            normed = {norm_header(h) for h in headers}
            for spec in specs:
                lookup = spec.lookup()
                have = {lookup[h] for h in normed if h in lookup}
                if not all(r in have for r in spec.required):
                    continue
                score = len(have) * 10 + (5 if delim == "," else 0) - index
                if best is None or score > best[0]:
                    best = (score, index, delim, spec, headers)
    if best is None:
        first_index, first = candidates[0]
        cols = next(csv.reader([first]))
        hint = ""
        if len(cols) == 1 and any(d in first for d in ";\t|"):
            hint = "; one column only: is the delimiter not a comma?"
        elif len(cols) == 1:
            hint = "; one column only: wrong delimiter, or not a CSV export?"
        else:
            hint = _closest_form(candidates, specs)
        wanted = "; ".join(f"{s.name} (needs {', '.join(_head(s, r) for r in s.required)})"
                           for s in specs)
        raise FormNotRecognised(
            f"header not recognised: {first[:80]!r}{hint}. Expected one of: {wanted}",
            text.ref(first_index + 1),
        )
    _, header_index, delim, spec, headers = best
    if delim != ",":
        name = {"\t": "tab", ";": "semicolon", "|": "pipe"}[delim]
        report.warn(f"{spec.name}: columns separated by {name}, not comma (Excel in a "
                    "European locale?); read anyway", text.ref(header_index + 1))
    lookup = spec.lookup()
    columns = {h: lookup.get(norm_header(h), "") for h in headers}
    unknown = [h for h, f in columns.items() if not f and h.strip()]
    if unknown:
        missing = [spec.label(f) for f in spec.fields if f not in columns.values()]
        hints = []
        for h in unknown:
            close = difflib.get_close_matches(h, missing, n=1, cutoff=0.75)
            hints.append(f"{h} (is it '{close[0]}'?)" if close else h)
        report.warn(f"{spec.name}: column(s) not imported: {', '.join(hints)}",
                    text.ref(header_index + 1))
    rows = _rows(text, header_index, delim, headers, lookup, report, spec)
    return CsvTable(spec, text, rows, delim, columns)


def _closest_form(candidates: list[tuple[int, str]], specs: Sequence[FormSpec]) -> str:
    """'; closest: <form>, missing <field> (closest column: <header>)' for the form that
    most of a header's columns belong to, so the admin sees which column to rename."""
    best: tuple[int, FormSpec, list[str]] | None = None
    for _, line in candidates:
        for delim in DELIMITERS:
            headers = [h for h in next(csv.reader([line], delimiter=delim)) if h.strip()]
            for spec in specs:
                lookup = spec.lookup()
                have = sum(1 for h in headers if norm_header(h) in lookup)
                if have and (best is None or have > best[0]):
                    best = (have, spec, headers)
    if best is None:
        return ""
    _, spec, headers = best
    lookup = spec.lookup()
    have = {lookup[norm_header(h)] for h in headers if norm_header(h) in lookup}
    unmatched = [h for h in headers if norm_header(h) not in lookup]
    parts = []
    for field_name in spec.required:
        if field_name in have:
            continue
        aliases = [spec.label(field_name), *spec.fields.get(field_name, ())]
        close = []
        for alias in aliases:
            close += difflib.get_close_matches(alias, unmatched, n=2, cutoff=0.5)
        close = list(dict.fromkeys(close))[:2]
        parts.append(f"no column for '{spec.label(field_name)}'"
                     + (f" (closest: {', '.join(repr(c) for c in close)})" if close else ""))
    return f"; looks like {spec.name} but " + "; ".join(parts) if parts else ""


def _head(spec: FormSpec, name: str) -> str:
    aliases = spec.fields.get(name, ())
    return f"'{aliases[0] if aliases else name}'"


def _rows(text: TextFile, header_index: int, delim: str, headers: list[str],
          lookup: dict[str, str], report: MigrationReport, spec: FormSpec) -> list[CsvRow]:
    body = "\n".join(text.lines[header_index + 1 :])
    reader = csv.reader(io.StringIO(body), delimiter=delim)
    out: list[CsvRow] = []
    start = header_index + 2
    line_of_row = start
    names = [lookup.get(norm_header(h)) for h in headers]
    try:
        for cells in reader:
            line = line_of_row
            line_of_row = start + reader.line_num
            if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if len(cells) != len(headers):
                report.warn(f"{spec.name}: {len(cells)} field(s), header has {len(headers)}: "
                            "unquoted delimiter in a value? fields read in header order",
                            text.ref(line))
            row = CsvRow(text.ref(line), {})
            for h, name, value in zip(headers, names, cells, strict=False):
                if name:
                    if value.strip() or name not in row.values:
                        row.values[name] = value
                elif h.strip():
                    row.extra[h] = value
            out.append(row)
    except csv.Error as exc:
        raise ImportFailure(f"CSV syntax: {exc}", text.ref(line_of_row)) from None
    return out


# -- Excel damage ---------------------------------------------------------------------

_SCIENTIFIC = re.compile(r"^[+-]?[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+$")


def clean_number(value: str, src: SourceRef, what: str, report: MigrationReport) -> str | None:
    """A dialable number from a cell; None (with an error) when Excel destroyed it."""
    v = value.strip().replace(" ", "")
    if not v:
        return ""
    if _SCIENTIFIC.match(v):
        report.error(f"{what} {value!r} is in scientific notation (Excel): digits are lost; "
                     "re-export with the column formatted as text", src)
        return None
    if re.fullmatch(r"\+?[0-9]+\.0+", v):
        report.warn(f"{what} {value!r}: trailing '.0' added by Excel removed", src)
        v = v.split(".")[0]
    return v


def excel_damaged(cleaned: list[tuple[str | None, CsvRow]], field_name: str) -> bool:
    """A cell of the column lost digits (cleaned to None) or gained '.0': Excel saved it."""
    return any(n is None or row.get(field_name).endswith(".0") for n, row in cleaned)


def restore_leading_zeros(
    values: list[tuple[str, SourceRef]], what: str, report: MigrationReport,
    *, excel_damaged: bool = False,
) -> dict[str, str]:
    """Numbers of one column where most start with 0: a number one digit shorter that
    does not is taken to have lost its leading zero (Excel). Returns fixed -> original.

    When the column shows Excel damage elsewhere (`excel_damaged`: a cell in scientific
    notation or with '.0') and no majority tells what the numbers should look like,
    every number without a leading 0 or + is warned about instead of trusted."""
    digits = [(v, s) for v, s in values if is_ascii_digits(v)]
    if excel_damaged and len([v for v, _ in digits if v.startswith("0")]) * 2 < len(digits):
        for v, src in digits:
            if not v.startswith("0"):
                report.warn(f"{what} {v!r}: this column went through Excel (other cells are "
                            "damaged): check that no leading 0 or + was lost", src)
        return {}
    if len(digits) < 2:
        return {}
    zero = [v for v, _ in digits if v.startswith("0")]
    if len(zero) * 2 < len(digits):
        return {}
    common = Counter(len(v) for v in zero).most_common(1)[0][0]
    fixed = {}
    for v, src in digits:
        if not v.startswith("0") and len(v) == common - 1:
            report.warn(f"{what} {v!r} looks like it lost its leading zero (Excel): "
                        f"imported as '0{v}'", src)
            fixed[v] = "0" + v
    return fixed


def split_list(value: str) -> list[str]:
    """A packed list cell: 'a;b', 'a,b', 'a|b' or 'a b' (for ids without spaces)."""
    value = value.strip().strip("[]{}")
    if not value:
        return []
    for sep in (";", "|", ","):
        if sep in value:
            return [p.strip() for p in value.split(sep) if p.strip()]
    return [value]
