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
        self.coverage_paths: dict[int, forms.CoveragePath] = {}
        self.routing_tables: dict[int, forms.RoutingTable] = {}
        self._content: dict[tuple[str, str], list[str]] = {}
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
        self._map_coverage()

    def _dup(self, kind: str, ident: str, src: SourceRef,
             cmd: SatCommand | None = None) -> None:
        """Warn when a screen is captured twice with different content; a redraw of the
        same screen (a VT220 refresh, the same command typed again) is not news."""
        content = [t.strip() for _, t in cmd.lines if t.strip() and t != "\f"] if cmd else []
        first = self._seen.get((kind, ident))
        if first is not None and (cmd is None or self._content.get((kind, ident)) != content):
            self.report.warn(f"{kind} {ident} appears again with different content (first "
                             f"at {first}); the later capture is used", src)
        elif first is None:
            self._seen[(kind, ident)] = src
        self._content[(kind, ident)] = content

    def _parse(self, cmd: SatCommand) -> None:
        verb = "display" if cmd.verb in ("change", "add") else cmd.verb
        obj = cmd.obj
        if obj in ("hunt-group", "hunt-groups") and verb == "display":
            hg = forms.parse_hunt_group(cmd)
            if hg is None:
                self._unreadable(cmd, "no group number")
                return
            self._dup("hunt-group", str(hg.number), hg.source, cmd)
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
            self._dup("vector", str(vec.number), vec.source, cmd)
            self.vectors[vec.number] = vec
        elif obj == "vdn" and verb == "display":
            vdn = forms.parse_vdn(cmd)
            if vdn is None:
                self._unreadable(cmd, "no extension")
                return
            self._dup("vdn", vdn.extension, vdn.source, cmd)
            self.vdns[vdn.extension] = vdn
        elif obj == "agent-loginid" and verb == "display":
            agent = forms.parse_agent(cmd)
            if agent is None:
                self._unreadable(cmd, "no login ID")
                return
            self._dup("agent-loginID", agent.login_id, agent.source, cmd)
            listed = self.agents.get(agent.login_id)
            if listed is not None and listed.from_list and listed.skills and not agent.skills:
                agent.skills = listed.skills  # the form's skill page was not captured
                agent.skills_from_list = True
            self.agents[agent.login_id] = agent
        elif obj == "agent-loginid" and verb == "list":
            for agent in forms.parse_list_agents(cmd):
                known = self.agents.get(agent.login_id)
                if known is None:
                    self.agents[agent.login_id] = agent
                elif not known.skills and agent.skills:
                    known.skills = agent.skills
                    known.skills_from_list = True
                elif known.skills and agent.skills and {s[:2] for s in known.skills} != {
                        s[:2] for s in agent.skills}:
                    self.report.warn(f"agent-loginID {agent.login_id}: list agent-loginID "
                                     "shows other skills than display agent-loginID; the "
                                     "display form is used", agent.source)
                if known is not None and not known.name:
                    known.name = agent.name
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
        elif obj in ("coverage", "coverage-path") and verb == "display":
            cov = forms.parse_coverage_path(cmd)
            if cov is None:
                self._unreadable(cmd, "no coverage path number")
                return
            self.coverage_paths[cov.number] = cov
        elif obj in ("vrt", "vector-routing-table") and verb == "display":
            vrt = forms.parse_routing_table(cmd)
            if vrt is None:
                self._unreadable(cmd, "no table number")
                return
            self.routing_tables[vrt.number] = vrt
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
        years = range(self.builder.reference_year, self.builder.reference_year + 3)
        for number, table in sorted(self.holiday_tables.items()):
            cal_id = f"holidays_{number}"
            holidays: list[dict[str, Any]] = []
            for entry in table.entries:
                name = f"table {number}: {entry.description or '(no description)'}"
                label = entry.description or f"holiday table {number}"
                target = f"holiday_calendars[{cal_id}]"
                feast = movable_feast(entry.description)
                if feast is not None:
                    offset, feast_name = feast
                    for year in years:
                        day = easter(year) + dt.timedelta(days=offset)
                        holidays.append({"name": label, "date": day.isoformat()})
                    self.report.add(
                        "holiday", name, Outcome.APPROXIMATED, entry.source, target=target,
                        reason=f"{feast_name} moves every year (Easter {offset:+d} days): "
                        f"the capture's {entry.start[0]:02d}-{entry.start[1]:02d} is one "
                        f"year's date; imported as the dates of {years[0]}-{years[-1]}; add "
                        "later years before then (Avaya needs the table edited yearly too)")
                    continue
                days, partial = _holiday_days(entry)
                if partial:
                    ranges = _part_day_ranges(entry, years)
                    holidays += [{"name": label, "start": a, "end": b} for a, b in ranges]
                    self.report.add(
                        "holiday", name, Outcome.APPROXIMATED, entry.source, target=target,
                        reason=f"part of a day ({_span_text(entry)}), every year in Avaya: "
                        f"imported as dated ranges for {years[0]}-{years[-1]} (Centrale's "
                        "recurring holidays are whole days); add later years before then")
                    continue
                for month, day in days:
                    holidays.append({"name": label, "month_day": f"{month:02d}-{day:02d}"})
                why = ("start date only (END blank): that one day, every year"
                       if entry.start_only else f"every year, {len(days)} day(s)")
                self.report.add("holiday", name, Outcome.MAPPED, entry.source, target=target,
                                reason=why)
            for ref, text in table.bad_rows:
                self.report.add("holiday", f"table {number}: {text}", Outcome.UNSUPPORTED, ref,
                                reason="row not understood (date out of range, or an END "
                                "without its month and day?)")
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
            self._hunt_group_redirections(hg, qid)
            outcome = Outcome.APPROXIMATED if notes else Outcome.MAPPED
            desc = f"{number} {hg.name}".strip()
            self.report.add("hunt-group", desc, outcome, hg.source,
                            target=f"queues[{qid}] + skills[{qid}]",
                            reason="; ".join(notes) or f"{hg.group_type} -> {strategy}")

    def _resolve_destination(self, dest: str) -> str:
        """What an Avaya destination (extension, `h12`, `v3100`, VDN or hunt-group
        extension) is in the import, for the report."""
        d = dest.strip().lower()
        m = re.fullmatch(r"h([0-9]+)", d)
        if m:
            n = int(m.group(1))
            return (f"hunt group {n} (queue {self._queue_id(n)})" if n in self.hunt_groups
                    else f"hunt group {n}, not in the input")
        ext = re.sub(r"^v", "", d).replace(".", "")
        if ext in self.vdns:
            vdn = self.vdns[ext]
            return (f"VDN {ext} (flow {flow_id(vdn.vector)})" if vdn.vector is not None
                    else f"VDN {ext}")
        for number, hg in self.hunt_groups.items():
            if hg.extension and hg.extension == ext:
                return f"hunt group {number} (queue {self._queue_id(number)})"
        return f"{dest}, not a VDN or hunt group of the input"

    def _hunt_group_redirections(self, hg: HuntGroup, qid: str) -> None:
        if hg.coverage_path:
            path = re.match(r"[0-9]+", hg.coverage_path)
            known = path and int(path.group()) in self.coverage_paths
            self.report.add(
                "hunt-group coverage path", f"group {hg.number} -> coverage path "
                f"{hg.coverage_path}", Outcome.UNSUPPORTED, hg.source, target=f"queues[{qid}]",
                reason="Centrale has no coverage paths: unanswered calls stay queued; use the "
                "queue's max_wait_seconds and exit (queue or flow node) for the same effect"
                + ("; the path's points are listed below" if known else
                   "; 'display coverage path' is not in the input"))
        if hg.night_service:
            self.report.add(
                "hunt-group night service", f"group {hg.number} -> {hg.night_service}",
                Outcome.UNSUPPORTED, hg.source, target=f"queues[{qid}]",
                reason=f"night service destination {self._resolve_destination(hg.night_service)}"
                ": Centrale has no night-service switch; put a schedule node before the "
                "queue in the flow, with this destination when closed")

    def _map_coverage(self) -> None:
        for number, path in sorted(self.coverage_paths.items()):
            users = [str(n) for n, hg in sorted(self.hunt_groups.items())
                     if re.match(r"[0-9]+", hg.coverage_path or "") and
                     int(re.match(r"[0-9]+", hg.coverage_path).group()) == number]  # type: ignore[union-attr]
            self.report.add(
                "coverage path", f"{number}", Outcome.UNSUPPORTED, path.source,
                reason="Centrale has no coverage paths" + (
                    f"; used by hunt group(s) {', '.join(users)}" if users else
                    "; used by no hunt group of the input (stations are not imported)")
                + (f"; next path {path.next_path}" if path.next_path else ""))
            for label, value, ref in path.points:
                self.report.add(
                    "coverage point", f"path {number} {label}: {value}", Outcome.UNSUPPORTED,
                    ref, reason=f"-> {self._resolve_destination(value)}; not followed "
                    "(no coverage in Centrale)")

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
                            "give the person a login (users.yaml has a user for it)")

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
            if agent.from_list and not agent.skills:
                notes.append("list agent-loginID shows no skill for this agent; capture "
                             "'display agent-loginID' to be sure")
            entry = {"id": login, "name": agent.name or f"agent {login}", "skills": skills}
            self.builder.agents[login] = entry
            origin = (" (skills from list agent-loginID, lines " + ", ".join(
                sorted({str(s[2].line) for s in agent.skills})) + ")"
                if agent.skills_from_list or (agent.from_list and agent.skills) else "")
            self.report.add("agent-loginID", f"{login} {agent.name}".strip(),
                            Outcome.APPROXIMATED if notes else Outcome.MAPPED, agent.source,
                            target=f"agents[{login}]",
                            reason="; ".join(notes) or f"{len(skills)} skill(s), levels kept "
                            f"(1 = best){origin}; a user (users.yaml) logs in as it")

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

    def routing_table(self, table: str) -> list[str] | None:
        """The entries of vector routing table `table` when it was captured."""
        vrt = self.routing_tables.get(int(table)) if is_ascii_digits(table) else None
        return None if vrt is None else list(vrt.entries)

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
    """Month/day pairs an entry covers (every year), and whether it covers part of a
    day only (a start time other than 00:00 or an end time other than 23:59)."""
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


def _span_text(entry: forms.HolidayEntry) -> str:
    sm, sd, sh, smin = entry.start
    text = f"{sm:02d}-{sd:02d} {sh:02d}:{smin:02d}"
    if entry.end is None:
        return text + " to the end of the day"
    em, ed, eh, emin = entry.end
    return text + f" to {em:02d}-{ed:02d} {eh:02d}:{emin:02d}"


def _part_day_ranges(entry: forms.HolidayEntry, years: range) -> list[tuple[str, str]]:
    """`start`/`end` datetimes of a part-day entry in each of `years` (end minute
    inclusive, as Avaya's 23:59 means the whole minute)."""
    out = []
    sm, sd, sh, smin = entry.start
    for year in years:
        try:
            start = dt.datetime(year, sm, sd, min(sh, 23), smin)
            if entry.end is None:
                end = dt.datetime(year, sm, sd) + dt.timedelta(days=1)
            else:
                em, ed, eh, emin = entry.end
                end = dt.datetime(year, em, ed) + dt.timedelta(hours=eh, minutes=emin + 1)
                if end <= start:
                    end = end.replace(year=year + 1)
        except ValueError:  # 02-29 in a common year
            continue
        out.append((start.isoformat(), end.isoformat()))
    return out


# Holidays defined by Easter: description words -> (days after Easter Sunday, name).
_FEASTS: tuple[tuple[str, int, str], ...] = (
    (r"good friday|goede vrijdag|karfreitag|vendredi saint|viernes santo", -2, "Good Friday"),
    (r"easter monday|paasmaandag|tweede paasdag|2e paasdag|ostermontag|lundi de p[aâ]ques"
     r"|pasquetta", 1, "Easter Monday"),
    (r"easter|pasen|paaszondag|ostern|p[aâ]ques|pascua", 0, "Easter"),
    (r"ascension|hemelvaart|himmelfahrt|ascensi[oó]n", 39, "Ascension Day"),
    (r"whit monday|pentecost monday|pinkstermaandag|tweede pinksterdag|2e pinksterdag"
     r"|pfingstmontag|lundi de pentec[oô]te", 50, "Whit Monday"),
    (r"whit|pentecost|pinksteren|pfingst|pentec[oô]te", 49, "Pentecost"),
    (r"corpus christi|fronleichnam|sacramentsdag", 60, "Corpus Christi"),
    (r"carnival|carnaval|rosenmontag|karneval", -48, "Carnival Monday"),
)


def movable_feast(description: str) -> tuple[int, str] | None:
    low = description.lower()
    for pattern, offset, name in _FEASTS:
        if re.search(pattern, low):
            return offset, name
    return None


def easter(year: int) -> dt.date:
    """Easter Sunday (Gregorian; the anonymous algorithm of Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month = (h + ell - 7 * m + 114) // 31
    day = (h + ell - 7 * m + 114) % 31 + 1
    return dt.date(year, month, day)
