"""Concurrent calls on the whole node: N callers at once through identification and the
IVR into the demo's sales queue, waiting there with music on hold (no agent logged in),
and the RTP those callers receive, against the SIP core alone at the same concurrency in
the same run (issue 21: >= 1,000 concurrent calls with RTP gap p99 <= 30 ms).

One `centrale run` on a copy of `examples/demo` (`whole_path_bench.start_node`: fresh
SQLite file, or a fresh PostgreSQL database with `--postgres`). The levels are steps of
ONE run: sipp places `level - previous` new calls at `--ramp` calls/s (each from a
number of its own: a new customer and case per call, a mass-calling event), the bench
waits until the node's `centrale_queue_waiting` holds them all (calls refused with 503
by admission are placed again at half the rate, up to `--top-ups` times), lets the node
settle, then measures for `--window` seconds with every call on hold:

* RTP gap p99 / max and packets lost, as the callers receive them: every caller's SDP
  points at one phones process (its socket timestamps each packet with the kernel's
  receive time, SO_TIMESTAMPNS, so its own scheduling does not count). It also sends
  each call's digits (1 in the language menu, 1 in the main menu; RFC 2833) from that
  socket, so the node's symmetric RTP latches onto the same address and the music keeps
  coming to it. Losses are counted from the RTP sequence numbers per stream.
* node CPU (% of one core over the window) and RSS, the calls it holds, its late RTP
  sends (`centrale_rtp_late_sends_total`) and refusals.

Callers send no audio of their own (as in `sip_bench.py`) beyond a silent frame per
call every 5 s (a phone with silence suppression: the node's media watchdog hangs up
a call silent for 120 s), unless `--caller-audio`: then the phones process sends each
call a G.711 frame every 20 ms, as a talking caller's phone does (the node reads 50
packets/s per call more).

The baseline (off with `--no-baseline`), in the same run and through the same harness
(a fresh phones process, the same sipp callers, ramp and windows): the SIP core alone,
`bench/sip_bench_ivr.py centrale` (answer, prompt, one digit, music on hold), its calls
counted by the phones.

A level passes with 0 failed calls, all of them on hold, every stream receiving to the
end of the window, and gap p99 <= 30 ms. `--node-nofile 1024` starts the node with a
shell's soft open files limit; `--profile DIR` records py-spy over each window.

    .venv/bin/python bench/concurrent_calls_bench.py                 # 250, 500, 1000
    .venv/bin/python bench/concurrent_calls_bench.py --levels 1000 --window 20
    .venv/bin/python bench/concurrent_calls_bench.py --postgres postgresql://...
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing as mp
import os
import random
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sip_bench  # noqa: E402
import whole_path_bench as wp  # noqa: E402

GAP_LIMIT_MS = 30.0
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
# the digits each caller sends: (seconds after the node's first RTP packet, digit)
DIGITS: tuple[tuple[float, str], ...] = ((0.3, "1"), (0.8, "1"))
KEEPALIVE_SECONDS = 5.0
HOLD_MS = 900_000  # callers stay on hold until the bench ends them (`Callers.stop`)


def raise_fd_limit() -> tuple[int, int]:
    """The soft RLIMIT_NOFILE up to the hard one, for this process and its children
    (sipp, the node): 1,000 calls are 1,000+ sockets, and a shell's soft limit is often
    1,024. Returns the limit before."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


# -- the callers' media: one process, one socket ------------------------------------
def gap_buckets_p(buckets: list[int], q: float) -> float:
    """The `q` quantile of 1 ms gap buckets, as the bucket's upper edge (ms)."""
    total = sum(buckets)
    if total == 0:
        return float("inf")
    acc = 0
    for ms, count in enumerate(buckets):
        acc += count
        if acc >= q * total:
            return ms + 1.0
    return float(len(buckets))


def count_lost(previous_seq: int, seq: int) -> int:
    """Packets missing between two RTP sequence numbers of one stream (16-bit wrap);
    a repeat or a late (reordered) packet loses nothing."""
    step = (seq - previous_seq) & 0xFFFF
    return step - 1 if 0 < step < 0x8000 else 0


@dataclass
class Window:
    """What the phones received in one measuring window."""

    buckets: list[int] = field(default_factory=lambda: [0] * 2001)
    packets: int = 0
    lost: int = 0
    streams: set[tuple[str, int]] = field(default_factory=set)

    def summary(self, last_seen: dict[tuple[str, int], float], end: float) -> dict:  # type: ignore[type-arg]
        stalled = sum(1 for a in self.streams if end - last_seen.get(a, 0.0) > 0.2)
        return {"buckets": self.buckets, "packets": self.packets, "lost": self.lost,
                "streams": len(self.streams), "stalled": stalled}


def phones_main(conn, caller_audio: bool) -> None:  # type: ignore[no-untyped-def]
    """The media end of every caller. Commands on `conn`: ("start",) opens a measuring
    window (answers True), ("collect",) answers its figures and closes it, ("count",)
    answers how many streams sent in the last second, ("stop",) ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt, size in ((SO_RCVBUFFORCE, 32 << 20), (socket.SO_RCVBUF, 8 << 20)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            break
        except OSError:
            continue
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    conn.send(sock.getsockname()[1])
    digit_packets = [(at + offset, packet) for i, (at, digit) in enumerate(DIGITS)
                     for offset, packet in wp.rfc2833_packets(digit, i)]
    unpack_ts, unpack_seq = struct.Struct("qq").unpack_from, struct.Struct("!H").unpack_from
    anc = socket.CMSG_SPACE(16)
    # addr -> [last arrival, last seq, window number of the last arrival]
    streams: dict[tuple[str, int], list[float]] = {}
    last_seen: dict[tuple[str, int], float] = {}
    due: list[tuple[float, int, tuple[str, int], bytes]] = []
    n_sent = 0
    window: Window | None = None
    window_no = 0
    payload = bytes(random.getrandbits(8) | 0x10 for _ in range(160))
    audio_ssrc = random.getrandbits(32)
    audio_seq = audio_ts = 0
    next_audio = last_keepalive = time.monotonic()
    keepalive = struct.pack("!BBHII", 0x80, 0, 1, 0, audio_ssrc) + b"\xff" * 160
    order: list[tuple[str, int]] = []  # the calls, for the keepalives' round
    cursor = 0
    while True:
        now = time.monotonic()
        wait = 0.05
        if due:
            wait = min(wait, max(0.0, due[0][0] - now))
        if caller_audio:
            wait = min(wait, max(0.0, next_audio - now))
        readable, _, _ = select.select([sock, conn], [], [], wait)
        for _ in range(4096):  # then serve the digits and the audio that are due
            try:
                data, ancdata, _flags, addr = sock.recvmsg(2048, anc)
            except BlockingIOError:
                break
            if len(data) < 12 or data[1] & 0x7F not in (0, 8):
                continue  # not G.711 audio
            arrival = unpack_ts(ancdata[0][2]) if ancdata else None
            at = arrival[0] + arrival[1] * 1e-9 if arrival else time.time()
            seq = unpack_seq(data, 2)[0]
            state = streams.get(addr)
            last_seen[addr] = at
            if state is None:  # a new call: its digits, from this socket
                streams[addr] = [at, seq, window_no]
                order.append(addr)
                start = time.monotonic()
                for offset, packet in digit_packets:
                    n_sent += 1
                    heapq.heappush(due, (start + offset, n_sent, addr, packet))
                continue
            if window is not None:
                if state[2] == window_no:
                    gap = int((at - state[0]) * 1000)
                    window.buckets[gap if gap < 2000 else 2000] += 1
                    window.lost += count_lost(int(state[1]), seq)
                window.packets += 1
                window.streams.add(addr)
            state[0], state[1], state[2] = at, seq, window_no
        # commands after the packets already there: a window collected counts
        # every packet that arrived before the command
        if conn in readable:
            command = conn.recv()[0]
            if command == "start":
                window_no += 1
                window = Window()
                conn.send(True)
            elif command == "collect":
                conn.send(window.summary(last_seen, time.time()) if window else None)
                window = None
            elif command == "count":
                wall = time.time()
                conn.send(sum(1 for t in last_seen.values() if wall - t < 1.0))
            else:
                return
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, addr, packet = heapq.heappop(due)
            try:
                sock.sendto(packet, addr)
            except BlockingIOError:
                pass
        if not caller_audio and order:
            # a phone with silence suppression still sends now and then (comfort
            # noise): the node's media watchdog hangs up calls silent for 120 s. Spread
            # over the interval, not a burst of one packet per call.
            share = len(order) * (now - last_keepalive) / KEEPALIVE_SECONDS
            if share >= 1:
                for _ in range(int(share)):
                    cursor = (cursor + 1) % len(order)
                    try:
                        sock.sendto(keepalive, order[cursor])
                    except BlockingIOError:
                        pass
                last_keepalive = now
        if caller_audio and now >= next_audio:
            audio_seq = (audio_seq + 1) & 0xFFFF
            audio_ts = (audio_ts + 160) & 0xFFFFFFFF
            frame = struct.pack("!BBHII", 0x80, 0, audio_seq, audio_ts, audio_ssrc) + payload
            for addr in streams:
                try:
                    sock.sendto(frame, addr)
                except BlockingIOError:
                    pass
            next_audio += 0.020
            if now - next_audio > 0.060:  # starved: a phone skips, it does not burst
                next_audio = now + 0.020


class Phones:
    def __init__(self, caller_audio: bool) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=phones_main, args=(child, caller_audio), daemon=True)
        self.proc.start()
        self.port: int = self.conn.recv()

    def ask(self, command: str) -> object:
        self.conn.send((command,))
        return self.conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.conn.send(("stop",))
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


# -- sipp callers --------------------------------------------------------------------
class Callers:
    """One sipp run placing `count` calls that hold until `stop`."""

    def __init__(self, work: Path, target, phones_port: int, count: int,  # type: ignore[no-untyped-def]
                 rate: int, first_number: int) -> None:
        self.work = work
        work.mkdir(parents=True)
        xml = wp.scenario(work, HOLD_MS, media_port=phones_port)
        callers = wp.callers_file(work, count, first_number)
        self.stat = work / "stat.csv"
        args = wp.sipp_args(xml, callers, target.sip_port, self.stat, calls=count, rate=rate,
                            limit=count, timeout=HOLD_MS / 1000)
        args[-1:-1] = ["-trace_err"]  # why a call failed: caller_<pid>_errors.log
        self.count = count
        self.proc = subprocess.Popen(args, cwd=work, stdout=subprocess.DEVNULL,
                                     stderr=(work / "sipp.err").open("w"))

    def results(self) -> tuple[int, int, int, list[float]]:
        """(answered, failed, refused, setup ms) so far: sipp counts a call successful
        only when it ends, so "answered" is the INVITE's 200 OKs received."""
        _ok, failed, refused, rtts = wp.sipp_results(self.work, self.stat)
        answered = 0
        for counts in self.work.glob("caller_*_counts.csv"):
            lines = counts.read_text().splitlines()
            if len(lines) >= 2:
                row = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
                first_200 = next((k for k in row if k.endswith("_200_Recv")), None)
                answered = int(row[first_200] or 0) if first_200 else 0
        return answered, failed, refused, rtts

    def settled(self) -> bool:
        """Every call placed got its answer or its refusal (or sipp is gone)."""
        answered, failed, refused, _ = self.results()
        return self.proc.poll() is not None or answered + failed + refused >= self.count

    def stop(self) -> None:
        """Gone without a BYE (sipp 3.6.1 sent none here for calls in a pause, told to
        quit on its control port or by SIGUSR1): the node hangs them up as it stops."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(5)


# -- the node under test ---------------------------------------------------------
class WholeNode:
    """`centrale run` on the demo config: counts from its /metrics."""

    name = "node"

    def __init__(self, work: Path, db_url: str | None, env_extra: dict[str, str],
                 nofile: int | None) -> None:
        if nofile:  # the node starts with this soft limit (inherited), sipp does not
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
        try:
            for attempt in range(3):
                # its SIP port was free when picked, but the node binds it seconds later:
                # on this shared machine another process's ephemeral socket took it twice
                folder = work / f"node-{attempt}"
                folder.mkdir()
                try:
                    self.node = wp.start_node(folder, db_url, None, env_extra)
                    break
                except RuntimeError as exc:
                    if "Address already in use" not in str(exc) or attempt == 2:
                        raise
                    print("  (the node's SIP port was taken meanwhile; again)", flush=True)
        finally:
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.sip_port, self.pid = self.node.sip_port, self.node.pid

    def counts(self) -> dict[str, float]:
        samples = wp.scrape(self.node.url)
        return {"held": wp.metric_sum(samples, "centrale_calls_in_progress"),
                "in_queue": wp.metric_sum(samples, "centrale_queue_waiting{"),
                "late_sends": wp.metric_sum(samples, "centrale_rtp_late_sends_total"),
                "refused": wp.metric_sum(samples, "centrale_calls_refused_total")}

    def stop(self) -> str:
        wp.stop_node(self.node)
        log = self.node.log.read_text()
        errors = sum(1 for ln in log.splitlines() if '"level": "error"' in ln)
        kept = Path(tempfile.gettempdir()) / "concurrent-calls-node.log"
        kept.write_text(log)
        return f"{errors} errors in its log, kept in {kept}"


class SipCore:
    """The SIP core alone (`bench/sip_bench_ivr.py centrale`: answer, prompt, one
    digit, music on hold), its calls counted by the phones (streams that sent in the
    last second)."""

    name = "SIP core"

    def __init__(self, work: Path, phones: Phones) -> None:
        prompt_dir = work / "prompts"
        (prompt_dir / "en").mkdir(parents=True)
        sip_bench.write_wav(prompt_dir / "en" / "menu.wav", 3.0, 16000, 440)
        sip_bench.write_wav(prompt_dir / "moh.wav", 2.0, 8000, 330)
        self.ivr = sip_bench.IvrProcess("centrale", prompt_dir, work)
        self.sip_port, self.pid = self.ivr.port, self.ivr.proc.pid
        self.phones = phones

    def counts(self) -> dict[str, float]:
        streams = float(self.phones.ask("count"))  # type: ignore[arg-type]
        stats = self.ivr.stats()
        late = sum(stats.get("tick_lateness_ms", [])[20:])  # type: ignore[index]
        return {"held": streams, "in_queue": streams, "late_sends": late, "refused": 0.0}

    def stop(self) -> str:
        self.ivr.stop()
        return "stopped"


@dataclass
class Level:
    target: int
    held: int = 0  # calls the node holds (centrale_calls_in_progress) in the window
    waiting: int = 0  # of which on hold in a queue (centrale_queue_waiting)
    reached_in: float = 0.0
    answered: int = 0
    failed: int = 0
    refused: int = 0
    setup_p99: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    max_gap: float = 0.0
    over_40: float = 0.0
    packets: int = 0
    expected: int = 0
    lost: int = 0
    streams: int = 0
    stalled: int = 0
    cpu_pct: float = 0.0
    cpu_ms_per_call_second: float = 0.0
    rss_mb: float = 0.0
    late_sends: float = 0.0
    refused_total: float = 0.0
    load: str = ""

    @property
    def ok(self) -> bool:
        return (self.failed == 0 and self.waiting >= self.target
                and self.streams >= self.target and self.stalled == 0
                and self.p99 <= GAP_LIMIT_MS)


def wait_for(what, timeout: float, step: float = 0.5) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(step)
    return bool(what())


def run_levels(target, phones: Phones, work: Path, levels: list[int],  # type: ignore[no-untyped-def]
               ramp: int, window: float, settle: float, top_ups: int,
               profile: Path | None = None) -> list[Level]:
    """Ramp `target` (a WholeNode or a SipCore) up through `levels`, measuring each."""
    results: list[Level] = []
    callers: list[Callers] = []
    try:
        placed = 0
        for goal in levels:
            level = Level(goal)
            t0 = time.monotonic()
            for attempt in range(top_ups + 1):
                missing = goal - int(target.counts()["in_queue"])
                if missing <= 0:
                    break
                # calls refused with 503 are placed again at half the rate: a node
                # holding hundreds of calls takes new ones slower (docs/performance.md)
                rate = max(5, ramp >> attempt)
                batch = Callers(work / f"callers-{len(callers)}", target, phones.port,
                                missing, rate, placed)
                callers.append(batch)
                placed += missing
                # every call answered or refused, then the IVR's ~2 s to the queue
                wait_for(batch.settled, missing / rate * 3 + 30)
                wait_for(lambda g=goal: target.counts()["in_queue"] >= g, 15 + missing / rate)
                if attempt == top_ups:
                    break
            level.reached_in = time.monotonic() - t0
            time.sleep(settle)
            before = target.counts()
            spy = None
            if profile is not None:  # py-spy over the window, into DIR/<name>-<level>
                profile.mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                     str(target.pid), "--rate", "100", "--format", "raw", "--nonblocking",
                     "--duration", str(int(window)), "-o",
                     str(profile / f"{target.name.replace(' ', '-')}-{goal}.collapsed")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            phones.ask("start")
            cpu0, w0 = wp.proc_cpu_seconds(target.pid), time.monotonic()
            time.sleep(window)
            stats = phones.ask("collect")
            elapsed = time.monotonic() - w0
            cpu = wp.proc_cpu_seconds(target.pid) - cpu0
            level.rss_mb = sip_bench.proc_rss_mb(target.pid)
            after = target.counts()
            level.load = wp.load()
            level.cpu_pct = cpu / elapsed * 100
            level.held = int(after["held"])
            level.waiting = int(min(before["in_queue"], after["in_queue"]))
            level.cpu_ms_per_call_second = cpu * 1000 / max(1, level.held) / elapsed
            level.late_sends = after["late_sends"] - before["late_sends"]
            level.refused_total = after["refused"]
            assert isinstance(stats, dict)
            level.p50 = gap_buckets_p(stats["buckets"], 0.5)
            level.p99 = gap_buckets_p(stats["buckets"], 0.99)
            total = sum(stats["buckets"])
            level.over_40 = sum(stats["buckets"][40:]) / total if total else 1.0
            level.max_gap = max((ms for ms, n in enumerate(stats["buckets"]) if n), default=0)
            level.packets, level.lost = stats["packets"], stats["lost"]
            level.streams, level.stalled = stats["streams"], stats["stalled"]
            level.expected = int(level.streams * elapsed / 0.020)
            for batch in callers:
                answered, failed, refused, rtts = batch.results()
                level.answered += answered
                level.failed += failed
                level.refused += refused
                level.setup_p99 = max(level.setup_p99, wp.percentile(rtts, 0.99))
            print_level(target.name, level)
            if spy is not None:
                spy.wait(30)
            results.append(level)
    finally:
        for batch in callers:
            batch.stop()
        errors = [log.read_text() for batch in callers
                  for log in batch.work.glob("caller_*_errors.log")]
        if any(errors):
            kept = Path(tempfile.gettempdir()) / "concurrent-calls-sipp-errors.log"
            kept.write_text("\n".join(errors))
            print(f"  (sipp's errors kept in {kept})", flush=True)
    return results


def print_level(name: str, lv: Level) -> None:
    verdict = "PASS" if lv.ok else "FAIL"
    print(f"  [load {lv.load}] {name:8s} {lv.target:5d} calls  {verdict}  held={lv.held} "
          f"on hold={lv.waiting} (in {lv.reached_in:.0f}s) answered={lv.answered} "
          f"failed={lv.failed} 503={lv.refused} (refusals counted: {lv.refused_total:.0f}) "
          f"setup p99={lv.setup_p99:.0f} ms | gap p50={lv.p50:.0f} p99={lv.p99:.0f} "
          f"max={lv.max_gap} ms >40ms={lv.over_40 * 100:.2f}% streams={lv.streams} "
          f"stalled={lv.stalled} packets={lv.packets}/{lv.expected} lost={lv.lost} "
          f"late sends={lv.late_sends:.0f} | cpu={lv.cpu_pct:.0f}% "
          f"({lv.cpu_ms_per_call_second:.3f} ms per call-second) rss={lv.rss_mb:.0f} MB",
          flush=True)


def measure(kind: str, args: argparse.Namespace, levels: list[int]) -> list[Level]:
    """One run of `kind` ("node" or "core"): a fresh phones process and target."""
    with tempfile.TemporaryDirectory(prefix="concurrent-calls-") as tmp:
        work = Path(tmp)
        db_url = db_name = None
        phones = Phones(args.caller_audio)
        target: WholeNode | SipCore | None = None
        try:
            if kind == "node":
                if args.postgres:
                    db_name = f"bench_concurrent_{os.getpid()}"
                    db_url = wp.postgres_database(args.postgres, db_name)
                target = WholeNode(work, db_url, dict(e.split("=", 1) for e in args.env),
                                   args.node_nofile)
            else:
                target = SipCore(work, phones)
            return run_levels(target, phones, work, levels, args.ramp, args.window,
                              args.settle, args.top_ups, args.profile)
        finally:
            if target is not None:
                t_end = time.monotonic()
                note = target.stop()
                print(f"  ({target.name} stopped, its calls hung up, in "
                      f"{time.monotonic() - t_end:.0f} s; {note})", flush=True)
            phones.stop()
            if args.postgres and db_name:
                wp.drop_postgres_database(args.postgres, db_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="250,500,1000", help="concurrent calls, rising")
    parser.add_argument("--ramp", type=int, default=50, help="new calls per second")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between reaching a level and measuring it")
    parser.add_argument("--top-ups", type=int, default=4,
                        help="times calls refused with 503 are placed again (each time "
                        "at half the rate before)")
    parser.add_argument("--postgres", help="admin URL; a fresh database for the run")
    parser.add_argument("--caller-audio", action="store_true",
                        help="callers send a G.711 frame every 20 ms too")
    parser.add_argument("--node-nofile", type=int,
                        help="start the node with this soft RLIMIT_NOFILE (e.g. 1024, a "
                        "shell's default) to see how it copes")
    parser.add_argument("--profile", type=Path,
                        help="py-spy over each window, collapsed stacks into DIR")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--only-baseline", action="store_true")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for the node (e.g. a feature switch)")
    args = parser.parse_args()
    levels = sorted(int(n) for n in args.levels.split(","))
    soft, hard = raise_fd_limit()
    print(f"concurrent calls on {os.cpu_count()} cores (RLIMIT_NOFILE {soft} -> "
          f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}, hard {hard}); gap limit p99 "
          f"<= {GAP_LIMIT_MS:.0f} ms; `uptime`: {wp.uptime()}", flush=True)
    kinds = [] if args.only_baseline else ["node"]
    if not args.no_baseline:
        kinds.append("core")
    best: dict[str, str] = {}
    for kind in kinds:
        passed = [lv.target for lv in measure(kind, args, levels) if lv.ok]
        best[kind] = str(max(passed)) if passed else "none"
    print("[summary] highest level passed (0 failed, all on hold, gap p99 <= "
          f"{GAP_LIMIT_MS:.0f} ms): " + ", ".join(f"{k} {v}" for k, v in best.items())
          + f"; `uptime`: {wp.uptime()}", flush=True)


if __name__ == "__main__":
    main()
