"""The one-screen guide `./scripts/run-demo` prints (`centrale demo guide`): what to
open and what to do, with the URLs of this config. It follows the README's walkthrough;
tests/browser/test_demo_walkthrough.py walks the same steps."""

from __future__ import annotations

from typing import Any

from web.demo.personas import WALKTHROUGH


def guide(config: Any, *, host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    base = f"http://{shown}:{port}"
    agent = next((u for u in config.users if u.agent), None)
    supervisor = next((u for u in config.users if u.role == "supervisor"), None)
    main = next((n for n in config.numbers if n.number.startswith("+")), None)
    closed = next((n for n in config.numbers if n.flow != (main.flow if main else "")), None)
    sip = config.server.sip
    phone = ""
    if agent is not None and agent.agent in config.server.demo.desk_phones:
        phone = (f"     {agent.username}'s desk phone is at the bottom of the simulator: "
                 "press Answer to take the call")
    elif agent is not None and sip.enabled:
        sip_user = next((a.sip.username for a in config.agents
                         if a.id == agent.agent and a.sip is not None), None)
        if sip_user:
            phone = (f"     (register a softphone as {sip_user} at {sip.host}:{sip.port} "
                     f"for {agent.username}'s desk phone)")
    lines = [
        "",
        "  Centrale demo — open these in a browser:",
        f"    agent desktop   {base}/desktop"
        + (f"    log in as {agent.username} / demo" if agent else ""),
        f"    simulator       {base}/demo          (you are the customer)",
        f"    wallboard       {base}/wallboard"
        + (f"  log in as {supervisor.username} / demo" if supervisor else ""),
        "",
        "  1. log in as anna and press Available",
        f"  2. open the simulator in a second tab: you are {WALKTHROUGH.name} "
        f"({WALKTHROUGH.mobile})",
        "  3. send 'Mijn router doet het niet' on WhatsApp: anna's screen pops, she",
        "     accepts and replies; the simulator shows the reply and its ticks",
        f"  4. now call: 'Call {main.name if main else 'the main number'}', "
        "then 1 (Nederlands) and 1 (sales) on the dial pad:",
        "     anna's screen pops the same case, WhatsApp thread and all",
    ]
    if phone:
        lines.append(phone)
    if closed is not None:
        lines.append(f"  5. '{closed.name or closed.number}' ({closed.number}) plays the "
                     "closed message")
    lines += ["", "  More: README.md (the walkthrough), docs/demo.md (the simulator).", ""]
    return "\n".join(lines)
