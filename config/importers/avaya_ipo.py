"""Avaya IP Office Manager CSV exports -> Centrale config.

IP Office Manager (File > Import/Export > Export, CSV) writes one file per record type;
we read users, hunt groups, incoming call routes and time profiles, recognised by their
header names (field names as Manager shows them), so the file names and the column
order do not matter. Lists inside a cell (a hunt group's User List) may be separated by
`;`, `|` or `,`.

Mapping: a hunt group -> a queue and a skill of the same id; its members (users, by
name or extension) -> agents with that skill; the ring mode -> a strategy; an incoming
call route -> a number and a small flow (time profile -> schedule node, destination ->
queue / transfer / voicemail node); a time profile -> a schedule (its calendar dates ->
a holiday calendar).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from config.importers.builder import DAY_NAMES, ConfigBuilder, slug
from config.importers.csvforms import (
    CsvRow,
    CsvTable,
    FormSpec,
    clean_number,
    excel_damaged,
    read_tables,
    restore_leading_zeros,
    split_list,
)
from config.importers.report import MigrationReport, Outcome

USERS = FormSpec("IPO users", {
    "name": ("Name", "User Name", "User", "Benutzername", "Nom"),
    "full_name": ("Full Name", "FullName", "Display Name", "Vollständiger Name", "Nom complet"),
    "extension": ("Extension", "Extn", "Extension Number", "Ext", "Nebenstelle", "Poste"),
}, required=("name", "extension"))

# One member per row (an assumption: IP Office Manager shows a hunt group's members as
# a table of User Name / Extension / Enabled since R9.1; some export and provisioning
# tools write that table out as rows of group, member, enabled).
HUNT_GROUP_MEMBERS = FormSpec("IPO hunt group members", {
    "group": ("Hunt Group", "Group Name", "Hunt Group Name", "Group"),
    "member": ("Member", "User Name", "Member Name", "User", "Member Extension",
               "Extension"),
    "enabled": ("Enabled", "Member Enabled", "Active", "Member Active"),
    "position": ("Position", "Order", "Member Order"),
}, required=("group", "member"))

HUNT_GROUPS = FormSpec("IPO hunt groups", {
    "name": ("Name", "Group Name"),
    "extension": ("Extension", "Group Extension"),
    "ring_mode": ("Ring Mode", "Hunt Type", "Hunt Mode", "Ringing Mode", "Klingelmodus"),
    "members": ("User List", "Members", "Extension List"),
    "no_answer": ("No Answer Time", "No Answer Time (secs)"),
    "queuing": ("Queuing On", "Queuing Enabled", "Queueing On"),
    "queue_limit": ("Queue Limit", "Queue Length"),
    "overflow_time": ("Overflow Time", "Overflow Time (secs)"),
    "overflow_groups": ("Overflow Group List", "Overflow Groups"),
    "night_service": ("Night Service Group", "Night Service Fallback Group"),
    "out_of_service": ("Out of Service Group", "Out of Service Fallback Group"),
}, required=("name", "ring_mode"))

ROUTES = FormSpec("IPO incoming call routes", {
    "number": ("Incoming Number", "Incoming Number (DDI)"),
    "cli": ("Incoming CLI",),
    "destination": ("Destination", "Default Destination"),
    "fallback": ("Fallback Extension", "Default Fallback Extension"),
    "time_profile": ("Time Profile",),
    "profile_destination": ("Time Profile Destination", "Destination (Time Profile)"),
}, required=("number", "destination"))

TIME_PROFILES = FormSpec("IPO time profiles", {
    "name": ("Name", "Time Profile", "Profile Name"),
    "start": ("Start Time", "Start"),
    "end": ("End Time", "End"),
    "days": ("Days", "Day", "Days of Week"),
    "entries": ("Time Entry List", "Time Entries"),
    "dates": ("Calendar Entry List", "Calendar Dates", "Calendar Entries"),
    # one calendar entry per row (Manager's Calendar tab: a date, a start and end time)
    "date": ("Date", "Calendar Date", "Start Date"),
    "end_date": ("End Date", "Calendar End Date"),
    "recurrence": ("Recurrence Pattern", "Recurrence", "Entry Type"),
    **{d: (full,) for d, full in zip(DAY_NAMES, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
                                                  "Sun"), strict=True)},
}, required=("name",))

SPECS = (HUNT_GROUP_MEMBERS, USERS, HUNT_GROUPS, ROUTES, TIME_PROFILES)

RING_MODES: dict[str, tuple[str, str | None]] = {
    "collective": ("ring_all", None),
    "collective call waiting": ("ring_all", "call waiting on busy members is not offered"),
    "group": ("ring_all", None),
    "sequential": ("best_skill", "sequential: members get skill levels in list order and the "
                   "queue picks the best level"),
    "linear": ("best_skill", "linear: members get skill levels in list order"),
    "hunt": ("best_skill", "hunt: members get skill levels in list order"),
    "rotary": ("round_robin", None),
    "circular": ("round_robin", None),
    "longest waiting": ("longest_idle", None),
    "idle": ("longest_idle", None),
}

_DAY_ALIASES = {d[:3]: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday",
                                                "friday", "saturday", "sunday"))}


_HHMM = "[0-9]{1,2}:[0-9]{2}"

def import_avaya_ipo(
    paths: Sequence[Path], builder: ConfigBuilder, report: MigrationReport,
    progress: Callable[[int], None] | None = None,
) -> None:
    IpoImport(builder, report, read_tables(paths, SPECS, report, progress)).run()


class IpoImport:
    def __init__(self, builder: ConfigBuilder, report: MigrationReport,
                 tables: dict[str, list[CsvTable]]) -> None:
        self.b = builder
        self.report = report
        self.tables = tables
        self.users: dict[str, CsvRow] = {}  # by name and by extension
        self.groups: dict[str, str] = {}  # group name / extension -> queue id
        self.profiles: dict[str, str] = {}  # time profile name -> schedule id

    def rows(self, spec: FormSpec) -> list[CsvRow]:
        return [r for t in self.tables.get(spec.name, []) for r in t.rows]

    def run(self) -> None:
        for row in self.rows(USERS):
            self.users[row.get("name").lower()] = row
            ext = clean_number(row.get("extension"), row.source, "extension", self.report)
            if ext:
                self.users[ext] = row
        self._time_profiles()
        self._hunt_groups()
        self._users_not_in_groups()
        self._routes()

    # -- time profiles ------------------------------------------------------------------
    def _time_profiles(self) -> None:
        spans: dict[str, list[tuple[int, int]]] = {}
        dates: dict[str, list[dict[str, str]]] = {}
        first: dict[str, CsvRow] = {}
        failed: set[str] = set()
        for row in self.rows(TIME_PROFILES):
            name = row.get("name")
            if not name:
                self.report.add("IPO time profile", "(no name)", Outcome.UNSUPPORTED,
                                row.source, reason="row without a name")
                continue
            first.setdefault(name, row)
            spans.setdefault(name, [])
            if row.get("date"):
                entry = self._calendar_row(name, row)
                if entry is not None:
                    dates.setdefault(name, []).append(entry)
                continue
            try:
                spans[name] += _profile_spans(row)
                if row is not first[name]:  # the profile's first row is its own line
                    self.report.add("IPO time profile entry", name, Outcome.MAPPED,
                                    row.source, target=f"time profile {name}",
                                    reason="hours added to the schedule")
            except ValueError as exc:
                failed.add(name)
                self.report.add("IPO time profile entry", name, Outcome.UNSUPPORTED,
                                row.source, reason=str(exc))
            for d in split_list(row.get("dates")):
                if _iso_date(d):
                    dates.setdefault(name, []).append({"name": name, "date": d})
                else:
                    self.report.add("IPO calendar entry", f"{name}: {d}", Outcome.UNSUPPORTED,
                                    row.source, reason="date not in YYYY-MM-DD form")
        for name, intervals in spans.items():
            sid = f"tp_{slug(name) or 'profile'}"
            calendars = []
            note = ""
            if dates.get(name):
                cal = f"{sid}_dates"
                # IPO calendar entries are days the profile is *active*; Centrale holidays
                # close a schedule: the dates become a calendar of their own.
                self.b.calendars[cal] = {"id": cal, "name": f"{name} calendar dates",
                                         "holidays": dates[name]}
                note = (f"calendar dates ({len(dates[name])}) make the profile active on "
                        f"those days in IP Office; here they are holiday calendar {cal} "
                        "(days the schedule is closed): check the intent")
                calendars = [cal]
            if name in failed:
                note = "; ".join(x for x in (note, "some time entries were not understood (see "
                                             "below): the schedule lacks them") if x)
            self.b.add_schedule(sid, _hours(intervals), calendars)
            self.profiles[name.lower()] = sid
            self.report.add("IPO time profile", name,
                            Outcome.APPROXIMATED if note else Outcome.MAPPED,
                            first[name].source, target=f"schedules[{sid}]",
                            reason=note or f"time zone {self.b.timezone}")

    def _calendar_row(self, name: str, row: CsvRow) -> dict[str, str] | None:
        """One calendar entry row (Date, optional End Date, Start/End Time) -> a holiday
        entry: a whole day as `date`, a part day as a `start`/`end` range."""
        label = f"{name}: {row.get('date')}"
        start_day, end_day = row.get("date"), row.get("end_date") or row.get("date")
        if not (_iso_date(start_day) and _iso_date(end_day)):
            self.report.add("IPO calendar entry", label, Outcome.UNSUPPORTED, row.source,
                            reason="date not in YYYY-MM-DD form (Excel may have turned it "
                            "into its own date format: re-export the column as text)")
            return None
        start, end = row.get("start"), row.get("end")
        whole = (not start and not end) or (start in ("00:00", "0:00") and
                                            end in ("23:59", "24:00"))
        target = f"holiday_calendars[tp_{slug(name) or 'profile'}_dates]"
        if whole and start_day == end_day:
            self.report.add("IPO calendar entry", label, Outcome.APPROXIMATED, row.source,
                            target=target, reason="active on that day in IP Office; a "
                            "closed day here (check the intent)")
            return {"name": name, "date": start_day}
        try:
            s_min = _clock(start or "00:00")
            e_min = _clock(end or "23:59")
        except ValueError as exc:
            self.report.add("IPO calendar entry", label, Outcome.UNSUPPORTED, row.source,
                            reason=str(exc))
            return None
        if e_min == 23 * 60 + 59:
            e_min = 1440
        start_at = f"{start_day}T{s_min // 60:02d}:{s_min % 60:02d}:00"
        end_at = (f"{end_day}T{e_min // 60:02d}:{e_min % 60:02d}:00" if e_min < 1440 else
                  f"{_next_day(end_day)}T00:00:00")
        if end_at <= start_at:
            self.report.add("IPO calendar entry", label, Outcome.UNSUPPORTED, row.source,
                            reason="ends before it starts")
            return None
        self.report.add("IPO calendar entry", f"{label} {start or '00:00'}-{end or '24:00'}",
                        Outcome.APPROXIMATED, row.source, target=target,
                        reason="part of a day (or several days): a dated range; active in "
                        "IP Office, closed here (check the intent)")
        return {"name": name, "start": start_at, "end": end_at}

    # -- hunt groups --------------------------------------------------------------------
    def _hunt_groups(self) -> None:
        self.member_rows: dict[str, list[CsvRow]] = {}
        for row in self.rows(HUNT_GROUP_MEMBERS):
            self.member_rows.setdefault(row.get("group").lower(), []).append(row)
        rows = self.rows(HUNT_GROUPS)
        for row in rows:
            name = row.get("name")
            qid = f"hg_{slug(name)}" if slug(name) else f"hg_{len(self.groups) + 1}"
            self.groups[name.lower()] = qid
            ext = clean_number(row.get("extension"), row.source, "extension", self.report)
            if ext:
                self.groups[ext] = qid
        for row in rows:
            self._hunt_group(row)
        known = {r.get("name").lower() for r in rows}
        for group, member_rows in self.member_rows.items():
            if group in known:
                continue
            for row in member_rows:
                self.report.add("IPO hunt group member", f"{row.get('member')} in "
                                f"{row.get('group')}", Outcome.UNSUPPORTED, row.source,
                                reason=f"hunt group {row.get('group')!r} is not in the hunt "
                                "group export")

    def _hunt_group(self, row: CsvRow) -> None:
        name = row.get("name")
        qid = self.groups[name.lower()]
        mode = row.get("ring_mode").lower()
        strategy, note = RING_MODES.get(mode, ("longest_idle", f"ring mode {mode!r} unknown: "
                                                               "longest idle"))
        notes = [note] if note else []
        queue: dict[str, Any] = {"id": qid, "name": name, "strategy": strategy,
                                 "channels": ["voice"], "skills": {qid: 16}}
        no_answer = _int(row.get("no_answer"))
        if no_answer:
            queue["rona_seconds"] = no_answer
        limit = _int(row.get("queue_limit"))
        if limit:
            queue["max_length"] = limit
        if row.get("queuing").lower() in ("false", "no", "off", "0", "n"):
            notes.append("queuing off in IP Office: Centrale queues the calls (set max_length "
                         "to limit)")
        overflow_time = _int(row.get("overflow_time"))
        targets = []
        for g in split_list(row.get("overflow_groups")):
            target = self.groups.get(g.lower())
            if target:
                targets.append(target)
            else:
                notes.append(f"overflow group {g!r} not in the export")
        if targets:
            queue["overflow"] = [{"after_seconds": overflow_time or 0, "add_queues": targets}]
        for label, key in (("night service group", "night_service"),
                           ("out of service group", "out_of_service")):
            if row.get(key):
                notes.append(f"{label} {row.get(key)!r}: add a schedule node in the flow "
                             "(fallback groups are not a queue setting in Centrale)")
        self.b.skills[qid] = {"id": qid, "name": name}
        self.b.queues[qid] = queue
        for position, member in enumerate(split_list(row.get("members")), start=1):
            self._member(member, qid, position, strategy == "best_skill", row)
        rows = sorted(self.member_rows.get(name.lower(), []),
                      key=lambda r: (_int(r.get("position")) or 10_000, r.source.line or 0))
        for position, mrow in enumerate(rows, start=1):
            self._member(mrow.get("member"), qid, position, strategy == "best_skill", mrow,
                         per_row=True)
        self.report.add("IPO hunt group", name,
                        Outcome.APPROXIMATED if notes else Outcome.MAPPED, row.source,
                        target=f"queues[{qid}] + skills[{qid}]",
                        reason="; ".join(notes) or f"ring mode {mode} -> {strategy}")

    def _member(self, member: str, qid: str, position: int, ordered: bool,
                row: CsvRow, *, per_row: bool = False) -> None:
        group = row.get("group") if per_row else row.get("name")
        user = self.users.get(member.lower()) or self.users.get(member)
        if user is None:
            self.report.add("IPO hunt group member", f"{member} in {group}",
                            Outcome.UNSUPPORTED, row.source,
                            reason="not a user of the users export")
            return
        ext = clean_number(user.get("extension"), user.source, "extension", self.report) or ""
        aid = f"u_{slug(user.get('name')) or ext}"
        agent = self.b.agents.setdefault(aid, {
            "id": aid, "name": user.get("full_name") or user.get("name"), "skills": {}})
        if ext:
            agent["extension"] = ext
        agent["skills"][qid] = min(position, 16) if ordered else 1
        if per_row:
            disabled = row.get("enabled").lower() in ("false", "no", "off", "0", "n")
            self.report.add(
                "IPO hunt group member", f"{member} in {group}",
                Outcome.APPROXIMATED if disabled or (ordered and position > 16)
                else Outcome.MAPPED, row.source, target=f"agents[{aid}].skills.{qid}",
                reason=("disabled member in IP Office: imported with the skill (Centrale "
                        "has no per-member switch; remove the skill to keep it out)")
                if disabled else f"level {agent['skills'][qid]}")

    def _users_not_in_groups(self) -> None:
        seen = set()
        for row in self.rows(USERS):
            name = row.get("name")
            if id(row) in seen:
                continue
            seen.add(id(row))
            aid = f"u_{slug(name) or row.get('extension')}"
            if aid in self.b.agents:
                self.report.add("IPO user", name, Outcome.MAPPED, row.source,
                                target=f"agents[{aid}]",
                                reason="hunt group member: agent with the group's skill; "
                                "a user in users.yaml logs in as it (set its password)")
            else:
                self.report.add("IPO user", name, Outcome.APPROXIMATED, row.source,
                                reason="in no hunt group: not imported as an agent (add it "
                                "if the person takes queue calls)")

    # -- incoming call routes -----------------------------------------------------------
    def _routes(self) -> None:
        rows = self.rows(ROUTES)
        cleaned = []
        for row in rows:
            cleaned.append((clean_number(row.get("number"), row.source, "incoming number",
                                         self.report), row))
        fixes = restore_leading_zeros([(n, r.source) for n, r in cleaned if n], "incoming number",
                                      self.report, excel_damaged=excel_damaged(cleaned, "number"))
        for number, row in cleaned:
            self._route(fixes.get(number or "", number), row, number in fixes)

    def _route(self, number: str | None, row: CsvRow, zero_restored: bool = False) -> None:
        label = f"{row.get('number') or '(any)'} -> {row.get('destination')}"
        if number is None:
            self.report.add("IPO incoming call route", label, Outcome.UNSUPPORTED, row.source,
                            reason="incoming number unreadable (see input issues)")
            return
        notes: list[str] = []
        if re.search(r"[^0-9+]", number):
            self.report.add("IPO incoming call route", label, Outcome.UNSUPPORTED, row.source,
                            reason=f"pattern {number!r} (wildcards / partial match) is not a "
                            "number; Centrale routes exact numbers")
            return
        if number and not re.fullmatch(r"\+?[0-9]{2,20}", number):
            self.report.add("IPO incoming call route", label, Outcome.UNSUPPORTED, row.source,
                            reason=f"{number!r} is not a dialable number (2 to 20 digits)")
            return
        key = number or "default"
        if zero_restored:
            notes.append(f"leading zero restored: {number} (check it)")
        elif number and number != row.get("number").replace(" ", ""):
            notes.append(f"number cleaned from {row.get('number')!r} (Excel): check it")
        if not number:
            notes.append("blank incoming number (any call on the line): number 'default'")
        if row.get("cli"):
            notes.append(f"only for caller {row.get('cli')!r} in IP Office: the CLI filter "
                         "is not imported (use a condition on caller.number)")
        fid = f"icr_{slug(key)}"
        n = 2
        while fid in self.b.flows:
            fid = f"icr_{slug(key)}_{n}"
            n += 1
        nodes: dict[str, Any] = {}
        fallback = row.get("fallback")
        fb_node = None
        if fallback:
            fb_node = self._destination(nodes, "fallback", fallback, None, notes)
        dest = self._destination(nodes, "destination", row.get("destination"), fb_node, notes)
        start = dest
        profile = row.get("time_profile")
        if profile:
            sid = self.profiles.get(profile.lower())
            if sid is None:
                notes.append(f"time profile {profile!r} not in the export: ignored")
            else:
                out_of_hours = row.get("profile_destination")
                closed = (self._destination(nodes, "out_of_hours", out_of_hours, None, notes)
                          if out_of_hours else fb_node or self._hangup(nodes))
                nodes["hours"] = {"type": "schedule", "schedule": sid, "open": dest,
                                  "closed": closed}
                start = "hours"
                if not out_of_hours:
                    notes.append("outside the time profile IP Office uses the next matching "
                                 "route; here the fallback (or hang up)")
        for unused in [n for n in nodes if n not in _reachable(start, nodes)]:
            del nodes[unused]
            if unused == "fallback":
                notes.append(f"fallback {fallback!r} not used: the destination is a blind "
                             "transfer or voicemail, which cannot fall back in Centrale")
        self.b.flows[fid] = {"id": fid, "name": f"Incoming {key}", "start": start,
                             "nodes": nodes}
        if key in self.b.numbers:
            self.report.add("IPO incoming call route", label, Outcome.UNSUPPORTED, row.source,
                            reason=f"number {key} already routed by an earlier row (routes "
                            "that differ by line group or CLI cannot be told apart)")
            return
        self.b.numbers[key] = {"number": key, "flow": fid}
        self.report.add("IPO incoming call route", label,
                        Outcome.APPROXIMATED if notes else Outcome.MAPPED, row.source,
                        target=f"numbers[{key}] -> flows[{fid}]", reason="; ".join(notes))

    def _hangup(self, nodes: dict[str, Any]) -> str:
        nodes.setdefault("end", {"type": "hangup"})
        return "end"

    def _destination(self, nodes: dict[str, Any], name: str, dest: str,
                     failed: str | None, notes: list[str]) -> str:
        low = dest.strip().lower()
        qid = self.groups.get(low) or self.groups.get(dest.strip())
        if qid:
            node: dict[str, Any] = {"type": "queue", "queue": qid}
            if failed:
                node["failed_next"] = failed
            nodes[name] = node
            return name
        if low in ("voicemail", "voice mail", "vm"):
            nodes[name] = {"type": "voicemail"}
            return name
        user = self.users.get(low) or self.users.get(dest.strip())
        target = user.get("extension") if user else dest.strip()
        if re.fullmatch(r"\+?[0-9*#]{2,32}", target or ""):
            nodes[name] = {"type": "transfer", "target": target}
            if failed:
                # a blind transfer cannot see busy / no answer; the fallback still takes
                # the call when the transfer cannot be made at all
                nodes[name]["failed_next"] = failed
                notes.append(f"fallback {failed!r} is used when the transfer to {target} "
                             "cannot be made; busy or no answer after it is not detected")
            return name
        notes.append(f"destination {dest!r} (auto attendant or unknown) not supported: hang up")
        nodes[name] = {"type": "set", "variables": {"migration_unsupported": dest},
                       "next": self._hangup(nodes)}
        return name


def _reachable(start: str, nodes: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        todo += [node[k] for k in ("next", "open", "closed", "holiday", "failed_next",
                                   "timeout_next") if isinstance(node.get(k), str)]
    return seen


def _clock(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]{1,2}):([0-9]{2})(?::[0-9]{2})?\s*", text)
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59:
        raise ValueError(f"time {text!r} not HH:MM")
    return int(m.group(1)) * 60 + int(m.group(2))


def _next_day(day: str) -> str:
    import datetime as dt

    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


def _iso_date(text: str) -> bool:
    import datetime as dt

    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text) is not None


def _int(text: str) -> int | None:
    m = re.match(r"\s*([0-9]+)", text or "")
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def _profile_spans(row: CsvRow) -> list[tuple[int, int]]:
    """Week-minute intervals of one time-profile row (per-entry or packed layout)."""
    out: list[tuple[int, int]] = []
    if row.get("entries"):
        for entry in split_list(row.get("entries")):
            m = re.match(rf"^\s*({_HHMM})\s*-\s*({_HHMM})\s+(.+)$", entry) or \
                re.match(rf"^\s*(.+?)\s+({_HHMM})\s*-\s*({_HHMM})\s*$", entry)
            if not m:
                raise ValueError(f"time entry {entry!r} not understood (want "
                                 "'08:00-17:00 Mon-Fri')")
            groups = m.groups()
            if ":" in groups[0]:
                start, end, days = groups
            else:
                days, start, end = groups
            out += _spans(start, end, _days(days))
        return out
    if row.get("start") and row.get("end"):
        days = _days(row.get("days")) if row.get("days") else [
            i for i, d in enumerate(DAY_NAMES)
            if row.get(d).lower() in ("true", "yes", "y", "1", "x")]
        out += _spans(row.get("start"), row.get("end"), days)
    return out


def _days(text: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"[\s,;/]+", text.strip().lower()):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            ia, ib = _DAY_ALIASES.get(a[:3]), _DAY_ALIASES.get(b[:3])
            if ia is None or ib is None:
                raise ValueError(f"days {text!r} not understood")
            out += [(ia + k) % 7 for k in range((ib - ia) % 7 + 1)]
        elif part[:3] in _DAY_ALIASES:
            out.append(_DAY_ALIASES[part[:3]])
        elif part in ("all", "daily", "every"):
            out += list(range(7))
        else:
            raise ValueError(f"days {text!r} not understood")
    return out


def _spans(start: str, end: str, days: list[int]) -> list[tuple[int, int]]:
    def minutes(t: str) -> int:
        m = re.fullmatch(r"\s*([0-9]{1,2}):([0-9]{2})(?::[0-9]{2})?\s*", t)
        if not m:
            raise ValueError(f"time {t!r} not HH:MM")
        return int(m.group(1)) * 60 + int(m.group(2))

    s, e = minutes(start), minutes(end)
    if e == 23 * 60 + 59:
        e = 1440
    out = []
    for d in days:
        out.append((d * 1440 + s, d * 1440 + e if e > s else (d + 1) * 1440 + e))
    return out


def _hours(intervals: list[tuple[int, int]]) -> dict[str, list[str]]:
    from config.importers.builder import week_intervals_to_hours

    return week_intervals_to_hours(intervals)
