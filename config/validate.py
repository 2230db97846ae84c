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
        if q.survey_flow and q.survey_flow not in flows:
            add(("queues", i, "survey_flow"),
                f"unknown flow {q.survey_flow!r}{_hint(q.survey_flow, flows)}")
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

    wa = config.channels.whatsapp
    if wa is not None and wa.graph_base_url.startswith("/") and not config.server.demo.enabled:
        add(("channels", "whatsapp", "graph_base_url"),
            "a graph_base_url that is only a path means this node's own demo simulator; "
            "it needs server.demo.enabled: true (or write the Graph API's full URL)")
    for i, agent_id in enumerate(config.server.demo.desk_phones):
        agent = next((a for a in config.agents if a.id == agent_id), None)
        if agent is None:
            add(("server", "demo", "desk_phones", i),
                f"unknown agent {agent_id!r}{_hint(agent_id, agents)}")
        elif agent.sip is None:
            add(("server", "demo", "desk_phones", i),
                f"agent {agent_id!r} has no sip account for a desk phone")
    if config.server.demo.enabled:
        for reason in demo_refusals(config):
            add(("server", "demo", "enabled"), reason)

    _sip_tls_issues(config, add)
    issues.extend(_flow_issues(config, sources, base_dir))
    return issues


def _sip_tls_issues(config: CentraleConfig, add: Any) -> None:
    """Issue 26: TLS files that are missing, and SRTP/mutual-TLS settings that could
    never work (every call would be refused), found at load time with their line."""
    sip = config.server.sip
    if not sip.enabled:
        return
    tls = sip.tls
    if tls.enabled:
        if not tls.cert_file or not tls.key_file:
            add(("server", "sip", "tls", "enabled"),
                "TLS needs cert_file and key_file (PEM)")
        for name in ("cert_file", "key_file", "ca_file", "client_ca_file"):
            value = getattr(tls, name)
            if value and not Path(value).is_file():
                add(("server", "sip", "tls", name), f"file not found: {value}")
    if sip.phones_tls_only and not tls.enabled:
        add(("server", "sip", "phones_tls_only"),
            "phones_tls_only refuses every REGISTER while server.sip.tls is not enabled")
    if sip.phone_srtp == "required" and not tls.enabled:
        add(("server", "sip", "phone_srtp"),
            "SRTP keys are only sent over TLS: enable server.sip.tls for phone_srtp: required")
    for i, agent in enumerate(config.agents):
        if agent.sip is not None and agent.sip.srtp == "required" and not tls.enabled:
            add(("agents", i, "sip", "srtp"),
                "SRTP keys are only sent over TLS: enable server.sip.tls for srtp: required")
    for i, trunk in enumerate(sip.trunks):
        if trunk.tls_client_names and not (tls.enabled and tls.client_ca_file):
            add(("server", "sip", "trunks", i, "tls_client_names"),
                "client certificates are only asked for with server.sip.tls.enabled and "
                "tls.client_ca_file")
        if trunk.srtp == "required" and not tls.enabled and trunk.outbound_transport != "tls":
            add(("server", "sip", "trunks", i, "srtp"),
                "SRTP keys are only exchanged over TLS: this trunk has no TLS either way")


# The secrets examples/demo falls back to when their environment variables are unset.
DEMO_DEFAULT_SECRETS = frozenset({"demo", "demo-sip", "demo-token", "demo-app-secret",
                                  "demo-verify"})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def looks_like_production(config: CentraleConfig) -> str | None:
    """Why this config serves more than this machine (None: it does not): it listens on
    a non-loopback address or names a public URL — the simulator, which signs webhooks
    and places calls for whoever opens it, would be reachable from elsewhere."""
    web = config.server.web
    if web.host not in _LOOPBACK_HOSTS and not web.host.startswith("127."):
        return f"server.web.host is {web.host!r}, reachable from other machines"
    if web.public_url:
        return "server.web.public_url is set"
    return None


def demo_default_secrets(config: CentraleConfig) -> list[str]:
    """Where a demo default secret is in use (names of the settings, never the values)."""
    found: list[str] = []
    wa = config.channels.whatsapp
    if wa is not None:
        for name in ("access_token", "app_secret", "verify_token"):
            if getattr(wa, name).get_secret_value() in DEMO_DEFAULT_SECRETS:
                found.append(f"channels.whatsapp.{name}")
    for user in config.users:
        if user.password is not None and \
                user.password.get_secret_value() in DEMO_DEFAULT_SECRETS:
            found.append(f"users[{user.username}].password")
    for agent in config.agents:
        if agent.sip is not None and agent.sip.password.get_secret_value() in \
                DEMO_DEFAULT_SECRETS:
            found.append(f"agents[{agent.id}].sip.password")
    return found


def demo_refusals(config: CentraleConfig, *, production_reason: str | None = None
                  ) -> list[str]:
    """The demo simulator posts signed webhooks and places calls for anyone who can open
    it: on a production config it may run only when no secret is a demo default."""
    reason = production_reason or looks_like_production(config)
    if reason is None:
        return []
    secrets = demo_default_secrets(config)
    if not secrets:
        return []
    shown = ", ".join(secrets[:5]) + (f" and {len(secrets) - 5} more" if len(secrets) > 5
                                      else "")
    return [f"the demo simulator is enabled on a production config ({reason}) while demo "
            f"default secrets are in use ({shown}): set real secrets or turn "
            "server.demo.enabled off"]


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
