"""Mitel MiVoice Business per-form CSV exports -> Centrale config.

The System Administration Tool exports each form (Export on the form's toolbar) as a
CSV whose header row holds the form's field names. We recognise the form by those
headers — so file names and column order do not matter — and accept the names
different releases use (e.g. "Pilot Number" / "Directory Number").

Mapping:
- ACD Agent Skill Group -> a queue and a skill of the same id (work timer -> wrap-up);
- ACD Agent ID -> an agent with its skill groups and levels (1 = best);
- ACD Path -> a flow: a queue node on the primary skill group (path priority), the
  overflow groups and timers -> overflow rules of that queue, interflow -> max wait and
  a transfer, path unavailable -> a transfer; RADs -> prompts `rad_<dn>`;
- Hunt Group / Ring Group -> a voice queue with its members as agents on their
  extensions (terminal/cascade -> levels in member order, circular -> round robin,
  ring all -> ring_all);
- Business Schedule -> a schedule; DID service -> a number and a flow (schedule node:
  day answer point when open, night 1 when closed);
- Call Rerouting Always Alternative -> applied where a DID names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from config.importers.builder import ConfigBuilder, slug, week_intervals_to_hours
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

SKILL_GROUPS = FormSpec("MiVB ACD Agent Skill Groups", {
    "number": ("Group Number", "Skill Group Number", "Agent Skill Group Number"),
    "name": ("Name", "Group Name"),
    "dn": ("Directory Number", "Group Directory Number"),
    "work_timer": ("Work Timer", "Work Timer (sec)", "Auto Work Timer", "Work Timer Seconds"),
    "members": ("Members", "Agent IDs", "Group Members"),
    "skill_routing": ("Skill Level Routing", "Skill Based Routing", "Group uses Skill Levels",
                      "Uses Skill Levels"),
}, required=("number", "name"))

# The members sub-form of ACD Agent Skill Groups (Agent ID, Skill Level, Present), one
# member per row; the group's number is repeated on each row. Layout assumed from the
# form's fields (docs/migration.md): exports of the sub-form carry the parent's key.
SKILL_GROUP_MEMBERS = FormSpec("MiVB ACD Agent Skill Group Members", {
    "group": ("Agent Skill Group Number", "Skill Group Number", "Group Number",
              "Agent Skill Group", "Skill Group"),
    "agent_id": ("Agent ID", "Member", "Agent Id", "Member Agent ID", "ACD Agent ID"),
    "level": ("Skill Level", "Level"),
    "present": ("Present", "Default Presence", "Present at Login"),
}, required=("group", "agent_id"))

AGENTS = FormSpec("MiVB ACD Agent IDs", {
    "agent_id": ("Agent ID", "Agent Id", "ACD Agent ID"),
    "name": ("Name", "Agent Name", "Description"),
    "groups": ("Skill Groups", "Agent Skill Groups", "Skill Group(s)"),
    **{f"group{i}": (f"Skill Group {i}", f"Agent Skill Group {i}") for i in range(1, 9)},
    **{f"level{i}": (f"Skill Level {i}", f"Agent Skill Level {i}") for i in range(1, 9)},
}, required=("agent_id",))

PATHS = FormSpec("MiVB ACD Paths", {
    "number": ("Path Number", "ACD Path Number", "Path"),
    "dn": ("Directory Number", "Path Directory Number"),
    "name": ("Name", "Path Name"),
    "primary": ("Primary Agent Skill Group", "Primary Skill Group", "Primary Group"),
    "priority": ("Path Priority", "Priority"),
    "rad_delay": ("Delay to First RAD", "Delay to First RAD (sec)", "First RAD Delay"),
    "rad1": ("First RAD", "RAD 1 Directory Number", "First RAD Directory Number"),
    "rad2": ("Second RAD", "RAD 2 Directory Number", "Second RAD Directory Number"),
    "rad3": ("Third RAD", "RAD 3 Directory Number"),
    "rad4": ("Fourth RAD", "RAD 4 Directory Number"),
    "rad_interval": ("Delay Between RADs", "Delay Between RADs (sec)", "RAD Interval"),
    **{f"overflow{i}": (f"Overflow Agent Skill Group {i}", f"Overflow Group {i}")
       for i in range(1, 4)},
    **{f"timer{i}": (f"Overflow Timer {i}", f"Overflow Timer {i} (sec)") for i in range(1, 4)},
    "interflow_enabled": ("Interflow Enabled", "Interflow"),
    "interflow_timer": ("Interflow Timer", "Interflow Timer (sec)"),
    "interflow_point": ("Interflow Point", "Interflow Point Directory Number",
                        "Interflow Directory Number"),
    "unavailable": ("Path Unavailable Answer Point", "Unavailable Answer Point"),
}, required=("dn", "primary"))

HUNT_GROUPS = FormSpec("MiVB Hunt Groups", {
    "number": ("Hunt Group Number", "Group Number"),
    "dn": ("Pilot Number", "Directory Number", "Hunt Group Directory Number"),
    "name": ("Name", "Hunt Group Name"),
    "mode": ("Hunt Mode", "Hunting Mode"),
    "kind": ("Group Type", "Hunt Group Type"),
    "members": ("Members", "Member Directory Numbers", "Member List"),
}, required=("dn", "mode"))

RING_GROUPS = FormSpec("MiVB Ring Groups", {
    "number": ("Ring Group Number", "Group Number"),
    "dn": ("Directory Number", "Pilot Number"),
    "name": ("Name", "Ring Group Name"),
    "kind": ("Ring Group Type", "Type", "Ring Type"),
    "members": ("Members", "Member Directory Numbers", "Member List"),
    "overflow": ("Overflow Point", "Overflow Directory Number"),
}, required=("dn", "kind"))

REROUTING = FormSpec("MiVB Call Rerouting Always Alternatives", {
    "alternative": ("Always Alternative", "Alternative Number", "Always Alternative Number"),
    "destination": ("DID Calls", "DID/DDI", "Destination", "Dial-In Trunk Calls"),
}, required=("alternative", "destination"))

SCHEDULES = FormSpec("MiVB Business Schedules", {
    "schedule": ("Schedule Number", "Business Schedule", "Schedule"),
    "name": ("Schedule Name", "Name", "Description"),
    "day": ("Day", "Day of Week", "Days"),
    "start": ("Start Time", "Start", "Open"),
    "end": ("End Time", "End", "Close"),
}, required=("schedule", "day", "start"))

DIDS = FormSpec("MiVB DID service", {
    "number": ("DID Number", "Dialed Digits", "DID", "DDI Number", "Number"),
    "name": ("Name", "Description"),
    "day": ("Day Answer Point", "Answer Point - Day", "Day Service", "Answer Point"),
    "night1": ("Night 1 Answer Point", "Answer Point - Night 1", "Night1 Answer Point"),
    "night2": ("Night 2 Answer Point", "Answer Point - Night 2", "Night2 Answer Point"),
    "schedule": ("Business Schedule", "Schedule", "Schedule Number"),
    "rerouting": ("Call Rerouting Always Alternative", "Always Alternative"),
}, required=("number", "day"))

SPECS = (SKILL_GROUP_MEMBERS, SKILL_GROUPS, AGENTS, PATHS, HUNT_GROUPS, RING_GROUPS,
         REROUTING, SCHEDULES, DIDS)

HUNT_MODES: dict[str, tuple[str, str | None]] = {
    "circular": ("round_robin", None),
    "terminal": ("best_skill", "terminal (always from the first member): members get skill "
                 "levels in member order"),
    "top down": ("best_skill", "top down: members get skill levels in member order"),
    "priority": ("best_skill", "priority: members get skill levels in member order"),
    "ucd": ("longest_idle", None),
    "longest idle": ("longest_idle", None),
}
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def import_mitel_mivb(
    paths: Sequence[Path], builder: ConfigBuilder, report: MigrationReport,
    progress: Callable[[int], None] | None = None,
) -> None:
    MivbImport(builder, report, read_tables(paths, SPECS, report, progress)).run()


class MivbImport:
    def __init__(self, builder: ConfigBuilder, report: MigrationReport,
                 tables: dict[str, list[CsvTable]]) -> None:
        self.b = builder
        self.report = report
        self.tables = tables
        self.groups: dict[str, str] = {}  # skill group number / DN -> queue id
        self.paths: dict[str, str] = {}  # path DN -> flow id
        self.dn_queues: dict[str, str] = {}  # hunt / ring group DN -> queue id
        self.schedules: dict[str, str] = {}  # schedule number / name -> schedule id
        self.alternatives: dict[str, str] = {}

    def rows(self, spec: FormSpec) -> list[CsvRow]:
        return [r for t in self.tables.get(spec.name, []) for r in t.rows]

    def run(self) -> None:
        self._skill_groups()
        self._skill_group_members()
        self._agents()
        self._hunt_groups()
        self._ring_groups()
        self._schedules()
        self._paths()
        self._rerouting()
        self._dids()

    def _num(self, row: CsvRow, key: str, what: str) -> str | None:
        return clean_number(row.get(key), row.source, what, self.report)

    # -- skill groups and agents --------------------------------------------------------
    def _skill_groups(self) -> None:
        for row in self.rows(SKILL_GROUPS):
            number = self._num(row, "number", "skill group number")
            if not number:
                self.report.add("MiVB skill group", row.get("name") or "?", Outcome.UNSUPPORTED,
                                row.source, reason="group number missing or unreadable")
                continue
            name = row.get("name")
            qid = f"sg{number}_{slug(name)}" if slug(name) else f"sg{number}"
            self.groups[number] = qid
            dn = self._num(row, "dn", "directory number")
            if dn:
                self.groups[dn] = qid
            queue: dict[str, Any] = {"id": qid, "name": name or f"skill group {number}",
                                     "strategy": "longest_idle", "channels": ["voice"],
                                     "skills": {qid: 16}}
            notes = []
            timer = _int(row.get("work_timer"))
            if timer is not None:
                queue["wrap_up_seconds"] = timer
            if row.get("skill_routing").lower() in ("yes", "true", "y", "1"):
                queue["strategy"] = "best_skill"
            self.b.skills[qid] = {"id": qid, "name": queue["name"]}
            self.b.queues[qid] = queue
            for member in split_list(row.get("members")):
                agent_id, _, level = member.partition(":")
                self._agent_skill(agent_id.strip(), qid, _int(level) or 1, row, notes)
            self.report.add("MiVB skill group", f"{number} {name}".strip(),
                            Outcome.APPROXIMATED if notes else Outcome.MAPPED, row.source,
                            target=f"queues[{qid}] + skills[{qid}]", reason="; ".join(notes))

    def _agent_skill(self, agent_id: str, qid: str, level: int, row: CsvRow,
                     notes: list[str]) -> bool:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", agent_id):
            notes.append(f"agent {agent_id!r} is not a valid id")
            return False
        agent = self.b.agents.setdefault(agent_id, {"id": agent_id,
                                                    "name": f"agent {agent_id}",
                                                    "skills": {}})
        if level > 16:  # MiVB levels run 1..500, Centrale's 1..16
            notes.append(f"skill level {level} of agent {agent_id} is beyond Centrale's 16: "
                         "imported as 16 (order among levels above 16 is lost)")
        agent["skills"][qid] = max(1, min(level, 16))
        return True

    def _skill_group_members(self) -> None:
        for row in self.rows(SKILL_GROUP_MEMBERS):
            group, agent_id = row.get("group"), row.get("agent_id")
            label = f"{agent_id} in skill group {group}"
            qid = self.groups.get(group)
            if qid is None:
                self.report.add("MiVB skill group member", label, Outcome.UNSUPPORTED,
                                row.source, reason=f"skill group {group!r} is not in the ACD "
                                "Agent Skill Groups export")
                continue
            notes: list[str] = []
            raw_level = row.get("level")
            level = (_int(raw_level) or 500) if raw_level else 1
            if not raw_level and self.b.queues[qid]["strategy"] == "best_skill":
                notes.append("no skill level: 1 here; MiVB ranks a blank level last (500)")
            if not self._agent_skill(agent_id, qid, level, row, notes):
                self.report.add("MiVB skill group member", label, Outcome.UNSUPPORTED,
                                row.source, reason="; ".join(notes))
                continue
            if row.get("present").lower() in ("no", "false", "n", "0", "absent"):
                notes.append("not present by default in MiVB: Centrale agents are in all "
                             "their queues once logged in")
            self.report.add("MiVB skill group member", label,
                            Outcome.APPROXIMATED if notes else Outcome.MAPPED, row.source,
                            target=f"agents[{agent_id}].skills.{qid}",
                            reason="; ".join(notes) or
                            f"level {self.b.agents[agent_id]['skills'][qid]}")

    def _agents(self) -> None:
        for row in self.rows(AGENTS):
            agent_id = self._num(row, "agent_id", "agent ID")
            if not agent_id:
                self.report.add("MiVB agent", row.get("name") or "?", Outcome.UNSUPPORTED,
                                row.source, reason="agent ID missing or unreadable")
                continue
            notes: list[str] = []
            pairs: list[tuple[str, int]] = []
            for item in split_list(row.get("groups")):
                g, _, lvl = item.partition(":")
                pairs.append((g.strip(), _int(lvl) or 1))
            for i in range(1, 9):
                g = row.get(f"group{i}")
                if g:
                    pairs.append((g, _int(row.get(f"level{i}")) or 1))
            agent = self.b.agents.setdefault(agent_id, {"id": agent_id, "skills": {}})
            agent["name"] = row.get("name") or agent.get("name") or f"agent {agent_id}"
            for group, level in pairs:
                qid = self.groups.get(group)
                if qid is None:
                    notes.append(f"skill group {group} not in the export")
                    continue
                agent["skills"][qid] = max(1, min(level, 16))
            self.report.add("MiVB agent", f"{agent_id} {agent['name']}",
                            Outcome.APPROXIMATED if notes else Outcome.MAPPED, row.source,
                            target=f"agents[{agent_id}]",
                            reason="; ".join(notes) or f"{len(agent['skills'])} skill group(s)"
                            "; a user in users.yaml logs in as it (set its password)")

    # -- hunt and ring groups -------------------------------------------------------------
    def _station_group(self, row: CsvRow, kind: str, strategy: str, note: str | None,
                       ordered: bool) -> None:
        dn = self._num(row, "dn", "directory number")
        name = row.get("name")
        if not dn:
            self.report.add(kind, name or "?", Outcome.UNSUPPORTED, row.source,
                            reason="directory number missing or unreadable")
            return
        qid = f"{'hunt' if 'Hunt' in kind else 'ring'}{dn}"
        notes = [note] if note else []
        queue: dict[str, Any] = {"id": qid, "name": name or f"{kind} {dn}",
                                 "strategy": strategy, "channels": ["voice"],
                                 "skills": {qid: 16}}
        self.b.skills[qid] = {"id": qid, "name": queue["name"]}
        self.b.queues[qid] = queue
        self.dn_queues[dn] = qid
        members = split_list(row.get("members"))
        if not members:
            notes.append("no members in the export")
        for position, member in enumerate(members, start=1):
            ext = clean_number(member, row.source, "member", self.report)
            if not ext:
                continue
            aid = f"ext_{ext}"
            agent = self.b.agents.setdefault(aid, {"id": aid, "name": f"extension {ext}",
                                                   "skills": {}, "extension": ext})
            agent["skills"][qid] = min(position, 16) if ordered else 1
        if members:
            notes.append("members are extensions, imported as agents ext_<dn>: give each "
                         "person a login (users.yaml has a user for it)")
        self.report.add(kind, f"{dn} {name}".strip(), Outcome.APPROXIMATED, row.source,
                        target=f"queues[{qid}]", reason="; ".join(notes))

    def _hunt_groups(self) -> None:
        for row in self.rows(HUNT_GROUPS):
            if row.get("kind").lower() in ("voice mail", "voicemail", "recorder"):
                self.report.add("MiVB hunt group", f"{row.get('dn')} {row.get('name')}",
                                Outcome.UNSUPPORTED, row.source,
                                reason=f"{row.get('kind')} hunt group: not a call-center "
                                "queue (Centrale has its own voicemail)")
                continue
            mode = row.get("mode").lower()
            strategy, note = HUNT_MODES.get(mode, ("longest_idle",
                                                   f"hunt mode {mode!r} unknown: longest idle"))
            self._station_group(row, "MiVB Hunt Group", strategy, note,
                                strategy == "best_skill")

    def _ring_groups(self) -> None:
        for row in self.rows(RING_GROUPS):
            kind = row.get("kind").lower()
            if "cascade" in kind:
                self._station_group(row, "MiVB Ring Group", "best_skill",
                                    "cascade: members get skill levels in member order",
                                    True)
            else:
                self._station_group(row, "MiVB Ring Group", "ring_all", None, False)
            overflow = row.get("overflow")
            if overflow:
                self.report.add("MiVB ring group overflow", f"{row.get('dn')} -> {overflow}",
                                Outcome.APPROXIMATED, row.source,
                                reason="overflow point: set the queue node's timeout_next in "
                                "the flow that uses this group")

    # -- schedules ------------------------------------------------------------------------
    def _schedules(self) -> None:
        spans: dict[str, list[tuple[int, int]]] = {}
        names: dict[str, str] = {}
        first: dict[str, CsvRow] = {}
        for row in self.rows(SCHEDULES):
            key = row.get("schedule")
            first.setdefault(key, row)
            if row.get("name"):
                names[key] = row.get("name")
            try:
                days = _days(row.get("day"))
                s, e = _minutes(row.get("start")), _minutes(row.get("end"))
            except ValueError as exc:
                self.report.add("MiVB business schedule entry", f"{key}: {row.get('day')}",
                                Outcome.UNSUPPORTED, row.source, reason=str(exc))
                continue
            if e == 23 * 60 + 59:
                e = 1440
            spans.setdefault(key, [])
            for d in days:
                spans[key].append((d * 1440 + s, d * 1440 + e if e > s else (d + 1) * 1440 + e))
            if row is not first[key]:  # the schedule's first row is its own report line
                self.report.add("MiVB business schedule entry",
                                f"{key}: {row.get('day')} {row.get('start')}-{row.get('end')}",
                                Outcome.MAPPED, row.source, target=f"schedule {key}",
                                reason="hours added to the schedule")
        for key, intervals in spans.items():
            sid = f"schedule_{slug(names.get(key, key)) or key}"
            self.b.add_schedule(sid, week_intervals_to_hours(intervals), [])
            self.schedules[key] = sid
            if key in names:
                self.schedules[names[key]] = sid
            self.report.add("MiVB business schedule", f"{key} {names.get(key, '')}".strip(),
                            Outcome.MAPPED, first[key].source, target=f"schedules[{sid}]",
                            reason=f"time zone {self.b.timezone}")

    # -- ACD paths ------------------------------------------------------------------------
    def _paths(self) -> None:
        for row in self.rows(PATHS):
            self._path(row)

    def _path(self, row: CsvRow) -> None:
        dn = self._num(row, "dn", "path directory number")
        label = f"{row.get('number') or dn} {row.get('name')}".strip()
        if not dn:
            self.report.add("MiVB ACD path", label, Outcome.UNSUPPORTED, row.source,
                            reason="directory number missing or unreadable")
            return
        primary = self.groups.get(row.get("primary"))
        if primary is None:
            self.report.add("MiVB ACD path", label, Outcome.UNSUPPORTED, row.source,
                            reason=f"primary skill group {row.get('primary')!r} is not in the "
                            "ACD Agent Skill Groups export")
            return
        notes: list[str] = []
        fid = f"acd_path_{dn}"
        nodes: dict[str, Any] = {}
        queue_node: dict[str, Any] = {"type": "queue", "queue": primary}
        priority = _int(row.get("priority"))
        if priority is not None:
            # MiVB path priority: 1 is the highest (1..64); Centrale: higher number first
            queue_node["priority"] = max(0, 65 - priority)
        rads = [r for r in (row.get(f"rad{i}") for i in range(1, 5)) if r]
        if rads:
            interval = _int(row.get("rad_interval")) or _int(row.get("rad_delay"))
            if interval and interval >= 5:
                queue_node["announce_interval_seconds"] = interval
            for rad in rads:
                prompt = f"rad_{re.sub(r'[^0-9A-Za-z]', '_', rad)}"
                self.b.use_prompt(prompt, f"ACD path {dn}")
            notes.append("RADs " + ", ".join(rads) + " are played by the queue node's periodic "
                         "announcements (prompts rad_<dn>): set the queue's announcement "
                         "prompts")
        if row.get("interflow_enabled").lower() in ("yes", "true", "y", "1") or \
                row.get("interflow_point"):
            timer = _int(row.get("interflow_timer"))
            point = self._num(row, "interflow_point", "interflow point")
            if timer and point and re.fullmatch(r"\+?[0-9*#]{2,32}", point):
                queue_node["max_wait_seconds"] = timer
                queue_node["timeout_next"] = "interflow"
                nodes["interflow"] = {"type": "transfer", "target": point}
            else:
                notes.append("interflow enabled without a usable timer and point: ignored")
        unavailable = self._num(row, "unavailable", "path unavailable answer point")
        if unavailable and re.fullmatch(r"\+?[0-9*#]{2,32}", unavailable):
            queue_node["failed_next"] = "unavailable"
            nodes["unavailable"] = {"type": "transfer", "target": unavailable}
        after = 0
        for i in range(1, 4):
            group = row.get(f"overflow{i}")
            if not group:
                continue
            target = self.groups.get(group)
            timer = _int(row.get(f"timer{i}")) or 0
            after += timer
            if target is None:
                notes.append(f"overflow group {group} not in the export")
                continue
            overflow = self.b.queues[primary].setdefault("overflow", [])
            rule = {"after_seconds": after, "add_queues": [target]}
            if rule not in overflow:
                overflow.append(rule)
        sharing = sum(1 for r in self.rows(PATHS) if self.groups.get(r.get("primary")) == primary)
        if any(row.get(f"overflow{i}") for i in range(1, 4)) and sharing > 1:
            notes.append(f"overflow rules belong to queue {primary} in Centrale, shared by "
                         "every path that uses it")
        nodes = {"queue": queue_node, **nodes}
        self.b.flows[fid] = {"id": fid, "name": row.get("name") or f"ACD path {dn}",
                             "start": "queue", "nodes": nodes}
        self.paths[dn] = fid
        self.report.add("MiVB ACD path", label,
                        Outcome.APPROXIMATED if notes else Outcome.MAPPED, row.source,
                        target=f"flows[{fid}]", reason="; ".join(notes))

    # -- rerouting and DIDs ---------------------------------------------------------------
    def _rerouting(self) -> None:
        used = {r.get("rerouting") for r in self.rows(DIDS)}
        for row in self.rows(REROUTING):
            alt = row.get("alternative")
            dest = self._num(row, "destination", "rerouting destination")
            if not dest:
                self.report.add("MiVB always alternative", alt, Outcome.UNSUPPORTED,
                                row.source, reason="no destination for DID calls")
                continue
            self.alternatives[alt] = dest
            if alt in used:
                self.report.add("MiVB always alternative", f"{alt} -> {dest}", Outcome.MAPPED,
                                row.source, reason="applied to the DIDs that name it")
            else:
                self.report.add("MiVB always alternative", f"{alt} -> {dest}",
                                Outcome.APPROXIMATED, row.source,
                                reason="no DID in the export names it: rerouting of "
                                "extensions (Call Rerouting Assignment) is not imported")

    def _dids(self) -> None:
        rows = self.rows(DIDS)
        cleaned = [(self._num(r, "number", "DID number"), r) for r in rows]
        fixes = restore_leading_zeros([(n, r.source) for n, r in cleaned if n], "DID number",
                                      self.report, excel_damaged=excel_damaged(cleaned, "number"))
        for number, row in cleaned:
            self._did(fixes.get(number or "", number), row, number in fixes)

    def _did(self, number: str | None, row: CsvRow, zero_restored: bool) -> None:
        label = f"{row.get('number')} {row.get('name')}".strip()
        if not number or not re.fullmatch(r"\+?[0-9]{2,20}", number):
            self.report.add("MiVB DID", label, Outcome.UNSUPPORTED, row.source,
                            reason="number missing or unreadable (see input issues)")
            return
        notes: list[str] = []
        if zero_restored:
            notes.append(f"leading zero restored: {number} (check it)")
        elif number != row.get("number").replace(" ", ""):
            notes.append(f"number cleaned from {row.get('number')!r} (Excel): check it")
        alt = row.get("rerouting")
        if alt:
            target = self.alternatives.get(alt)
            if target:
                day = night = target
                notes.append(f"always-rerouted by alternative {alt} to {target}")
            else:
                day, night = row.get("day"), row.get("night1")
                notes.append(f"always alternative {alt} not in the export: ignored")
        else:
            day, night = row.get("day"), row.get("night1")
        if row.get("night2") and row.get("night2") != night:
            notes.append("night 2 answer point has no schedule state in Centrale: night 1 used")
        schedule_key = row.get("schedule")
        schedules = list(dict.fromkeys(self.schedules.values()))
        sid = self.schedules.get(schedule_key) if schedule_key else (
            schedules[0] if len(schedules) == 1 else None)
        if schedule_key and sid is None:
            notes.append(f"business schedule {schedule_key!r} not in the export: day answer "
                         "point always")
        if not schedule_key and len(schedules) > 1 and night and night != day:
            notes.append("several business schedules and none named: day answer point always")
        # a DID straight to an ACD path uses the path's flow
        day_clean = clean_number(day or "", row.source, "answer point", self.report) or ""
        if (sid is None or not night or night == day) and day_clean in self.paths:
            flow = self.paths[day_clean]
            self._number(number, row, flow, label, notes)
            return
        fid = f"did_{number.lstrip('+')}"
        nodes: dict[str, Any] = {}
        day_node = self._answer_point(nodes, "day", day_clean, notes)
        start = day_node
        if sid is not None and night and night != day:
            night_clean = clean_number(night, row.source, "answer point", self.report) or ""
            night_node = self._answer_point(nodes, "night", night_clean, notes)
            nodes["hours"] = {"type": "schedule", "schedule": sid, "open": day_node,
                              "closed": night_node}
            start = "hours"
        self.b.flows[fid] = {"id": fid, "name": row.get("name") or f"DID {number}",
                             "start": start, "nodes": nodes}
        self._number(number, row, fid, label, notes)

    def _number(self, number: str, row: CsvRow, flow: str, label: str,
                notes: list[str]) -> None:
        if number in self.b.numbers:
            self.report.add("MiVB DID", label, Outcome.UNSUPPORTED, row.source,
                            reason=f"number {number} appears twice; the first row is used")
            return
        entry = {"number": number, "flow": flow}
        if row.get("name"):
            entry["name"] = row.get("name")
        self.b.numbers[number] = entry
        self.report.add("MiVB DID", label, Outcome.APPROXIMATED if notes else Outcome.MAPPED,
                        row.source, target=f"numbers[{number}] -> flows[{flow}]",
                        reason="; ".join(notes))

    def _answer_point(self, nodes: dict[str, Any], name: str, dn: str,
                      notes: list[str]) -> str:
        if dn in self.paths:
            return f"{self.paths[dn]}.queue"
        qid = self.dn_queues.get(dn) or self.groups.get(dn)
        if qid:
            nodes[name] = {"type": "queue", "queue": qid}
            return name
        if re.fullmatch(r"\+?[0-9*#]{2,32}", dn):
            nodes[name] = {"type": "transfer", "target": dn}
            if dn not in self.b.numbers:
                notes.append(f"answer point {dn} is no path or group of the export: the call "
                             "is transferred to it")
            return name
        notes.append(f"answer point {dn!r} unusable: hang up")
        nodes[name] = {"type": "hangup"}
        return name


def _int(text: str) -> int | None:
    m = re.match(r"\s*([0-9]+)", text or "")
    return int(m.group(1)) if m else None


def _minutes(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]{1,2}):([0-9]{2})(?::[0-9]{2})?\s*(am|pm)?\s*", text or "", re.I)
    if not m:
        raise ValueError(f"time {text!r} not HH:MM")
    h, mi = int(m.group(1)), int(m.group(2))
    if m.group(3):
        h = h % 12 + (12 if m.group(3).lower() == "pm" else 0)
    if h > 24 or mi > 59:
        raise ValueError(f"time {text!r} out of range")
    return h * 60 + mi


def _days(text: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"[\s,;/]+", (text or "").strip().lower()):
        if not part:
            continue
        if "-" in part:
            a, b = (p[:3] for p in part.split("-", 1))
            if a not in _DAYS or b not in _DAYS:
                raise ValueError(f"days {text!r} not understood")
            out += [(_DAYS[a] + k) % 7 for k in range((_DAYS[b] - _DAYS[a]) % 7 + 1)]
        elif part[:3] in _DAYS:
            out.append(_DAYS[part[:3]])
        else:
            raise ValueError(f"day {text!r} not understood")
    if not out:
        raise ValueError("no day given")
    return out
