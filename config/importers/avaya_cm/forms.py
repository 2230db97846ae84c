"""Parse the SAT screens the importer understands into small records.

Each parser takes a `SatCommand` and returns records carrying the file:line they came
from; none of them raises on odd input: a missing field leaves a default and the
importer reports what it could not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from config.importers.avaya_cm.fields import Form, cells, header_columns
from config.importers.avaya_cm.sat import SatCommand
from config.importers.report import SourceRef
from core.numbers import is_ascii_digits


@dataclass
class HuntGroup:
    number: int
    source: SourceRef
    name: str = ""
    extension: str = ""
    group_type: str = ""
    acd: bool | None = None
    queue: bool | None = None
    vector: bool | None = None
    skill: bool | None = None
    queue_limit: str = ""
    acw_seconds: int | None = None
    service_level_seconds: int | None = None
    members: list[tuple[str, str]] = field(default_factory=list)  # (extension, name)
    incomplete: str | None = None
    from_list: bool = False
    coverage_path: str = ""
    night_service: str = ""


@dataclass
class Vdn:
    extension: str
    source: SourceRef
    name: str = ""
    vector: int | None = None
    destination: str = ""
    skills: dict[str, str] = field(default_factory=dict)  # "1st" -> "12"
    incomplete: str | None = None


@dataclass
class AgentLogin:
    login_id: str
    source: SourceRef
    name: str = ""
    skills: list[tuple[str, int, SourceRef]] = field(default_factory=list)  # skill, level
    reserve_levels: dict[str, str] = field(default_factory=dict)
    percent_allocation: dict[str, str] = field(default_factory=dict)
    call_handling: str = ""
    incomplete: str | None = None
    from_list: bool = False  # read from `list agent-loginID` only
    skills_from_list: bool = False  # skills taken from the list (the form showed none)


@dataclass
class Announcement:
    extension: str
    source: SourceRef
    kind: str
    name: str
    audio_source: str


@dataclass
class HolidayEntry:
    start: tuple[int, int, int, int]  # month, day, hour, minute
    end: tuple[int, int, int, int] | None
    description: str
    source: SourceRef
    start_only: bool = False  # the END columns were blank
    has_time: bool = True


@dataclass
class CoveragePath:
    number: int
    source: SourceRef
    points: list[tuple[str, str, SourceRef]] = field(default_factory=list)  # label, value
    next_path: str = ""


@dataclass
class RoutingTable:
    """`display vrt N` (vector routing table): up to 32 numbers, `?` / `+` wildcards."""

    number: int
    source: SourceRef
    name: str = ""
    entries: list[str] = field(default_factory=list)


@dataclass
class HolidayTable:
    number: int
    source: SourceRef
    name: str = ""
    entries: list[HolidayEntry] = field(default_factory=list)
    bad_rows: list[tuple[SourceRef, str]] = field(default_factory=list)


@dataclass
class ServiceHoursTable:
    number: int
    source: SourceRef
    name: str = ""
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # day 0=mon, start, end
    bad: list[tuple[SourceRef, str]] = field(default_factory=list)


def _int(text: str) -> int | None:
    m = re.match(r"\s*([0-9]+)", text)
    return int(m.group(1)) if m else None


def _arg_int(cmd: SatCommand) -> int | None:
    return _int(cmd.args[0]) if cmd.args else None


# -- hunt groups ----------------------------------------------------------------------


def parse_hunt_group(cmd: SatCommand) -> HuntGroup | None:
    form = Form(cmd.lines)
    number = _int(form.value("group number")) or _arg_int(cmd)
    if number is None:
        return None
    hg = HuntGroup(number, cmd.ref(), incomplete=cmd.incomplete)
    hg.name = form.value("group name", "name")
    hg.extension = form.value("group extension", "extension").replace(".", "")
    hg.group_type = form.value("group type").lower()
    hg.acd = form.flag("acd")
    hg.queue = form.flag("queue")
    hg.vector = form.flag("vector")
    hg.skill = form.flag("skill")
    hg.queue_limit = form.value("queue limit").lower()
    acw = form.get("timed acw interval (sec)", "timed acw interval")
    hg.acw_seconds = _int(acw.value) if acw else None
    sl = form.value("service level target (% in sec)", "service level target")
    m = re.search(r"in\s+([0-9]+)", sl)
    hg.service_level_seconds = int(m.group(1)) if m else None
    hg.members = _members(cmd)
    hg.coverage_path = _blank(form.value("coverage path"))
    hg.night_service = _blank(form.value("night service destination"))
    return hg


def _blank(value: str) -> str:
    """'' for the placeholders SAT shows in an empty field."""
    return "" if re.fullmatch(r"[_\s.]*", value) else value


_MEMBER = re.compile(r"(?:^|\s)([0-9]{1,4}):")


def _members(cmd: SatCommand) -> list[tuple[str, str]]:
    """GROUP MEMBER ASSIGNMENTS rows: ` 1: 4001   John Smith     14: ...`."""
    out: list[tuple[str, str]] = []
    in_members = False
    for _, text in cmd.lines:
        if "GROUP MEMBER ASSIGNMENTS" in text.upper():
            in_members = True
            continue
        if not in_members or text == "\f":
            continue
        marks = list(_MEMBER.finditer(text))
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            seg = text[m.end() : end].strip()
            mm = re.match(r"([0-9][0-9.]*)\s*(.*)$", seg)
            if mm:
                out.append((mm.group(1).replace(".", ""), re.sub(r"\s+", " ", mm.group(2))))
    return out


_GROUP_TYPES = r"(ucd-mia|ead-mia|ucd-loa|ead-loa|ucd|ead|circ|ddc|slm|pad)"
_LIST_HG_ROW = re.compile(
    r"^\s*([0-9]+)\s+(.*?)\s+" + _GROUP_TYPES + r"\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+([0-9]+)",
    re.IGNORECASE,
)


def parse_list_hunt_groups(cmd: SatCommand) -> list[HuntGroup]:
    """`list hunt-group`: a report, one group per row and its extension below it."""
    out: list[HuntGroup] = []
    last: HuntGroup | None = None
    for number, text in cmd.lines:
        m = _LIST_HG_ROW.match(text)
        if m:
            acd_meas = m.group(4).lower()
            last = HuntGroup(int(m.group(1)), cmd.ref(number), from_list=True)
            last.name = m.group(2).strip()
            last.group_type = m.group(3).lower()
            last.acd = acd_meas.startswith("y")
            last.vector = m.group(5).upper() in ("V", "Y", "SK", "S")
            last.skill = m.group(5).upper() in ("SK", "S")
            size = m.group(8)
            last.queue_limit = size
            last.queue = True
            out.append(last)
            continue
        ext = re.match(r"^\s+([0-9][0-9.]*)\s*$", text)
        if ext and last is not None and not last.extension:
            last.extension = ext.group(1).replace(".", "")
    return out


# -- VDNs -----------------------------------------------------------------------------


def parse_vdn(cmd: SatCommand) -> Vdn | None:
    form = Form(cmd.lines)
    ext = form.value("extension") or (cmd.args[0] if cmd.args else "")
    ext = ext.replace(".", "").split(" ")[0]
    if not ext:
        return None
    vdn = Vdn(ext, cmd.ref(), incomplete=cmd.incomplete)
    vdn.name = form.value("name")
    dest = form.value("destination")
    vdn.destination = dest
    m = re.search(r"vector number\s*([0-9]+)", dest, re.IGNORECASE)
    if m:
        vdn.vector = int(m.group(1))
    elif form.get("vector number"):
        vdn.vector = _int(form.value("vector number"))
        vdn.destination = f"Vector Number {vdn.vector}"
    for which in ("1st", "2nd", "3rd"):
        value = form.value(f"{which} skill", which)
        if value and value.lower() != "none":
            vdn.skills[which] = value.split()[0]
    return vdn


# -- agents ---------------------------------------------------------------------------


def parse_agent(cmd: SatCommand) -> AgentLogin | None:
    form = Form(cmd.lines)
    login = form.value("login id") or (cmd.args[0] if cmd.args else "")
    if not login:
        return None
    agent = AgentLogin(login.split()[0], cmd.ref(), incomplete=cmd.incomplete)
    agent.name = form.value("name")
    agent.call_handling = form.value("call handling preference").lower()
    header: list[tuple[str, float]] | None = None
    for number, text in cmd.lines:
        if text == "\f":
            header = None
            continue
        if re.search(r"(?<!\S)SN(?!\S)", text) and re.search(r"(?<!\S)SL(?!\S)", text):
            header = [
                (m.group(), (m.start() + m.end()) / 2)
                for m in re.finditer(r"(?<!\S)(SN|RL|SL|PA)(?!\S)", text)
            ]
            continue
        if header is None:
            continue
        entry: dict[str, str] = {}
        entries: list[dict[str, str]] = []
        for tok in re.finditer(r"\S+", text):
            if re.fullmatch(r"[0-9]+:", tok.group()):
                entry = {}
                entries.append(entry)
                continue
            center = (tok.start() + tok.end()) / 2
            label = min(header, key=lambda h: abs(h[1] - center))[0]
            entry[label] = tok.group()
        for e in entries:
            sn = e.get("SN")
            if not sn:
                continue
            level = _int(e.get("SL", "")) or 1
            agent.skills.append((sn, level, cmd.ref(number)))
            if e.get("RL"):
                agent.reserve_levels[sn] = e["RL"]
            if e.get("PA"):
                agent.percent_allocation[sn] = e["PA"]
    return agent


_LIST_AGENT_ROW = re.compile(r"^([0-9]{1,13})\s+(.*?)\s{2,}(unstaffed|[0-9][0-9.]*)(?:\s|$)")
_SKILL_LEVEL = re.compile(r"^([0-9]+)/([0-9]+)[A-Za-z]?$")


def parse_list_agents(cmd: SatCommand) -> list[AgentLogin]:
    out: list[AgentLogin] = []
    last: AgentLogin | None = None
    for number, text in cmd.lines:
        m = _LIST_AGENT_ROW.match(text)
        if m:
            last = AgentLogin(m.group(1), cmd.ref(number), name=m.group(2).strip(),
                              from_list=True)
            out.append(last)
            continue
        tokens = text.split()
        if last is not None and tokens and all(_SKILL_LEVEL.match(t) for t in tokens):
            for t in tokens:
                sm = _SKILL_LEVEL.match(t)
                assert sm is not None
                last.skills.append((str(int(sm.group(1))), int(sm.group(2)), cmd.ref(number)))
    return out


# -- announcements --------------------------------------------------------------------

_ANN_TYPES = (
    r"(integrated|integ-mus|integ-rep|analog|analog-m|analog-fd|ds1-fd|ds1-sa|ds1-ops"
    r"|aux-trunk|aux-trk-m|ds1|vmm)"
)
_ANN_ROW = re.compile(r"^(\S+)\s+" + _ANN_TYPES + r"\s+(.*?)\s+(\S+)\s+([0-9]+)\s*$", re.I)
_ANN_ROW_SHORT = re.compile(r"^(\S+)\s+" + _ANN_TYPES + r"\s+(.*?)\s*$", re.I)


def parse_announcements(cmd: SatCommand) -> list[Announcement]:
    """`list announcement`: read by the header labels when there is a header, else by
    the type keyword that every row carries."""
    out: list[Announcement] = []
    columns = None
    for number, text in cmd.lines:
        if re.search(r"(?<!\S)Type(?!\S)", text) and re.search(r"(?<!\S)Name(?!\S)", text):
            columns = header_columns(text, ["Extension", "Type", "Name", "Source", "Sources",
                                            "Group/Board", "Board", "Files"])
            continue
        if not text.strip() or not re.match(r"^[0-9]", text):
            continue
        row = cells(text, columns) if columns else {}
        ext, kind, name, src = (row.get("Extension"), row.get("Type"), row.get("Name"),
                                row.get("Source") or row.get("Group/Board") or row.get("Board"))
        if not (ext and kind and re.fullmatch(_ANN_TYPES, kind, re.I)):
            m = _ANN_ROW.match(text) or _ANN_ROW_SHORT.match(text)
            if not m:
                continue
            ext, kind, name = m.group(1), m.group(2), m.group(3)
            src = m.group(4) if m.re is _ANN_ROW else ""
        out.append(Announcement(ext.replace(".", ""), cmd.ref(number), kind.lower(),
                                (name or "").strip(), src or ""))
    return out


# -- holiday and service-hours tables -------------------------------------------------

_HOLIDAY_ROW = re.compile(r"^\s*([0-9]{1,2}(?:\s+[0-9]{1,2}){1,7})\s*(.*)$")
_HOLIDAY_LABELS = ("Month", "Day", "Hour", "Min")


def _holiday_header(text: str) -> list[float] | None:
    """Centres of the 8 number columns (start Month Day Hour Min, end Month Day Hour
    Min) of a holiday-table header, or None when the line is not that header."""
    marks = [(m.group(), (m.start() + m.end()) / 2)
             for m in re.finditer(r"(?<!\S)(Month|Day|Hour|Min)(?!\S)", text)]
    labels = tuple(x for x, _ in marks)
    if labels[:4] != _HOLIDAY_LABELS:
        return None
    return [c for _, c in marks[:8]]


def parse_holiday_table(cmd: SatCommand) -> HolidayTable | None:
    """Rows are read by the header's columns, so a row with only a start (the END
    columns blank) or a start date without times is read as what it is, never as
    "start month day, end month day"."""
    form = Form(cmd.lines)
    number = _int(form.value("number")) or _arg_int(cmd)
    if number is None:
        return None
    table = HolidayTable(number, cmd.ref(), name=form.value("name"))
    centres: list[float] | None = None
    for line, text in cmd.lines:
        if centres is None and (found := _holiday_header(text)) is not None:
            centres = found
            continue
        if ":" in text or not text.strip() or text == "\f":
            continue
        m = _HOLIDAY_ROW.match(text)
        if not m:
            continue
        ref = cmd.ref(line)
        if centres is not None:
            slots: list[int | None] = [None] * len(centres)
            desc_start = len(text)
            for tok in re.finditer(r"\S+", text):
                centre = (tok.start() + tok.end()) / 2
                if not is_ascii_digits(tok.group()) or centre > centres[-1] + 4:
                    desc_start = tok.start()
                    break
                slot = min(range(len(centres)), key=lambda i: abs(centres[i] - centre))
                slots[slot] = int(tok.group())
            desc = text[desc_start:].strip()
            start_part, end_part = slots[:4], slots[4:8]
            if start_part[0] is None or start_part[1] is None:
                table.bad_rows.append((ref, re.sub(r"\s+", " ", text.strip())))
                continue
            start = (start_part[0], start_part[1], start_part[2] or 0, start_part[3] or 0)
            has_time = start_part[2] is not None
            end: tuple[int, int, int, int] | None = None
            if end_part and end_part[0] is not None and end_part[1] is not None:
                end = (end_part[0], end_part[1], end_part[2] if end_part[2] is not None
                       else 23, end_part[3] if end_part[3] is not None else 59)
            elif end_part and any(x is not None for x in end_part):
                table.bad_rows.append((ref, re.sub(r"\s+", " ", text.strip())))
                continue
        else:
            nums = [int(x) for x in m.group(1).split()]
            desc = m.group(2).strip()
            has_time = len(nums) == 8
            if len(nums) == 8:
                start, end = tuple(nums[:4]), tuple(nums[4:])  # type: ignore[assignment]
            elif len(nums) == 4:  # start month day, end month day (no times)
                start, end = (nums[0], nums[1], 0, 0), (nums[2], nums[3], 23, 59)
            elif len(nums) == 2:
                start, end = (nums[0], nums[1], 0, 0), None
            else:
                table.bad_rows.append((ref, re.sub(r"\s+", " ", text.strip())))
                continue
        if not _valid_date(start) or (end is not None and not _valid_date(end)):
            table.bad_rows.append((ref, re.sub(r"\s+", " ", text.strip())))
            continue
        table.entries.append(HolidayEntry(start, end, desc, ref, start_only=end is None,
                                          has_time=has_time))
    return table


def _valid_date(t: tuple[int, ...]) -> bool:
    return 1 <= t[0] <= 12 and 1 <= t[1] <= 31 and 0 <= t[2] <= 24 and 0 <= t[3] <= 59


_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPAN = re.compile(r"([0-9]{1,2}):([0-9]{2})\s+([0-9]{1,2}):([0-9]{2})")


def parse_service_hours(cmd: SatCommand) -> ServiceHoursTable | None:
    form = Form(cmd.lines)
    number = _int(form.value("number")) or _arg_int(cmd)
    if number is None:
        return None
    table = ServiceHoursTable(number, cmd.ref(), name=form.value("description", "name"))
    for day, label in enumerate(_DAYS):
        f = form.get(label, label[:3])
        if f is None:
            continue
        for m in _SPAN.finditer(f.value):
            sh, sm, eh, em = (int(x) for x in m.groups())
            start, end = sh * 60 + sm, eh * 60 + em
            if end == 23 * 60 + 59:
                end = 1440
            if not (0 <= start < 1440 and 0 < end <= 1440) or end <= start:
                table.bad.append((cmd.ref(f.line), f"{label}: {m.group()}"))
                continue
            table.spans.append((day, start, end))
    return table


# -- coverage paths and vector routing tables -----------------------------------------


def parse_coverage_path(cmd: SatCommand) -> CoveragePath | None:
    form = Form(cmd.lines)
    number = _int(form.value("coverage path number")) or _arg_int(cmd)
    if number is None:
        return None
    following = form.value("next path number")
    path = CoveragePath(number, cmd.ref(),
                        next_path=following.split()[0] if re.match(r"[0-9]", following) else "")
    for f in form.fields:
        m = re.fullmatch(r"point ?([0-9])", f.label)
        if m and _blank(f.value):
            value = re.sub(r"\s*rng\b.*$", "", f.value, flags=re.I).strip()
            if value:
                path.points.append((f"Point{m.group(1)}", value, cmd.ref(f.line)))
    return path


_VRT_ENTRY = re.compile(r"(?<!\S)([0-9]{1,2}):\s*([0-9?+*#]+)?")


def parse_routing_table(cmd: SatCommand) -> RoutingTable | None:
    form = Form(cmd.lines)
    number = _int(form.value("number")) or _arg_int(cmd)
    if number is None:
        return None
    table = RoutingTable(number, cmd.ref(), name=form.value("name"))
    found: dict[int, str] = {}
    for _, text in cmd.lines:
        for m in _VRT_ENTRY.finditer(text):
            if m.group(2):
                found[int(m.group(1))] = m.group(2)
    table.entries = [found[k] for k in sorted(found)]
    return table
