"""Browser-phone benchmark: N concurrent browser-phone calls on one node, against N SIP
phone calls in the same run.

Three processes besides this one, so that what is measured is the node alone:

* the node side (`server_main`): the media engine and `pbx_bridge.webrtc.BrowserPhone`,
  as `centrale run` wires them; each call is a caller's RTP leg bridged to an agent's
  leg — a browser leg (aiortc: ICE, DTLS-SRTP, G.711) in the browser phase, an RTP leg
  (a SIP phone's) in the baseline phase;
* the load (`load_main`): N aiortc "pages" (pbx_bridge.webrtc.client, G.711, a tone as
  the microphone) that answer the rings over a local signalling socket, and one RTP
  sender playing every caller's (and, in the baseline, every SIP phone's) tone;
* the RTP sink of bench/sip_bench.py: the callers' side of every call points there; it
  timestamps packets with the kernel's receive time and keeps the inter-arrival gaps
  of the audio the agent side sent (browser → node → caller).

Printed per level and phase: calls bridged, RTP gap p50/p99 and the share over 40 ms
at the caller, the node's CPU (% of one core, and per call) and RSS.

    .venv/bin/python bench/browser_phone_bench.py                 # 50, 100, 200
    .venv/bin/python bench/browser_phone_bench.py --levels 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sip_bench  # noqa: E402
from sip_bench import proc_cpu_seconds, proc_rss_mb  # noqa: E402

GAP_LIMIT_MS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the node side ----------------------------------------------------------------
def server_main(control_port: int, sink_port: int, ready: Any) -> None:
    asyncio.run(_server(control_port, sink_port, ready))


async def _server(control_port: int, sink_port: int, ready: Any) -> None:
    from pbx_bridge.media.rtp import MediaEngine, bridge_sessions
    from pbx_bridge.webrtc.ice_ports import bind_ice_in_range
    from pbx_bridge.webrtc.phone import BrowserPhone, PhoneSettings

    engine = MediaEngine("127.0.0.1", 20000, 29999)
    engine.symmetric_rtp = False  # the caller side goes to the sink, whoever sends
    engine.start()
    bind_ice_in_range(30000, 39999)
    sink = ("127.0.0.1", sink_port)
    sessions: list[Any] = []
    legs: list[Any] = []
    arrivals = [0] * 2001  # ms between two packets of one page, as they reach the node

    def timed(media: Any) -> None:
        """Keep the gaps between the page's packets as the node receives them: what the
        page (and the network) did, before the node relays them on."""
        original, last = media.payload_received, [0.0]

        def received(payload: bytes, payload_type: int, marker: bool) -> None:
            now = time.monotonic()
            if last[0]:
                arrivals[min(2000, int((now - last[0]) * 1000))] += 1
            last[0] = now
            original(payload, payload_type, marker)

        media.payload_received = received

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def to_page(agent_id: str, frame: dict[str, Any]) -> None:
            writer.write(json.dumps({"agent": agent_id, "frame": frame}).encode() + b"\n")

        phone = BrowserPhone(engine, PhoneSettings(ice_timeout_seconds=60))
        phone.attach_pages(to_page, lambda agent_id: True)

        async def browser_call(agent_id: str) -> None:
            caller = await engine.open_session()
            caller.remote = sink
            sessions.append(caller)
            result = await phone.ring(agent_id, offer_id=f"o-{agent_id}", call_id=agent_id,
                                      caller_id=None, timeout=120)
            if not result.answered:
                writer.write(json.dumps({"cmd": "failed", "agent": agent_id}).encode() + b"\n")
                return
            legs.append(result.leg)
            timed(result.leg.media)
            bridge_sessions(caller, result.leg.media)
            writer.write(json.dumps({"cmd": "bridged", "agent": agent_id,
                                     "caller_port": caller.local_port}).encode() + b"\n")

        async def sip_call(call_id: str, phone_addr: tuple[str, int]) -> None:
            caller, agent = await engine.open_session(), await engine.open_session()
            caller.remote, agent.remote = sink, phone_addr
            sessions.extend((caller, agent))
            bridge_sessions(caller, agent)
            writer.write(json.dumps({"cmd": "bridged", "agent": call_id,
                                     "caller_port": caller.local_port,
                                     "agent_port": agent.local_port}).encode() + b"\n")

        tasks = set()
        while line := await reader.readline():
            msg = json.loads(line)
            if "frame" in msg:
                await phone.handle(msg["agent"], msg["frame"])
            elif msg["cmd"] == "browser_call":
                task = asyncio.ensure_future(browser_call(msg["agent"]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif msg["cmd"] == "sip_call":
                await sip_call(msg["agent"], tuple(msg["phone"]))
            elif msg["cmd"] == "arrivals":
                writer.write(json.dumps({"cmd": "arrivals", "buckets": arrivals}).encode()
                             + b"\n")
                arrivals[:] = [0] * 2001
            elif msg["cmd"] == "hangup_all":
                for leg in legs:
                    await leg.hangup("bench over")
                for session in sessions:
                    session.close()
                legs.clear()
                sessions.clear()
                writer.write(b'{"cmd": "clear"}\n')
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", control_port)
    ready.set()
    async with server:
        await server.serve_forever()


# -- the load ---------------------------------------------------------------------
def load_main(control_port: int, conn: Any) -> None:
    asyncio.run(_load(control_port, conn))


class RtpBlast(asyncio.DatagramProtocol):
    """One socket sending a 20 ms G.711 tone frame to every target, every 20 ms."""

    def __init__(self) -> None:
        self.targets: list[tuple[int, int, int]] = []  # port, ssrc, seq
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    async def run(self, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while True:
            n += 1
            for port, ssrc, seq in self.targets:
                header = struct.pack("!BBHII", 0x80, 0, (seq + n) & 0xFFFF,
                                     (n * 160) & 0xFFFFFFFF, ssrc)
                self.transport.sendto(header + frame, ("127.0.0.1", port))
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))


async def _load(control_port: int, conn: Any) -> None:
    from array import array

    import sip_bench

    from pbx_bridge.media import g711
    from pbx_bridge.webrtc.client import PagePeer
    from tests.tones import tone_linear

    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", control_port)
    frame = g711.encode_ulaw(array("h", tone_linear(600.0, 0.02).tobytes()))
    _, blast = await loop.create_datagram_endpoint(RtpBlast, local_addr=("127.0.0.1", 0))
    blast_task = asyncio.ensure_future(blast.run(frame))
    phone_addr = blast.transport.get_extra_info("sockname")
    peers: dict[str, PagePeer] = {}
    pending: set[asyncio.Task[None]] = set()
    bridged: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(agent_id: str, frame: dict[str, Any]) -> None:
        writer.write(json.dumps({"agent": agent_id, "frame": frame}).encode() + b"\n")
        await writer.drain()

    async def read() -> None:
        while line := await reader.readline():
            msg = json.loads(line)
            if "frame" in msg:
                peer = peers.get(msg["agent"])
                if peer is not None:
                    task = asyncio.ensure_future(peer.on_frame(msg["frame"]))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            else:
                await bridged.put(msg)

    reader_task = asyncio.ensure_future(read())
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd["cmd"] == "stop":
            break
        calls, kind = cmd["calls"], cmd["kind"]
        for i in range(calls):
            agent = f"agent{i}"
            if kind == "browser":
                peers[agent] = PagePeer(agent, send, 1000.0, listen=False, encoded=True)
                writer.write(json.dumps({"cmd": "browser_call", "agent": agent}).encode()
                             + b"\n")
            else:
                writer.write(json.dumps({"cmd": "sip_call", "agent": agent,
                                         "phone": list(phone_addr)}).encode() + b"\n")
            await writer.drain()
            if kind == "browser" and i % 10 == 9:
                await asyncio.sleep(0.2)  # answers come in waves, as agents' do
        ok = failed = 0
        deadline = loop.time() + 60 + calls * 0.3
        while ok + failed < calls and loop.time() < deadline:
            try:
                msg = await asyncio.wait_for(bridged.get(), deadline - loop.time())
            except TimeoutError:
                break
            if msg["cmd"] == "bridged":
                ok += 1
                if ok % 25 == 0:
                    print(f"  {kind}: {ok}/{calls} bridged", file=sys.stderr, flush=True)
                blast.targets.append((msg["caller_port"], ok, ok * 7))
                if "agent_port" in msg:
                    blast.targets.append((msg["agent_port"], 100000 + ok, ok))
            else:
                failed += 1
        conn.send({"bridged": ok, "failed": failed})
        await loop.run_in_executor(None, conn.recv)  # measured; now tear down
        writer.write(b'{"cmd": "arrivals"}\n')
        await writer.drain()
        while (msg := await bridged.get())["cmd"] != "arrivals":
            pass
        arrival = sip_bench.GapStats.from_buckets({"buckets": msg["buckets"], "packets": 0,
                                                   "streams": 0})
        blast.targets.clear()
        writer.write(b'{"cmd": "hangup_all"}\n')
        await writer.drain()
        while (await bridged.get())["cmd"] != "clear":
            pass
        for peer in peers.values():
            await peer.close()
        peers.clear()
        conn.send({"arrival_p99": arrival.p99})
    blast_task.cancel()
    reader_task.cancel()
    writer.close()


# -- orchestration ------------------------------------------------------------------
def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class PortSink:
    """bench/sip_bench.py's RTP sink, on the port the node side sends the callers' audio
    to (kernel receive timestamps, gaps per stream)."""

    def __init__(self, port: int) -> None:
        self.parent, child = mp.Pipe()
        self.proc = mp.Process(target=sip_bench.sink_main, args=(port, child), daemon=True)
        self.proc.start()
        time.sleep(0.3)

    def stop(self) -> sip_bench.GapStats:
        self.parent.send("stop")
        result = self.parent.recv()
        self.proc.join(2)
        return sip_bench.GapStats.from_buckets(result)


def run_level(server_pid: int, load: Any, kind: str, calls: int, seconds: float,
              sink_port: int) -> dict[str, Any]:
    load.send({"cmd": "go", "calls": calls, "kind": kind})
    setup = load.recv()
    time.sleep(2.0)  # settle: set-up (ICE checks, DTLS) is not what is measured
    sink = PortSink(sink_port)
    cpu0, t0 = proc_cpu_seconds(server_pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = proc_cpu_seconds(server_pid), time.monotonic()
    gaps = sink.stop()
    rss = proc_rss_mb(server_pid)
    load.send({"cmd": "measured"})
    arrival_p99 = load.recv()["arrival_p99"]
    cpu = 100.0 * (cpu1 - cpu0) / (t1 - t0)
    bridged = setup["bridged"]
    return {"kind": kind, "calls": calls, "bridged": bridged, "failed": setup["failed"],
            "gap_p50": gaps.p50, "gap_p99": gaps.p99, "over_40": gaps.over_40,
            "streams": gaps.streams, "cpu": cpu, "cpu_per_call": cpu / max(1, bridged),
            "rss": rss, "load": load_average(),
            "arrival_p99": arrival_p99 if kind == "browser" else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    control = free_port()
    sink_port = free_udp_port()
    ready = ctx.Event()
    server = ctx.Process(target=server_main, args=(control, sink_port, ready), daemon=True)
    server.start()
    assert ready.wait(60), "the node side did not start"
    parent, child = ctx.Pipe()
    load = ctx.Process(target=load_main, args=(control, child), daemon=True)
    load.start()
    results = []
    try:
        for calls in args.levels:
            for kind in ("sip", "browser"):
                r = run_level(server.pid, parent, kind, calls, args.seconds, sink_port)
                results.append(r)
                verdict = "ok" if r["bridged"] == calls and r["gap_p99"] <= GAP_LIMIT_MS \
                    else "NOT OK"
                print(f"{kind:7} {calls:4} calls: bridged {r['bridged']:4} "
                      f"(failed {r['failed']}), gap p50 {r['gap_p50']:.0f} ms "
                      f"p99 {r['gap_p99']:.0f} ms, >40 ms {100 * r['over_40']:.2f}%"
                      + (f" (page→node arrival p99 {r['arrival_p99']:.0f} ms)"
                         if r["arrival_p99"] is not None else "") + ", "
                      f"node CPU {r['cpu']:.0f}% ({r['cpu_per_call']:.2f}% per call), "
                      f"RSS {r['rss']:.0f} MB, load {r['load']}  [{verdict}]", flush=True)
    finally:
        parent.send({"cmd": "stop"})
        load.join(10)
        server.terminate()
    print("uptime:", os.popen("uptime").read().strip())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
