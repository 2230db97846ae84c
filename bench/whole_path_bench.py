"""Whole-node benchmark: sipp callers on the demo number through identification, the
IVR, the case timeline and the ACD, against the embedded SIP core alone in the same run.

Each level starts a fresh `centrale run` on a copy of `examples/demo` (only its SIP
port changed: one from the OS) with a fresh database (SQLite, or a new PostgreSQL
database with `--postgres URL`), then offers `rate` new calls/s for `--seconds`. Each
call comes from a number of its own (a new customer and case: a mass-calling event),
answers the demo's language menu with 1 and the main menu with 1 (RFC 2833, distinct
timestamps), waits `--hold-ms` in the sales queue with music on hold and hangs up.

A level is **sustained** when every call got its 200 OK (none failed, none refused with
503), reached the queue (`centrale_queue_entered_total` equals the calls), the run kept
the offered rate, and INVITE -> 200 OK p99 <= 100 ms. 503s (admission control) are
counted apart from failures.

    .venv/bin/python bench/whole_path_bench.py --rates 50,100,200,300
    .venv/bin/python bench/whole_path_bench.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/whole_path_bench.py --rates 100 --profile /tmp/prof   # py-spy
    .venv/bin/python bench/whole_path_bench.py --rates 400 --overload  # 503 expected

The baseline (`--baseline`, on by default) is `bench/sip_bench.py`'s rate level: the
SIP core alone (`bench/sip_bench_ivr.py`: answer, prompt, MOH, BYE) at the same rates.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SIPP = "/usr/bin/sipp"
SETUP_P99_LIMIT_MS = 100.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_media_ports() -> int:
    """An even port with the next three free too: sipp binds audio RTP/RTCP at -mp and
    video at -mp + 2 (a taken video port stops it before the first call)."""
    for _ in range(200):
        base = free_port() & ~1
        socks = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no four free UDP ports in a row for sipp's media")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rfc2833_packets(digit: str, index: int) -> list[tuple[float, bytes]]:
    """One RFC 2833 event as (seconds after its start, RTP packet): 8 packets 20 ms
    apart, the end packet sent three times. Its RTP timestamp comes after the caller's
    earlier digits (`index`): Debian's pcaps all carry one timestamp, and a second
    digit with the first one's timestamp is a repeat of it to a receiver."""
    event = "0123456789*#".index(digit)
    timestamp, seq, ssrc = 8000 * (index + 1), 1000 + 20 * index, 0x43454E54
    packets = []
    durations = [160 * (i + 1) for i in range(8)]
    for i, duration in enumerate(durations):
        end = i == len(durations) - 1
        for _ in range(3 if end else 1):
            rtp = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | 101, seq + i,
                              timestamp, ssrc)
            packets.append((0.020 * i, rtp + struct.pack("!BBH", event,
                                                         (0x80 if end else 0) | 10,
                                                         duration)))
    return packets


def rfc2833_pcap(path: Path, digit: str, index: int) -> Path:
    """`rfc2833_packets` as a pcap for sipp's play_pcap_audio."""
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for offset, rtp in rfc2833_packets(digit, index):
            udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                             socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
            frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
            usec = round(offset * 1_000_000)
            f.write(struct.pack("<IIII", 1, usec, len(frame), len(frame)) + frame)
    return path


def scenario(work: Path, hold_ms: int, *, media_port: int | None = None) -> Path:
    """Caller: INVITE (503 -> ACK and stop: counted as refused), 200 -> ACK, 1, 1, wait
    in the queue, BYE.

    `media_port`: the SDP offers this port (on 127.0.0.1) instead of sipp's own and
    sipp plays no digits: a receiver there (`concurrent_calls_bench.py`'s phones)
    timestamps the node's RTP and sends the digits itself, from the address the node
    latches onto (symmetric RTP), so the node's audio keeps going to it."""
    if media_port is None:
        first = rfc2833_pcap(work / "dtmf1a.pcap", "1", 0)
        second = rfc2833_pcap(work / "dtmf1b.pcap", "1", 1)
        media_ip, port = "[media_ip]", "[media_port]"
        digits = f"""  <pause milliseconds="300"/>
  <nop><action><exec play_pcap_audio="{first}"/></action></nop>
  <pause milliseconds="500"/>
  <nop><action><exec play_pcap_audio="{second}"/></action></nop>
"""
    else:
        media_ip, port, digits = "127.0.0.1", str(media_port), ""
    hdrs = """      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      Call-ID: [call_id]"""
    xml = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="whole path">
  <send retrans="500">
    <![CDATA[
      INVITE sip:+31201234567@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{hdrs}
      To: <sip:+31201234567@[remote_ip]:[remote_port]>
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP4 [local_ip]
      s=-
      c=IN IP4 {media_ip}
      t=0 0
      m=audio {port} RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="503" optional="true" next="refused"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:+31201234567@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{hdrs}
      To: <sip:+31201234567@[remote_ip]:[remote_port]>[peer_tag_param]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
{digits}  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:+31201234567@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{hdrs}
      To: <sip:+31201234567@[remote_ip]:[remote_port]>[peer_tag_param]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true" next="done"/>
  <label id="refused"/>
  <send>
    <![CDATA[
      ACK sip:+31201234567@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
{hdrs}
      [last_To:]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <label id="done"/>
</scenario>
"""
    path = work / "caller.xml"
    path.write_text(xml)
    return path


def callers_file(work: Path, count: int, offset: int) -> Path:
    """Distinct valid Dutch numbers (+31 20 …): one customer and case per call."""
    path = work / "callers.csv"
    lines = ["SEQUENTIAL"] + [f"+3120{3000000 + offset + i:07d};" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the node ----------------------------------------------------------------------
@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    sip_port: int
    url: str
    log: Path
    db_url: str | None
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


def site(work: Path, sip_port: int) -> Path:
    cfg = work / "site"
    shutil.copytree(ROOT / "examples" / "demo", cfg)
    main = cfg / "centrale.yaml"
    text = main.read_text()
    text, n = re.subn(r"(\n    port: )5060\b", rf"\g<1>{sip_port}", text)
    assert n == 1, "examples/demo/centrale.yaml: server.sip.port not found"
    main.write_text(text)
    return cfg


def postgres_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _ = admin_url.rsplit("/", 1)
    return f"{base}/{name}"


def drop_postgres_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_counters(db_url: str) -> dict[str, int]:
    """Transactions and rows the server counted for this database (its own stats)."""
    import psycopg

    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched "
            "FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    assert row is not None
    return dict(zip(("commits", "rollbacks", "inserted", "updated", "fetched"), row,
                    strict=True))


def free_sip_port() -> int:
    """Free for UDP and TCP both (the demo's SIP listens on both)."""
    for _ in range(100):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free for UDP and TCP")


def start_node(work: Path, db_url: str | None, profile: Path | None,
               env_extra: dict[str, str]) -> Node:
    sip_port = free_sip_port()
    cfg = site(work, sip_port)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CENTRALE_LOG_FORMAT": "json",
           "CENTRALE_NODE_ID": "bench", **env_extra}
    env.pop("CENTRALE_REDIS_URL", None)
    if db_url:
        env["CENTRALE_DATABASE_URL"] = db_url
        subprocess.run([sys.executable, "-m", "centrale", "db", "upgrade", "--config",
                        str(cfg)], cwd=work, env=env, check=True, capture_output=True)
    else:
        env.pop("CENTRALE_DATABASE_URL", None)
    log = work / "node.log"
    cmd = [sys.executable, "-m", "centrale", "run", "--config", str(cfg), "--port", "0",
           "--pid-file", str(work / "node.pid")]
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))
    url = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not url:
        if proc.poll() is not None:
            raise RuntimeError("node exited:\n" + log.read_text()[-3000:])
        for line in log.read_text().splitlines():
            if '"centrale listening"' in line:
                url = json.loads(line)["url"]
        time.sleep(0.1)
    if not url:
        proc.kill()
        raise RuntimeError("node did not start:\n" + log.read_text()[-3000:])
    profiler = None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        profiler = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(proc.pid),
             "--rate", "200", "--format", "raw", "--nonblocking", "--threads", "--idle",
             "-o", str(profile / "node.collapsed")],
            stdout=subprocess.DEVNULL, stderr=(profile / "py-spy.log").open("w"))
        time.sleep(1.0)
    return Node(proc, sip_port, url, log, db_url, profiler)


def stop_node(node: Node) -> None:
    if node.profiler is not None:
        node.profiler.send_signal(signal.SIGINT)
        try:
            node.profiler.wait(30)
        except subprocess.TimeoutExpired:
            node.profiler.kill()
    node.proc.send_signal(signal.SIGTERM)
    try:
        node.proc.wait(20)
    except subprocess.TimeoutExpired:
        node.proc.kill()
        node.proc.wait(10)


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=20) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def metric_sum(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


# -- one level -----------------------------------------------------------------------
@dataclass
class Level:
    rate: int
    calls: int
    ok: int = 0
    failed: int = 0
    refused: int = 0
    took: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    max_ms: float = 0.0
    queued: int = 0
    cpu_pct: float = 0.0
    per_call: dict[str, float] = field(default_factory=dict)
    sustained: bool = False
    load: str = ""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def sipp_args(xml: Path, callers: Path, port: int, stat: Path, *, calls: int, rate: int,
              limit: int, timeout: float) -> list[str]:
    """The sipp command of a caller run: `calls` at `rate`/s, at most `limit` at once,
    statistics every second into `stat` and the scenario's *_counts.csv / *_rtt.csv."""
    return [SIPP, "-sf", str(xml), "-inf", str(callers), "-m", str(calls), "-r", str(rate),
            "-l", str(limit), "-i", "127.0.0.1", "-p", str(free_port()),
            "-mp", str(free_media_ports()), "-nostdin", "-timeout", f"{int(timeout)}s",
            "-timeout_error", "-max_socket", "4096", "-trace_stat", "-stf", str(stat),
            "-fd", "1", "-trace_rtt", "-rtt_freq", "1", "-trace_counts",
            "-recv_timeout", "10s", f"127.0.0.1:{port}"]


def sipp_results(work: Path, stat: Path) -> tuple[int, int, int, list[float]]:
    """(answered, failed, refused with 503, INVITE -> 200 OK times in ms) from the
    files of a sipp run in `work` — final, or so far while it runs (every second)."""
    ok = failed = 0
    if stat.exists():
        lines = stat.read_text().splitlines()
        if len(lines) >= 2:
            row = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
            ok = int(row.get("SuccessfulCall(C)", 0) or 0)
            failed = int(row.get("FailedCall(C)", 0) or 0)
    refused = 0
    for counts in work.glob("caller_*_counts.csv"):
        lines = counts.read_text().splitlines()
        if len(lines) >= 2:
            row = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
            refused = max((int(v or 0) for k, v in row.items()
                           if k.endswith("_503_Recv")), default=0)
    rtts: list[float] = []
    for rtt in work.glob("caller_*_rtt.csv"):
        for line in rtt.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    rtts.append(float(parts[1]))
                except ValueError:
                    pass
    return ok - refused, failed, refused, rtts


def run_sipp(work: Path, xml: Path, callers: Path, port: int, *, calls: int, rate: int,
             timeout: float) -> tuple[int, int, int, float, list[float]]:
    for old in work.glob("caller_*"):
        old.unlink()
    stat = work / "stat.csv"
    stat.unlink(missing_ok=True)
    args = sipp_args(xml, callers, port, stat, calls=calls, rate=rate,
                     limit=max(rate * 10, 100), timeout=timeout)
    started = time.monotonic()
    proc = subprocess.run(args, cwd=work, capture_output=True, text=True,
                          timeout=timeout + 60, check=False)
    took = time.monotonic() - started
    if took < 1.0:  # sipp did not run (a port taken between picking and binding)
        print(f"  sipp exited at once: {proc.stderr.strip()[-500:]}", flush=True)
    ok, failed, refused, rtts = sipp_results(work, stat)
    return ok, failed, refused, took, rtts


def whole_path_level(rate: int, seconds: int, hold_ms: int, postgres: str | None,
                     profile: Path | None, index: int, env_extra: dict[str, str]) -> Level:
    calls = rate * seconds
    level = Level(rate, calls)
    with tempfile.TemporaryDirectory(prefix="whole-path-") as tmp:
        work = Path(tmp)
        if os.environ.get("WHOLE_PATH_KEEP"):  # keep the node's files to look at
            work = Path(tempfile.mkdtemp(prefix="whole-path-kept-"))
            print(f"  (kept in {work})")
        db_url, db_name = None, None
        if postgres:
            db_name = f"bench_whole_path_{os.getpid()}_{index}"
            db_url = postgres_database(postgres, db_name)
        node = start_node(work, db_url, profile, env_extra)
        try:
            xml = scenario(work, hold_ms)
            callers = callers_file(work, calls, index * 1_000_000 % 6_000_000)
            before = scrape(node.url)
            pg_before = pg_counters(db_url) if db_url else None
            cpu0, t0 = proc_cpu_seconds(node.pid), time.monotonic()
            ok, failed, refused, took, rtts = run_sipp(
                work, xml, callers, node.sip_port, calls=calls, rate=rate,
                timeout=seconds * 4 + 30)
            # the last hang-ups are handled and the ACD's records written
            time.sleep(1.5)
            cpu = proc_cpu_seconds(node.pid) - cpu0
            level.cpu_pct = cpu / (time.monotonic() - t0) * 100
            level.per_call["cpu_ms"] = cpu * 1000 / max(1, ok + refused)
            # per ANSWERED call: what the product path costs (a 503 costs ~nothing, so
            # `cpu_ms` above falls as more calls are refused)
            level.per_call["cpu_ms_answered"] = cpu * 1000 / max(1, ok)
            after = scrape(node.url)
            level.load = load()
            level.ok, level.failed, level.refused, level.took = ok, failed, refused, took
            level.p50, level.p99 = percentile(rtts, 0.5), percentile(rtts, 0.99)
            level.max_ms = max(rtts) if rtts else float("nan")
            level.queued = int(metric_sum(after, 'centrale_queue_entered_total{channel="voice"')
                               - metric_sum(before,
                                            'centrale_queue_entered_total{channel="voice"'))
            answered = max(1, ok)
            level.per_call["events"] = (
                metric_sum(after, "centrale_events_published_total")
                - metric_sum(before, "centrale_events_published_total")) / answered
            if db_url and pg_before is not None:
                time.sleep(1.0)
                pg_after = pg_counters(db_url)
                for k in pg_before:
                    level.per_call["pg_" + k] = (pg_after[k] - pg_before[k]) / answered
            level.sustained = (failed == 0 and refused == 0 and ok == calls
                               and level.queued == calls and took <= seconds + hold_ms / 1000
                               + 3.0 and level.p99 <= SETUP_P99_LIMIT_MS)
        finally:
            stop_node(node)
            errors = [ln for ln in node.log.read_text().splitlines()
                      if '"level": "error"' in ln.lower()]
            if errors:
                level.per_call["log_errors"] = len(errors)
                path = Path(tempfile.gettempdir()) / "whole-path-errors.log"
                path.write_text("\n".join(errors[:200]))
                print(f"  ({len(errors)} errors in the node's log; the first in {path})")
            if postgres and db_name:
                drop_postgres_database(postgres, db_name)
    return level


def print_level(name: str, lv: Level) -> None:
    verdict = "SUSTAINED" if lv.sustained else "not sustained"
    extras = " ".join(f"{k}={v:.2f}" for k, v in lv.per_call.items())
    print(f"  [load {lv.load}] {name:10s} {lv.rate:4d}/s x {lv.calls:5d}: ok={lv.ok} "
          f"failed={lv.failed} 503={lv.refused} queued={lv.queued} took={lv.took:.1f}s "
          f"setup p50={lv.p50:.0f} p99={lv.p99:.0f} max={lv.max_ms:.0f} ms "
          f"cpu={lv.cpu_pct:.0f}%  {verdict}  per call: {extras}", flush=True)


def baseline(rates: list[int], seconds: int) -> None:
    import sip_bench

    with tempfile.TemporaryDirectory(prefix="sip-bench-") as tmp:
        workdir = Path(tmp)
        prompt_dir = workdir / "prompts"
        (prompt_dir / "en").mkdir(parents=True)
        sip_bench.write_wav(prompt_dir / "en" / "menu.wav", 3.0, 16000, 440)
        sip_bench.write_wav(prompt_dir / "moh.wav", 2.0, 8000, 330)
        for rate in rates:
            ok, run, cpu, _rss = sip_bench.rate_level("centrale", rate, seconds, prompt_dir,
                                                      workdir)
            cpu_ms = cpu / 100 * run.seconds * 1000 / max(1, run.successful)
            print(f"  [load {load()}] SIP core   {rate:4d}/s x {rate * seconds:5d}: "
                  f"ok={run.successful} failed={run.failed} took={run.seconds:.1f}s "
                  f"cpu={cpu:.0f}%  {'SUSTAINED' if ok else 'not sustained'}  "
                  f"per call: cpu_ms={cpu_ms:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="50,100,200,300")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--hold-ms", type=int, default=1000,
                        help="time in the queue before hanging up")
    parser.add_argument("--postgres", help="admin URL; a fresh database per level")
    parser.add_argument("--both", action="store_true", help="SQLite, then PostgreSQL "
                        "(CENTRALE_TEST_POSTGRES_URL or --postgres)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--only-baseline", action="store_true",
                        help="the SIP core alone at the rates, no whole node")
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks into DIR")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every rate even after one is not sustained")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for the node (e.g. a feature switch)")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    env_extra = dict(e.split("=", 1) for e in args.env)
    print(f"whole path on {os.cpu_count()} cores, `uptime`: {uptime()}")
    databases: list[tuple[str, str | None]] = []
    pg = args.postgres or os.environ.get("CENTRALE_TEST_POSTGRES_URL")
    if args.both:
        databases = [("sqlite", None), ("postgres", pg)]
    else:
        databases = [("postgres", args.postgres)] if args.postgres else [("sqlite", None)]
    best: dict[str, int] = {}
    index = 0
    if args.only_baseline:
        databases = []
    for name, url in databases:
        best[name] = 0
        for rate in rates:
            index += 1
            lv = whole_path_level(rate, args.seconds, args.hold_ms, url, args.profile, index,
                                  env_extra)
            print_level(name, lv)
            if lv.sustained:
                best[name] = rate
            elif not args.keep_going:
                break
    if not args.no_baseline:
        baseline(rates, args.seconds)
    print("[summary] highest sustained (0 failed, 0 refused, setup p99 <= 100 ms): " +
          ", ".join(f"{k} {v}/s" for k, v in best.items()) + f"; `uptime`: {uptime()}")


if __name__ == "__main__":
    main()
