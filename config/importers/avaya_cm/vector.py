"""Parse a CALL VECTOR screen into numbered steps with their conditions.

A vector is a small program: up to 99 numbered steps run in order, `goto step N` /
`goto vector N` jump when a condition holds, and most commands continue to the next
step. We keep that shape (one `Step` per line) and leave the meaning to `flows.py`.
The grammar follows the Avaya "Programming Call Vectoring Features" guide across
releases (e.g. `queue-to main split` in old releases, `queue-to skill ... pri m` since
EAS, `check skill`, `wait-time ... hearing <ann> then music`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from config.importers.avaya_cm.fields import Form
from config.importers.avaya_cm.sat import SatCommand
from config.importers.report import SourceRef

OPS = {"=": "==", "<>": "!=", ">": ">", "<": "<", ">=": ">=", "<=": "<="}
_OP = r"(>=|<=|<>|=|>|<)"


@dataclass
class Condition:
    kind: str  # unconditionally, time-of-day, holiday, service-hours, table, compare,
    #            queue-metric, other
    text: str
    negated: bool = False
    subject: str = ""  # ani / digits / ii-digits / A..Z / metric name
    op: str = ""
    value: str = ""
    table: str = ""
    skill: str = ""  # for queue metrics; "" = the step's own skill
    priority: str = ""
    tod: tuple[str, str, str, str] | None = None  # day1, hh:mm, day2, hh:mm


@dataclass
class Step:
    number: int
    source: SourceRef
    text: str  # the command as written, whitespace collapsed
    kind: str  # see parse_step
    args: dict[str, str] = field(default_factory=dict)
    condition: Condition | None = None


@dataclass
class Vector:
    number: int
    source: SourceRef
    name: str
    steps: list[Step]
    incomplete: str | None = None
    gaps: list[int] = field(default_factory=list)  # step numbers absent from the capture


_STEP_LINE = re.compile(r"^([0-9]{2})(?:\s+(.*?))?\s*$")


def parse_vector(cmd: SatCommand) -> Vector | None:
    form = Form((n, t) for n, t in cmd.lines if not _STEP_LINE.match(t))
    number_text = form.value("number") or (cmd.args[0] if cmd.args else "")
    m = re.match(r"[0-9]+", number_text)
    if not m:
        return None
    steps: list[Step] = []
    seen: list[int] = []
    for line, text in cmd.lines:
        sm = _STEP_LINE.match(text)
        if not sm:
            continue
        num = int(sm.group(1))
        seen.append(num)
        body = re.sub(r"\s+", " ", sm.group(2) or "").strip()
        if not body:
            continue
        steps.append(parse_step(num, body, cmd.ref(line)))
    vector = Vector(int(m.group()), cmd.ref(), form.value("name"), steps,
                    incomplete=cmd.incomplete)
    if seen:
        vector.gaps = [n for n in range(seen[0], max(seen)) if n not in seen]
        if seen[0] != 1 and not vector.incomplete:
            vector.gaps = list(range(1, seen[0])) + vector.gaps
    return vector


_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("comment", re.compile(r"^#\s*(?P<text>.*)$")),
    ("goto-step", re.compile(r"^goto step (?P<target>[0-9]+) if (?P<cond>.+)$", re.I)),
    ("goto-vector", re.compile(
        r"^goto vector (?P<vector>[0-9]+)(?: @step (?P<step>[0-9]+))? if (?P<cond>.+)$", re.I)),
    ("wait-time", re.compile(
        r"^wait-time (?P<n>[0-9]+) (?P<unit>secs?|mins?|hrs?) hearing (?P<what>\S+)"
        r"(?: then (?P<then>\S+))?$", re.I)),
    ("announcement", re.compile(r"^announcement (?P<ann>\S+)$", re.I)),
    ("collect", re.compile(
        r"^collect (?P<n>[0-9]+) digits after announcement (?P<ann>\S+)"
        r"(?: for (?P<var>\S+))?$", re.I)),
    ("collect-ced", re.compile(r"^collect (?P<what>ced|cdpd)(?: for (?P<var>\S+))?$", re.I)),
    ("queue", re.compile(
        r"^(?P<verb>queue-to|check|check-backup)(?: (?P<mb>main|backup))? "
        r"(?P<target>skill|split|hunt-group) (?P<skill>\S+)"
        r"(?: pri (?P<pri>[lmht]))?(?: if (?P<cond>.+))?$", re.I)),
    ("route-number", re.compile(
        r"^route-to number (?P<number>\S+)(?: with cov(?:erage)? (?P<cov>[yn]))?"
        r"(?: if (?P<cond>.+))?$", re.I)),
    ("route-digits", re.compile(r"^route-to digits(?: with cov(?:erage)? (?P<cov>[yn]))?$",
                                re.I)),
    ("disconnect", re.compile(r"^disconnect(?: after announcement (?P<ann>\S+))?$", re.I)),
    ("busy", re.compile(r"^busy$", re.I)),
    ("stop", re.compile(r"^stop$", re.I)),
    ("messaging", re.compile(
        r"^messaging (?P<target>skill|split) (?P<skill>\S+)(?: for extension (?P<ext>\S+))?$",
        re.I)),
]


def parse_step(number: int, body: str, source: SourceRef) -> Step:
    """Classify one step; anything unknown is kind `other` (reported unsupported)."""
    for kind, pattern in _PATTERNS:
        m = pattern.match(body)
        if not m:
            continue
        args = {k: v for k, v in m.groupdict().items() if v is not None and k != "cond"}
        cond_text = m.groupdict().get("cond")
        step = Step(number, source, body, kind, args)
        if cond_text:
            step.condition = parse_condition(cond_text)
        return step
    return Step(number, source, body, "other")


_TOD = re.compile(
    r"^time-of-day is (?P<d1>all|mon|tue|wed|thu|fri|sat|sun) (?P<t1>[0-9]{1,2}:[0-9]{2}) to "
    r"(?P<d2>all|mon|tue|wed|thu|fri|sat|sun) (?P<t2>[0-9]{1,2}:[0-9]{2})$", re.I)
_IN_TABLE = re.compile(
    r"^(?P<what>holiday|service-hours|ani|digits|digit|ii-digits|[A-Z]) (?P<neg>in|not-in)"
    r"(?: table)? (?P<table>\S+)$", re.I)
# `route-to number X if digit = N` (the one-digit form of Avaya's conditional route-to)
# tests the digits collected last, as `digits = N` does.
_COMPARE = re.compile(
    r"^(?P<what>ani|digits|digit|ii-digits|[A-Z]) " + _OP + r" (?P<value>\S+)$", re.I)
_METRIC = re.compile(
    r"^(?P<metric>available-agents|staffed-agents|calls-queued|oldest-call-wait|expected-wait"
    r"|rolling-asa|counted-calls)"
    r"(?: (?:in|for|to) (?:(?:skill|split|hunt-group|vdn) (?P<skill>\S+)|call|best))?"
    r"(?: pri (?P<pri>[lmht]))? " + _OP + r" (?P<value>[0-9]+)$", re.I)


def parse_condition(text: str) -> Condition:
    text = text.strip()
    if text.lower() == "unconditionally":
        return Condition("unconditionally", text)
    m = _TOD.match(text)
    if m:
        return Condition("time-of-day", text,
                         tod=(m["d1"].lower(), m["t1"], m["d2"].lower(), m["t2"]))
    m = _IN_TABLE.match(text)
    if m:
        what = m["what"]
        negated = m["neg"].lower() == "not-in"
        if what.lower() in ("holiday", "service-hours"):
            return Condition(what.lower(), text, negated, table=m["table"])
        return Condition("table", text, negated, subject=_subject(what), table=m["table"])
    m = _COMPARE.match(text)
    if m:
        return Condition("compare", text, subject=_subject(m["what"]), op=OPS[m.group(2)],
                         value=m["value"])
    m = _METRIC.match(text)
    if m:
        return Condition("queue-metric", text, subject=m["metric"].lower(),
                         skill=m["skill"] or "", priority=(m["pri"] or "").lower(),
                         op=OPS[m.group(4)], value=m["value"])
    return Condition("other", text)


def _subject(what: str) -> str:
    if what.lower() == "digit":
        return "digits"
    return what if len(what) == 1 else what.lower()
