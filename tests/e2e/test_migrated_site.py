"""Issue 23: a site generated from an Avaya CM capture is imported with `centrale
migrate`, started with `centrale run --config OUTDIR` (the real command, as an admin
runs it) and called with sipp through its imported IVR: the caller presses 2 in the
vector's collect step, waits in a wait node hearing ringback, the vector's
`staffed-agents` test reads the live ACD through queue_stats (nobody is logged in), and
the call ends at the vector's disconnect step with its placeholder announcement."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest
from sip_testkit import run_sipp, uac_scenario  # on sys.path via tests/e2e/conftest.py

from config.importers.cli import migrate_main
from tests.node_process import NodeProcess

pytestmark = pytest.mark.sipp


def generated_capture(vdn: str = "3000") -> str:
    """A SAT capture as an admin saves it: a hunt group, an agent, a VDN and its vector."""
    return f"""\
display hunt-group 1                                            Page   1 of   1
                                  HUNT GROUP

            Group Number: 1                           ACD? y
              Group Name: Helpdesk                    Queue? y
         Group Extension: 3001                       Vector? y
              Group Type: ucd-mia
             Queue Limit: 20

list agent-loginID                                              Page   1

Login ID     Name                       Extension    Dir Agt   AAS/AUD  COR  Ag Pr SO
              Skil/Lv Skil/Lv Skil/Lv Skil/Lv Skil/Lv Skil/Lv Skil/Lv Skil/Lv
5001         Anna de Vries              unstaffed              /         1   lvl N
              1/01

display vdn {vdn}                                                Page   1 of   1
                            VECTOR DIRECTORY NUMBER

                             Extension: {vdn}
                                  Name: Helpdesk
                           Destination: Vector Number        1

display vector 1                                                Page   1 of   1
                                  CALL VECTOR

    Number: 1                Name: Helpdesk entry
01 collect      1    digits after announcement 3901
02 goto step    5             if digits = 2
03 queue-to     skill 1  pri m
04 stop
05 wait-time    2   secs hearing ringback
06 goto step    8             if staffed-agents in skill 1 = 0
07 queue-to     skill 1  pri h
08 disconnect   after announcement 3902
"""


def _sip_port(node: NodeProcess) -> int:
    for line in node.log.read_text().splitlines():
        m = re.search(r"SIP listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no SIP port in the log:\n{node.tail()}")


def _ivr_ends(db: Path) -> list[dict]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT meta FROM timeline_entry WHERE kind = 'ivr_end'").fetchall()
    return [json.loads(r[0]) for r in rows]


async def _wait_ivr_end(db: Path, timeout: float = 30) -> list[dict]:
    """The IVR writes its end entry just after it hangs up: wait for that row (the BYE
    sipp saw can arrive before the write commits on a busy machine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        ends = await asyncio.to_thread(_ivr_ends, db)
        if ends:
            return ends
        await asyncio.sleep(0.1)
    return []


async def test_migrated_cm_site_answers_a_call_through_its_imported_vector(tmp_path: Path):
    capture = tmp_path / "capture.txt"
    capture.write_text(generated_capture())
    site = tmp_path / "site"
    assert migrate_main(["avaya-cm", str(capture), "-o", str(site)]) == 0
    # the admin's review of server.yaml: ports for this machine (the test takes free ones)
    server = site / "server.yaml"
    server.write_text(server.read_text().replace("port: 5060", "port: 0")
                      .replace("port: 8080", "port: 0"))
    assert (site / "prompts" / "en" / "ann_3901.wav").is_file()  # placeholder, not a recording

    node = NodeProcess("migrated", tmp_path / "run", site, {})
    try:
        await asyncio.to_thread(node.wait_listening)
        port = _sip_port(node)
        scenario = uac_scenario(digits="2", wait_before_dtmf_ms=1200, hold_ms=0,
                                wait_for_bye=True)
        result = await run_sipp(scenario, tmp_path, port, service="3000", timeout=30)
        assert result.returncode == 0, result.stderr + result.errors + node.tail()
        ends = await _wait_ivr_end(tmp_path / "run" / "var" / "centrale.db")
    finally:
        node.stop()
    assert len(ends) == 1, node.tail()
    [end] = ends
    assert end["outcome"] == "hangup"
    assert end["path"] == ["vector_1.v1_s01", "vector_1.v1_s02", "vector_1.v1_s05",
                           "vector_1.v1_s06", "vector_1.v1_s08"]
