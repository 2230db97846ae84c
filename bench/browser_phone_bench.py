"""Browser-phone benchmark: N concurrent browser-phone calls on one node, against N SIP
phone calls in the same run.

Processes, so that what is measured is the node alone:

* the node (`server_main`): the media engine and `pbx_bridge.webrtc.BrowserPhone`, as
  `centrale run` wires them; each call is a caller's RTP leg bridged to an agent's leg
  — a browser leg (aiortc: ICE, DTLS-SRTP, G.711) in the browser phases, an RTP leg (a
  SIP phone's) in the baseline phase. Its CPU is read from /proc around the measured
  window; `--profile` runs cProfile in it over that window;
* the load (`load_main`, `--load-procs` of them, each with its own event loop and a
  share of the calls): the browsers — aiortc peer connections that answer the rings
  over a local signalling socket as web/static/phone.js does (offer, answer, ICE,
  DTLS), then send a G.711 tone every 20 ms and timestamp what they receive — and the
  callers' RTP (and, in the baseline, the SIP phones'). One process of aiortc pages
  stalls at ~40 legs on this machine; split, the load keeps up;
* the RTP sink of bench/sip_bench.py: the callers' side of every call points there; it
  timestamps packets with the kernel's receive time (browser → node → caller).

Gaps are measured on both sides of the node: at the pages, as each packet reaches the
page's ICE socket handler (caller → node → browser: SRTP out of the node), and at the
sink (browser → node → caller). The phases, each with the same calls:

* `sip`: RTP ↔ RTP (the SIP phone baseline);
* `browser-aiortc`: browser legs with G.711 on aiortc's own per-packet path
  (CENTRALE_WEBRTC_FAST_RTP=0, what the node did before `webrtc.fastpath`);
* `browser-stun-parse` (on request): the fast path, but every datagram still goes
  through aioice's STUN parse attempt first (what `FastRtp._shortcut` saves);
* `browser`: browser legs as the node runs them now (`webrtc.fastpath`).

Printed per level and phase: calls bridged, gap p50/p99/share over 40 ms at each side,
the node's CPU (% of one core, per call, and CPU ms per call-second) and RSS, the load
average. All traffic stays on 127.0.0.1 (ICE host candidates are limited to it here).

    .venv/bin/python bench/browser_phone_bench.py                  # 50, 100, 200
    .venv/bin/python bench/browser_phone_bench.py --levels 20 --seconds 10 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import multiprocessing as mp
import os
import pstats
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
PHASES = ("sip", "browser-aiortc", "browser-stun-parse", "browser")
DEFAULT_PHASES = ("sip", "browser-aiortc", "browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_ice_only() -> None:
    """ICE host candidates on 127.0.0.1 only: the benchmark's traffic stays on the
    loopback (aioice leaves loopback out by default and would use every interface)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def gap_bucket(buckets: list[int], gap_s: float) -> None:
    buckets[min(2000, max(0, int(gap_s * 1000)))] += 1


# -- the node ------------------------------------------------------------------------
def server_main(control_port: int, sink_port: int, conn: Any) -> None:
    asyncio.run(_server(control_port, sink_port, conn))


async def _server(control_port: int, sink_port: int, conn: Any) -> None:
    from pbx_bridge.media.rtp import MediaEngine, bridge_sessions
    from pbx_bridge.webrtc import fastpath
    from pbx_bridge.webrtc import media as webrtc_media
    from pbx_bridge.webrtc.ice_ports import bind_ice_in_range
    from pbx_bridge.webrtc.phone import BrowserPhone, PhoneSettings

    loopback_ice_only()
    loop = asyncio.get_running_loop()
    engine = MediaEngine("127.0.0.1", 20000, 29999)
    engine.symmetric_rtp = False  # the caller side goes to the sink, whoever sends
    engine.start()
    bind_ice_in_range(30000, 39999)
    sink = ("127.0.0.1", sink_port)
    sessions: list[Any] = []
    legs: list[Any] = []
    writers: dict[str, asyncio.StreamWriter] = {}  # agent -> its load process's socket
    arrivals = [0] * 2001  # ms between two packets of one page, as they reach the node
    profiler: cProfile.Profile | None = None

    def timed(media: Any) -> None:
        """Keep the gaps between the page's packets as the node receives them: what the
        page (and the network) did, before the node relays them on."""
        original, last = media.payload_received, [0.0]

        def received(payload: bytes, payload_type: int, marker: bool) -> None:
            now = time.monotonic()
            if last[0]:
                gap_bucket(arrivals, now - last[0])
            last[0] = now
            original(payload, payload_type, marker)

        media.payload_received = received  # before `connected()` hands it to FastRtp

    async def to_page(agent_id: str, frame: dict[str, Any]) -> None:
        writer = writers.get(agent_id)
        if writer is not None:
            writer.write(json.dumps({"agent": agent_id, "frame": frame}).encode() + b"\n")

    phone = BrowserPhone(engine, PhoneSettings(ice_timeout_seconds=60))
    phone.attach_pages(to_page, lambda agent_id: agent_id in writers)
    opened = phone._open

    async def open_timed(sdp: str, media: Any, ref: str) -> Any:
        timed(media)
        return await opened(sdp, media, ref)

    phone._open = open_timed  # type: ignore[method-assign]

    async def browser_call(writer: asyncio.StreamWriter, agent_id: str) -> None:
        caller = await engine.open_session()
        caller.remote = sink
        sessions.append(caller)
        result = await phone.ring(agent_id, offer_id=f"o-{agent_id}", call_id=agent_id,
                                  caller_id=None, timeout=180)
        if not result.answered:
            writer.write(json.dumps({"cmd": "failed", "agent": agent_id,
                                     "why": result.status}).encode() + b"\n")
            return
        legs.append(result.leg)
        bridge_sessions(caller, result.leg.media)
        writer.write(json.dumps({"cmd": "bridged", "agent": agent_id,
                                 "caller_port": caller.local_port,
                                 "fast": result.leg.media.fast is not None}).encode() + b"\n")

    async def sip_call(writer: asyncio.StreamWriter, call_id: str,
                       phone_addr: tuple[str, int]) -> None:
        caller, agent = await engine.open_session(), await engine.open_session()
        caller.remote, agent.remote = sink, phone_addr
        sessions.extend((caller, agent))
        bridge_sessions(caller, agent)
        writer.write(json.dumps({"cmd": "bridged", "agent": call_id,
                                 "caller_port": caller.local_port,
                                 "agent_port": agent.local_port}).encode() + b"\n")

    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            msg = json.loads(line)
            if "frame" in msg:
                await phone.handle(msg["agent"], msg["frame"])
            elif msg["cmd"] == "browser_call":
                writers[msg["agent"]] = writer
                task = asyncio.ensure_future(browser_call(writer, msg["agent"]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif msg["cmd"] == "sip_call":
                await sip_call(writer, msg["agent"], tuple(msg["phone"]))
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", control_port)
    conn.send({"ready": True})
    async with server:
        while True:  # the orchestrator's commands
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd["cmd"] == "stop":
                break
            if cmd["cmd"] == "fast":
                webrtc_media.FAST_RTP = cmd["on"]
                fastpath.SKIP_STUN_PARSE = cmd["skip_stun"]
                conn.send({"fast": webrtc_media.FAST_RTP})
            elif cmd["cmd"] == "profile_start":
                profiler = cProfile.Profile()
                profiler.enable()
                conn.send({})
            elif cmd["cmd"] == "profile_stop":
                out = ""
                if profiler is not None:
                    profiler.disable()
                    text = io.StringIO()
                    stats = pstats.Stats(profiler, stream=text)
                    stats.sort_stats("tottime").print_stats(cmd.get("top", 25))
                    out = text.getvalue()
                    profiler = None
                conn.send({"profile": out})
            elif cmd["cmd"] == "packets":  # RTP packets the node received (and relayed)
                conn.send({"packets": sum(x.stats.packets_in for x in sessions)
                           + sum(leg.media.stats.packets_in for leg in legs),
                           "at": time.monotonic()})
            elif cmd["cmd"] == "arrivals":
                conn.send({"buckets": arrivals[:]})
                arrivals[:] = [0] * 2001
            elif cmd["cmd"] == "hangup_all":
                for leg in legs:
                    await leg.hangup("bench over")
                for session in sessions:
                    session.close()
                legs.clear()
                sessions.clear()
                writers.clear()
                conn.send({"cleared": True})


# -- the load: browsers and callers ---------------------------------------------------
class RtpBlast(asyncio.DatagramProtocol):
    """One socket sending a 20 ms G.711 tone frame to every target, every 20 ms."""

    def __init__(self) -> None:
        self.targets: list[tuple[int, int, int]] = []  # port, ssrc, seq
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send(self, n: int, frame: bytes) -> None:
        for port, ssrc, seq in self.targets:
            header = struct.pack("!BBHII", 0x80, 0, (seq + n) & 0xFFFF,
                                 (n * 160) & 0xFFFFFFFF, ssrc)
            self.transport.sendto(header + frame, ("127.0.0.1", port))


class BenchPage:
    """One agent's page as the load generator runs it: an aiortc peer connection that
    offers G.711 (PCMU) on Answer as phone.js does; once connected its audio goes both
    ways by `webrtc.fastpath` (the pages must be cheap: the node is what is measured),
    and every packet's arrival is timestamped in the socket's handler."""

    def __init__(self, agent_id: str, send: Any) -> None:
        self.agent_id = agent_id
        self.send = send
        self.pc: Any = None
        self.transceiver: Any = None
        self.fast: Any = None
        self.last = 0.0
        self.buckets: list[int] | None = None  # the process's, while measuring
        self.received = 0

    async def on_frame(self, frame: dict[str, Any]) -> None:
        from aiortc import RTCSessionDescription

        kind = frame.get("type")
        if kind == "phone.ring":
            await self.offer(frame["offer_id"])
        elif kind == "phone.answer" and self.pc is not None:
            await self.pc.setRemoteDescription(RTCSessionDescription(frame["sdp"], "answer"))
        elif kind == "phone.connected":
            from pbx_bridge.webrtc.fastpath import FastRtp

            self.fast = FastRtp.attach(self.transceiver, 0, self.arrived)

    async def offer(self, offer_id: str) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

        from pbx_bridge.webrtc.media import OutboundTrack

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        track = OutboundTrack()
        track.hold()  # aiortc's sender stays silent: the fast path sends
        self.transceiver = self.pc.addTransceiver(track, direction="sendrecv")
        caps = RTCRtpSender.getCapabilities("audio").codecs
        self.transceiver.setCodecPreferences([c for c in caps if c.mimeType == "audio/PCMU"])
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.send(self.agent_id, {"type": "phone.offer", "offer_id": offer_id,
                                        "sdp": self.pc.localDescription.sdp})

    def arrived(self, payload: bytes, payload_type: int, marker: bool) -> None:
        now = time.monotonic()
        self.received += 1
        if self.buckets is not None and self.last:
            gap_bucket(self.buckets, now - self.last)
        self.last = now

    async def close(self) -> None:
        if self.fast is not None:
            self.fast.close()
        if self.pc is not None:
            await self.pc.close()


def load_main(index: int, control_port: int, conn: Any) -> None:
    asyncio.run(_load(index, control_port, conn))


async def _load(index: int, control_port: int, conn: Any) -> None:
    from array import array

    from pbx_bridge.media import g711
    from tests.tones import tone_linear

    loopback_ice_only()
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", control_port)
    caller_frame = g711.encode_ulaw(array("h", tone_linear(600.0, 0.02).tobytes()))
    page_frame = g711.encode_ulaw(array("h", tone_linear(1000.0, 0.02).tobytes()))
    _, blast = await loop.create_datagram_endpoint(RtpBlast, local_addr=("127.0.0.1", 0))
    phone_addr = blast.transport.get_extra_info("sockname")
    pages: dict[str, BenchPage] = {}
    pending: set[asyncio.Task[None]] = set()
    bridged: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def metronome() -> None:
        """Every 20 ms: each caller's frame and each connected page's frame."""
        start, n = loop.time(), 0
        while True:
            n += 1
            blast.send(n, caller_frame)
            for page in pages.values():
                if page.fast is not None:
                    page.fast.send(page_frame)
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

    async def send(agent_id: str, frame: dict[str, Any]) -> None:
        writer.write(json.dumps({"agent": agent_id, "frame": frame}).encode() + b"\n")
        await writer.drain()

    async def read() -> None:
        while line := await reader.readline():
            msg = json.loads(line)
            if "frame" in msg:
                page = pages.get(msg["agent"])
                if page is not None:
                    task = asyncio.ensure_future(page.on_frame(msg["frame"]))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            else:
                await bridged.put(msg)

    beat = asyncio.ensure_future(metronome())
    reader_task = asyncio.ensure_future(read())
    buckets = [0] * 2001
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd["cmd"] == "stop":
            break
        if cmd["cmd"] == "measure":
            buckets[:] = [0] * 2001
            for page in pages.values():
                page.buckets, page.received = buckets, 0
            conn.send({})
            continue
        if cmd["cmd"] == "measured":
            for page in pages.values():
                page.buckets = None
            counts = [p.received for p in pages.values()]
            conn.send({"buckets": buckets[:], "packets": sum(counts),
                       "streams": sum(1 for c in counts if c), "min": min(counts, default=0)})
            continue
        if cmd["cmd"] == "close":
            blast.targets.clear()
            for page in pages.values():
                await page.close()
            pages.clear()
            conn.send({})
            continue
        calls, kind = cmd["calls"], cmd["kind"]
        for i in range(calls):
            agent = f"p{index}-a{i}"
            if kind == "browser":
                pages[agent] = BenchPage(agent, send)
                writer.write(json.dumps({"cmd": "browser_call", "agent": agent}).encode()
                             + b"\n")
            else:
                writer.write(json.dumps({"cmd": "sip_call", "agent": agent,
                                         "phone": list(phone_addr)}).encode() + b"\n")
            await writer.drain()
            if kind == "browser" and i % 5 == 4:
                await asyncio.sleep(0.25)  # answers come in waves, as agents' do
        ok = failed = fast = 0
        deadline = loop.time() + 60 + calls * 1.0
        while ok + failed < calls and loop.time() < deadline:
            try:
                msg = await asyncio.wait_for(bridged.get(), deadline - loop.time())
            except TimeoutError:
                break
            if msg["cmd"] == "bridged":
                ok += 1
                fast += bool(msg.get("fast"))
                blast.targets.append((msg["caller_port"], 1000 * index + ok, ok * 7))
                if "agent_port" in msg:
                    blast.targets.append((msg["agent_port"], 100000 + 1000 * index + ok, ok))
            else:
                failed += 1
        if kind == "browser":  # the pages' own fast path is up once they are told
            await asyncio.sleep(0.5)
        conn.send({"bridged": ok, "failed": failed, "fast": fast})
    beat.cancel()
    reader_task.cancel()
    writer.close()


# -- orchestration ---------------------------------------------------------------------
def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class PortSink:
    """bench/sip_bench.py's RTP sink, on the port the node sends the callers' audio to
    (kernel receive timestamps, gaps per stream)."""

    def __init__(self, ctx: Any, port: int) -> None:
        self.parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=sip_bench.sink_main, args=(port, child), daemon=True)
        self.proc.start()
        time.sleep(0.3)

    def take(self) -> sip_bench.GapStats:
        """This measurement's gaps; the sink stays bound for the next one."""
        self.parent.send("next")
        return sip_bench.GapStats.from_buckets(self.parent.recv())

    def stop(self) -> None:
        self.parent.send("stop")
        self.parent.recv()
        self.proc.join(2)


def ask(pipe: Any, msg: dict[str, Any]) -> Any:
    pipe.send(msg)
    return pipe.recv()


def share(calls: int, parts: int) -> list[int]:
    return [calls // parts + (1 if i < calls % parts else 0) for i in range(parts)]


def run_level(ctx: Any, server: Any, node: Any, loads: list[Any], phase: str, calls: int,
              seconds: float, sink: PortSink, profile: bool) -> dict[str, Any]:
    kind = "sip" if phase == "sip" else "browser"
    ask(node, {"cmd": "fast", "on": phase != "browser-aiortc",
               "skip_stun": phase != "browser-stun-parse"})
    for pipe, n in zip(loads, share(calls, len(loads)), strict=True):
        pipe.send({"cmd": "go", "calls": n, "kind": kind})
    setups = [pipe.recv() for pipe in loads]
    bridged = sum(s["bridged"] for s in setups)
    time.sleep(2.0)  # settle: set-up (ICE checks, DTLS) is not what is measured
    sink.take()  # what came before (set-up) is not measured
    for pipe in loads:
        ask(pipe, {"cmd": "measure"})
    ask(node, {"cmd": "arrivals"})  # from now on
    if profile:
        ask(node, {"cmd": "profile_start"})
    first = ask(node, {"cmd": "packets"})
    cpu0, t0 = proc_cpu_seconds(server.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = proc_cpu_seconds(server.pid), time.monotonic()
    last = ask(node, {"cmd": "packets"})
    # packets per second as the node counted them (its own clock: a busy node answers
    # the question late, which must not count as more traffic)
    packet_rate = (last["packets"] - first["packets"]) / max(1e-3, last["at"] - first["at"])
    report = ask(node, {"cmd": "profile_stop"})["profile"] if profile else ""
    gaps = sink.take()
    pages = [ask(pipe, {"cmd": "measured"}) for pipe in loads]
    arrival = sip_bench.GapStats.from_buckets({**ask(node, {"cmd": "arrivals"}),
                                               "packets": 0, "streams": 0})
    rss = proc_rss_mb(server.pid)
    ask(node, {"cmd": "hangup_all"})
    for pipe in loads:
        ask(pipe, {"cmd": "close"})
    page_buckets = [sum(b) for b in zip(*(p["buckets"] for p in pages), strict=True)]
    at_page = sip_bench.GapStats.from_buckets({
        "buckets": page_buckets, "packets": sum(p["packets"] for p in pages),
        "streams": sum(p["streams"] for p in pages)})
    cpu_s = cpu1 - cpu0
    wall = t1 - t0
    # Each call's two legs each deliver 50 packets/s to the node when the load keeps up;
    # below that, CPU per call understates the cost: CPU per packet does not.
    expected_rate = bridged * 2 * 50
    return {"phase": phase, "calls": calls, "bridged": bridged,
            "failed": sum(s["failed"] for s in setups),
            "fast_legs": sum(s.get("fast", 0) for s in setups),
            "gap_p50": gaps.p50, "gap_p99": gaps.p99, "over_40": gaps.over_40,
            "sink_streams": gaps.streams,
            "page_p50": at_page.p50 if kind == "browser" else None,
            "page_p99": at_page.p99 if kind == "browser" else None,
            "page_over_40": at_page.over_40 if kind == "browser" else None,
            "page_streams": at_page.streams if kind == "browser" else None,
            "page_min_packets": min((p["min"] for p in pages), default=0),
            "arrival_p99": arrival.p99 if kind == "browser" else None,
            "cpu": 100.0 * cpu_s / wall, "cpu_per_call": 100.0 * cpu_s / wall / max(1, bridged),
            "cpu_ms_per_call_second": 1000.0 * cpu_s / wall / max(1, bridged),
            "cpu_us_per_packet": 1e6 * cpu_s / wall / max(1.0, packet_rate),
            "traffic": packet_rate / max(1, expected_rate),
            "rss": rss, "load": load_average(), "profile": report}


def verdict(r: dict[str, Any]) -> str:
    worst = max(r["gap_p99"], r["page_p99"] or 0.0)
    if r["traffic"] < 0.95:
        return "NOT OK: packets missing (the load's or the node's sockets fell behind)"
    return "ok" if r["bridged"] == r["calls"] and worst <= GAP_LIMIT_MS else "NOT OK"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--load-procs", type=int, default=4,
                        help="processes the browsers and callers are spread over")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(DEFAULT_PHASES))
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the node over each measured window (costs CPU)")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    control = free_port()
    sink_port = free_udp_port()
    node, child = ctx.Pipe()
    server = ctx.Process(target=server_main, args=(control, sink_port, child), daemon=True)
    server.start()
    assert node.poll(60) and node.recv()["ready"], "the node did not start"
    sink = PortSink(ctx, sink_port)  # bound for the whole run
    loads, procs = [], []
    for i in range(args.load_procs):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=load_main, args=(i, control, child), daemon=True)
        proc.start()
        loads.append(parent)
        procs.append(proc)
    print(f"node pid {server.pid}, {args.load_procs} load processes, "
          f"{args.seconds:.0f} s per measurement, load {load_average()}", flush=True)
    results = []
    try:
        for calls in args.levels:
            for phase in args.phases:
                r = run_level(ctx, server, node, loads, phase, calls, args.seconds,
                              sink, args.profile)
                results.append(r)
                pages = (f", at the page p50 {r['page_p50']:.0f} p99 {r['page_p99']:.0f} ms "
                         f">40 {100 * r['page_over_40']:.2f}% "
                         f"({r['page_streams']} streams; node arrival p99 "
                         f"{r['arrival_p99']:.0f} ms)" if r["page_p99"] is not None else "")
                print(f"{phase:14} {calls:4} calls: bridged {r['bridged']:4} "
                      f"(failed {r['failed']}, fast {r['fast_legs']}), at the caller p50 "
                      f"{r['gap_p50']:.0f} p99 {r['gap_p99']:.0f} ms "
                      f">40 {100 * r['over_40']:.2f}%{pages}; node CPU {r['cpu']:.0f}% "
                      f"({r['cpu_per_call']:.2f}% per call, "
                      f"{r['cpu_ms_per_call_second']:.2f} ms per call-second, "
                      f"{r['cpu_us_per_packet']:.0f} µs per packet relayed; "
                      f"{100 * r['traffic']:.0f}% of the calls' packets reached it), "
                      f"RSS {r['rss']:.0f} MB, load {r['load']}  [{verdict(r)}]", flush=True)
                if r["profile"]:
                    print(r["profile"], flush=True)
    finally:
        for pipe in loads:
            pipe.send({"cmd": "stop"})
        for proc in procs:
            proc.join(10)
        sink.stop()
        node.send({"cmd": "stop"})
        server.join(10)
        if server.is_alive():
            server.terminate()
    print("uptime:", os.popen("uptime").read().strip())
    print(json.dumps([{k: v for k, v in r.items() if k != "profile"} for r in results]))


if __name__ == "__main__":
    main()
