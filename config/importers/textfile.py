"""Read an export file as text, whatever the admin's tool saved it as.

Exports come from terminal logs, Windows tools and Excel: UTF-8 with or without a BOM,
UTF-16 (Excel "Unicode text"), or Windows-1252. We decode strictly as UTF-8 first and
fall back to Windows-1252 with a warning that names the first undecodable line, so an
accented name is never silently garbled. Terminal captures may also hold VT220 escape
sequences; `strip_vt220` turns cursor movement into plain lines and drops the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from config.importers.errors import ImportFailure
from config.importers.report import Issue, Severity, SourceRef


@dataclass
class TextFile:
    path: Path
    display: str  # the name used in messages (as given on the command line)
    lines: list[str]  # without line endings; index 0 is line 1
    encoding: str
    issues: list[Issue] = field(default_factory=list)
    # line in the file (as an editor counts them) of each entry of `lines`, when the two
    # differ: a VT220 log's cursor addressing, carriage returns and form feeds split one
    # line of the file into several screen lines
    line_map: list[int] | None = None

    def ref(self, line: int | None = None) -> SourceRef:
        if line is not None and self.line_map is not None and 1 <= line <= len(self.line_map):
            line = self.line_map[line - 1]
        return SourceRef(self.display, line)


def read_text(path: Path, *, vt220: bool = False) -> TextFile:
    """Read and decode `path`; raise ImportFailure when it cannot be read as text."""
    display = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFailure(f"cannot read: {exc.strerror or exc}", SourceRef(display)) from None
    issues: list[Issue] = []
    text, encoding = _decode(data, display, issues)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ImportFailure(
            "binary data (NUL byte): not a text export", SourceRef(display, line)
        )
    if vt220:
        lines, line_map = screen_lines(text)
        physical = text.count("\n") + (0 if text.endswith("\n") else 1)
        last = text.rsplit("\n", 1)[-1]
        if not text.endswith("\n") and strip_vt220(last).strip():
            issues.append(
                Issue(Severity.WARNING,
                      "file does not end with a line break: the capture may be cut off here",
                      SourceRef(display, physical)))
        while lines and not lines[-1].strip():
            lines.pop()
            line_map.pop()
        return TextFile(path, display, lines, encoding, issues, line_map)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines and lines[-1].strip():
        issues.append(
            Issue(Severity.WARNING,
                  "file does not end with a line break: the capture may be cut off here",
                  SourceRef(display, len(lines)))
        )
    return TextFile(path, display, lines, encoding, issues)


def _decode(data: bytes, display: str, issues: list[Issue]) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        issues.append(Issue(Severity.WARNING, "UTF-8 byte-order mark removed",
                            SourceRef(display, 1)))
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise ImportFailure(f"invalid UTF-16 ({exc.reason})", SourceRef(display)) from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        try:
            text = data.decode("cp1252")
            encoding = "cp1252"
        except UnicodeDecodeError:
            text = data.decode("latin-1")
            encoding = "latin-1"
        issues.append(
            Issue(Severity.WARNING,
                  f"not UTF-8 (byte 0x{data[exc.start]:02x}); read as {encoding} "
                  "(Windows-1252): check accented names",
                  SourceRef(display, line))
        )
        return text, encoding


# CSI with cursor position (row;col H or f), other CSI, OSC, 2-char escapes, shift in/out.
_CUP = re.compile(r"\x1b\[([0-9]*)(?:;([0-9]*))?[Hf]")
_ESC = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x9b[0-9;?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC ... BEL/ST
    r"|\x1b[()*+][0-9A-Za-z]"  # character set designation
    r"|\x1b[=>78DEHMNOZc]"  # keypad modes, save/restore, index, reset
    r"|[\x0e\x0f\x07\x00]"  # SO/SI/BEL/NUL
)


_SCREEN_BREAK = re.compile(r"\x1b\[([0-9]*)(?:;([0-9]*))?[Hf]|\r|\f")


def screen_lines(text: str) -> tuple[list[str], list[int]]:
    """A terminal log as screen lines, each with the line of the file it came from.

    The file's lines are what an admin's editor shows, so every `file:line` of the
    report must count those: a cursor move to another row, a carriage return or a form
    feed (page break) starts a new screen line but stays on the same file line.
    Other control sequences are removed.
    """
    out: list[str] = []
    where: list[int] = []
    row = col = 1
    for number, physical in enumerate(text.split("\n"), start=1):
        if physical.endswith("\r"):
            physical = physical[:-1]
        if number > 1:
            row += 1
            col = 1
        if "\x1b" not in physical and "\x9b" not in physical and "\r" not in physical \
                and "\f" not in physical:
            out.append(physical)
            where.append(number)
            col += len(physical)
            continue
        current: list[str] = []
        pos = 0
        for m in _SCREEN_BREAK.finditer(physical):
            chunk = _ESC.sub("", physical[pos : m.start()])
            current.append(chunk)
            col += len(chunk)
            pos = m.end()
            if m.group() in ("\r", "\f"):
                out.append("".join(current))
                where.append(number)
                current = []
                col = 1
                continue
            new_row = int(m.group(1) or 1)
            new_col = int(m.group(2) or 1)
            if new_row != row:
                if "".join(current).strip():
                    out.append("".join(current))
                    where.append(number)
                current = []
                col = 1
                row = new_row
            if new_col > col:
                current.append(" " * (new_col - col))
                col = new_col
        current.append(_ESC.sub("", physical[pos:]))
        out.append("".join(current))
        where.append(number)
    return out, where


def strip_vt220(text: str) -> str:
    """Plain text from a VT220 session log.

    Cursor addressing (ESC [ row ; col H) becomes line breaks and padding, so a field the
    terminal drew at row 5 column 30 ends up on its own line after its label; every other
    control sequence is removed.
    """
    if "\x1b" not in text and "\x9b" not in text:
        return text
    out: list[str] = []
    row = col = 1
    pos = 0
    for m in _CUP.finditer(text):
        chunk = _ESC.sub("", text[pos : m.start()])
        out.append(chunk)
        if "\n" in chunk:
            row += chunk.count("\n")
            col = len(chunk.rsplit("\n", 1)[1]) + 1
        else:
            col += len(chunk)
        new_row = int(m.group(1) or 1)
        new_col = int(m.group(2) or 1)
        if new_row != row:
            out.append("\n")
            col = 1
            row = new_row
        if new_col > col:
            out.append(" " * (new_col - col))
            col = new_col
        pos = m.end()
    out.append(_ESC.sub("", text[pos:]))
    return "".join(out)
