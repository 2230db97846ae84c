"""Avaya Communication Manager: SAT captures -> Centrale config and migration report.

Two passes: first every capture is split into commands and each known screen parsed
into a record (so a vector may refer to a hunt group or VDN captured later, or in
another file); then the records are mapped in dependency order: announcements,
holiday and service-hours tables, hunt groups (queues + skills), agents, vectors
(flows), VDNs (numbers).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from config.importers.avaya_cm import forms
from config.importers.avaya_cm.flows import VectorTranslator, flow_id, node_name
from config.importers.avaya_cm.forms import AgentLogin, HuntGroup
from config.importers.avaya_cm.sat import SatCommand, split_commands
from config.importers.avaya_cm.vector import Vector, parse_vector
from config.importers.builder import WEEK_MINUTES, ConfigBuilder, slug
from config.importers.errors import ImportFailure
from config.importers.report import MigrationReport, Outcome, SourceRef
from config.importers.textfile import read_text
from core.numbers import is_ascii_digits

# Commands that show state or usage, not configuration: noted, never "unsupported".
INFORMATIONAL = {
    ("list", "trace"), ("list", "usage"), ("display", "audio-group"),
    ("list", "registered-ip-stations"), ("display", "time"), ("list", "measurements"),
    ("display", "alarms"), ("display", "errors"), ("list", "history"), ("status", "*"),
    ("monitor", "*"), ("list", "configuration"),
}

STRATEGIES: dict[str, tuple[str, str | None]] = {
    "ucd-mia": ("longest_idle", None),
    "ucd": ("longest_idle", None),
    "ead-mia": ("best_skill", None),
    "ead": ("best_skill", None),
    "ucd-loa": ("least_occupied", None),
    "ead-loa": ("best_skill", "ead-loa: best skill level first, but ties go to the longest "
                "idle agent instead of the least occupied"),
    "circ": ("round_robin", None),
    "ddc": ("best_skill", "ddc (always the first free member in order): members get skill "
            "levels in member order and the queue picks the best level"),
    "slm": ("longest_idle", "service level maximizer has no equivalent: longest idle agent"),
    "pad": ("least_occupied", "percent allocation has no equivalent: least occupied agent"),
}

Progress = Callable[[int], None]


def import_avaya_cm(
    paths: Sequence[Path], builder: ConfigBuilder, report: MigrationReport,
    progress: Progress | None = None,
) -> None:
    commands: list[SatCommand] = []
    for path in paths:
        text = read_text(path, vt220=True)
        report.issues.extend(text.issues)
        found = list(split_commands(text, report.issues, progress))
        if not found:
            raise ImportFailure(
                "no Avaya CM SAT command found (expected a command line such as "
                "'display vector 5' at the start of a line): is this a SAT capture?",
                text.ref(1),
            )
        commands.extend(found)
    CmImport(builder, report).run(commands)


class CmImport:
    def __init__(self, builder: ConfigBuilder, report: MigrationReport) -> None:
        self.builder = builder
        self.report = report
        self.hunt_groups: dict[int, HuntGroup] = {}
        self.agents: dict[str, AgentLogin] = {}
        self.vdns: dict[str, forms.Vdn] = {}
        self.vectors: dict[int, Vector] = {}
        self.announcements: dict[str, forms.Announcement] = {}
        self.holiday_tables: dict[int, forms.HolidayTable] = {}
        self.service_hours: dict[int, forms.ServiceHoursTable] = {}
        self.queue_ids: dict[int, str] = {}
        self.external_entries: dict[int, set[str]] = {}
        self._seen: dict[tuple[str, str], SourceRef] = {}

    # -- pass 1: parse --------------------------------------------------------------------
    def run(self, commands: list[SatCommand]) -> None:
        for cmd in commands:
            self._parse(cmd)
        self._map_announcements()
        self._map_holidays()
        self._map_service_hours()
        self._map_hunt_groups()
        self._map_agents()
        self._map_vectors()
        self._map_vdns()

    def _dup(self, kind: str, ident: str, src: SourceRef) -> None:
        first = self._seen.get((kind, ident))
        if first is not None:
            self.report.warn(f"{kind} {ident} appears again (first at {first}); the later "
                             "capture is used", src)
        else:
            self._seen[(kind, ident)] = src

    def _parse(self, cmd: SatCommand) -> None:
        verb = "display" if cmd.verb in ("change", "add") else cmd.verb
        obj = cmd.obj
        if obj in ("hunt-group", "hunt-groups") and verb == "display":
            hg = forms.parse_hunt_group(cmd)
            if hg is None:
                self._unreadable(cmd, "no group number")
                return
            self._dup("hunt-group", str(hg.number), hg.source)
            self.hunt_groups[hg.number] = hg
        elif obj in ("hunt-group", "hunt-groups") and verb == "list":
            for hg in forms.parse_list_hunt_groups(cmd):
                if hg.number in self.hunt_groups and not self.hunt_groups[hg.number].from_list:
                    continue  # the full form is better than the list row
                self.hunt_groups[hg.number] = hg
        elif obj == "vector" and verb == "display":
            vec = parse_vector(cmd)
            if vec is None:
                self._unreadable(cmd, "no vector number")
                return
            self._dup("vector", str(vec.number), vec.source)
            self.vectors[vec.number] = vec
        elif obj == "vdn" and verb == "display":
            vdn = forms.parse_vdn(cmd)
            if vdn is None:
                self._unreadable(cmd, "no extension")
                return
            self._dup("vdn", vdn.extension, vdn.source)
            self.vdns[vdn.extension] = vdn
        elif obj == "agent-loginid" and verb == "display":
            agent = forms.parse_agent(cmd)
            if agent is None:
                self._unreadable(cmd, "no login ID")
                return
            self._dup("agent-loginID", agent.login_id, agent.source)
            self.agents[agent.login_id] = agent
        elif obj == "agent-loginid" and verb == "list":
            for agent in forms.parse_list_agents(cmd):
                if agent.login_id in self.agents and not self.agents[agent.login_id].skills:
                    self.agents[agent.login_id].skills = agent.skills
                self.agents.setdefault(agent.login_id, agent)
        elif obj in ("announcement", "announcements") and verb == "list":
            for ann in forms.parse_announcements(cmd):
                self.announcements[ann.extension] = ann
        elif obj == "announcement" and verb == "display":
            self._display_announcement(cmd)
        elif obj == "holiday-table" and verb == "display":
            table = forms.parse_holiday_table(cmd)
            if table is None:
                self._unreadable(cmd, "no table number")
                return
            self.holiday_tables[table.number] = table
        elif obj == "srvc-hours-table" and verb == "display":
            sh = forms.parse_service_hours(cmd)
            if sh is None:
                self._unreadable(cmd, "no table number")
                return
            self.service_hours[sh.number] = sh
        elif (cmd.verb, obj) in INFORMATIONAL or (cmd.verb, "*") in INFORMATIONAL:
            self.report.warn(f"'{cmd.title}' shows state or usage, not configuration: "
                             "ignored", cmd.ref())
        else:
            self.report.add("SAT command", cmd.title, Outcome.UNSUPPORTED, cmd.ref(),
                            reason=f"the importer does not read '{cmd.verb} {obj}' screens; "
                            f"{len(cmd.lines)} line(s) not imported")

    def _unreadable(self, cmd: SatCommand, why: str) -> None:
        self.report.error(f"{cmd.title}: cannot read the screen ({why}); capture cut off?",
                          cmd.ref())
        self.report.add("SAT command", cmd.title, Outcome.UNSUPPORTED, cmd.ref(),
                        reason=f"screen unreadable: {why}")

    def _display_announcement(self, cmd: SatCommand) -> None:
        from config.importers.avaya_cm.fields import Form

        form = Form(cmd.lines)
        ext = (form.value("extension") or (cmd.args[0] if cmd.args else "")).replace(".", "")
        if not ext:
            self._unreadable(cmd, "no extension")
            return
        self.announcements[ext] = forms.Announcement(
            ext, cmd.ref(), form.value("type"), form.value("name"),
            form.value("source", "group/board", "audio group"))

    # -- pass 2: map ----------------------------------------------------------------------
    def _map_announcements(self) -> None:
        for ext, ann in self.announcements.items():
            prompt = f"ann_{ext}"
            detail = " on ".join(x for x in (ann.kind, ann.audio_source) if x)
            self.builder.add_recording(prompt, ann.name or ext, detail, ann.source)
            if ann.kind in ("integ-mus", "analog-m", "aux-trk-m"):
                self.report.add("announcement", f"{ext} {ann.name}", Outcome.APPROXIMATED,
                                ann.source, target=f"prompt {prompt}",
                                reason="music source: export it and use it as a queue's "
                                "music_on_hold if it is the hold music")
            else:
                self.report.add("announcement", f"{ext} {ann.name}", Outcome.MAPPED,
                                ann.source, target=f"prompt {prompt} ({prompt}.wav)",
                                reason="export the recording (see Recordings to export)")

    def _map_holidays(self) -> None:
        for number, table in sorted(self.holiday_tables.items()):
            cal_id = f"holidays_{number}"
            holidays: list[dict[str, Any]] = []
            for entry in table.entries:
                days, partial = _holiday_days(entry)
                for month, day in days:
                    holidays.append({"name": entry.description or f"holiday table {number}",
                                     "month_day": f"{month:02d}-{day:02d}"})
                name = f"table {number}: {entry.description or '(no description)'}"
                if partial:
                    self.report.add("holiday", name, Outcome.APPROXIMATED, entry.source,
                                    target=f"holiday_calendars[{cal_id}]",
                                    reason="part-day holiday imported as whole day(s); "
                                    "schema addition: recurring time span on a month_day")
                else:
                    self.report.add("holiday", name, Outcome.MAPPED, entry.source,
                                    target=f"holiday_calendars[{cal_id}]",
                                    reason=f"every year, {len(days)} day(s)")
            for ref, text in table.bad_rows:
                self.report.add("holiday", f"table {number}: {text}", Outcome.UNSUPPORTED, ref,
                                reason="row not understood (date out of range?)")
            entry_dict: dict[str, Any] = {"id": cal_id, "holidays": holidays}
            if table.name:
                entry_dict["name"] = table.name
            self.builder.calendars[cal_id] = entry_dict

    def _map_service_hours(self) -> None:
        for number, table in sorted(self.service_hours.items()):
            sid = f"service_hours_{number}"
            intervals = [(day * 1440 + s, day * 1440 + e) for day, s, e in table.spans]
            from config.importers.builder import week_intervals_to_hours

            self.builder.add_schedule(sid, week_intervals_to_hours(intervals), [])
            self.report.add("service-hours table", f"{number} {table.name}".strip(),
                            Outcome.MAPPED, table.source, target=f"schedules[{sid}]",
                            reason=f"time zone {self.builder.timezone} (Avaya uses the "
                            "location's time; check it)")
            for ref, text in table.bad:
                self.report.add("service-hours span", text, Outcome.UNSUPPORTED, ref,
                                reason="end before start or out of range")

    def _queue_id(self, number: int) -> str:
        if number not in self.queue_ids:
            hg = self.hunt_groups.get(number)
            name = slug(hg.name) if hg and hg.name else ""
            self.queue_ids[number] = f"hg{number}_{name}" if name else f"hg{number}"
        return self.queue_ids[number]

    def _map_hunt_groups(self) -> None:
        for number, hg in sorted(self.hunt_groups.items()):
            qid = self._queue_id(number)
            notes: list[str] = []
            strategy, note = STRATEGIES.get(hg.group_type, ("longest_idle", None))
            if hg.group_type not in STRATEGIES:
                note = f"group type {hg.group_type or '(missing)'!r} unknown: longest idle"
            if note:
                notes.append(note)
            self.builder.skills[qid] = {"id": qid, "name": hg.name or f"hunt group {number}"}
            queue: dict[str, Any] = {"id": qid, "name": hg.name or f"hunt group {number}",
                                     "strategy": strategy, "channels": ["voice"],
                                     "skills": {qid: 16}}
            limit = re.match(r"[0-9]+", hg.queue_limit or "")
            if limit and int(limit.group()) >= 1:
                queue["max_length"] = int(limit.group())
            if hg.queue is False:
                notes.append("Queue? n (callers are not queued, they get busy): Centrale "
                             "queues them; set max_length / max_wait_seconds to limit")
            if hg.acd is False:
                notes.append("non-ACD hunt group: members are stations, imported as agents")
            if hg.acw_seconds:
                queue["wrap_up_seconds"] = hg.acw_seconds
            if hg.service_level_seconds:
                queue["service_level_seconds"] = hg.service_level_seconds
            if hg.incomplete:
                notes.append(f"capture incomplete ({hg.incomplete}): fields on missing pages "
                             "have Centrale defaults")
            if hg.from_list:
                notes.append("from list hunt-group only: capture 'display hunt-group' for "
                             "the full form")
            self.builder.queues[qid] = queue
            self._members(hg, qid)
            outcome = Outcome.APPROXIMATED if notes else Outcome.MAPPED
            desc = f"{number} {hg.name}".strip()
            self.report.add("hunt-group", desc, outcome, hg.source,
                            target=f"queues[{qid}] + skills[{qid}]",
                            reason="; ".join(notes) or f"{hg.group_type} -> {strategy}")

    def _members(self, hg: HuntGroup, qid: str) -> None:
        for position, (ext, name) in enumerate(hg.members, start=1):
            aid = f"ext_{ext}"
            agent = self.builder.agents.setdefault(
                aid, {"id": aid, "name": name or f"extension {ext}", "skills": {},
                      "extension": ext})
            level = min(position, 16) if hg.group_type == "ddc" else 1
            agent["skills"][qid] = level
            self.report.add("hunt-group member", f"{ext} {name} in group {hg.number}".strip(),
                            Outcome.APPROXIMATED, hg.source, target=f"agents[{aid}]",
                            reason="a station member becomes an agent on that extension; "
                            "give the person a login (users:)")

    def _skill_for(self, number: str, src: SourceRef) -> str:
        n = int(number)
        if n not in self.hunt_groups:
            qid = self._queue_id(n)
            if qid not in self.builder.queues:
                self.builder.skills[qid] = {"id": qid, "name": f"skill {n}"}
                self.builder.queues[qid] = {"id": qid, "name": f"skill {n}",
                                            "channels": ["voice"], "skills": {qid: 16}}
                self.report.add("hunt-group", f"{n} (referenced only)", Outcome.APPROXIMATED,
                                src, target=f"queues[{qid}] + skills[{qid}]",
                                reason=f"hunt group/skill {n} is used but its form is not in "
                                "the input: queue created with Centrale defaults")
            return qid
        return self._queue_id(n)

    def _map_agents(self) -> None:
        for login, agent in sorted(self.agents.items()):
            skills: dict[str, int] = {}
            notes: list[str] = []
            for skill, level, src in agent.skills:
                if not is_ascii_digits(skill):
                    notes.append(f"skill {skill!r} not a number: skipped")
                    continue
                skills[self._skill_for(skill, src)] = max(1, min(level, 16))
            if agent.reserve_levels:
                notes.append("reserve levels (" + ", ".join(
                    f"skill {k}: RL{v}" for k, v in agent.reserve_levels.items())
                    + ") have no equivalent; use queue overflow rules")
            if agent.percent_allocation:
                notes.append("percent allocation ignored")
            if agent.call_handling and agent.call_handling not in ("skill-level", ""):
                notes.append(f"call handling preference {agent.call_handling}: Centrale "
                             "serves the agent's queues in configured order")
            if agent.incomplete:
                notes.append(f"capture incomplete ({agent.incomplete}): skills may be missing")
            entry = {"id": login, "name": agent.name or f"agent {login}", "skills": skills}
            self.builder.agents[login] = entry
            self.report.add("agent-loginID", f"{login} {agent.name}".strip(),
                            Outcome.APPROXIMATED if notes else Outcome.MAPPED, agent.source,
                            target=f"agents[{login}]",
                            reason="; ".join(notes) or f"{len(skills)} skill(s), levels kept "
                            "(1 = best); create a user (users:) to log in")

    # -- vectors --------------------------------------------------------------------------
    def queue_for(self, skill: str, vector: int, src: SourceRef) -> tuple[str, str | None]:
        if is_ascii_digits(skill):
            return self._skill_for(skill, src), None
        which = skill.lower()
        if which in ("1st", "2nd", "3rd"):
            values = sorted({v.skills[which] for v in self.vdns.values()
                             if v.vector == vector and which in v.skills})
            if len(values) == 1 and is_ascii_digits(values[0]):
                return self._skill_for(values[0], src), (
                    f"VDN skill {which} resolved to {values[0]} (the only VDN using vector "
                    f"{vector})")
            if values and is_ascii_digits(values[0]):
                return self._skill_for(values[0], src), (
                    f"VDN skill {which} differs per VDN ({', '.join(values)}): used "
                    f"{values[0]}; make one flow per VDN if they must differ")
        qid = f"unresolved_{slug(skill) or 'skill'}"
        if qid not in self.builder.queues:
            self.builder.skills[qid] = {"id": qid}
            self.builder.queues[qid] = {"id": qid, "channels": ["voice"], "skills": {qid: 16}}
        return qid, f"skill {skill!r} could not be resolved: placeholder queue {qid}"

    def holiday_schedule(self, table: str) -> tuple[str, str | None]:
        cal = f"holidays_{table}"
        note = None
        if cal not in self.builder.calendars:
            self.builder.calendars[cal] = {"id": cal, "holidays": []}
            note = f"holiday table {table} not in the input: calendar {cal} is empty"
        sid = self.builder.schedule_from_minutes(f"holiday_table_{table}",
                                                 [(0, WEEK_MINUTES)], [cal])
        return sid, note

    def service_hours_schedule(self, table: str) -> tuple[str, str | None]:
        sid = f"service_hours_{table}"
        if sid not in self.builder.schedules:
            self.builder.add_schedule(sid, {}, [])
            return sid, (f"service-hours table {table} not in the input: schedule {sid} "
                         "is always closed until you fill in its hours")
        return sid, None

    def vector_entry(self, vector: int, step: int) -> str | None:
        target = self.vectors.get(vector)
        if target is None:
            return None
        for s in target.steps:
            if s.kind != "comment" and s.number >= step:
                return f"{flow_id(vector)}.{node_name(vector, s.number)}"
        return None

    def _map_vectors(self) -> None:
        entries: dict[int, set[str]] = {}
        for vec in self.vectors.values():
            for step in vec.steps:
                if step.kind == "goto-vector":
                    target = self.vector_entry(int(step.args["vector"]),
                                               int(step.args.get("step") or 1))
                    if target:
                        number = int(step.args["vector"])
                        entries.setdefault(number, set()).add(target.split(".", 1)[1])
        for number, vec in sorted(self.vectors.items()):
            translator = VectorTranslator(vec, self)
            flow = translator.translate(entries.get(number))
            self.builder.flows[flow["id"]] = flow
            if vec.incomplete:
                self.report.add("vector", f"{number} {vec.name}".strip(), Outcome.UNSUPPORTED,
                                vec.source, target=f"flows[{flow['id']}]",
                                reason=f"capture incomplete ({vec.incomplete}): steps on the "
                                "missing page(s) are not imported; re-capture the vector")
            elif vec.gaps:
                self.report.add("vector", f"{number} {vec.name}".strip(),
                                Outcome.APPROXIMATED, vec.source, target=f"flows[{flow['id']}]",
                                reason="step line(s) " + ", ".join(f"{g:02d}" for g in vec.gaps)
                                + " absent from the capture (cut off?); jumps to them go to "
                                "the next captured step")
            else:
                self.report.add("vector", f"{number} {vec.name}".strip(), Outcome.MAPPED,
                                vec.source, target=f"flows[{flow['id']}]",
                                reason=f"{len(vec.steps)} step(s), one node each")

    # -- numbers --------------------------------------------------------------------------
    def _map_vdns(self) -> None:
        for ext, vdn in sorted(self.vdns.items()):
            label = f"{ext} {vdn.name}".strip()
            if vdn.vector is None:
                self.report.add("vdn", label, Outcome.UNSUPPORTED, vdn.source,
                                reason=f"destination {vdn.destination or '(missing)'!r} is not "
                                "a vector (policy routing tables are not imported)")
                continue
            fid = flow_id(vdn.vector)
            if fid not in self.builder.flows:
                self.report.add("vdn", label, Outcome.UNSUPPORTED, vdn.source,
                                reason=f"vector {vdn.vector} is not in the input; capture "
                                f"'display vector {vdn.vector}'")
                continue
            if not re.fullmatch(r"\+?[0-9]{2,20}", ext):
                self.report.add("vdn", label, Outcome.UNSUPPORTED, vdn.source,
                                reason=f"extension {ext!r} is not a dialable number")
                continue
            entry = {"number": ext, "flow": fid}
            if vdn.name:
                entry["name"] = vdn.name
            self.builder.numbers[ext] = entry
            self.report.add("vdn", label, Outcome.MAPPED, vdn.source, target=f"numbers[{ext}]",
                            reason=f"-> flow {fid}; if callers dial a DID that the trunk "
                            "maps to this VDN, add that number too")


def _holiday_days(entry: forms.HolidayEntry) -> tuple[list[tuple[int, int]], bool]:
    """Month/day pairs an entry covers (every year), and whether a part day was widened."""
    sm, sd, sh, smin = entry.start
    if entry.end is None:
        return [(sm, sd)], (sh, smin) != (0, 0)
    em, ed, eh, emin = entry.end
    partial = (sh, smin) != (0, 0) or (eh, emin) not in ((23, 59), (24, 0))
    try:
        start = dt.date(2000, sm, sd)  # a leap year, so 02-29 is valid
        end = dt.date(2000, em, ed)
    except ValueError:
        return [(sm, sd)], True
    if end < start:
        end = end.replace(year=2001)
    days = []
    day = start
    while day <= end and len(days) < 366:
        days.append((day.month, day.day))
        day += dt.timedelta(days=1)
    return days, partial
