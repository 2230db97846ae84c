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
    await asyncio.sleep(seconds - 1.0)
    # a second before the phones fall silent (the taps fill what comes after with
    # silence): silence the taps had to fill in (neither side's audio arrived in time)
    # and audio a relayed recording dropped (a side too far ahead of the clock)
    filled = sum(tap.gap_frames for tap in taps) / 8000
    relay_recorder = getattr(engine, "relay_recorder", None)
    dropped = sum(t.dropped for t in relay_recorder.taps) / 8000 if relay_recorder else 0.0
    await asyncio.sleep(1.0)
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
    return {"cpu": cpu, **result, "wall": wall, "written": written / max(1, len(taps)),
            "shortfall": shortfall, "filled": filled, "dropped": dropped, "failed": failed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="100,300,500")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs per kind in part 1")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} "
          "(other processes compete for the same cores)")
    print("\nCPU of the media core per second of audio, in-process (load-independent), "
          f"writer thread included, the lowest of {args.repeat} runs:")
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
    if args.cpu_only:
        return
    print("\nReal RTP both ways with a phones process (gaps as the phones see them):")
    print(f"{'level':>6} {'kind':>9} {'core CPU %':>10} {'gap p99 ms':>10} {'max ms':>7} "
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
            print(f"{n:>6} {kind:>9} {r['cpu']:>10.1f} {r['p99']:>10.1f} {r['max']:>7.0f} "
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
