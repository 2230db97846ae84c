"""Recording benchmark: concurrent recorded 2-party calls on the embedded media core,
against the same calls unrecorded, in the same run.

Three kinds of N concurrent 2-party calls, every party sending audio all the time:

- `relay`     — unrecorded, the packet relay a plain call uses today (the baseline);
- `mixer`     — unrecorded, but bridged through a mixer (what a recorded call runs on);
- `recorded`  — a plain recorded call as the SIP core runs it: still on the relay,
                the legs keeping the G.711 payloads they relay, the relay recorder
                taking each recording once a second and handing the blocks to the
                writer thread every 0.1 s, which decodes them and writes WAV files
                to a temporary directory (one writer thread for all of them);
- `rec-mixer` — recorded through a mixer with the tap (a recorded call after a hold,
                transfer or conference moved it there).

Two measurements, as in `conference_bench.py` (whose phones process this reuses):

1. CPU per second of audio, in-process and independent of the machine's load: real
   RTP sessions fed packets directly, the mix ticked by hand (the relay recorder's
   clock follows the ticks), the writer thread's work included (process CPU time)
   and drained before the clock stops. Finishing a recording (final header, fsync,
   SHA-256) is a cost per call, printed apart and spread over a 3-minute call.
2. Real RTP both ways with a phones process: gap p99 as the phones see them, core
   CPU, frames delivered, and for `recorded` the seconds written vs the wall time
   (a recording gap is a shortfall), the silence the taps had to fill in and the
   audio a relayed recording dropped while the phones spoke.

    .venv/bin/python bench/recording_bench.py                    # 100,300,500
    .venv/bin/python bench/recording_bench.py --levels 500 --seconds 8
    .venv/bin/python bench/recording_bench.py --cpu-only
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.conference_bench import GAP_LIMIT_MS, phones_main  # noqa: E402

KINDS = ("relay", "mixer", "recorded", "rec-mixer")


def _build(engine, sessions, kind: str, folder: Path, writer,  # type: ignore[no-untyped-def]
           keep_time: bool = True):
    from pbx_bridge.media.mixer import Mixer
    from pbx_bridge.media.recorder import StereoRecording
    from pbx_bridge.media.relay_tap import RelayRecorder
    from pbx_bridge.media.rtp import bridge_sessions

    mixers, taps = [], []
    for k in range(len(sessions) // 2):
        a, b = sessions[2 * k], sessions[2 * k + 1]
        if kind in ("relay", "recorded"):
            bridge_sessions(a, b)
            if kind == "recorded":
                tap = StereoRecording(folder / f"{k}.wav", writer, keep_time=keep_time)
                RelayRecorder.of(engine).attach(tap, a, b)
                taps.append(tap)
            continue
        mixer = Mixer(engine, name=f"call-{k}")
        mixer.add("customer", a)
        mixer.add("agent", b)
        if kind == "rec-mixer":
            tap = StereoRecording(folder / f"{k}.wav", writer, keep_time=keep_time)
            mixer.attach_tap(tap)
            taps.append(tap)
        mixers.append(mixer)
    return mixers, taps


async def cpu_cost(n: int, kind: str, ticks: int) -> tuple[float, float]:
    """% of one core per second of audio for `n` calls of `kind` while they talk (the
    writer thread's work for it drained before the clock stops), and the CPU ms per
    recording of starting and finishing it (creating the file; final header, fsync,
    SHA-256 of the file): a per-call cost, not a per-second one, reported apart."""
    import socket as socket_mod

    from pbx_bridge.media.recorder import RecordingWriter
    from pbx_bridge.media.relay_tap import RelayRecorder
    from pbx_bridge.media.rtp import MediaEngine

    engine = MediaEngine("127.0.0.1", 30000, 60000)
    sink = socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sessions = [await engine.open_session() for _ in range(2 * n)]
    for session in sessions:
        session.remote = sink.getsockname()
        session.latched = True
    writer = RecordingWriter()
    clock = [0.0]  # the relay recorder's clock: the ticks', not the wall's
    RelayRecorder.of(engine).clock = lambda: clock[0]
    with tempfile.TemporaryDirectory(prefix="rec-bench-") as folder:
        # ticked by hand, not at 20 ms: the tap must not fill "dropped" ticks
        opening = time.process_time()
        mixers, taps = _build(engine, sessions, kind, Path(folder), writer, keep_time=False)
        if taps:
            writer.drain()  # the files are open: a cost per recording, not per second
        opening = time.process_time() - opening
        groups = list(getattr(engine, "mixer_groups", {}).values())
        relay_recorder = getattr(engine, "relay_recorder", None)
        if relay_recorder is not None:
            groups.append(relay_recorder)
        payload = bytes(random.getrandbits(8) | 0x10 for _ in range(160))
        addr = ("127.0.0.1", 9)
        ssrcs = [random.getrandbits(32) for _ in sessions]
        cpu0 = time.process_time()
        for tick in range(ticks):
            for i, session in enumerate(sessions):
                session.datagram_received(struct.pack(
                    "!BBHII", 0x80, 0, tick & 0xFFFF, (tick * 160) & 0xFFFFFFFF, ssrcs[i])
                    + payload, addr)
            clock[0] = (tick + 1) * 0.02
            for group in groups:
                group.tick(clock[0])
        for tap in taps:
            tap._synced()  # the relay recorder's last batch (what a flush would take)
        writer.drain()
        cpu = time.process_time() - cpu0
        for mixer in mixers:
            mixer.close()  # the taps finish their files
        for tap in taps:
            tap.stop()
            tap.finished.result(timeout=120)
        finish = time.process_time() - cpu0 - cpu + opening
        writer.stop()
    await engine.stop()
    sink.close()
    return cpu / (ticks * 0.020) * 100, finish * 1000 / max(1, len(taps))


class _Set:
    """One kind's calls on an engine of their own (its own mixer groups and relay
    recorder), fed and ticked by hand on their own clock: `interleaved` runs two of
    them in alternating windows of the same process."""

    def __init__(self, engine, sessions, kind: str, folder: Path, writer) -> None:  # type: ignore[no-untyped-def]
        from pbx_bridge.media.relay_tap import RelayRecorder

        self.engine, self.sessions, self.kind = engine, sessions, kind
        self.clock = [0.0]
        if kind == "recorded":
            RelayRecorder.of(engine).clock = lambda: self.clock[0]
        self.mixers, self.taps = _build(engine, sessions, kind, folder, writer,
                                        keep_time=False)
        self.groups = list(getattr(engine, "mixer_groups", {}).values())
        if getattr(engine, "relay_recorder", None) is not None:
            self.groups.append(engine.relay_recorder)
        rng = random.Random(len(sessions))
        self.payload = bytes(rng.getrandbits(8) | 0x10 for _ in range(160))
        self.ssrcs = [rng.getrandbits(32) for _ in sessions]
        self.tick_no = 0

    def run(self, ticks: int) -> None:
        payload, ssrcs, addr = self.payload, self.ssrcs, ("127.0.0.1", 9)
        for _ in range(ticks):
            tick = self.tick_no
            for i, session in enumerate(self.sessions):
                session.datagram_received(struct.pack(
                    "!BBHII", 0x80, 0, tick & 0xFFFF, (tick * 160) & 0xFFFFFFFF, ssrcs[i])
                    + payload, addr)
            self.tick_no += 1
            self.clock[0] = self.tick_no * 0.02
            for group in self.groups:
                group.tick(self.clock[0])


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu(native_id: int | None) -> tuple[float, float]:
    """(user, system) CPU seconds of one thread of this process, from
    /proc/self/task/<tid>/stat (clock ticks: for totals over many windows)."""
    if native_id is None:
        return 0.0, 0.0
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / hz, int(fields[12]) / hz


async def interleaved(n: int, base: str, recorded: str, windows: int,
                      window_ticks: int, folder: str) -> dict[str, float]:
    """`n` calls of `base` (unrecorded) and `n` of `recorded`, each kind on an engine
    of its own in this one process, run in alternating windows of `window_ticks`
    ticks (`windows` of each, the order flipped every pair). A window's cost is the
    CPU time of the threads that do its work — the loop thread (`time.thread_time`)
    and, for the recorded kind, the writer thread (its CPU clock, the window's jobs
    drained before it is read) — not the process's: another process on the machine
    only adds to a window through cache and frequency effects, and it does so to
    both kinds alike, as they alternate every few milliseconds. Returns the medians
    (µs per call-second) and the spread of the paired ratios."""
    import socket as socket_mod
    import statistics

    from pbx_bridge.media.recorder import RecordingWriter
    from pbx_bridge.media.rtp import MediaEngine

    sink = socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    writer = RecordingWriter()
    writer.start()
    writer_clock = time.pthread_getcpuclockid(writer._thread.ident)  # type: ignore[union-attr]
    sets = []
    for kind in (base, recorded):
        engine = MediaEngine("127.0.0.1", 30000, 60000)
        sessions = [await engine.open_session() for _ in range(2 * n)]
        for session in sessions:
            session.remote = sink.getsockname()
            session.latched = True
        sets.append(_Set(engine, sessions, kind, Path(folder), writer))
    writer.drain()
    for s in sets:  # warm-up: a full flush cycle of the relay recorder
        s.run(50)
    writer.drain()
    cost: dict[str, list[float]] = {base: [], recorded: []}
    loop_part: dict[str, list[float]] = {base: [], recorded: []}
    writer_native = writer._thread.native_id  # type: ignore[union-attr]
    user0, sys0 = _thread_cpu(writer_native)
    writer_total = 0.0
    for w in range(windows):
        order = sets if w % 2 == 0 else sets[::-1]
        for s in order:
            w0 = time.clock_gettime(writer_clock)
            t0 = time.thread_time()
            s.run(window_ticks)
            loop_cpu = time.thread_time() - t0
            if s.taps:
                writer.drain()
            spent = time.clock_gettime(writer_clock) - w0
            if s.taps:
                writer_total += spent
            per = 1e6 / (n * window_ticks * 0.02)  # s of CPU -> µs per call-second
            cost[s.kind].append((loop_cpu + (spent if s.taps else 0.0)) * per)
            loop_part[s.kind].append(loop_cpu * per)
    user1, sys1 = _thread_cpu(writer_native)
    for s in sets:
        for mixer in s.mixers:
            mixer.close()
        for tap in s.taps:
            tap.stop()
            tap.finished.result(timeout=120)
    writer.stop()
    for s in sets:
        await s.engine.stop()
    sink.close()
    ratios = sorted(r / b for r, b in zip(cost[recorded], cost[base], strict=True))
    q = statistics.quantiles(ratios, n=4)
    audio = n * windows * window_ticks * 0.02
    return {"base": statistics.median(cost[base]), "rec": statistics.median(cost[recorded]),
            "base_loop": statistics.median(loop_part[base]),
            "rec_loop": statistics.median(loop_part[recorded]),
            "ratio": statistics.median(ratios), "q1": q[0], "q3": q[2],
            "min": ratios[0], "max": ratios[-1],
            "writer_user": (user1 - user0) * 1e6 / audio,
            "writer_sys": (sys1 - sys0) * 1e6 / audio,
            "writer": writer_total * 1e6 / audio}


async def workload(kind: str, n: int, ticks: int, folder: str) -> None:
    """A fixed workload for `instructions`: `n` calls of `kind` for `ticks` ticks,
    every recording's blocks written and drained; no file is finished (its final
    header, fsync and SHA-256 grow with the file's length: not a per-second cost)."""
    import socket as socket_mod

    from pbx_bridge.media.recorder import RecordingWriter
    from pbx_bridge.media.rtp import MediaEngine

    sink = socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    writer = RecordingWriter()
    engine = MediaEngine("127.0.0.1", 30000, 60000)
    sessions = [await engine.open_session() for _ in range(2 * n)]
    for session in sessions:
        session.remote = sink.getsockname()
        session.latched = True
    calls = _Set(engine, sessions, kind, Path(folder), writer)
    writer.drain()
    calls.run(ticks)
    for tap in calls.taps:
        tap._synced()
    if calls.taps:
        writer.drain()


def _callgrind(kind: str, n: int, ticks: int, folder: str) -> int:
    """Instructions (all threads, user space) of `workload` under callgrind."""
    import subprocess

    out = Path(folder) / f"callgrind.{kind}.{n}.{ticks}"
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, str(Path(__file__).resolve()), "--workload", kind,
                    "--calls", str(n), "--ticks", str(ticks), "--dir", folder],
                   check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    for line in out.read_text().splitlines():
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def instructions(n: int, seconds: float, kinds: tuple[str, ...]) -> dict[str, float]:
    """Instructions per call-second of each kind: the same workload run for 1 s and
    for 1 + `seconds` s of audio under callgrind, the difference divided by the
    call-seconds it adds (start-up, imports and opening files cancel out). A count
    of instructions does not depend on what else runs on the machine; it leaves out
    the kernel's work (the socket sends, the file writes) and weighs a cache miss
    like any other instruction."""
    ticks = round(seconds / 0.02)
    result = {}
    with tempfile.TemporaryDirectory(prefix="rec-bench-ir-") as folder:
        for kind in kinds:
            short = _callgrind(kind, n, 50, folder)
            long = _callgrind(kind, n, 50 + ticks, folder)
            result[kind] = (long - short) / (n * seconds)
    return result


async def run_level(n: int, kind: str, seconds: float, warmup: float) -> dict[str, float]:
    from pbx_bridge.media.recorder import RecordingWriter
    from pbx_bridge.media.rtp import MediaEngine

    engine = MediaEngine("127.0.0.1", 30000, 60000)
    engine.start()
    sessions = [await engine.open_session() for _ in range(2 * n)]
    parent, child = mp.Pipe()
    proc = mp.Process(target=phones_main, args=(len(sessions), child), daemon=True)
    proc.start()
    phone_port = await asyncio.to_thread(parent.recv)
    for session in sessions:
        session.remote = ("127.0.0.1", phone_port)
        session.latched = True
    writer = RecordingWriter()
    folder = tempfile.TemporaryDirectory(prefix="rec-bench-")
    parent.send(([s.local_port for s in sessions], seconds, warmup))
    await asyncio.sleep(warmup / 2)
    started = time.monotonic()
    mixers, taps = _build(engine, sessions, kind, Path(folder.name), writer)
    await asyncio.sleep(warmup / 2)
    cpu0, wall0 = time.process_time(), time.monotonic()
    phones0 = _process_cpu(proc.pid)
    await asyncio.sleep(seconds - 1.0)
    # a second before the phones fall silent (the taps fill what comes after with
    # silence): silence the taps had to fill in (neither side's audio arrived in time)
    # and audio a relayed recording dropped (a side too far ahead of the clock)
    filled = sum(tap.gap_frames for tap in taps) / 8000
    relay_recorder = getattr(engine, "relay_recorder", None)
    dropped = sum(t.dropped for t in relay_recorder.taps) / 8000 if relay_recorder else 0.0
    await asyncio.sleep(0.5)
    # the load generator: at ~100 % of a core it, not the core, sets the gaps
    phones = (_process_cpu(proc.pid) - phones0) / (time.monotonic() - wall0) * 100
    await asyncio.sleep(0.5)
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100
    result = await asyncio.to_thread(parent.recv)
    proc.join(5)
    wall = time.monotonic() - started
    for mixer in mixers:
        mixer.close()
    for tap in taps:
        tap.stop()
    written = shortfall = 0.0
    failed = 0
    for tap in taps:
        r = await asyncio.wrap_future(tap.finished)
        written += r.seconds
        shortfall += max(0.0, wall - r.seconds - 0.1)
        failed += r.error is not None
    writer.stop()
    folder.cleanup()
    await engine.stop()
    return {"cpu": cpu, "phones": phones, **result, "wall": wall,
            "written": written / max(1, len(taps)), "shortfall": shortfall,
            "filled": filled, "dropped": dropped, "failed": failed}


def cpu_parts(levels: list[int], args: argparse.Namespace) -> None:
    """Part 1 (separate runs per kind, as until session 6), 1b (interleaved, thread
    CPU clocks) and, when asked, 1c (instructions under callgrind)."""
    print("\nCPU of the media core per second of audio, in-process, writer thread "
          f"included, the lowest of {args.repeat} runs (each kind's runs are separate: "
          "the machine's load between them moves this ratio; see 1b):")
    for n in levels:
        # each kind `--repeat` times, interleaved; the least disturbed (lowest) run of
        # each counts: other processes only ever add to a run's CPU time
        samples: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
        for _ in range(args.repeat):
            for kind in KINDS:
                samples[kind].append(asyncio.run(cpu_cost(n, kind, 250)))
        runs = {kind: min(found) for kind, found in samples.items()}
        cost = {kind: run[0] for kind, run in runs.items()}
        print(f"  {n:>4} calls: relay {cost['relay']:6.1f}%  recorded {cost['recorded']:6.1f}%"
              f"  = {cost['recorded'] / cost['relay']:.2f}x;  mixer {cost['mixer']:6.1f}%  "
              f"rec-mixer {cost['rec-mixer']:6.1f}% = "
              f"{cost['rec-mixer'] / cost['mixer']:.2f}x (% of one core)", flush=True)
        finish = runs["recorded"][1]
        # a recording's one-off start and finish, spread over a 3-minute call
        amortised = cost["recorded"] + finish / 1000 * n / 180 * 100
        print(f"        starting and finishing a recording: {finish:.2f} ms CPU each; "
              f"over a 3-minute "
              f"call that is recorded {amortised:.1f}% = "
              f"{amortised / cost['relay']:.2f}x the relay", flush=True)
    if args.windows:
        print(f"\nThe same, interleaved in one process: unrecorded and recorded calls "
              f"(relay / recorded; mixer / rec-mixer with --mixer-pair; each kind on an "
              f"engine of its own) in alternating windows of "
              f"{args.window_ticks * 20} ms of audio, {args.windows} of each; a window's cost "
              "is the CPU time of the loop thread plus, recorded, the writer thread's for "
              "that window (thread CPU clocks: other processes' load is not counted). "
              "µs of CPU per call-second, medians; the ratio is the median of the paired "
              "windows' ratios [quartiles] (min-max):")
        pairs = [("relay", "recorded")] + ([("mixer", "rec-mixer")] if args.mixer_pair else [])
        for n in levels:
            for base, recorded in pairs:
                with tempfile.TemporaryDirectory(prefix="rec-bench-", dir=args.dir) as folder:
                    r = asyncio.run(interleaved(n, base, recorded, args.windows,
                                                args.window_ticks, folder))
                print(f"  {n:>4} calls: {base} {r['base']:6.1f}  {recorded} {r['rec']:6.1f} "
                      f"(loop {r['rec_loop']:.1f} + writer {r['writer']:.1f}: user "
                      f"{r['writer_user']:.0f} sys {r['writer_sys']:.0f})  = "
                      f"{r['ratio']:.3f}x [{r['q1']:.3f}-{r['q3']:.3f}] "
                      f"({r['min']:.2f}-{r['max']:.2f})", flush=True)
    if args.instructions:
        print(f"\nInstructions per call-second under callgrind ({args.ir_calls} calls, "
              f"{args.ir_seconds:g} s of audio minus 1 s; user space, every thread; the "
              "same count whatever the load):")
        ir = instructions(args.ir_calls, args.ir_seconds, ("relay", "recorded"))
        print(f"  relay {ir['relay'] / 1e3:.0f} K  recorded {ir['recorded'] / 1e3:.0f} K  = "
              f"{ir['recorded'] / ir['relay']:.3f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="100,300,500")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--rtp-only", action="store_true", help="part 2 only")
    ap.add_argument("--repeat", type=int, default=3, help="runs per kind in part 1")
    ap.add_argument("--windows", type=int, default=30,
                    help="part 1b: windows of each kind, interleaved (0: skip)")
    ap.add_argument("--window-ticks", type=int, default=50,
                    help="part 1b: ticks per window (50: one whole flush cycle; 5 "
                    "measured ~3 %% lower ratios: each window starts in the caches "
                    "the other kind left)")
    ap.add_argument("--mixer-pair", action="store_true",
                    help="part 1b also for mixer / rec-mixer (a call after a hold, "
                    "transfer or conference)")
    ap.add_argument("--instructions", action="store_true",
                    help="part 1c: instructions per call-second under callgrind (slow)")
    ap.add_argument("--ir-calls", type=int, default=100)
    ap.add_argument("--ir-seconds", type=float, default=2.0)
    ap.add_argument("--dir", default=None,
                    help="where the recordings are written (default: the temp dir)")
    ap.add_argument("--workload", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--calls", type=int, default=100, help=argparse.SUPPRESS)
    ap.add_argument("--ticks", type=int, default=50, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.workload:  # one run under callgrind (`instructions`)
        with tempfile.TemporaryDirectory(prefix="rec-bench-w-", dir=args.dir) as folder:
            asyncio.run(workload(args.workload, args.calls, args.ticks, folder))
        os._exit(0)  # the writer thread, the sockets: nothing more to count
    levels = [int(x) for x in args.levels.split(",")]
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} "
          "(other processes compete for the same cores)")
    if not args.rtp_only:
        cpu_parts(levels, args)
    if args.cpu_only:
        return
    print("\nReal RTP both ways with a phones process (gaps as the phones see them):")
    print(f"{'level':>6} {'kind':>9} {'core CPU %':>10} {'phones %':>8} {'gap p99 ms':>10} "
          f"{'max ms':>7} "
          f"{'frames rx/expected':>19} {'rec s/wall s':>12} {'filled s':>8} {'dropped s':>9}")
    best = 0
    for n in levels:
        rows = {}
        for kind in KINDS:
            r = asyncio.run(run_level(n, kind, args.seconds, args.warmup))
            rows[kind] = r
            taps = kind in ("recorded", "rec-mixer")
            rec = f"{r['written']:.2f}/{r['wall']:.2f}" if taps else ""
            filled = f"{r['filled']:.2f}" if taps else ""
            dropped = f"{r['dropped']:.2f}" if kind == "recorded" else ""
            print(f"{n:>6} {kind:>9} {r['cpu']:>10.1f} {r['phones']:>8.1f} {r['p99']:>10.1f} "
                  f"{r['max']:>7.0f} "
                  f"{r['received']:>9}/{r['expected']:<9} {rec:>12} {filled:>8} {dropped:>9}",
                  flush=True)
        recorded = rows["recorded"]
        if (recorded["p99"] <= GAP_LIMIT_MS and recorded["received"] >= 0.98 *
                recorded["expected"] and recorded["shortfall"] == 0 and not recorded["failed"]):
            best = n
        print(f"{'':>6} recorded CPU = {recorded['cpu'] / max(rows['relay']['cpu'], 0.1):.2f}x "
              f"the unrecorded relay", flush=True)
    print(f"most concurrent recorded calls with gap p99 <= {GAP_LIMIT_MS:.0f} ms, >= 98% of "
          f"frames delivered and no recording shorter than the call: {best} (goal >= 500)")
    print(f"load average now: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
