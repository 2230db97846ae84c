"""docker/asterisk/conf must match what the code expects (names, routes, variables),
since no Asterisk runs here to tell us otherwise."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from config.schema.server import AsteriskSettings
from pbx_bridge.asterisk import backend as backend_module
from pbx_bridge.asterisk.call_leg import VAR_MOH, VAR_NEXT, VAR_TRANSFER_TARGET
from pbx_bridge.asterisk.channels import VAR_TASK_ID

from .conftest import REPO_ROOT

CONF = REPO_ROOT / "docker" / "asterisk" / "conf"


def contexts(path: Path) -> dict[str, list[str]]:
    """Asterisk .conf sections -> their lines (repeated section names merged)."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^\[([^\]]+)\]", line)
        if match:
            current = match.group(1)
            out.setdefault(current, [])
            continue
        if current is not None:
            out[current].append(line)
    return out


@pytest.fixture(scope="module")
def dialplan() -> dict[str, list[str]]:
    return contexts(CONF / "extensions.conf")


def test_contexts_named_in_settings_exist(dialplan: dict[str, list[str]]) -> None:
    settings = AsteriskSettings()
    assert settings.holding_context in dialplan
    assert settings.dial_context in dialplan
    dial = "\n".join(dialplan[settings.dial_context])
    for exten in (backend_module.EXTEN_AGENT, backend_module.EXTEN_CALLBACK, "transfer"):
        assert re.search(rf"^exten => {exten},1,", dial, re.M), exten


def test_agi_routes_and_variables_match_code(dialplan: dict[str, list[str]]) -> None:
    text = (CONF / "extensions.conf").read_text()
    routes = set(re.findall(r"AGI\(agi://\$\{CENTRALE_AGI\}/(\w+)", text))
    assert routes == {backend_module.ROUTE_INBOUND, backend_module.ROUTE_HOLD,
                      backend_module.ROUTE_SURVEY}
    for var in (
        backend_module.VAR_SURVEY,
        VAR_NEXT,
        VAR_MOH,
        VAR_TASK_ID,
        VAR_TRANSFER_TARGET,
        backend_module.VAR_CALLER_CHANNEL,
        backend_module.VAR_CALLBACK_NUMBER,
    ):
        assert "${" + var + "}" in text, var
    assert '"${CENTRALE_NEXT}" = "hold"]?centrale-hold,s,1' in text
    assert "Bridge(${CENTRALE_CALLER_CHANNEL}" in text
    # the survey after a call: F(context^exten^priority) sends the caller (the bridged
    # party) on when the agent (the bridger) hangs up; that context runs the route
    assert "Bridge(${CENTRALE_CALLER_CHANNEL},F(centrale-survey^s^1))" in text
    assert "AGI(agi://${CENTRALE_AGI}/survey)" in "\n".join(dialplan["centrale-survey"])
    assert re.search(r"CENTRALE_AGI\s*=\s*centrale:4573", text)


def test_manager_user_can_do_what_the_client_does() -> None:
    parser = configparser.ConfigParser(strict=False, inline_comment_prefixes=(";",))
    parser.read_string((CONF / "manager.conf").read_text())
    assert parser.getboolean("general", "enabled") and parser.get("general", "port") == "5038"
    user = parser[AsteriskSettings().ami.username]
    read = {c.strip() for c in user["read"].split(",")}
    write = {c.strip() for c in user["write"].split(",")}
    assert {"call", "dtmf", "dialplan", "system", "reporting"} <= read
    assert {"originate", "call", "system", "reporting"} <= write


def test_every_demo_agent_has_a_pjsip_endpoint() -> None:
    acd = YAML(typ="safe").load((REPO_ROOT / "examples" / "demo" / "acd.yaml").read_text())
    usernames = {a["sip"]["username"] for a in acd["agents"] if a.get("sip")}
    assert usernames
    text = (CONF / "pjsip.conf").read_text()
    sections = contexts(CONF / "pjsip.conf")
    template = AsteriskSettings().agent_endpoint_template
    for username in usernames:
        assert template.format(sip_username=username) == f"PJSIP/{username}"
        for kind in ("agent-endpoint", "agent-auth", "agent-aor"):
            assert f"[{username}]({kind})" in text, (username, kind)
        assert f"username = {username}" in sections[username]
        assert f"aors = {username}" in sections[username]
    assert "type = endpoint" in sections["agent-endpoint"]
    trunk = sections["trunk"]
    assert "context = from-trunk" in trunk and "from-trunk" in contexts(CONF / "extensions.conf")


def test_asterisk_conf_directories_is_a_real_section_not_a_template() -> None:
    """`[directories](!)` is a template: Asterisk ignores it and falls back to its
    built-in paths (issue 19, defect 5). tests/asterisk_live checks Asterisk really
    uses the section; this names the mistake at once."""
    headers = [line.strip() for line in (CONF / "asterisk.conf").read_text().splitlines()
               if line.strip().startswith("[")]
    assert "[directories]" in headers, headers
    assert not any(h.startswith("[directories](") for h in headers), headers


def test_call_control_contexts_and_profiles_match_code(dialplan: dict[str, list[str]]) -> None:
    """pbx_bridge/asterisk/control.py redirects and originates into these."""
    from pbx_bridge.asterisk import control

    lines = "\n".join(dialplan[control.CONTROL_CONTEXT])
    for exten in (control.EXTEN_CONF, control.EXTEN_HOLD, control.EXTEN_BLIND):
        assert re.search(rf"^exten => {exten},1,", lines, re.M), exten
    for var in (control.VAR_MOH, control.VAR_TARGET, control.VAR_RETURN, "CENTRALE_CALL_ID"):
        assert "${" + var + "}" in lines, var
    assert control.OUTBOUND_CONTEXT in dialplan
    profiles = contexts(CONF / "confbridge.conf")
    used = set(re.findall(r"centrale_\w+", lines))
    assert used and used <= set(profiles), used - set(profiles)
    assert "marked = yes" in profiles["centrale_agent"]
    assert "end_marked = yes" in profiles["centrale_party"]
    modules = (CONF / "modules.conf").read_text()
    assert "require = app_confbridge.so" in modules and "require = app_chanspy.so" in modules


def test_tls_transport_and_srtp_endpoints_match_the_embedded_core() -> None:
    """Issue 26: the Asterisk config set offers what the embedded SIP core does — TLS
    1.2+ with AEAD ciphers on 5061, SDES SRTP required for internet phones and TLS
    carriers, the certificate the transport names exists in the image."""
    from config.schema.server import SipTlsSettings

    sections = contexts(CONF / "pjsip.conf")
    tls = dict(line.split(" = ", 1) for line in sections["transport-tls"])
    assert tls["type"] == "transport" and tls["protocol"] == "tls"
    assert tls["bind"].endswith(":5061") and SipTlsSettings().port == 5061
    assert tls["method"] == "tlsv1_2" and tls["verify_server"] == "yes"
    assert all("GCM" in c or "CHACHA20" in c for c in tls["cipher"].split(","))
    assert all(c.startswith("ECDHE") for c in tls["cipher"].split(","))
    text = (CONF / "pjsip.conf").read_text()
    assert "[agent-endpoint-tls](!,agent-endpoint)" in text
    for template in ("agent-endpoint-tls", "trunk-tls"):
        lines = sections[template]
        assert "transport = transport-tls" in lines, template
        assert "media_encryption = sdes" in lines, template
        assert "media_encryption_optimistic = no" in lines, template
    docker = (CONF.parent / "Dockerfile").read_text()
    for path in (tls["cert_file"], tls["priv_key_file"]):
        assert path in docker, path  # generated in the image, mounted over in production
    assert "libsrtp2-dev" in docker and "libsrtp2-1" in docker  # res_srtp is built
    assert "5061/tcp" in docker
    assert '"5061:5061/tcp"' in (CONF.parent / "compose.asterisk.yaml").read_text()
    modules = (CONF / "modules.conf").read_text()
    assert not re.search(r"^noload\s*=\s*res_srtp", modules, re.M)
