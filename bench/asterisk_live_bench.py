"""Whole-path benchmark against a live Asterisk 20.20.1: Asterisk does the media,
Centrale the logic (FastAGI IVR, ACD, AMI Originate to the agent), against Asterisk
running the same IVR in its own dialplan, in the same run, on the same Asterisk.

Each call: sipp (the trunk) calls in, hears the language menu prompt, presses 1
(RFC 2833), is sent to an agent, the agent (a sipp UAS on static PJSIP contacts,
echoing RTP) answers, talks `TALK_MS`, hangs up. Per path and offered rate, sipp's
own counters give the successful and failed calls and the peak of concurrent calls.

* Centrale path: `centrale-inbound` → AGI `inbound` (Centrale's IVR) → holding →
  ACD offer → AMI Originate to `PJSIP/<agent>` → `Bridge()`.
* Asterisk alone: `bench-ivr` → `Background` + `WaitExten` (the same prompt and
  digit) → `Set(CHANNEL(language))` → `Dial(PJSIP/<agent>)`, round-robin over the
  same agents (no ACD: this is the floor of what the media side costs).

    .venv/bin/python bench/asterisk_live_bench.py            # rates 5, 10, 20, 30 calls/s
    .venv/bin/python bench/asterisk_live_bench.py --quick    # rates 5, 10

Needs `scripts/build-asterisk` (or CENTRALE_ASTERISK_PREFIX). Each level runs
`--seconds` (default 20) of offered load.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "asterisk_live"))

from live_asterisk import (  # noqa: E402
    AMI_SECRET,
    TRUNK_IP,
    LiveAsterisk,
    Sipp,
    caller_scenario,
    find_build,
    free_port,
)

TALK_MS = 2000
AGENTS = 200

AGENT_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bench agents">
  <recv request="INVITE">
    <action>
      <ereg regexp=";tag=([^;> \r\n]+)" search_in="hdr" header="From:"
            assign_to="whole,asterisk_tag"/>
    </action>
  </recv>
  <Reference variables="whole"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]agent[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=agent 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
    ]]>
  </send>
  <recv request="ACK"/>
  <pause milliseconds="TALK_MS"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:127.0.0.1:ASTERISK_PORT SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:agent@[local_ip]:[local_port]>;tag=[pid]agent[call_number]
      To: <sip:asterisk@127.0.0.1:ASTERISK_PORT>;tag=[$asterisk_tag]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


def bench_config(asterisk: LiveAsterisk, agent_port: int) -> None:
    """Agent endpoints with static contacts (the sipp UAS) and the dialplan-only IVR."""
    pjsip = ["", "; ---- bench agents (static contacts: one sipp UAS) ----"]
    for n in range(AGENTS):
        user = str(2000 + n)
        pjsip += [f"[{user}]", "type = endpoint", "transport = transport-udp",
                  "context = agents-internal", "disallow = all", "allow = ulaw",
                  "direct_media = no", f"aors = {user}", "",
                  f"[{user}]", "type = aor", f"contact = sip:{user}@{TRUNK_IP}:{agent_port}",
                  ""]
    with (asterisk.etc / "pjsip.conf").open("a") as f:
        f.write("\n".join(pjsip) + "\n")
    with (asterisk.etc / "extensions.conf").open("a") as f:
        f.write(textwrap.dedent(f"""
            ; ---- bench: the same IVR in Asterisk's own dialplan ----
            [bench-ivr]
            exten => _X.,1,Answer()
             same => n,Set(TIMEOUT(digit)=5)
             same => n,Background(centrale/en/choose_language)
             same => n,WaitExten(5)
            exten => 1,1,Set(CHANNEL(language)=en)
             same => n,Set(GLOBAL(BENCH_NEXT)=$[(0${{BENCH_NEXT}} + 1) % {AGENTS}])
             same => n,Dial(PJSIP/$[2000 + ${{BENCH_NEXT}}],20)
             same => n,Hangup()
            exten => t,1,Hangup()
            [bench-trunk]
            exten => 200,1,Goto(bench-ivr,200,1)
            exten => _X.,1,Goto(centrale-inbound,${{EXTEN}},1)
            """))
    # The trunk's calls to 200 take the dialplan IVR, to 100 Centrale's.
    path = asterisk.etc / "pjsip.conf"
    text = path.read_text().replace("context = from-trunk", "context = bench-trunk", 1)
    path.write_text(text)


SITE = """
server:
  name: bench
  default_region: NL
  default_language: en
  web: {{host: 127.0.0.1, port: 0}}
  database: {{path: {db}}}
  log_level: warning
  asterisk:
    enabled: true
    ami: {{host: 127.0.0.1, port: {ami}, username: centrale, secret: {secret}}}
    fastagi_host: 127.0.0.1
    fastagi_port: {agi}
skills: [{{id: support}}]
queues:
  - {{id: support, skills: {{support: 2}}, rona_seconds: 15, wrap_up_seconds: 0}}
agents:
{agents}
numbers:
  - {{number: "100", flow: main}}
flows:
  - id: main
    languages: [en, nl]
    start: choose
    nodes:
      choose:
        type: menu
        prompts: [choose_language]
        options: {{"1": english, "2": dutch}}
        timeout_seconds: 5
        retries: 1
        fallback: english
      english: {{type: set, language: en, next: to_support}}
      dutch: {{type: set, language: nl, next: to_support}}
      to_support: {{type: queue, queue: support, announce_interval_seconds: 30}}
"""


async def start_centrale(workdir: Path, asterisk: LiveAsterisk, agi_port: int,  # type: ignore[no-untyped-def]
                         database_url: str | None):
    from centrale.container import Container
    from centrale.node import Node
    from centrale.schema import upgrade_async
    from centrale.wiring import wire
    from config import load_config_with_sources
    from core.settings import Settings

    agents = "\n".join(
        f"  - {{id: a{n}, name: Agent {n}, skills: {{support: 1}}, queues: [support], "
        f"sip: {{username: \"{2000 + n}\", password: x}}}}" for n in range(AGENTS))
    site = workdir / "site"
    site.mkdir(exist_ok=True)
    (site / "site.yaml").write_text(SITE.format(
        db=workdir / "bench.db", ami=asterisk.ami_port, secret=AMI_SECRET, agi=agi_port,
        agents=agents))
    os.chdir(workdir)
    loaded = load_config_with_sources(site, env={})
    container = Container.build(Settings(config_dir=str(site), node_id="bench",
                                         database_url=database_url), loaded)
    if database_url:
        await upgrade_async(container.db.url)
    wire(container)
    node = Node(container)
    await node.start()
    acd = container.services["acd"]
    for n in range(AGENTS):
        await acd.agent_login(f"a{n}", f"desk-{n}")
        await acd.set_state(f"a{n}", "available")
    await container.services["asterisk"].ami.wait_ready()
    return node


def screen_figures(sipp: Sipp) -> dict[str, float]:
    text = "".join(p.read_text(errors="replace") for p in sipp.dir.glob("*_screen.log"))
    figures: dict[str, float] = {}
    for name, pattern in (("ok", r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)"),
                          ("failed", r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)"),
                          ("peak", r"Peak was (\d+) calls")):
        found = re.findall(pattern, text)
        figures[name] = float(found[-1]) if found else 0.0
    return figures


async def run_level(workdir: Path, asterisk: LiveAsterisk, service: str, rate: float,
                    seconds: float, name: str) -> dict[str, float]:
    caller = Sipp(workdir, name)
    calls = int(rate * seconds)
    # A caller number of its own for every call, as real traffic has: one number for
    # all calls would make every call write to one customer's one case (one row).
    scenario = caller_scenario(caller.dir, digits="1", then="wait_bye",
                               wait_before_dtmf_ms=800, caller="+3120[call_number]")
    started = time.monotonic()
    await caller.start(scenario, target=f"127.0.0.1:{asterisk.sip_port}", service=service,
                       calls=calls, rate=rate, limit=int(rate * 30), timeout=seconds + 60,
                       extra=["-trace_screen", "-recv_timeout", "30000"])
    await caller.wait(seconds + 90)
    elapsed = time.monotonic() - started
    figures = screen_figures(caller)
    figures["offered"] = calls
    figures["elapsed"] = elapsed
    figures["rate_ok"] = figures["ok"] / seconds  # completed calls per second offered
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rates", type=str, default="")
    parser.add_argument("--postgres", metavar="ADMIN_URL", default=None,
                        help="run Centrale on a fresh PostgreSQL database (created and "
                             "dropped here) instead of the embedded SQLite file")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")] if args.rates else (
        [5, 10] if args.quick else [5, 10, 20, 30])
    logging.basicConfig(level=logging.WARNING)
    build = find_build()
    if build.prefix is None:
        print(f"no live Asterisk: {build.why_missing}")
        return
    workdir = Path(tempfile.mkdtemp(prefix="centrale-asterisk-bench-"))
    agents_uas = Sipp(workdir, "agents")
    agi_port = free_port()
    asterisk = LiveAsterisk(build, workdir / "asterisk", agi_port=agi_port,
                            trunk_port=free_port(2, TRUNK_IP), rtp_ports=6000)
    bench_config(asterisk, agents_uas.port)
    node = None
    database_url = create_database(args.postgres) if args.postgres else None
    try:
        await agents_uas.start(
            AGENT_UAS.replace("TALK_MS", str(TALK_MS))
            .replace("ASTERISK_PORT", str(asterisk.sip_port)),
            calls=10**6, rate=1000, limit=20000, timeout=3600, extra=["-max_socket", "1000"])
        await asterisk.start()
        await asterisk.cli("core set verbose " + os.environ.get("BENCH_VERBOSE", "0"))
        if os.environ.get("BENCH_SIP_LOG"):
            await asterisk.cli("pjsip set logger on")
        node = await start_centrale(workdir, asterisk, agi_port, database_url)
        await run_levels(workdir, asterisk, rates, args.seconds)
    finally:
        if node is not None:
            await node.stop()
        await asterisk.stop()
        await agents_uas.kill()
        if database_url:
            drop_database(args.postgres, database_url)
    print(f"(work files: {workdir})")


def create_database(admin_url: str) -> str:
    import uuid

    import psycopg

    name = f"centrale_asterisk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


async def run_levels(workdir: Path, asterisk: LiveAsterisk, rates: list[float],
                     seconds: float) -> None:
    print(f"Asterisk 20.20.1 (live), {AGENTS} agents (sipp UAS, {TALK_MS} ms talk), "
          f"{seconds:.0f} s per level; call = menu prompt + digit 1 + agent + talk")
    print(f"{'path':<34}{'offered/s':>10}{'ok':>7}{'failed':>8}{'ok/s':>8}{'peak conc.':>12}")
    results: dict[str, list[tuple[float, dict[str, float]]]] = {"asterisk": [], "centrale": []}
    for rate in rates:
        for path, service in (("asterisk", "200"), ("centrale", "100")):
            fig = await run_level(workdir, asterisk, service, rate, seconds,
                                  f"{path}-{rate:g}")
            results[path].append((rate, fig))
            label = ("Asterisk alone (dialplan IVR+Dial)" if path == "asterisk"
                     else "Centrale (AGI IVR+ACD+AMI)")
            print(f"{label:<34}{rate:>10g}{fig['ok']:>7.0f}{fig['failed']:>8.0f}"
                  f"{fig['rate_ok']:>8.1f}{fig['peak']:>12.0f}", flush=True)

    def best(path: str) -> tuple[float, float]:
        clean = [(r, f) for r, f in results[path] if f["failed"] == 0 and f["ok"] > 0]
        if not clean:
            return 0.0, 0.0
        return max(r for r, _ in clean), max(f["peak"] for _, f in clean)

    a_rate, a_peak = best("asterisk")
    c_rate, c_peak = best("centrale")
    print(f"highest offered rate with 0 failures: Asterisk alone {a_rate:g}/s "
          f"(peak {a_peak:.0f} concurrent), Centrale {c_rate:g}/s (peak {c_peak:.0f})")
    if a_rate:
        print(f"Centrale / Asterisk alone: {c_rate / a_rate:.2f}x the rate "
              f"(goal >= 0.8x within the levels tried)")


if __name__ == "__main__":
    asyncio.run(main())
