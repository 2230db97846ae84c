"""SIP benchmark: sipp callers into an IVR (prompt + one RFC 2833 digit + music on hold).

Runs the embedded SIP core and, as the baseline in the same run, a minimal pyVoIP
1.6.8 IVR, each as a child process (bench/sip_bench_ivr.py), and prints:

* the most concurrent calls held with 0 failed calls, every digit read correctly and
  an RTP inter-packet gap p99 <= 30 ms;
* the highest sustained rate of short calls (calls/s) with 0 failures;
* CPU (% of one core) and RSS of the IVR process at each level.

RTP is measured by a separate sink process: the callers' SDP points the media at
it, and it timestamps packets with the kernel's receive time, so gaps are what a
receiver sees (scheduler jitter + event-loop lateness + the kernel), not what the
sender believes it sent, and not the sink's own scheduling delays.

    .venv/bin/python bench/sip_bench.py            # full run (~5 min)
    .venv/bin/python bench/sip_bench.py --quick    # smaller levels
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IVR = ROOT / "bench" / "sip_bench_ivr.py"
SIPP = "/usr/bin/sipp"
DTMF_PCAP = "/usr/share/sip-tester/dtmf_2833_5.pcap"
GAP_LIMIT_MS = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- helpers ----------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_wav(path: Path, seconds: float, rate: int, freq: float) -> None:
    n = int(seconds * rate)
    data = array("h", (int(5000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data.tobytes())


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu() -> float:
    """CPU seconds of finished child processes (sipp, once it has been waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- RTP sink (separate process) --------------------------------------------
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def sink_main(port: int, conn) -> None:  # type: ignore[no-untyped-def]
    """Records inter-arrival gaps of audio packets per source, in 1 ms buckets.

    Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so the sink's
    own scheduling delays on a busy machine do not show up as gaps.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.2)
    anc_size = socket.CMSG_SPACE(16)
    while True:  # a round per measurement: "next" answers and goes on, "stop" ends
        result = _sink_round(sock, conn, anc_size)
        command = conn.recv()
        conn.send(result)
        if command != "next":
            return


def _sink_round(sock: socket.socket, conn, anc_size: int) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Gaps until the parent says something (kept bound between rounds: a port let go
    between two measurements was taken by another process's ephemeral socket)."""
    last: dict[tuple[str, int], float] = {}
    buckets = [0] * 2001
    packets = 0
    while not conn.poll():
        try:
            data, ancdata, _flags, addr = sock.recvmsg(2048, anc_size)
        except TimeoutError:
            continue
        if len(data) < 12 or data[1] & 0x7F not in (0, 8):
            continue  # not audio (e.g. RFC 4733 events)
        now = None
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = int.from_bytes(cdata[:8], "little"), int.from_bytes(cdata[8:16],
                                                                                 "little")
                now = sec + nsec / 1e9
        if now is None:
            now = time.time()
        packets += 1
        prev = last.get(addr)
        last[addr] = now
        if prev is not None:
            buckets[min(2000, max(0, int((now - prev) * 1000)))] += 1
    return {"buckets": buckets, "packets": packets, "streams": len(last)}


@dataclass
class GapStats:
    packets: int
    streams: int
    p50: float
    p99: float
    over_40: float

    @classmethod
    def from_buckets(cls, result: dict) -> GapStats:
        buckets = result["buckets"]
        total = sum(buckets)
        if total == 0:
            return cls(result["packets"], result["streams"], math.inf, math.inf, 1.0)

        def pct(q: float) -> float:
            acc = 0
            for ms, count in enumerate(buckets):
                acc += count
                if acc >= q * total:
                    return ms + 1.0  # upper edge of the bucket
            return 2000.0

        over = sum(buckets[40:]) / total
        return cls(result["packets"], result["streams"], pct(0.5), pct(0.99), over)


class Sink:
    def __init__(self) -> None:
        self.port = free_port()
        self.parent, child = mp.Pipe()
        self.proc = mp.Process(target=sink_main, args=(self.port, child), daemon=True)
        self.proc.start()
        time.sleep(0.2)

    def stop(self) -> GapStats:
        self.parent.send("stop")
        result = self.parent.recv()
        self.proc.join(2)
        return GapStats.from_buckets(result)


# -- sipp scenarios ------------------------------------------------------------
def scenario(sink_port: int, *, dtmf: bool, hold_ms: int) -> str:
    dtmf_xml = ('  <pause milliseconds="1000"/>\n'
                f'  <nop><action><exec play_pcap_audio="{DTMF_PCAP}"/></action></nop>\n'
                if dtmf else "")
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bench">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+3360000[call_number]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP4 127.0.0.1
      s=-
      c=IN IP4 127.0.0.1
      t=0 0
      m=audio {sink_port} RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+3360000[call_number]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
{dtmf_xml}  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+3360000[call_number]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


@dataclass
class SippRun:
    ok: bool
    successful: int
    failed: int
    seconds: float
    detail: str


def run_sipp(workdir: Path, xml: str, target_port: int, *, calls: int, rate: float,
             limit: int, local_port: int, timeout: float) -> SippRun:
    path = workdir / "scenario.xml"
    path.write_text(xml)
    stat = workdir / "stat.csv"
    stat.unlink(missing_ok=True)
    args = [SIPP, "-sf", str(path), "-m", str(calls), "-r", str(rate), "-l", str(limit),
            "-i", "127.0.0.1", "-p", str(local_port), "-mp", str(free_port() & ~1),
            "-s", "ivr", "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error",
            "-max_socket", "4096", "-trace_stat", "-stf", str(stat), "-fd", "1",
            "-recv_timeout", "10s", f"127.0.0.1:{target_port}"]
    started = time.monotonic()
    proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True,
                          timeout=timeout + 30, check=False)
    seconds = time.monotonic() - started
    successful = failed = 0
    if stat.exists():
        lines = stat.read_text().splitlines()
        if len(lines) >= 2:
            head = lines[0].split(";")
            last = lines[-1].split(";")
            row = dict(zip(head, last, strict=False))
            successful = int(row.get("SuccessfulCall(C)", 0) or 0)
            failed = int(row.get("FailedCall(C)", 0) or 0)
    ok = proc.returncode == 0 and failed == 0 and successful == calls
    return SippRun(ok, successful, failed, seconds, "")


# -- the IVR child -------------------------------------------------------------
class IvrProcess:
    def __init__(self, mode: str, prompt_dir: Path, workdir: Path) -> None:
        self.mode = mode
        self.port = free_port()
        self.stats_path = workdir / f"{mode}-stats.json"
        self.stats_path.unlink(missing_ok=True)
        self.sipp_port = free_port()
        args = [sys.executable, str(IVR), mode, str(self.port), str(prompt_dir),
                str(self.stats_path)]
        registrar = None
        if mode == "pyvoip":
            # pyVoIP must register before it takes calls, and it sends every reply to
            # its registrar's address: a throw-away registrar answers on the port that
            # sipp will use afterwards, so pyVoIP's replies reach sipp.
            registrar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            registrar.bind(("127.0.0.1", self.sipp_port))
            args.append(str(self.sipp_port))
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if registrar is not None:
            registrar.settimeout(15)
            data, addr = registrar.recvfrom(8192)
            registrar.sendto(_ok_register(data.decode()), addr)
            registrar.close()
        for _ in range(200):
            if self.stats().get("ready"):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{mode} IVR did not start: {self.proc.stderr}")

    def stats(self) -> dict[str, int]:
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _ok_register(request: str) -> bytes:
    lines = request.replace("\r\n", "\n").split("\n")
    keep = [ln for ln in lines if ln.split(":")[0].lower() in
            ("via", "from", "to", "call-id", "cseq", "contact")]
    keep = [ln + (";tag=reg" if ln.lower().startswith("to:") else "") for ln in keep]
    return ("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nExpires: 3600\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def percentile(histogram: list[int], q: float) -> int:
    total, acc = sum(histogram), 0
    for value, count in enumerate(histogram):
        acc += count
        if acc >= q * total:
            return value
    return len(histogram) - 1


# -- measurements --------------------------------------------------------------
@dataclass
class LevelResult:
    calls: int
    ok: bool
    failed: int
    digits_ok: int
    gaps: GapStats
    cpu_pct: float
    rss_mb: float
    note: str = ""


def concurrency_level(mode: str, calls: int, prompt_dir: Path, workdir: Path) -> LevelResult:
    ivr = IvrProcess(mode, prompt_dir, workdir)
    sink = Sink()
    rate = min(100.0, max(10.0, calls / 5))
    hold_ms = int((calls / rate) * 1000) + 6000  # every call overlaps for >= 6 s
    try:
        cpu0, t0 = proc_cpu_seconds(ivr.proc.pid), time.monotonic()
        run = run_sipp(workdir, scenario(sink.port, dtmf=True, hold_ms=hold_ms), ivr.port,
                       calls=calls, rate=rate, limit=calls, local_port=ivr.sipp_port,
                       timeout=hold_ms / 1000 + calls / rate + 40)
        cpu = (proc_cpu_seconds(ivr.proc.pid) - cpu0) / (time.monotonic() - t0) * 100
        rss = proc_rss_mb(ivr.proc.pid)
        time.sleep(0.6)
        stats = ivr.stats()
    finally:
        gaps = sink.stop()
        ivr.stop()
    digits_ok = stats.get("digits_ok", 0)
    notes = []
    for key, label in (("tick_lateness_ms", "tick lateness"), ("tick_cost_ms", "tick cost")):
        histogram = stats.get(key)
        if histogram:
            notes.append(f"{label} p99={percentile(histogram, 0.99)} ms")
    run.detail = ", ".join(notes)
    ok = run.ok and digits_ok == calls and gaps.p99 <= GAP_LIMIT_MS
    note = run.detail if run.ok else f"sipp: {run.successful} ok / {run.failed} failed"
    return LevelResult(calls, ok, run.failed, digits_ok, gaps, cpu, rss, note)


def rate_level(mode: str, rate: int, seconds: int, prompt_dir: Path, workdir: Path
               ) -> tuple[bool, SippRun, float, float]:
    ivr = IvrProcess(mode, prompt_dir, workdir)
    sink = Sink()
    try:
        cpu0, t0 = proc_cpu_seconds(ivr.proc.pid), time.monotonic()
        sipp0 = children_cpu()
        total = rate * seconds
        run = run_sipp(workdir, scenario(sink.port, dtmf=False, hold_ms=300), ivr.port,
                       calls=total, rate=rate, limit=max(rate * 5, 50),
                       local_port=ivr.sipp_port, timeout=seconds * 3 + 20)
        cpu = (proc_cpu_seconds(ivr.proc.pid) - cpu0) / (time.monotonic() - t0) * 100
        run.detail = f"sipp cpu={(children_cpu() - sipp0) / run.seconds * 100:.0f}%"
        rss = proc_rss_mb(ivr.proc.pid)
    finally:
        sink.stop()
        ivr.stop()
    # sustained: every call succeeded and the run kept the offered rate (a run that
    # takes longer than planned means calls were set up slower than offered)
    sustained = run.ok and run.seconds <= seconds + 1.5
    return sustained, run, cpu, rss


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def print_level(mode: str, r: LevelResult) -> None:
    verdict = "PASS" if r.ok else "FAIL"
    print(f"  [load {load()}] {mode:8s} {r.calls:5d} calls  {verdict}  failed={r.failed:<4d}"
          f" digits_ok={r.digits_ok:<5d} gap p50={r.gaps.p50:.0f} ms p99={r.gaps.p99:.0f} ms"
          f" >40ms={r.gaps.over_40 * 100:.2f}%  streams={r.gaps.streams:<5d}"
          f" cpu={r.cpu_pct:.0f}%  rss={r.rss_mb:.0f} MB {r.note}", flush=True)


def find_max_concurrency(mode: str, levels: list[int], prompt_dir: Path, workdir: Path,
                         trials: int) -> LevelResult | None:
    """Raise the level until it fails in every one of `trials` attempts.

    The machine is shared (other processes steal CPU and inflate RTP gaps), so a
    level passes when one of its trials passes; every trial is printed.
    """
    best = None
    for calls in levels:
        passed = None
        for _ in range(trials):
            result = concurrency_level(mode, calls, prompt_dir, workdir)
            print_level(mode, result)
            if result.ok:
                passed = result
                break
        if passed is None:
            break
        best = passed
    return best


def find_max_rate(mode: str, rates: list[int], seconds: int, prompt_dir: Path,
                  workdir: Path) -> int:
    best = 0
    for rate in rates:
        ok, run, cpu, rss = rate_level(mode, rate, seconds, prompt_dir, workdir)
        verdict = "PASS" if ok else "FAIL"
        print(f"  [load {load()}] {mode:8s} {rate:4d} calls/s for {seconds}s  {verdict}"
              f"  ok={run.successful} failed={run.failed} took={run.seconds:.1f}s"
              f"  cpu={cpu:.0f}% rss={rss:.0f} MB  {run.detail}", flush=True)
        if not ok:
            break
        best = rate
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller levels, shorter runs")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--trials", type=int, default=2,
                        help="attempts per concurrency level (shared machine)")
    args = parser.parse_args()
    if args.quick:
        centrale_levels, pyvoip_levels = [100, 300, 500], [50, 100]
        centrale_rates, pyvoip_rates, seconds = [50, 100, 150], [10, 25], 5
    else:
        centrale_levels = [100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1600, 2000]
        pyvoip_levels = [50, 100, 150, 200]
        centrale_rates = [50, 100, 200, 300, 400, 500, 600, 800]
        pyvoip_rates = [10, 20, 30, 40, 50, 60, 80]
        seconds = 10
    with tempfile.TemporaryDirectory(prefix="sip-bench-") as tmp:
        workdir = Path(tmp)
        prompt_dir = workdir / "prompts"
        (prompt_dir / "en").mkdir(parents=True)
        write_wav(prompt_dir / "en" / "menu.wav", 3.0, 16000, 440)  # converted + cached
        write_wav(prompt_dir / "moh.wav", 2.0, 8000, 330)
        print(f"SIP benchmark on {os.cpu_count()} cores; sipp {SIPP}; gap limit p99 <= "
              f"{GAP_LIMIT_MS:.0f} ms; RTP measured by a separate sink process")
        print("\n[concurrency: prompt + RFC 2833 digit + music on hold]")
        c_best = find_max_concurrency("centrale", centrale_levels, prompt_dir, workdir,
                                      args.trials)
        p_best = None if args.skip_baseline else find_max_concurrency(
            "pyvoip", pyvoip_levels, prompt_dir, workdir, args.trials)
        print("\n[short calls per second]")
        c_rate = find_max_rate("centrale", centrale_rates, seconds, prompt_dir, workdir)
        p_rate = None if args.skip_baseline else find_max_rate(
            "pyvoip", pyvoip_rates, seconds, prompt_dir, workdir)
        print("\n[summary]")

        def fmt(best: LevelResult | None) -> str:
            if best is None:
                return "none passed"
            return (f"{best.calls} concurrent (p99 gap {best.gaps.p99:.0f} ms, "
                    f"cpu {best.cpu_pct:.0f}%, rss {best.rss_mb:.0f} MB)")

        print(f"  centrale: {fmt(c_best)}; {c_rate} calls/s sustained")
        if not args.skip_baseline:
            print(f"  pyVoIP 1.6.8 baseline: {fmt(p_best)}; {p_rate} calls/s sustained")
        print("  targets: >= 500 concurrent, >= 100 calls/s")


if __name__ == "__main__":
    main()
