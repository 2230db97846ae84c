"""Cross-reference checks that a schema alone cannot express: duplicate ids and
references to things that do not exist. Each problem points at the line that names
the missing thing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.errors import ConfigIssue
from config.schema import CentraleConfig

if TYPE_CHECKING:
    from config.loader import SourceMap

ID_SECTIONS = {
    "skills": "id",
    "queues": "id",
    "agents": "id",
    "reason_codes": "id",
    "wrap_up_codes": "id",
    "users": "username",
    "schedules": "id",
    "holiday_calendars": "id",
    "flows": "id",
    "numbers": "number",
}


def cross_check(
    config: CentraleConfig, sources: SourceMap, *, base_dir: Path | None = None
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []

    def add(loc: tuple[Any, ...], message: str) -> None:
        file, line = sources.find(loc)
        issues.append(ConfigIssue(file, line, _label(config, loc), message))

    for section, key in ID_SECTIONS.items():
        seen: dict[str, int] = {}
        for idx, item in enumerate(getattr(config, section)):
            ident = getattr(item, key)
            if ident in seen:
                f, ln = sources.find((section, seen[ident]))
                add((section, idx, key), f"duplicate {key} {ident!r} (first at {f}:{ln})")
            else:
                seen[ident] = idx

    skills = {s.id for s in config.skills}
    queues = {q.id for q in config.queues}
    agents = {a.id for a in config.agents}
    schedules = {s.id for s in config.schedules}
    calendars = {c.id for c in config.holiday_calendars}
    flows = {f.id for f in config.flows}

    def refs(loc: tuple[Any, ...], names: Iterable[str], known: set[str], what: str) -> None:
        for name in names:
            if name not in known:
                add((*loc, name) if not isinstance(names, str) else loc,
                    f"unknown {what} {name!r}{_hint(name, known)}")

    for i, q in enumerate(config.queues):
        refs(("queues", i, "skills"), q.skills, skills, "skill")
        if q.schedule and q.schedule not in schedules:
            add(("queues", i, "schedule"), f"unknown schedule {q.schedule!r}")
        if q.exit and q.exit.queue and q.exit.queue not in queues:
            add(("queues", i, "exit", "queue"), f"unknown queue {q.exit.queue!r}")
        for j, rule in enumerate(q.overflow):
            base = ("queues", i, "overflow", j)
            refs((*base, "relax_skills"), rule.relax_skills or {}, skills, "skill")
            for name in rule.drop_skills:
                if name not in skills:
                    add((*base, "drop_skills"), f"unknown skill {name!r}")
            for name in rule.add_queues:
                if name not in queues:
                    add((*base, "add_queues"), f"unknown queue {name!r}")
            if rule.move_to and rule.move_to not in queues:
                add((*base, "move_to"), f"unknown queue {rule.move_to!r}")
    sip_users: dict[str, int] = {}
    for i, a in enumerate(config.agents):
        refs(("agents", i, "skills"), a.skills, skills, "skill")
        for name in a.queues:
            if name not in queues:
                add(("agents", i, "queues"), f"unknown queue {name!r}{_hint(name, queues)}")
        if a.sip:
            if a.sip.username in sip_users:
                add(("agents", i, "sip", "username"),
                    f"SIP username {a.sip.username!r} already used by agent "
                    f"{config.agents[sip_users[a.sip.username]].id!r}")
            sip_users[a.sip.username] = i
    linked: dict[str, str] = {}
    for i, u in enumerate(config.users):
        if u.agent:
            if u.agent not in agents:
                add(("users", i, "agent"), f"unknown agent {u.agent!r}{_hint(u.agent, agents)}")
            elif u.agent in linked:
                add(("users", i, "agent"),
                    f"agent {u.agent!r} already belongs to user {linked[u.agent]!r}")
            linked[u.agent] = u.username
    for i, s in enumerate(config.schedules):
        for name in s.holiday_calendars:
            if name not in calendars:
                add(("schedules", i, "holiday_calendars"), f"unknown holiday calendar {name!r}")
    for i, n in enumerate(config.numbers):
        if n.flow not in flows:
            add(("numbers", i, "flow"), f"unknown flow {n.flow!r}{_hint(n.flow, flows)}")
    for name in ("whatsapp", "twilio", "webchat", "email"):
        channel = getattr(config.channels, name)
        if channel is not None and channel.queue not in queues:
            add(("channels", name, "queue"), f"unknown queue {channel.queue!r}")

    issues.extend(_flow_issues(config, sources, base_dir))
    return issues


def _flow_issues(
    config: CentraleConfig, sources: SourceMap, base_dir: Path | None
) -> list[ConfigIssue]:
    """Flow graph checks live with the flow semantics (config/validate_flows.py)."""
    try:
        from config.validate_flows import validate_flows
    except ImportError:  # pragma: no cover - during bootstrap only
        return []
    prompts_dir = None
    if base_dir is not None:
        candidate = base_dir / config.server.prompts_dir
        prompts_dir = candidate if candidate.is_dir() else None
    out = []
    index = {f.id: i for i, f in enumerate(config.flows)}
    for problem in validate_flows(config, prompts_dir=prompts_dir):
        loc: tuple[Any, ...] = ("flows", index.get(problem.flow_id, 0))
        if problem.node:
            loc = (*loc, "nodes", problem.node)
        file, line = sources.find(loc)
        where = f"flows[{problem.flow_id}]" + (f".nodes.{problem.node}" if problem.node else "")
        out.append(ConfigIssue(file, line, where, problem.message))
    return out


def _label(config: CentraleConfig, loc: tuple[Any, ...]) -> str:
    out = ""
    node: Any = config
    for part in loc:
        if isinstance(part, int):
            try:
                item = node[part]
                ident = getattr(item, "id", None) or getattr(item, "username", None) or getattr(
                    item, "number", None)
                out += f"[{ident if ident is not None else part}]"
                node = item
            except (IndexError, TypeError):
                out += f"[{part}]"
                node = None
        else:
            out += f".{part}" if out else str(part)
            node = getattr(node, part, None) if node is not None else None
            if node is None and isinstance(part, str):
                node = None
    return out


def _hint(name: str, known: set[str]) -> str:
    import difflib

    match = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
