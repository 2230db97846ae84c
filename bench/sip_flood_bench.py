"""SIP flood benchmark (issue 18): legitimate call setup time while untrusted sources
send 1,000 invalid INVITEs per second, compared with the same node idle, in one run.

Three processes, so that no side steals the others' event loop:
* the node: the embedded SIP core with a real call setup — each inbound call resolves
  its caller to a customer and case in SQLite (CaseService, as the voice service does)
  before it answers with a prompt;
* the flood: INVITEs from 50 untrusted addresses (127.0.0.10-59, not an allowed trunk),
  each a new transaction, paced at `--rate` per second; or, with `--trusted-flood`, a
  burst from the trusted trunk itself (the issue's 1,000 INVITEs in 4 s);
* the measuring caller: legitimate calls from the trusted trunk (127.0.0.1), one every
  0.5 s: INVITE -> 200 OK time (setup), ACK, 1 s of call, BYE.

Prints setup-time median/p95/max per phase, the flooded/idle ratio (target: within
2x), how many flood INVITEs were answered, and the node's CPU and RSS.

    .venv/bin/python bench/sip_flood_bench.py                 # ~1 min
    .venv/bin/python bench/sip_flood_bench.py --calls 40 --rate 1000 --trusted-flood
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
FLOOD_SOURCES = [f"127.0.0.{i}" for i in range(10, 60)]


# -- the node -----------------------------------------------------------------
def node_main(port_out: mp.connection.Connection, workdir: str, max_in_setup: int) -> None:
    asyncio.run(_node(port_out, Path(workdir), max_in_setup))


async def _node(port_out: mp.connection.Connection, workdir: Path, max_in_setup: int) -> None:
    import signal
    import wave

    from cases import CaseService, IdentityRef
    from centrale.tables import import_all
    from config.schema.server import SipSettings
    from core.bus import InMemoryBus
    from core.clock import SystemClock
    from core.db import Database, sqlite_url
    from pbx_bridge.media.audio import PromptDirectory
    from pbx_bridge.sip.ports import TrunkConfig
    from pbx_bridge.sip.server import SipServer

    (workdir / "prompts" / "en").mkdir(parents=True, exist_ok=True)
    for name in ("prompts/en/welcome.wav", "prompts/moh.wav"):
        with wave.open(str(workdir / name), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(b"\x00\x10" * 8000)
    import_all()
    db = Database(sqlite_url(workdir / "bench.db"))
    await db.create_all()
    cases = CaseService(db, InMemoryBus(), SystemClock(), default_region="NL")

    async def setup(leg) -> None:  # type: ignore[no-untyped-def]
        caller = leg.caller.caller_id or "anonymous"
        await cases.resolve(IdentityRef("phone", caller) if caller.startswith("+")
                            else None)
        await leg.answer()
        await leg.play(["welcome"], "en")
        await leg.wait_ended()

    settings = SipSettings(enabled=True, host="0.0.0.0", port=0, transports=["udp"],
                           rtp_port_min=40000, rtp_port_max=49999)
    server = SipServer(settings, inbound_handler=setup, credentials={},
                       trunks=[TrunkConfig("carrier", allowed_ips=frozenset({"127.0.0.1"}))],
                       prompts=PromptDirectory(workdir / "prompts"),
                       music=lambda _c: workdir / "prompts" / "moh.wav",
                       max_calls_in_setup=max_in_setup)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    port_out.send(server.port)
    await stop.wait()
    port_out.send({"rejected": server.stats.calls_rejected, "calls_in": server.stats.calls_in,
                   "transactions": len(server.transactions.server),
                   "handler_errors": server.handler_errors.count})
    await server.stop()
    await db.dispose()


# -- the flood ----------------------------------------------------------------
def flood_main(port: int, rate: int, seconds: float, trusted: bool,
               result: mp.connection.Connection) -> None:
    sources = ["127.0.0.1"] if trusted else FLOOD_SOURCES
    socks = []
    for host in sources:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.setblocking(False)
        socks.append(s)
    sent = answered = 0
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while n < due:
            s = socks[n % len(socks)]
            host, lport = s.getsockname()
            s.sendto(_flood_invite(host, lport, n), ("127.0.0.1", port))
            n += 1
            sent += 1
        for s in socks:
            try:
                while s.recv(4096):
                    answered += 1
            except BlockingIOError:
                pass
        time.sleep(0.002)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        for s in socks:
            try:
                while s.recv(4096):
                    answered += 1
            except BlockingIOError:
                pass
        time.sleep(0.01)
    result.send({"sent": sent, "answers": answered})


def _flood_invite(host: str, port: int, n: int) -> bytes:
    return (f"INVITE sip:1000@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bKflood{n};rport\r\n"
            f"From: <sip:+3161{n % 10_000_000:07d}@{host}>;tag=f{n}\r\n"
            f"To: <sip:1000@127.0.0.1>\r\nCall-ID: flood-{n}@{host}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:x@{host}:{port}>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n").encode()


# -- the measuring caller -----------------------------------------------------
class Caller(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.responses: dict[str, asyncio.Queue[str]] = {}

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        text = data.decode(errors="replace")
        for line in text.split("\r\n"):
            if line.lower().startswith("call-id:"):
                queue = self.responses.get(line.split(":", 1)[1].strip())
                if queue is not None:
                    queue.put_nowait(text)


async def legit_calls(port: int, count: int, label: str) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    transport, caller = await loop.create_datagram_endpoint(Caller, local_addr=("127.0.0.1", 0))
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    lport, mport = transport.get_extra_info("sockname")[1], media.getsockname()[1]
    setups: list[float] = []
    refused = failed = 0

    async def one(i: int) -> None:
        nonlocal refused, failed
        cid = f"legit-{label}-{i}"
        queue: asyncio.Queue[str] = asyncio.Queue()
        caller.responses[cid] = queue
        sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {mport} RTP/AVP 0\r\n")
        head = (f"sip:1000@127.0.0.1:{port}", f"SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{cid}",
                f"<sip:+31201234{i % 1000:03d}@127.0.0.1>;tag=t{cid}")
        invite = (f"INVITE {head[0]} SIP/2.0\r\nVia: {head[1]};rport\r\nFrom: {head[2]}\r\n"
                  f"To: <sip:1000@127.0.0.1>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\n"
                  f"Contact: <sip:c@127.0.0.1:{lport}>\r\nMax-Forwards: 70\r\n"
                  f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
        started = time.monotonic()
        transport.sendto(invite.encode(), ("127.0.0.1", port))
        final = None
        resend = 0.5
        while final is None:
            try:
                text = await asyncio.wait_for(queue.get(), resend)
            except TimeoutError:
                if time.monotonic() - started > 32:
                    failed += 1
                    return
                transport.sendto(invite.encode(), ("127.0.0.1", port))  # timer A
                resend = min(resend * 2, 4)
                continue
            if not text.startswith("SIP/2.0 1"):
                final = text
        status = int(final.split(" ", 2)[1])
        if status != 200:
            refused += 1
            return
        setups.append(time.monotonic() - started)
        to = next(line for line in final.split("\r\n") if line.lower().startswith("to:"))
        ack = (f"ACK {head[0]} SIP/2.0\r\nVia: {head[1]}a\r\nFrom: {head[2]}\r\n{to}\r\n"
               f"Call-ID: {cid}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        transport.sendto(ack.encode(), ("127.0.0.1", port))
        await asyncio.sleep(1.0)  # the call
        bye = (f"BYE {head[0]} SIP/2.0\r\nVia: {head[1]}b;rport\r\nFrom: {head[2]}\r\n{to}\r\n"
               f"Call-ID: {cid}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        transport.sendto(bye.encode(), ("127.0.0.1", port))
        with_timeout = asyncio.wait_for(queue.get(), 5)
        try:
            await with_timeout
        except TimeoutError:
            pass

    tasks = []
    for i in range(count):
        tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.sleep(0.5)
    await asyncio.gather(*tasks)
    transport.close()
    media.close()
    return {"setups": setups, "refused": refused, "failed": failed}


def summary(name: str, r: dict) -> str:  # type: ignore[type-arg]
    s = sorted(r["setups"])
    if not s:
        return f"{name:<22} no call set up (refused {r['refused']}, failed {r['failed']})"
    p95 = s[min(len(s) - 1, int(0.95 * len(s)))]
    return (f"{name:<22} calls {len(s):>3}  setup median {1000 * statistics.median(s):7.1f} ms"
            f"  p95 {1000 * p95:7.1f} ms  max {1000 * s[-1]:7.1f} ms"
            f"  refused {r['refused']}  failed {r['failed']}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_phase(port: int, node: mp.Process, calls: int, flood: tuple[int, bool] | None,
              label: str) -> dict:  # type: ignore[type-arg]
    flood_proc = None
    parent = child = None
    cpu0, t0 = cpu_seconds(node.pid or 0), time.monotonic()
    if flood is not None:
        rate, trusted = flood
        parent, child = mp.Pipe()
        seconds = 4.0 if trusted else calls * 0.5 + 2.5
        flood_proc = mp.Process(target=flood_main, args=(port, rate, seconds, trusted, child))
        flood_proc.start()
        time.sleep(0.5)  # the flood is under way before the first measured call
    result = asyncio.run(legit_calls(port, calls, label))
    if flood_proc is not None and parent is not None:
        result["flood"] = parent.recv()
        flood_proc.join()
    result["cpu"] = 100 * (cpu_seconds(node.pid or 0) - cpu0) / (time.monotonic() - t0)
    result["rss"] = rss_mb(node.pid or 0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="legitimate calls per phase")
    parser.add_argument("--rate", type=int, default=1000, help="flood INVITEs per second")
    parser.add_argument("--trusted-flood", action="store_true",
                        help="also a burst of 1,000 INVITEs in 4 s from the trusted trunk")
    parser.add_argument("--max-in-setup", type=int, default=64)
    args = parser.parse_args()
    mp.set_start_method("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        parent, child = mp.Pipe()
        node = mp.Process(target=node_main, args=(child, tmp, args.max_in_setup))
        node.start()
        port = parent.recv()
        print(f"node pid {node.pid}, SIP port {port}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}")
        idle = run_phase(port, node, args.calls, None, "idle")
        print(summary("idle node", idle) + f"  node CPU {idle['cpu']:.0f}%  RSS "
              f"{idle['rss']:.0f} MB")
        flooded = run_phase(port, node, args.calls, (args.rate, False), "untrusted")
        f = flooded["flood"]
        print(summary(f"untrusted {args.rate}/s", flooded)
              + f"  node CPU {flooded['cpu']:.0f}%  RSS {flooded['rss']:.0f} MB")
        print(f"{'':<22} flood INVITEs sent {f['sent']}, answers received {f['answers']}")
        if idle["setups"] and flooded["setups"]:
            ratio = statistics.median(flooded["setups"]) / statistics.median(idle["setups"])
            p95 = (sorted(flooded["setups"])[int(0.95 * (len(flooded["setups"]) - 1))]
                   / sorted(idle["setups"])[int(0.95 * (len(idle["setups"]) - 1))])
            print(f"{'':<22} setup time flooded/idle: median {ratio:.2f}x, p95 {p95:.2f}x "
                  "(target: within 2x)")
        if args.trusted_flood:
            trusted = run_phase(port, node, args.calls, (250, True), "trusted")
            print(summary("trusted 1000 in 4 s", trusted)
                  + f"  node CPU {trusted['cpu']:.0f}%  RSS {trusted['rss']:.0f} MB")
            t = trusted["flood"]
            print(f"{'':<22} flood INVITEs sent {t['sent']}, answers received {t['answers']}")
        os.kill(node.pid or 0, 15)
        print("node:", parent.recv())
        node.join(20)


if __name__ == "__main__":
    main()
