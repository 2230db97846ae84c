"""Split an Avaya CM SAT capture into commands, joining the pages of each.

A capture is whatever an admin saved from Avaya Site Administration or a terminal log:
one or many commands, each starting with its command line at column 0
(`display vector 5        Page   1 of   6`). Multi-page forms repeat that line (or a bare
`Page N of M` line) on every page; we join the pages, drop the headers, and check that
no page is missing from the middle. Lines starting with `#` are comments (our fixtures
carry their provenance that way).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from config.importers.report import Issue, Severity, SourceRef
from config.importers.textfile import TextFile

VERBS = (
    "display", "list", "change", "add", "status", "monitor", "duplicate", "remove", "test",
    "save", "get", "busyout", "release", "enable", "disable", "clear", "reset", "set",
    "notify", "show",
)
# Commands are typed in lower case; form labels are capitalised ("Enable ...", "Set ...")
# and carry `:` or `?`, which a command line never does.
_COMMAND = re.compile(
    r"^(?i:command:\s*)?(" + "|".join(VERBS) + r")\s+([A-Za-z][A-Za-z0-9\-]*)"
    r"((?:\s+[^\s:?]+)*?)(?:\s{2,}Page\s+([0-9]+)(?:\s+of\s+([0-9]+))?)?\s*$"
)
_PAGE_ONLY = re.compile(r"^\s*Page\s+([0-9]+)(?:\s+of\s+([0-9]+))?\s*$", re.IGNORECASE)
_NOISE = re.compile(
    r"^\s*(?:Command successfully completed|Command:\s*$|ESC-x=Cancel|F[0-9]=\S+\s+F[0-9]=)",
    re.IGNORECASE,
)


@dataclass
class SatCommand:
    verb: str  # "display" (change/display are the same screen)
    obj: str  # "hunt-group", "vector", "agent-loginid", ...
    args: list[str]
    source: TextFile
    line: int  # 1-based line of the command
    lines: list[tuple[int, str]] = field(default_factory=list)  # body, page headers removed
    pages_seen: list[int] = field(default_factory=list)
    pages_total: int | None = None
    incomplete: str | None = None  # why the content cannot be trusted whole
    # (page, first index in `lines`, file line of its header) for each page as captured,
    # so a page captured twice (paging back, a redraw) is kept once
    page_starts: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, tuple[str, ...]]:
        return (_same_screen(self.verb), self.obj, tuple(a.lower() for a in self.args))

    @property
    def title(self) -> str:
        return " ".join([self.verb, self.obj, *self.args])

    def ref(self, line: int | None = None) -> SourceRef:
        return self.source.ref(line or self.line)


def _same_screen(verb: str) -> str:
    return "display" if verb in ("change", "display", "add") else verb


def split_commands(
    text: TextFile,
    issues: list[Issue],
    progress: Callable[[int], None] | None = None,
) -> Iterator[SatCommand]:
    """Yield the commands of a capture in order; page problems go to `issues`."""
    current: SatCommand | None = None
    lines = text.lines
    step = 2000
    for index, raw in enumerate(lines):
        number = index + 1
        if progress is not None and number % step == 0:
            progress(step)
        if not raw or raw.startswith("#"):
            if current is not None and not raw.startswith("#"):
                current.lines.append((number, ""))
            continue
        m = _COMMAND.match(raw)
        if m:
            verb, obj = m.group(1).lower(), m.group(2).lower()
            args = m.group(3).split()
            page = int(m.group(4)) if m.group(4) else None
            total = int(m.group(5)) if m.group(5) else None
            key = (_same_screen(verb), obj, tuple(a.lower() for a in args))
            if current is not None and page is not None and page > 1 and current.key == key:
                _add_page(current, page, total, number, issues)
                continue
            if current is not None:
                yield _finish(current, issues)
            current = SatCommand(verb, obj, args, text, number)
            if page is not None:
                current.pages_seen.append(page)
                current.pages_total = total
                current.page_starts.append((page, 0, number))
                if page != 1:
                    current.incomplete = f"capture starts at page {page}"
            continue
        if current is None:
            if raw.strip():
                issues.append(Issue(Severity.WARNING,
                                    "text before the first SAT command line ignored",
                                    text.ref(number)))
            continue
        pm = _PAGE_ONLY.match(raw)
        if pm:
            _add_page(current, int(pm.group(1)), int(pm.group(2)) if pm.group(2) else None,
                      number, issues)
            continue
        if _NOISE.match(raw):
            continue
        current.lines.append((number, raw))
    if progress is not None:
        progress(len(lines) % step)
    if current is not None:
        yield _finish(current, issues)


def _add_page(cmd: SatCommand, page: int, total: int | None, line: int,
              issues: list[Issue]) -> None:
    cmd.pages_seen.append(page)
    if total is not None:
        cmd.pages_total = total
    cmd.page_starts.append((page, len(cmd.lines), line))
    cmd.lines.append((line, "\f"))  # page boundary marker for table parsers


def _drop_repeated_pages(cmd: SatCommand, issues: list[Issue]) -> None:
    """A page captured twice (the admin paged back, the terminal redrew it) is kept
    once: silently when both copies are the same, else the later one, with a warning
    naming both lines. Without this, a vector's steps would be read twice."""
    pages: dict[int, list[tuple[int, int, int]]] = {}
    bounds = [*cmd.page_starts[1:], (0, len(cmd.lines), 0)]
    for (page, start, line), (_, end, _) in zip(cmd.page_starts, bounds, strict=True):
        pages.setdefault(page, []).append((start, end, line))
    drop: list[tuple[int, int]] = []
    for page, copies in pages.items():
        if len(copies) < 2:
            continue

        def content(start: int, end: int) -> list[str]:
            return [t.strip() for _, t in cmd.lines[start:end] if t.strip() and t != "\f"]

        texts = [content(a, b) for a, b, _ in copies]
        if any(t != texts[-1] for t in texts[:-1]):
            where = ", ".join(str(cmd.source.ref(line)) for _, _, line in copies)
            issues.append(Issue(Severity.WARNING,
                                f"page {page} of {cmd.title} captured {len(copies)} times "
                                f"with different content ({where}); the last one is used",
                                cmd.source.ref(copies[-1][2])))
            drop += [(a, b) for a, b, _ in copies[:-1]]
        else:
            drop += [(a, b) for a, b, _ in copies[1:]]
    if drop:
        gone = {i for a, b in drop for i in range(a, b)}
        cmd.lines = [x for i, x in enumerate(cmd.lines) if i not in gone]


def _finish(cmd: SatCommand, issues: list[Issue]) -> SatCommand:
    if len(set(cmd.pages_seen)) < len(cmd.pages_seen):
        _drop_repeated_pages(cmd, issues)
    while cmd.lines and not cmd.lines[-1][1].strip():
        cmd.lines.pop()
    if not any(text.strip() and text != "\f" for _, text in cmd.lines):
        issues.append(Issue(Severity.WARNING,
                            f"{cmd.title}: no output after the command line (capture cut off?)",
                            cmd.ref()))
        cmd.incomplete = cmd.incomplete or "no output captured"
        return cmd
    if cmd.pages_seen:
        seen = sorted(set(cmd.pages_seen))
        missing = [p for p in range(1, seen[-1]) if p not in seen]
        if missing:
            pages = ", ".join(str(p) for p in missing)
            issues.append(Issue(Severity.ERROR,
                                f"{cmd.title}: page(s) {pages} missing from the middle of the "
                                "capture; re-capture this command", cmd.ref()))
            cmd.incomplete = f"page(s) {pages} missing from the capture"
        elif cmd.pages_total and seen[-1] < cmd.pages_total:
            issues.append(Issue(Severity.WARNING,
                                f"{cmd.title}: only page(s) 1-{seen[-1]} of {cmd.pages_total} "
                                "captured; the rest is assumed empty", cmd.ref()))
    return cmd
