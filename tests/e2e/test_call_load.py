"""The inbound call path under load (issue 21): calls taken many at a time leave the
same timeline and ACD records as the same calls taken one at a time; a node refuses
what it cannot take with a fast 503 + Retry-After, counted in /metrics, and drops no
call it accepted."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import aiohttp
import pytest
from sip_testkit import run_sipp

from ivr.call_leg import CallerData
from ivr.testing import Barge, Hangup, ScriptedCallLeg
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DEMO_NUMBER = "+31201234567"


def demo_site(tmp_path: Path, sip_port: int = 0, **sip: int) -> Path:
    """examples/demo as it is, but its SIP and web ports from the OS (and `sip` extras)."""
    cfg = tmp_path / "demo"
    shutil.copytree(REPO / "examples" / "demo", cfg)
    main = cfg / "centrale.yaml"
    extra = "".join(f"\n    {k}: {v}" for k, v in sip.items())
    text, n = re.subn(r"(\n    port: )5060\b", rf"\g<1>{sip_port}{extra}", main.read_text())
    assert n == 1
    main.write_text(text.replace("    port: 8080", "    port: 0"))
    return cfg


def caller(i: int) -> str:
    return f"+3120{4000000 + i:07d}"


_ID = re.compile(r"\b[0-9a-z]{26}\b")
_SECONDS = re.compile(r"\b\d+(\.\d+)?( ?s\b|m\d\ds\b)")
_VOLATILE_META = {"seconds", "waited", "task_id", "call_id", "caller", "case_id", "at"}


def shape(entry, number: str) -> tuple:  # type: ignore[no-untyped-def]
    """What must be equal between two calls: the entry without its ids, times and the
    caller's own number."""
    body = _SECONDS.sub("<s>", _ID.sub("<id>", (entry.body or "").replace(number, "<n>")))
    meta = {k: v for k, v in entry.meta.items() if k not in _VOLATILE_META}
    return entry.kind, entry.channel, entry.direction, body, repr(sorted(meta.items()))


async def timeline_of(cases, number: str) -> list:  # type: ignore[no-untyped-def]
    found = await cases.search(number)
    assert len(found) == 1, f"{number}: {found}"
    (_customer, case_list) = found[0]
    assert len(case_list) == 1
    return await cases.timeline(case_list[0].id)


async def test_calls_at_once_leave_the_records_of_calls_one_at_a_time(
        tmp_path: Path, make_node) -> None:  # type: ignore[no-untyped-def]
    node = await make_node(demo_site(tmp_path))
    c = node.c
    voice, acd_store = c.services["voice"], c.services["acd"]._store

    async def call(i: int) -> None:
        # the demo's language menu (1: Dutch), main menu (1: sales), hang-up in the queue
        leg = ScriptedCallLeg([Barge("1"), Barge("1"), Hangup()], caller=CallerData(
            call_id=f"load-{i}", caller_id=caller(i), dialled=DEMO_NUMBER))
        await voice.handle_sip_call(leg)
        assert leg.answered

    for i in range(3):  # one at a time
        await call(i)
    await asyncio.gather(*(call(i) for i in range(3, 83)))  # 80 at once
    await wait_until(lambda: not voice.calls_by_id)

    async def records(i: int) -> tuple[list[tuple], list[str]]:
        entries = await timeline_of(c.cases, caller(i))
        task_ids = {e.meta.get("task_id") for e in entries if e.meta.get("task_id")}
        assert len(task_ids) == 1, entries
        task_id = task_ids.pop()
        await wait_until(lambda: _history_len(acd_store, task_id, 2), timeout=30)
        history = await acd_store.task_history(task_id)
        return ([shape(e, caller(i)) for e in entries],
                [f"{r.event} {r.queue_id} {r.channel}" for r in history])

    alone = [await records(i) for i in range(3)]
    assert alone[0] == alone[1] == alone[2]
    timeline, acd = alone[0]
    kinds = [t[3] for t in timeline]
    assert kinds[0].startswith("Incoming call from <n> to") and \
        "Queued in sales (task <id>)" in kinds and kinds[-1].startswith(
            "Caller hung up in queue to_sales"), kinds
    assert acd == ["enqueued sales voice", "abandoned sales voice"]
    for i in range(3, 83):
        assert await records(i) == (timeline, acd), f"call {i} differs"


async def _history_len(store, task_id: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await store.task_history(task_id)) >= n


CALLER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="caller that accepts a 503">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+3120[call_number]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="503" optional="true" next="refused">
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="Retry-After:" check_it="true"
            assign_to="retry"/>
    </action>
  </recv>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+3120[call_number]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="1500"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+3120[call_number]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true" next="done"/>
  <label id="refused"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:+3120[call_number]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      [last_To:]
      Call-ID: [call_id]
      Subject: refused, retry after [$retry] s
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <label id="done"/>
</scenario>
"""


def sipp_counts(workdir: Path) -> dict[str, str]:
    """The last row of sipp's -trace_counts file: messages per scenario step."""
    counts = next(workdir.glob("*_counts.csv")).read_text().splitlines()
    return dict(zip(counts[0].split(";"), counts[-1].split(";"), strict=False))


async def refused_total(port: int) -> float:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("centrale_calls_refused_total{"))


@pytest.mark.sipp
async def test_overload_gets_503_with_retry_after_and_no_accepted_call_fails(
        tmp_path: Path, make_node) -> None:  # type: ignore[no-untyped-def]
    # A node that takes 3 calls in setup at a time, offered 120 calls at 300/s.
    node = await make_node(demo_site(tmp_path, max_calls_in_setup=3))
    c = node.c
    before = await refused_total(node.port)
    calls = 120
    result = await run_sipp(CALLER, tmp_path, c.services["sip"].port, calls=calls,
                            rate=300, limit=calls, service=DEMO_NUMBER, timeout=60,
                            extra=["-trace_counts"])
    # sipp ends every call cleanly: 200 -> the call ran to its BYE, or 503 (with a
    # numeric Retry-After, checked by the scenario) -> ACK; nothing else
    assert result.returncode == 0, result.stderr + result.errors
    row = sipp_counts(tmp_path)
    refused = max(int(v or 0) for k, v in row.items() if k.endswith("_503_Recv"))
    answered = max(int(v or 0) for k, v in row.items() if k.endswith("_200_Recv"))
    assert refused > 0, row  # overload happened
    assert refused + answered >= calls and answered > 0, row
    assert await refused_total(node.port) - before == refused
    await wait_until(lambda: not c.services["voice"].calls_by_id, timeout=30)
    # every accepted call reached the IVR and ended as the caller's hang-up
    acd = c.services["acd"]
    assert acd.stats()["queues"]["sales"].get("entered", 0) == 0  # no digit was pressed


QUEUE_CALLER = CALLER.replace(
    "<sip:+3120[call_number]@", "<sip:[field0]@").replace(
    '  <pause milliseconds="1500"/>\n',
    '  <pause milliseconds="300"/>\n'
    '  <nop><action><exec play_pcap_audio="DIGIT_A"/></action></nop>\n'
    '  <pause milliseconds="500"/>\n'
    '  <nop><action><exec play_pcap_audio="DIGIT_B"/></action></nop>\n'
    '  <pause milliseconds="800"/>\n')


def queue_caller(workdir: Path) -> str:
    """Through the demo IVR to the sales queue (1, 1), hang-up there after 0.8 s."""
    from tests.asterisk_live.live_asterisk import rfc2833_pcap

    a = rfc2833_pcap(workdir / "one-a.pcap", "1", 0)
    b = rfc2833_pcap(workdir / "one-b.pcap", "1", 1)
    return QUEUE_CALLER.replace("DIGIT_A", str(a)).replace("DIGIT_B", str(b))


def callers_csv(path: Path, numbers: list[str]) -> Path:
    path.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
    return path


def stored_calls(db: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Per caller number: its case's timeline bodies and its task's ACD events."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        out: dict[str, tuple[list[str], list[str]]] = {}
        for case_id, number in conn.execute(
                "SELECT c.id, i.value FROM case_ c JOIN identity i "
                "ON i.customer_id = c.customer_id WHERE i.kind = 'phone'"):
            bodies = [b for (b,) in conn.execute(
                "SELECT body FROM timeline_entry WHERE case_id = ? "
                "ORDER BY occurred_at, recorded_at, id", (case_id,))]
            events = [e for (e,) in conn.execute(
                "SELECT event FROM acd_task_events WHERE case_id = ? ORDER BY id",
                (case_id,))]
            out[number] = (bodies, events)
        return out
    finally:
        conn.close()


def complete(bodies: list[str], events: list[str]) -> bool:
    """A completed call's records: the whole IVR path to the queue, the hang-up there,
    and the ACD's enqueue and abandon."""
    return (len(bodies) >= 9 and bodies[0].startswith("Incoming call from")
            and bodies[1].startswith("IVR main started")
            and any(b.startswith("Queued in sales") for b in bodies)
            and bodies[-1].startswith("Caller hung up in queue to_sales")
            and events == ["enqueued", "abandoned"])


@pytest.mark.sipp
async def test_kill_9_under_load_loses_no_completed_call(tmp_path: Path) -> None:
    from tests.node_process import NodeProcess

    sip_port = free_sip_port()
    cfg = demo_site(tmp_path, sip_port)
    node = NodeProcess("kill9", tmp_path / "run", cfg, {})
    try:
        node.wait_listening(timeout=240)  # a busy machine starts slowly
        first = [caller(i) for i in range(20)]
        scenario = queue_caller(tmp_path)
        one = tmp_path / "first"
        one.mkdir()
        result = await run_sipp(scenario, one, sip_port, calls=20, rate=10, limit=20,
                                service=DEMO_NUMBER, timeout=60,
                                extra=["-inf", str(callers_csv(one / "c.csv", first))])
        assert result.returncode == 0, result.stderr + result.errors

        def handled() -> bool:  # the node has finished with every call of the first wave
            status, body = node.get("/metrics")
            text = body.decode()
            return status == 200 and 'centrale_calls_in_progress{backend="sip"} 0.0' in text

        await wait_until(handled, timeout=60)
        # the second wave is cut by kill -9 while its calls are in the IVR and queue
        second = [caller(1000 + i) for i in range(300)]
        two = tmp_path / "second"
        two.mkdir()
        load = asyncio.ensure_future(run_sipp(
            scenario, two, sip_port, calls=300, rate=60, limit=300, service=DEMO_NUMBER,
            timeout=20, extra=["-inf", str(callers_csv(two / "c.csv", second))]))
        await wait_until(lambda: _timeline_rows(tmp_path / "run" / "var" / "centrale.db")
                         > 20 * 9 + 100, timeout=60)
        node.kill9()
        await load
    finally:
        node.stop()
    stored = stored_calls(tmp_path / "run" / "var" / "centrale.db")
    for number in first:  # completed before the crash: all there, complete
        assert number in stored and complete(*stored[number]), (number, stored.get(number))
    cut = [n for n in second if n in stored]
    assert cut, "the crash came before any call of the second wave was identified"
    for number in cut:  # a call of the second wave is complete, or was in progress
        bodies, events = stored[number]
        ended = any(b.startswith("Caller hung up") for b in bodies)
        assert not ended or complete(bodies, events), (number, bodies, events)


def free_sip_port() -> int:
    """A port free for UDP and TCP both (the demo's SIP listens on both)."""
    import socket

    from sip_testkit import free_udp_port

    for _ in range(100):
        port = free_udp_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free for UDP and TCP")


def _timeline_rows(db: Path) -> int:
    import sqlite3

    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            return conn.execute("SELECT count(*) FROM timeline_entry").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
