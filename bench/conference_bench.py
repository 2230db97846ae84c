"""Conference benchmark: concurrent 3-party conferences on the embedded media core.

The media core (this process: `MediaEngine` + one `Mixer` per conference) against a
phones process that owns every party's UDP socket, sends a G.711 frame every 20 ms on
each, and timestamps what comes back with the kernel's receive time
(SO_TIMESTAMPNS), so the gaps are what a phone sees. Every party sends audio all the
time (the worst case for a mixer). At each level it prints the RTP gap p99 the
parties see and the media core's CPU (% of one core), and, as the baseline in the same
run, the same number of plain 2-party bridges (the packet relay a normal call uses).

    .venv/bin/python bench/conference_bench.py                 # 50..300 conferences
    .venv/bin/python bench/conference_bench.py --levels 150 --seconds 8
    .venv/bin/python bench/conference_bench.py --cpu-only         # only the CPU cost
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import select
import socket
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GAP_LIMIT_MS = 30.0
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


# -- the phones process ---------------------------------------------------------
def phones_main(count: int, conn) -> None:  # type: ignore[no-untyped-def]
    """Play `count` phones from one UDP socket: a frame every 20 ms to each party's
    port on the media core; what comes back is told apart by its SSRC (one per
    party's session) and its gaps measured on kernel receive timestamps. One socket
    instead of one per party keeps this process's cost (select over hundreds of
    sockets) out of the figures."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    conn.send(sock.getsockname()[1])
    targets, seconds, warmup = conn.recv()
    last: dict[int, float] = {}
    gaps: list[float] = []
    received = 0
    payload = bytes(random.getrandbits(8) | 0x10 for _ in range(160))
    ssrc = [random.getrandbits(32) for _ in range(count)]
    anc = socket.CMSG_SPACE(16)
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + seconds
    measure_from_wall = time.time() + warmup
    next_tick = start
    ts = seq = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_tick:
            ts += 160
            seq = (seq + 1) & 0xFFFF
            for i, target in enumerate(targets):
                header = struct.pack("!BBHII", 0x80, 0, seq, ts & 0xFFFFFFFF, ssrc[i])
                try:
                    sock.sendto(header + payload, ("127.0.0.1", target))
                except BlockingIOError:
                    pass
            next_tick += 0.020
            if now - next_tick > 0.060:  # starved: a phone skips, it does not burst
                next_tick = now + 0.020
            continue
        select.select([sock], [], [], max(0.0, next_tick - now))
        while True:
            try:
                data, ancdata, _f, _a = sock.recvmsg(2048, anc)
            except BlockingIOError:
                break
            arrival = time.time()  # the kernel's timestamps are wall-clock
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    arrival = sec + nsec / 1e9
            key = struct.unpack_from("!I", data, 8)[0]
            previous = last.get(key)
            if arrival >= measure_from_wall and previous:
                gaps.append((arrival - previous) * 1000)
                received += 1
            last[key] = arrival
    gaps.sort()
    p99 = gaps[int(len(gaps) * 0.99)] if gaps else float("inf")
    conn.send({"p99": p99, "received": received,
               "expected": int(count * seconds / 0.020), "max": gaps[-1] if gaps else 0})


# -- the media core ---------------------------------------------------------------
async def run_level(n: int, parties: int, seconds: float, warmup: float) -> dict[str, float]:
    from pbx_bridge.media.mixer import Mixer
    from pbx_bridge.media.rtp import MediaEngine, bridge_sessions

    engine = MediaEngine("127.0.0.1", 30000, 60000)
    engine.start()
    sessions = [await engine.open_session() for _ in range(n * parties)]
    parent, child = mp.Pipe()
    proc = mp.Process(target=phones_main, args=(len(sessions), child), daemon=True)
    proc.start()
    phone_port = await asyncio.to_thread(parent.recv)
    for session in sessions:
        session.remote = ("127.0.0.1", phone_port)
        session.latched = True
    mixers = []
    for k in range(n):
        group = sessions[k * parties:(k + 1) * parties]
        if parties == 2:
            bridge_sessions(group[0], group[1])
        else:
            mixer = Mixer(engine, name=f"conf-{k}")
            for j, session in enumerate(group):
                mixer.add(f"p{j}", session)
            mixers.append(mixer)
    parent.send(([s.local_port for s in sessions], seconds, warmup))
    await asyncio.sleep(warmup)
    cpu0, wall0 = time.process_time(), time.monotonic()
    late0 = list(engine.lateness_ms)
    await asyncio.sleep(seconds)
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100
    late = [b - a for a, b in zip(late0, engine.lateness_ms, strict=True)]
    result = await asyncio.to_thread(parent.recv)
    proc.join(5)
    for mixer in mixers:
        mixer.close()
    await engine.stop()
    total = sum(late) or 1
    acc, tick_p99 = 0, 0
    for ms, count in enumerate(late):
        acc += count
        if acc >= 0.99 * total:
            tick_p99 = ms
            break
    return {"cpu": cpu, "tick_p99": tick_p99, **result}


async def cpu_cost(n: int, parties: int, ticks: int) -> float:
    """CPU (% of one core) the media core spends on `n` calls of `parties` legs for
    one second of audio, measured in-process and independent of the machine's load:
    real RTP sessions (sockets, parsing, relay or mix, sendto) fed packets directly
    (the kernel's receive is left out), the mix ticked by hand. Sends go to a socket
    that is never read (the kernel drops what overflows, the sendto is still paid)."""
    import socket as socket_mod

    from pbx_bridge.media.mixer import Mixer
    from pbx_bridge.media.rtp import MediaEngine, bridge_sessions

    engine = MediaEngine("127.0.0.1", 30000, 60000)
    sink = socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sessions = [await engine.open_session() for _ in range(n * parties)]
    for session in sessions:
        session.remote = sink.getsockname()
        session.latched = True
    for k in range(n):
        group = sessions[k * parties:(k + 1) * parties]
        if parties == 2:
            bridge_sessions(group[0], group[1])
        else:
            mixer = Mixer(engine, name=f"conf-{k}")
            for j, session in enumerate(group):
                mixer.add(f"p{j}", session)
    groups = list(getattr(engine, "mixer_groups", {}).values())
    payload = bytes(random.getrandbits(8) | 0x10 for _ in range(160))
    addr = ("127.0.0.1", 9)
    ssrcs = [random.getrandbits(32) for _ in sessions]
    cpu0 = time.process_time()
    for tick in range(ticks):
        for i, session in enumerate(sessions):
            session.datagram_received(struct.pack("!BBHII", 0x80, 0, tick & 0xFFFF,
                                                  (tick * 160) & 0xFFFFFFFF, ssrcs[i])
                                      + payload, addr)
        for group in groups:
            group.tick(tick * 0.02)
    cpu = time.process_time() - cpu0
    await engine.stop()
    sink.close()
    return cpu / (ticks * 0.020) * 100


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="50,100,150,200,250,300")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--cpu-only", action="store_true",
                    help="only the in-process CPU cost (meaningful on a loaded machine)")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} "
          "(other processes compete for the same cores)")
    print("\nCPU of the media core per second of audio, in-process (load-independent):")
    for n in (50, 150, 300):
        relay = asyncio.run(cpu_cost(n, 2, 250))
        mix = asyncio.run(cpu_cost(n, 3, 250))
        print(f"  {n:>4} calls: 2-party relay {relay:6.1f}% of a core ({relay / n:.3f}%/call), "
              f"3-party mix {mix:6.1f}% ({mix / n:.3f}%/conference) = {mix / relay:.1f}x; "
              f"one core holds ~{int(100 / (mix / n))} conferences")
    if args.cpu_only:
        return
    print("\nReal RTP both ways with a phones process (gaps as the phones see them):")
    print(f"{'level':>6} {'kind':>13} {'core CPU %':>10} {'CPU/call %':>10} "
          f"{'gap p99 ms':>10} {'max ms':>7} {'tick late p99':>13} {'frames rx/expected':>19}")
    best = 0
    for n in levels:
        rows = {}
        for parties, kind in ((2, "2-party relay"), (3, "3-party mix")):
            r = asyncio.run(run_level(n, parties, args.seconds, args.warmup))
            rows[kind] = r
            print(f"{n:>6} {kind:>13} {r['cpu']:>10.1f} {r['cpu'] / n:>10.3f} "
                  f"{r['p99']:>10.1f} {r['max']:>7.0f} {r['tick_p99']:>10} ms "
                  f"{r['received']:>9}/{r['expected']:<9}", flush=True)
        mix = rows["3-party mix"]
        if mix["p99"] <= GAP_LIMIT_MS and mix["received"] >= 0.98 * mix["expected"]:
            best = n
        ratio = mix["cpu"] / max(rows["2-party relay"]["cpu"], 0.1)
        print(f"{'':>6} CPU of a 3-party conference = {ratio:.1f}x a 2-party bridge", flush=True)
    print(f"most concurrent 3-party conferences with gap p99 <= {GAP_LIMIT_MS:.0f} ms and "
          f">= 98% of frames delivered: {best} (goal >= 150)")


if __name__ == "__main__":
    main()
