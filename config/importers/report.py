"""The migration report: every source construct with its outcome, and every warning.

An importer never drops anything silently. Each construct it meets (a hunt group, a
vector step, a CSV row) becomes one `ReportItem` with an `Outcome` and the file:line it
came from; problems with the input itself (encoding guessed, a page missing, a cell
mangled by Excel) become `Issue`s. The report is written as Markdown for the admin and
as JSON for tools.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path


class Outcome(StrEnum):
    MAPPED = "mapped"  # Centrale does the same thing
    APPROXIMATED = "approximated"  # close, the report says how it differs
    UNSUPPORTED = "unsupported"  # not imported, the report says why


class Severity(StrEnum):
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class SourceRef:
    """Where something came from: a file and a 1-based line (None = the whole file)."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class ReportItem:
    kind: str  # e.g. "hunt-group", "vector step", "IPO user"
    name: str  # e.g. "hunt-group 1 (Sales)", "vector 5 step 03"
    outcome: Outcome
    target: str  # what it became, e.g. "queues[hg1]"; "" when unsupported
    reason: str  # how it differs / why not
    source: SourceRef


@dataclass(frozen=True)
class Issue:
    severity: Severity
    message: str
    source: SourceRef

    def __str__(self) -> str:
        return f"{self.source}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class Recording:
    """An announcement the admin must export from the old system and drop in prompts/."""

    prompt: str  # prompt name used in flows, e.g. ann_71015
    file_name: str  # expected file, e.g. ann_71015.wav
    source_name: str  # the name the old system gives it
    detail: str  # type / source board / usage
    source: SourceRef
    used_by: list[str] = field(default_factory=list)


@dataclass
class MigrationReport:
    system: str
    sources: list[str] = field(default_factory=list)
    items: list[ReportItem] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    generated_prompts: list[str] = field(default_factory=list)  # tones/silence to provide
    placeholders: list[str] = field(default_factory=list)  # placeholder prompt files written

    def add(
        self,
        kind: str,
        name: str,
        outcome: Outcome,
        source: SourceRef,
        *,
        target: str = "",
        reason: str = "",
    ) -> ReportItem:
        item = ReportItem(kind, name, outcome, target, reason, source)
        self.items.append(item)
        return item

    def warn(self, message: str, source: SourceRef) -> None:
        self.issues.append(Issue(Severity.WARNING, message, source))

    def error(self, message: str, source: SourceRef) -> None:
        self.issues.append(Issue(Severity.ERROR, message, source))

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in Outcome}
        for item in self.items:
            out[item.outcome.value] += 1
        return out

    @property
    def has_unsupported(self) -> bool:
        return any(i.outcome is Outcome.UNSUPPORTED for i in self.items) or any(
            i.severity is Severity.ERROR for i in self.issues
        )

    def to_json(self) -> str:
        """Indented at the top, one line per item and issue: readable, diffable, and
        written by json's C encoder (indent= switches to the pure-Python one, which took
        seconds for the benchmark's 19,000 items)."""
        def block(rows: list[dict[str, object]]) -> str:
            if not rows:
                return "[]"
            return "[\n    " + ",\n    ".join(
                json.dumps(r, ensure_ascii=False) for r in rows) + "\n  ]"

        head = {"system": self.system, "sources": self.sources, "summary": self.counts()}
        parts = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                 for k, v in head.items()]
        parts.append('  "items": ' + block([_item_dict(i) for i in self.items]))
        parts.append('  "issues": ' + block([
            {"severity": i.severity.value, "message": i.message, "file": i.source.file,
             "line": i.source.line} for i in self.issues]))
        parts.append('  "recordings": ' + block(
            [asdict(r) | {"source": str(r.source)} for r in self.recordings]))
        parts.append(f'  "generated_prompts": {json.dumps(self.generated_prompts)}')
        parts.append(f'  "placeholders": {json.dumps(self.placeholders)}')
        return "{\n" + ",\n".join(parts) + "\n}\n"

    def to_markdown(self) -> str:
        c = self.counts()
        lines = [
            f"# Migration report ({self.system})",
            "",
            "Sources: " + ", ".join(f"`{s}`" for s in self.sources),
            "",
            f"**{c['mapped']} mapped, {c['approximated']} approximated, "
            f"{c['unsupported']} unsupported**; {len(self.issues)} input issue(s).",
            "",
        ]
        if self.issues:
            lines += ["## Input issues", "", "| where | severity | message |", "|---|---|---|"]
            lines += [f"| {i.source} | {i.severity.value} | {_md(i.message)} |"
                      for i in self.issues]
            lines.append("")
        for outcome, title in (
            (Outcome.UNSUPPORTED, "Unsupported (not imported — act on these)"),
            (Outcome.APPROXIMATED, "Approximated (check these)"),
            (Outcome.MAPPED, "Mapped"),
        ):
            rows = [i for i in self.items if i.outcome is outcome]
            if not rows:
                continue
            lines += [f"## {title}", "", "| source | construct | became | note |",
                      "|---|---|---|---|"]
            lines += [
                f"| {i.source} | {_md(i.kind)}: {_md(i.name)} | {_md(i.target) or '—'} | "
                f"{_md(i.reason)} |"
                for i in rows
            ]
            lines.append("")
        lines += ["## Recordings to export", ""]
        if self.recordings:
            lines += [
                "Export each announcement from the old system as WAV (8 kHz mono, G.711 or "
                "16-bit PCM) and save it in the prompts directory under the file name shown.",
                "",
                "| prompt | file | name in source | detail | used by |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {r.prompt} | {r.file_name} | {_md(r.source_name)} | {_md(r.detail)} | "
                f"{_md(', '.join(r.used_by)) or 'not referenced'} |"
                for r in self.recordings
            ]
        else:
            lines.append("None.")
        lines.append("")
        if self.generated_prompts:
            lines += [
                "## Tones and silences to provide",
                "",
                "Waits of the old system became prompts of this name (ringback, music or "
                "silence of that many seconds):",
                "",
                ", ".join(f"`{p}`" for p in self.generated_prompts),
                "",
            ]
        if self.placeholders:
            lines += [
                "## Placeholder prompts",
                "",
                f"{len(self.placeholders)} file(s) under `prompts/` are beeps or tones so the "
                "site answers calls before the recordings are exported: replace each with "
                "the recording of the same name (8 kHz mono WAV).",
                "",
            ]
        return "\n".join(lines)

    def write(self, directory: Path) -> None:
        (directory / "migration-report.md").write_text(self.to_markdown(), encoding="utf-8")
        (directory / "migration-report.json").write_text(self.to_json(), encoding="utf-8")


def _item_dict(item: ReportItem) -> dict[str, object]:
    return {
        "kind": item.kind,
        "name": item.name,
        "outcome": item.outcome.value,
        "target": item.target,
        "reason": item.reason,
        "file": item.source.file,
        "line": item.source.line,
    }


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
