"""CPU of the SIP core per call, in process, without sipp, sockets for SIP, or load.

Why: on this shared 2-core machine a sipp run's CPU per call moves by ±15 % with the
other processes' load, which hides a 10-20 % change. This drives a real `SipServer`
(the one `centrale run` starts: transaction layer, dialogs, RTP session per call) by
handing it the datagrams a caller sends (`TransportLayer.received`, as the UDP
endpoint does) and catching what it sends back, so the work per call is fixed: an
INVITE with SDP (100 Trying, 200 OK with SDP), an ACK, an INFO (200), a BYE (200). The
inbound handler answers and waits for the hang-up. No RTP flows (the prompt and music
path is per packet, not per call). Print: the event loop thread's CPU per call, and
with `--count`, Python function calls per call (cProfile) — a figure that does not
depend on the load at all; under `valgrind --tool=callgrind` the instruction count of
the same fixed workload.

    .venv/bin/python bench/sip_core_cpu_bench.py --calls 2000
    .venv/bin/python bench/sip_core_cpu_bench.py --calls 500 --count
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CALLER = ("127.0.0.1", 5999)

SDP = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
    "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


def invite(n: int, port: int) -> bytes:
    body = SDP.encode()
    return (
        f"INVITE sip:demo@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{n}-1;rport\r\n"
        f"From: \"Caller {n}\" <sip:+3312345{n:05d}@127.0.0.1:5999>;tag={n}SIPpTag001\r\n"
        f"To: <sip:demo@127.0.0.1:{port}>\r\n"
        f"Call-ID: {n}-bench@127.0.0.1\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Contact: <sip:sipp@127.0.0.1:5999>\r\n"
        f"Max-Forwards: 70\r\n"
        f"Subject: Performance Test\r\n"
        f"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO\r\n"
        f"Supported: replaces, timer\r\n"
        f"Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def in_dialog(method: str, n: int, port: int, to_tag: str, cseq: int, branch: str,
              body: str = "", ctype: str = "") -> bytes:
    extra = f"Content-Type: {ctype}\r\n" if ctype else ""
    return (
        f"{method} sip:demo@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{n}-{branch};rport\r\n"
        f"From: \"Caller {n}\" <sip:+3312345{n:05d}@127.0.0.1:5999>;tag={n}SIPpTag001\r\n"
        f"To: <sip:demo@127.0.0.1:{port}>;tag={to_tag}\r\n"
        f"Call-ID: {n}-bench@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:sipp@127.0.0.1:5999>\r\n"
        f"Max-Forwards: 70\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


class _NoExtensions:
    """An extension handler that is never reached (no phone credentials here)."""

    async def run_extension_call(self, leg, from_user: str,  # type: ignore[no-untyped-def]
                                 to_user: str) -> None:
        raise AssertionError("no phone-to-phone call in this bench")


async def run(calls: int, concurrency: int,
              profiler: cProfile.Profile | None) -> tuple[float, int]:
    from config.schema.server import SipSettings
    from ivr.call_leg import CallerHangup
    from pbx_bridge.sip.ports import TrunkConfig
    from pbx_bridge.sip.server import SipServer
    from pbx_bridge.sip.transport import Peer

    async def handler(leg) -> None:  # type: ignore[no-untyped-def]
        try:
            await leg.answer()
            await leg.wait_ended()
        except CallerHangup:
            pass

    settings = SipSettings(enabled=True, host="127.0.0.1", port=0, transports=["udp"],
                           rtp_port_min=30000, rtp_port_max=39999)
    server = SipServer(settings, inbound_handler=handler, credentials={},
                       trunks=[TrunkConfig("bench", allowed_ips=frozenset({"127.0.0.1"}))],
                       symmetric_rtp=False, media_timeout=0,
                       max_calls_in_setup=10_000)
    # as in the node (centrale/wiring.py): every INVITE is first checked for a
    # phone-to-phone call (Request-URI and From users against the phones' credentials)
    server.extension_handler = _NoExtensions()
    await server.start()
    port = server.port
    layer = server.transport
    answers: dict[str, asyncio.Future[bytes]] = {}
    sent = 0

    def capture(data: bytes, dest: Peer) -> None:
        nonlocal sent
        sent += 1
        # the caller's side: only a final response to a request we wait for matters
        head = data[:12]
        if head.startswith(b"SIP/2.0 200"):
            cid_at = data.find(b"\r\nCall-ID: ")
            cid = data[cid_at + 11:data.find(b"\r\n", cid_at + 11)].decode()
            cseq_at = data.find(b"\r\nCSeq: ")
            method = data[cseq_at + 8:data.find(b"\r\n", cseq_at + 8)].decode().split()[1]
            fut = answers.pop(f"{cid} {method}", None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    layer.send = capture  # type: ignore[method-assign]
    peer = Peer("UDP", *CALLER)
    loop = asyncio.get_running_loop()

    async def one_call(n: int) -> None:
        cid = f"{n}-bench@127.0.0.1"
        ok = answers[f"{cid} INVITE"] = loop.create_future()
        layer.received(invite(n, port), peer)
        resp = await ok  # the To tag read by hand: the bench measures the server only
        at = resp.find(b";tag=", resp.find(b"\r\nTo: "))
        tag = resp[at + 5:resp.find(b"\r\n", at)].decode()
        layer.received(in_dialog("ACK", n, port, tag, 1, "1"), peer)
        ok = answers[f"{cid} INFO"] = loop.create_future()
        layer.received(in_dialog("INFO", n, port, tag, 2, "2",
                                 "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay"),
                       peer)
        await ok
        ok = answers[f"{cid} BYE"] = loop.create_future()
        layer.received(in_dialog("BYE", n, port, tag, 3, "3"), peer)
        await ok

    sem = asyncio.Semaphore(concurrency)

    async def bounded(n: int) -> None:
        async with sem:
            await one_call(n)

    await asyncio.gather(*(bounded(n) for n in range(50)))  # warm-up: imports, caches
    if profiler is not None:
        profiler.enable()
    start = time.thread_time()
    await asyncio.gather(*(bounded(n) for n in range(100, 100 + calls)))
    # let the calls' tasks finish (hang-up bookkeeping runs after the BYE's 200)
    while server.calls:  # noqa: ASYNC110 - the server has no event for "all calls gone"
        await asyncio.sleep(0.01)
    cpu = time.thread_time() - start
    if profiler is not None:
        profiler.disable()
    await server.stop()
    return cpu, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--count", action="store_true",
                        help="Python function calls per call (cProfile)")
    parser.add_argument("--top", type=int, default=0, help="print the N costliest functions")
    parser.add_argument("--sort", default="tottime", help="pstats order for --top")
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.count or args.top else None
    cpu, sent = asyncio.run(run(args.calls, args.concurrency, profiler))
    print(f"calls={args.calls} sends={sent} loop_cpu_ms_per_call={cpu * 1000 / args.calls:.3f}")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        total = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
        print(f"python_calls_per_call={total / args.calls:.0f}")
        if args.top:
            stats.sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
