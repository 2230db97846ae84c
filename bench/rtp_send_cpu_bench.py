"""The media engine's CPU per RTP packet sent: prompts and music on hold, in process.

`--legs` RTP legs play a looping G.711 source to one receiving socket (drained by
another process) for `--seconds`; the event loop thread's CPU
(`time.thread_time`) divided by the packets sent. With `--count`, Python function
calls per packet (cProfile over the measured window) — a figure the machine's load
does not move. A whole-node call sends ~95 packets (prompts, then 1 s of music on
hold in `bench/whole_path_bench.py`), so µs per packet here are ~1/10 ms per call.

    .venv/bin/python bench/rtp_send_cpu_bench.py --legs 200 --seconds 3
    .venv/bin/python bench/rtp_send_cpu_bench.py --legs 200 --seconds 2 --count
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbx_bridge.media.audio import tone
from pbx_bridge.media.rtp import AudioSource, MediaEngine

# The receiver is another process (as sipp or a phone is): a reading thread in this
# one would take the GIL from the loop at every packet.
DRAIN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    s.recv(2048)
"""


async def run(legs: int, seconds: float, profiler: cProfile.Profile | None,
              sink: tuple[str, int]) -> tuple[float, int]:
    engine = MediaEngine("127.0.0.1", 46000, 49999)
    engine.start()
    audio = tone(440, 2.0)
    sessions = [await engine.open_session() for _ in range(legs)]
    for session in sessions:
        session.remote = sink
        session.play(AudioSource(audio, loop=True))
    await asyncio.sleep(0.5)  # every leg playing, the phases filled
    sent0 = sum(s.stats.packets_out for s in sessions)
    cpu0 = time.thread_time()
    if profiler is not None:
        profiler.enable()
    await asyncio.sleep(seconds)
    if profiler is not None:
        profiler.disable()
    cpu = time.thread_time() - cpu0
    sent = sum(s.stats.packets_out for s in sessions) - sent0
    for session in sessions:
        session.close()
    await engine.stop()
    return cpu, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--legs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--count", action="store_true",
                        help="Python function calls per packet (cProfile)")
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.count else None
    drain = subprocess.Popen([sys.executable, "-c", DRAIN], stdout=subprocess.PIPE)
    assert drain.stdout is not None
    try:
        sink = ("127.0.0.1", int(drain.stdout.readline()))
        cpu, sent = asyncio.run(run(args.legs, args.seconds, profiler, sink))
    finally:
        drain.kill()
        drain.wait()
    print(f"legs={args.legs} packets={sent} loop_cpu_us_per_packet={cpu * 1e6 / max(sent, 1):.2f}")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        total = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
        print(f"python_calls_per_packet={total / max(sent, 1):.2f}")


if __name__ == "__main__":
    main()
