"""SRTP against plain RTP, and TLS registrations held (issue 26).

Part 0 — CPU, in-process and independent of the machine's load (process CPU time):
what libsrtp's AES-CM + HMAC-SHA1 costs per 172-byte packet (the floor no Python change
removes) beside pylibsrtp's public API; the leg's own send/receive code per packet; and
the core's CPU per call-second through the real path (event loop receive, the
scheduler's tick, sendto) for N legs, RTP and SRTP alternated, with the SRTP/RTP ratio
and the least ratio the floor allows; then the same with every mode's ticks taken in
turn in one run ("interleaved": what a loaded machine disturbs least), including, when
the C extension `_srtp_batch` is built, SRTP without it. `--cpu-only` stops there.

Part 1 — media. Each "call" is one leg of the embedded core's media engine
(`pbx_bridge.media.rtp`), as in an IVR or queue: it plays looped audio to the caller
(50 packets/s out) and receives the caller's audio (50 packets/s in). A peer process
plays all the callers: it sends each leg 50 packets/s and receives what the legs send
on one socket, timestamped by the kernel (SO_TIMESTAMPNS), demultiplexed by SSRC.
With SRTP the legs protect what they send and unprotect what they receive (libsrtp via
pylibsrtp, AES_CM_128_HMAC_SHA1_80), and the peer does the same on its side. Plain RTP
and SRTP run at the same levels in the same run; for each: the inter-packet gap p99
seen by the peer (goal <= 30 ms), packets lost, and the core's CPU (its own process)
per call. Goal: SRTP CPU <= 1.3x RTP; >= 500 concurrent SRTP calls.

Part 2 — TLS registrations. A client process opens N TLS connections to the SIP core
(from 127.0.0.2-127.0.0.251 so the per-address cap is what a real site sees), each
REGISTERs with digest auth and then keeps its connection with RFC 5626 CRLF pings.
Reported: all registered or not, the time it took, connections and bindings still
held after the hold period, the core's CPU while holding, its RSS.

    .venv/bin/python bench/srtp_bench.py                 # levels 250 500 750, 2,000 regs
    .venv/bin/python bench/srtp_bench.py --levels 500 --registrations 2000
    .venv/bin/python bench/srtp_bench.py --cpu-only          # part 0, ~1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GAP_LIMIT_MS = 30.0
CTX = mp.get_context("spawn")  # children start clean (no inherited event loop)
HEADER = struct.Struct("!BBHII")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; not exported by Python


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def rss_mb() -> float:
    """Current resident memory of this process (not the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- part 1: the peer (callers) ----------------------------------------------------
def peer_main(conn, legs: list[tuple[int, bytes | None, bytes | None]], seconds: float,
              warmup: float) -> None:  # type: ignore[no-untyped-def]
    """legs: (leg port, key the leg expects from us, key the leg sends with)."""
    import pylibsrtp

    sock_in = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock_in.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock_in.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock_in.bind(("127.0.0.1", 0))
    sock_in.setblocking(False)
    sock_out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock_out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
    conn.send(sock_in.getsockname()[1])
    senders = []
    for i, (port, to_leg, _from_leg) in enumerate(legs):
        session = None
        if to_leg is not None:
            session = pylibsrtp.Session(pylibsrtp.Policy(
                key=to_leg, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        senders.append([port, session, 0x10000 + i, 0, 0])  # port, srtp, ssrc, seq, ts
    conn.recv()  # go
    payload = bytes(160)
    last: dict[int, float] = {}
    gaps: list[float] = []
    received = 0
    sent = 0
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + seconds
    next_tick = start
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_tick:
            for s in senders:
                s[3] = (s[3] + 1) & 0xFFFF
                s[4] = (s[4] + 160) & 0xFFFFFFFF
                packet = HEADER.pack(0x80, 0, s[3], s[4], s[2]) + payload
                if s[1] is not None:
                    packet = s[1].protect(packet)
                try:
                    sock_out.sendto(packet, ("127.0.0.1", s[0]))
                except BlockingIOError:
                    continue
                if now >= measure_from:
                    sent += 1
            next_tick += 0.02
        # drain what the legs sent us
        while True:
            try:
                data, anc, _flags, _addr = sock_in.recvmsg(2048, 64)
            except BlockingIOError:
                break
            stamp = time.time()
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    stamp = sec + nsec / 1e9
            if len(data) < 12:
                continue
            ssrc = struct.unpack_from("!I", data, 8)[0]
            if time.monotonic() >= measure_from:
                received += 1
                prev = last.get(ssrc)
                if prev is not None:
                    gaps.append((stamp - prev) * 1000)
            last[ssrc] = stamp
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.002))
    gaps.sort()
    p99 = gaps[int(len(gaps) * 0.99)] if gaps else float("inf")
    conn.send({"p99": p99, "received": received, "expected": int(len(legs) * 50 * seconds),
               "legs_heard": len(last), "sent": sent})


async def media_level(calls: int, srtp: bool, seconds: float, warmup: float) -> dict:
    from pbx_bridge.media.audio import tone
    from pbx_bridge.media.rtp import AudioSource, MediaEngine
    from pbx_bridge.media.srtp import CryptoAttribute, SrtpContext

    engine = MediaEngine("127.0.0.1", 20000, 60000)
    engine.start()
    music = tone(440, 2.0, 3000)
    sessions = [await engine.open_session() for _ in range(calls)]
    legs = []
    for session in sessions:
        if srtp:
            ours, theirs = CryptoAttribute.generate(), CryptoAttribute.generate()
            session.srtp = SrtpContext(ours, theirs, label=f"bench {session.local_port}")
            legs.append((session.local_port, theirs.key, ours.key))
        else:
            legs.append((session.local_port, None, None))
    parent, child = CTX.Pipe()
    peer = CTX.Process(target=peer_main, args=(child, legs, seconds, warmup), daemon=True)
    peer.start()
    peer_port = await asyncio.to_thread(parent.recv)
    for session in sessions:
        session.remote = ("127.0.0.1", peer_port)
        session.latched = True
        session.play(AudioSource(music, loop=True))
    parent.send("go")
    await asyncio.sleep(warmup)
    cpu0 = time.process_time()
    t0 = time.monotonic()
    in0 = sum(s.stats.packets_in for s in sessions)
    out0 = sum(s.stats.packets_out for s in sessions)
    result = await asyncio.to_thread(parent.recv)
    # a starved process lags: let it read what is still queued in its sockets, so the
    # packets counted are the ones the CPU figure paid for
    for session in sessions:
        session.stop_playing()
    previous = -1
    while (now_in := sum(s.stats.packets_in for s in sessions)) != previous:
        previous = now_in
        await asyncio.sleep(0.3)
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    packets_in = now_in - in0
    packets = packets_in + sum(s.stats.packets_out for s in sessions) - out0
    failures = sum(s.srtp.auth_failures for s in sessions if s.srtp is not None)
    batch = engine.inbox_packets / engine.inbox_batches if engine.inbox_batches else 0.0
    peer.join(5)
    await engine.stop()
    return {"calls": calls, "srtp": srtp, "p99": result["p99"], "batch": batch,
            "loss": 1 - result["received"] / max(1, result["expected"]),
            "peer_rate": result["sent"] / max(1.0, calls * 50 * seconds),
            "cpu_pct": cpu / elapsed * 100, "us_per_packet": cpu / max(1, packets) * 1e6,
            # a call is 50 packets/s each way
            "cpu_ms_per_call_s": cpu / max(1, packets) * 100 * 1000,
            "auth_failures": failures}


def per_packet_cost(packets: int = 20_000):  # type: ignore[no-untyped-def]
    """CPU microseconds per packet of the leg's own send and receive paths, RTP and
    SRTP, in this process (process time: what a loaded machine steals from the wall
    clock does not count). Sends go through the real socket (sendto) to a sink;
    received packets are fed to `datagram_received` as the event loop would."""
    import pylibsrtp

    from pbx_bridge.media.rtp import MediaEngine
    from pbx_bridge.media.srtp import CryptoAttribute, SrtpContext

    async def run() -> dict[str, float]:
        engine = MediaEngine("127.0.0.1", 20000, 60000)
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out: dict[str, float] = {}
        for srtp in (False, True):
            session = await engine.open_session()
            session.remote = sink.getsockname()
            incoming = [HEADER.pack(0x80, 0, i & 0xFFFF, i * 160, 77) + bytes(160)
                        for i in range(packets)]
            if srtp:
                ours, theirs = CryptoAttribute.generate(), CryptoAttribute.generate()
                session.srtp = SrtpContext(ours, theirs)
                peer = pylibsrtp.Session(pylibsrtp.Policy(
                    key=theirs.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
                incoming = [peer.protect(p) for p in incoming]
            frame = bytes(160)
            t0 = time.process_time()
            for i in range(packets):
                session._send(0, frame, i * 160, False)
                if i % 256 == 0:  # keep the sink's buffer from filling
                    try:
                        while sink.recv(2048):
                            pass
                    except BlockingIOError:
                        pass
            t1 = time.process_time()
            send_us = (t1 - t0) / packets * 1e6
            # receive: the leg's own work on a datagram (parse, SRTP, DTMF/relay checks);
            # the event loop's recvfrom before it is the same for RTP and SRTP and is
            # left out, so the ratio printed is an upper bound of the per-call ratio
            # With the C extension an SRTP leg queues its datagrams and the engine opens
            # them in one batch per event-loop pass (`open_inbox`): here a pass of 50
            # (what 200 legs deliver per 5 ms sub-tick), the same chunking for RTP.
            chunks = [incoming[i:i + 50] for i in range(0, packets, 50)]
            t2 = time.process_time()
            for chunk in chunks:
                for data in chunk:
                    session.datagram_received(data, ("127.0.0.1", 9))
                if engine.inbox:
                    engine.open_inbox()
            recv_cpu = time.process_time() - t2
            assert session.stats.packets_in == packets, "every packet decoded"
            mode = "srtp" if srtp else "rtp"
            out[f"{mode}_send_us"] = send_us
            out[f"{mode}_recv_us"] = recv_cpu / packets * 1e6
            session.close()
        sink.close()
        sender.close()
        return out

    return run()  # type: ignore[return-value]


def libsrtp_floor(packets: int = 50_000) -> dict[str, float]:
    """What libsrtp itself costs per 172-byte packet (12-byte header, 160 bytes of
    G.711), AES_CM_128_HMAC_SHA1_80, in this process's CPU time:

    - `api_*`: pylibsrtp's public `Session.protect` / `unprotect` (what the core
      called per packet before);
    - `call_*`: libsrtp's C function called from the tightest Python loop (a buffer
      copy in, the call, the packet out) — the fast path media/srtp.py now runs;
    - `c_*`: the C work alone: `call_*` minus the same loop around a call libsrtp
      refuses at once (a 4-byte packet fails its header check): the AES-CM and
      HMAC-SHA1 work no Python change can remove."""
    import pylibsrtp
    from pylibsrtp._binding import ffi, lib

    from pbx_bridge.media.srtp import CryptoAttribute

    key = CryptoAttribute.generate().key
    plain = [HEADER.pack(0x80, 0, i & 0xFFFF, i * 160, 77) + bytes(160) for i in range(packets)]
    out: dict[str, float] = {}

    def per_packet(fn, items) -> float:  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        for item in items:
            fn(item)
        return (time.process_time() - t0) / len(items) * 1e6

    def session(outbound: bool) -> pylibsrtp.Session:  # a fresh stream each time
        policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND
                                  if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND)
        policy.allow_repeat_tx = outbound
        return pylibsrtp.Session(policy)

    protected = [session(True).protect(p) for p in plain]
    out["api_protect_us"] = per_packet(session(True).protect, plain)
    out["api_unprotect_us"] = per_packet(session(False).unprotect, protected)

    def raw(owner, call):  # type: ignore[no-untyped-def]
        srtp = owner._srtp[0]
        buf = ffi.new("unsigned char[]", 1500)
        view = ffi.buffer(buf)
        size = ffi.new("int *")

        def run(data: bytes) -> bytes:
            n = len(data)
            view[0:n] = data
            size[0] = n
            call(srtp, buf, size)
            return view[0:size[0]]
        run.owner = owner  # type: ignore[attr-defined]  # keeps the libsrtp session alive
        return run

    out["call_protect_us"] = per_packet(raw(session(True), lib.srtp_protect), plain)
    out["call_unprotect_us"] = per_packet(raw(session(False), lib.srtp_unprotect), protected)
    stub = [b"\x80\x00\x00\x01"] * packets  # shorter than a header: refused at once
    out["call_overhead_us"] = (per_packet(raw(session(True), lib.srtp_protect), stub)
                               + per_packet(raw(session(False), lib.srtp_unprotect), stub)) / 2
    out["c_protect_us"] = out["call_protect_us"] - out["call_overhead_us"]
    out["c_unprotect_us"] = out["call_unprotect_us"] - out["call_overhead_us"]
    out["c_packets_per_s"] = 1e6 / max(0.001, out["c_protect_us"])
    return out


def _without_cipher(context):  # type: ignore[no-untyped-def]
    """`context` with protect/unprotect that do everything the real ones do (copy into
    the buffer, copy out) except libsrtp's call: what is left of SRTP's extra CPU
    when this runs is the code around the call; the rest is libsrtp in context. With
    the C extension: its streams in `dry` mode (the same batches, copies, bytes built,
    no libsrtp call)."""
    from pylibsrtp._binding import ffi

    if getattr(context, "batched", False):
        from pbx_bridge.media.srtp import batch

        context.protect = batch.Stream(0, None, False, dry=True)
        context.unprotect = batch.Stream(0, None, True, dry=True)
        return context

    def plumbing():  # type: ignore[no-untyped-def]
        buf = ffi.new("unsigned char[]", 1500)
        view = ffi.buffer(buf)
        size = ffi.new("int *")

        def run(data: bytes) -> bytes | None:
            n = len(data)
            if n > 1484:
                return None
            view[0:n] = data
            size[0] = n
            return view[0:size[0]]
        return run

    context.protect, context.unprotect = plumbing(), plumbing()
    return context


class _Legs:
    """`calls` legs of the real media engine as an IVR or queue runs them, fed by a
    peer socket in this process, for the in-process CPU figures. `mode`: "rtp",
    "srtp" (the path media/srtp.py takes: the C batches when the extension is built),
    "srtp-python" (libsrtp called per packet from Python, as without the extension;
    but libsrtp's crypto, replaced process-wide at import, stays the extension's: the
    whole path without it is main's, or CENTRALE_SRTP_CRYPTO=libsrtp with this mode),
    "plumbing" (the SRTP path with no libsrtp call, see _without_cipher)."""

    async def open(self, calls: int, mode: str, ticks: int) -> _Legs:
        import pylibsrtp

        from pbx_bridge.media import srtp as srtp_module
        from pbx_bridge.media.audio import tone
        from pbx_bridge.media.rtp import AudioSource, MediaEngine
        from pbx_bridge.media.srtp import CryptoAttribute, SrtpContext

        self.calls, self.mode, self.ticks = calls, mode, ticks
        self.engine = engine = MediaEngine("127.0.0.1", 20000, 60000)
        self.sink = sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        self.peer = peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
        music = tone(440, 2.0, 3000)
        self.sessions = sessions = [await engine.open_session() for _ in range(calls)]
        self.inbound: list[list[bytes]] = []
        batch = srtp_module.batch
        if mode == "srtp-python":
            srtp_module.batch = None  # the contexts made now call libsrtp per packet
        try:
            for i, session in enumerate(sessions):
                session.remote = sink.getsockname()
                session.latched = True
                session.source = AudioSource(music, loop=True)
                packets = [HEADER.pack(0x80, 0, t & 0xFFFF, t * 160, 0x20000 + i) + bytes(160)
                           for t in range(1, ticks + 1)]
                if mode != "rtp":
                    ours, theirs = CryptoAttribute.generate(), CryptoAttribute.generate()
                    session.srtp = SrtpContext(ours, theirs, label=f"bench {session.local_port}")
                    if mode == "plumbing":
                        _without_cipher(session.srtp)
                    else:
                        encrypt = pylibsrtp.Session(pylibsrtp.Policy(
                            key=theirs.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
                        packets = [encrypt.protect(p) for p in packets]
                self.inbound.append(packets)
        finally:
            srtp_module.batch = batch
        self.targets = [("127.0.0.1", s.local_port) for s in sessions]
        self.active = set(sessions)  # all in one sub-tick: the scheduler spreads them over 4
        self.cpu = 0.0
        return self

    async def tick(self, t: int) -> None:
        """One 20 ms tick: every leg is sent a packet (not timed: the peer's work), reads
        it through the event loop (timed), then the scheduler's sub-tick plays every leg
        one frame (timed); what the legs sent is drained (not timed: the far end)."""
        sessions = self.sessions
        for i, target in enumerate(self.targets):
            self.peer.sendto(self.inbound[i][t], target)
        expected = (t + 1) * self.calls
        loop = asyncio.get_running_loop()
        c0 = time.process_time()
        spins = 0
        while sum(s.stats.packets_in for s in sessions) < expected and spins < 100:
            await asyncio.sleep(0)  # one loop iteration: select, then every ready leg
            spins += 1
        self.engine.send_phase(self.active, loop.time())  # the scheduler's own sub-tick
        self.cpu += time.process_time() - c0
        try:
            while self.sink.recv(2048):
                pass
        except BlockingIOError:
            pass

    async def close(self) -> dict[str, float]:
        sessions, calls, ticks = self.sessions, self.calls, self.ticks
        packets_in = sum(s.stats.packets_in for s in sessions)
        packets_out = sum(s.stats.packets_out for s in sessions)
        failures = sum(s.srtp.auth_failures for s in sessions if s.srtp is not None)
        await self.engine.stop()
        self.sink.close()
        self.peer.close()
        if packets_in != calls * ticks or packets_out != calls * ticks or failures:
            # a shared machine: another process's stray packet on a port we reused
            print(f"  (call_cost {self.mode}: {packets_in} in, {packets_out} out of "
                  f"{calls * ticks}, {failures} refused)", flush=True)
        seconds = ticks * 0.020
        return {"ms_per_call_s": self.cpu / (calls * seconds) * 1000,
                "us_per_packet": self.cpu / max(1, packets_in + packets_out) * 1e6}


async def call_cost(calls: int, srtp: bool, ticks: int,
                    cipher: bool = True) -> dict[str, float]:
    """Core CPU per call per second of audio, in this process and independent of the
    machine's load: `calls` legs of the real media engine as an IVR or queue runs
    them — each tick every leg is sent one packet by a peer socket in this process
    and reads it through the event loop's own datagram transport (selector wake-up,
    recvfrom, `datagram_received`, and with SRTP the engine's batch `open_inbox`),
    then the scheduler's `send_phase` plays it one frame (`tick` -> `AudioSource` ->
    `_send`, then sendto). The peer's sending (its packets are built and encrypted
    before the clock starts) and the draining of what the legs sent are left out of
    the CPU time; everything the core does for a call is in it."""
    mode = "rtp" if not srtp else "srtp" if cipher else "plumbing"
    legs = await _Legs().open(calls, mode, ticks)
    for t in range(ticks):
        await legs.tick(t)
    return await legs.close()


async def interleaved_cost(calls: int, ticks: int, modes: list[str]) -> dict[str, float]:
    """The same as `call_cost` for several modes at once, each with its own `calls`
    legs, their ticks taken in turn (rtp, srtp, ..., rtp, srtp, ...): on a loaded
    machine every mode meets the same load within milliseconds, where runs one after
    the other meet whatever the other processes do during each. Returns CPU ms per
    call-second by mode."""
    groups = [await _Legs().open(calls, mode, ticks) for mode in modes]
    for t in range(ticks):
        for group in groups[t % len(groups):] + groups[:t % len(groups)]:
            await group.tick(t)
    return {group.mode: (await group.close())["ms_per_call_s"] for group in groups}


# -- part 2: TLS registrations ---------------------------------------------------
def make_cert(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def phones_main(conn, port: int, count: int, ca: str, hold: float) -> None:  # type: ignore[no-untyped-def]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_phones(conn, port, count, ca, hold))


async def _phones(conn, port: int, count: int, ca: str, hold: float) -> None:  # type: ignore[no-untyped-def]
    from pbx_bridge.sip.auth import authorization_header

    ctx = ssl.create_default_context(cafile=ca)
    sem = asyncio.Semaphore(50)  # connection attempts in flight
    registered = 0
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def read_response(reader: asyncio.StreamReader) -> tuple[int, str]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = 0
        for line in head.split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":")[1])
        if length:
            await reader.readexactly(length)
        return int(head.split(" ", 2)[1]), head

    async def phone(i: int) -> None:
        nonlocal registered
        user = f"p{i:05d}"
        async with sem:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="localhost",
                local_addr=(f"127.0.0.{2 + i % 250}", 0))
            lport = writer.get_extra_info("sockname")[1]
            uri = f"sip:127.0.0.1:{port};transport=tls"

            def register(cseq: int, auth: str = "") -> bytes:
                return (f"REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{lport};"
                        f"branch=z9hG4bK{i}x{cseq};rport\r\nMax-Forwards: 70\r\n"
                        f"From: <sip:{user}@127.0.0.1>;tag=t{i}\r\nTo: <sip:{user}@127.0.0.1>"
                        f"\r\nCall-ID: reg{i}\r\nCSeq: {cseq} REGISTER\r\n"
                        f"Contact: <sip:{user}@127.0.0.1:{lport};transport=tls>\r\n"
                        f"Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n").encode()

            writer.write(register(1))
            status, head = await read_response(reader)
            if status == 401:
                challenge = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                                 if line.lower().startswith("www-authenticate"))
                auth = authorization_header(challenge, user, "secret", "REGISTER", uri)
                writer.write(register(2, f"Authorization: {auth}\r\n"))
                status, head = await read_response(reader)
            if status == 200:
                registered += 1
            streams.append((reader, writer))

    t0 = time.monotonic()
    results = await asyncio.gather(*(phone(i) for i in range(count)), return_exceptions=True)
    took = time.monotonic() - t0
    errors = [r for r in results if isinstance(r, BaseException)]
    conn.send({"registered": registered, "seconds": took, "errors": len(errors),
               "first_error": repr(errors[0]) if errors else ""})
    # hold: CRLF keep-alive pings (RFC 5626), every phone every hold/3 seconds
    end = time.monotonic() + hold
    alive = 0
    while time.monotonic() < end:
        for _reader, writer in streams:
            if not writer.is_closing():
                writer.write(b"\r\n\r\n")
        await asyncio.sleep(hold / 3)
    for reader, _writer in streams:
        try:
            pong = await asyncio.wait_for(reader.read(64), 5)
            alive += bool(pong)
        except (TimeoutError, ConnectionError):
            pass
    conn.send({"alive": alive})
    for _reader, writer in streams:
        writer.close()


async def registrations(count: int, hold: float) -> dict:
    from config.schema.server import SipSettings, SipTlsSettings
    from pbx_bridge.sip.server import SipServer

    workdir = Path(tempfile.mkdtemp(prefix="srtp-bench-"))
    cert, key = make_cert(workdir)
    settings = SipSettings(enabled=True, host="127.0.0.1", port=0, transports=["udp"],
                           tls=SipTlsSettings(enabled=True, port=0, cert_file=str(cert),
                                              key_file=str(key)),
                           tcp_max_connections=count + 100)

    async def no_calls(leg):  # type: ignore[no-untyped-def]
        await leg.hangup("bench")

    server = SipServer(settings, inbound_handler=no_calls,
                       credentials=lambda user: "secret" if user.startswith("p") else None)
    await server.start()
    parent, child = CTX.Pipe()
    proc = CTX.Process(target=phones_main, daemon=True,
                      args=(child, server.transport.tls_port, count, str(cert), hold))
    cpu0, t0 = time.process_time(), time.monotonic()
    proc.start()
    first = await asyncio.to_thread(parent.recv)
    cpu_register = time.process_time() - cpu0
    bindings = sum(len(v) for v in server.registrar.bindings.values())
    cpu1, t1 = time.process_time(), time.monotonic()
    second = await asyncio.to_thread(parent.recv)
    hold_cpu = (time.process_time() - cpu1) / (time.monotonic() - t1) * 100
    held = len(server.transport.connections)
    proc.join(10)
    await server.stop()
    return {**first, **second, "bindings": bindings, "connections_held": held,
            "register_cpu_s": cpu_register, "hold_cpu_pct": hold_cpu, "rss_mb": rss_mb(),
            "total_s": time.monotonic() - t0}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[250, 500, 750])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--registrations", type=int, default=2000)
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--skip-media", action="store_true")
    parser.add_argument("--cpu-only", action="store_true",
                        help="only the in-process CPU figures (load-independent)")
    parser.add_argument("--cpu-calls", type=int, default=200)
    parser.add_argument("--cpu-ticks", type=int, default=150)
    parser.add_argument("--cpu-repeat", type=int, default=3)
    parser.add_argument("--ssl-buffer-kb", type=int, default=0,
                        help="set asyncio's per-connection SSL read buffer (the SIP core "
                             "sets 32 KB; 256 KB is asyncio's own) to compare memory")
    parser.add_argument("--repeat", type=int, default=2,
                        help="RTP/SRTP pairs per level (alternating: the load drifts)")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.ssl_buffer_kb:
        import asyncio.sslproto

        from pbx_bridge.sip import transport

        transport.TLS_READ_BUFFER = args.ssl_buffer_kb * 1024
        asyncio.sslproto.SSLProtocol.max_size = args.ssl_buffer_kb * 1024
    floor = libsrtp_floor()
    print(f"libsrtp per 172-byte packet (CPU us): pylibsrtp API protect "
          f"{floor['api_protect_us']:.2f} + unprotect {floor['api_unprotect_us']:.2f}; direct C "
          f"call protect {floor['call_protect_us']:.2f} + unprotect "
          f"{floor['call_unprotect_us']:.2f}; of which AES+HMAC (the floor) "
          f"{floor['c_protect_us']:.2f} + {floor['c_unprotect_us']:.2f} "
          f"(= {floor['c_packets_per_s']:,.0f} protects/s on one core)  [{uptime()}]", flush=True)
    micro = await per_packet_cost()
    rtp_cost = micro["rtp_send_us"] + micro["rtp_recv_us"]
    srtp_cost = micro["srtp_send_us"] + micro["srtp_recv_us"]
    print(f"per packet, the leg's own code only: RTP send {micro['rtp_send_us']:.1f} us + receive "
          f"{micro['rtp_recv_us']:.1f} us; SRTP send {micro['srtp_send_us']:.1f} us + receive "
          f"{micro['srtp_recv_us']:.1f} us; SRTP/RTP {srtp_cost / rtp_cost:.2f} (an upper bound: "
          f"no event loop, no recvfrom)  [{uptime()}]", flush=True)
    # in-process, load-independent: the real path per call-second, RTP and SRTP alternated
    costs: dict[str, list[float]] = {"rtp": [], "srtp": [], "plumbing": []}
    for _ in range(args.cpu_repeat):
        for mode in costs:
            costs[mode].append((await call_cost(args.cpu_calls, mode != "rtp", args.cpu_ticks,
                                                cipher=mode == "srtp"))["ms_per_call_s"])
    rtp_ms, srtp_ms, plumbing_ms = (sorted(v)[len(v) // 2] for v in costs.values())
    floor_ms = (floor["c_protect_us"] + floor["c_unprotect_us"]) * 50 / 1000
    print(f"core CPU per call-second, in-process ({args.cpu_calls} legs, {args.cpu_ticks} ticks, "
          f"median of {args.cpu_repeat}): RTP {rtp_ms:.3f} ms, SRTP {srtp_ms:.3f} ms, SRTP/RTP "
          f"{srtp_ms / rtp_ms:.2f} (goal <= 1.3). SRTP's extra {srtp_ms - rtp_ms:.3f} ms: the "
          f"Python around libsrtp {plumbing_ms - rtp_ms:.3f} (the SRTP path run without the "
          f"cipher call), libsrtp in context {srtp_ms - plumbing_ms:.3f} = "
          f"{(srtp_ms - plumbing_ms) / rtp_ms:.0%} of RTP, against its AES+HMAC floor measured "
          f"back to back {floor_ms:.3f} = {floor_ms / rtp_ms:.0%}: SRTP/RTP >= "
          f"{srtp_ms / rtp_ms - (plumbing_ms - rtp_ms) / rtp_ms:.2f} with no Python around the "
          f"call at all, >= {1 + floor_ms / rtp_ms:.2f} with libsrtp's caches always hot  "
          f"[{uptime()}]", flush=True)
    # the same, every mode's ticks taken in turn in one run: the figure a loaded machine
    # disturbs least (with the C extension, also the path without it: srtp-python)
    from pbx_bridge.media import srtp as srtp_module

    modes = ["rtp", "srtp", "plumbing"] + (["srtp-python"] if srtp_module.batch else [])
    inter = await interleaved_cost(args.cpu_calls, args.cpu_ticks * args.cpu_repeat, modes)
    print(f"interleaved ({args.cpu_calls} legs per mode, {args.cpu_ticks * args.cpu_repeat} "
          f"ticks each, taken in turn), CPU ms per call-second: "
          + ", ".join(f"{mode} {ms:.3f}" for mode, ms in inter.items())
          + f"; SRTP/RTP {inter['srtp'] / inter['rtp']:.2f} (goal <= 1.3)"
          + (f", with libsrtp called per packet from Python (no batches; its crypto still "
             f"the extension's) {inter['srtp-python'] / inter['rtp']:.2f}"
             if "srtp-python" in inter else " (the C extension is not built)")
          + f"; libsrtp in context {(inter['srtp'] - inter['plumbing']) / inter['rtp']:.0%} "
          f"of RTP, the code around it {(inter['plumbing'] - inter['rtp']) / inter['rtp']:.0%}"
          f"  [{uptime()}]", flush=True)
    if args.cpu_only:
        return
    if not args.skip_media:
        print(f"media: {args.seconds:.0f} s measured per level after {args.warmup:.0f} s")
        print(f"{'calls':>6} {'mode':>5} {'gap p99 ms':>10} {'lost':>6} {'core CPU %':>10} "
              f"{'us/packet':>9} {'CPU ms/call/s':>13} {'auth fail':>9} {'peer rate':>9}      "
              f"{'batch':>5}  load  (batch: datagrams per SRTP receive batch)")
        for calls in args.levels:
            for _ in range(args.repeat):
                pair = {}
                for srtp in (False, True):
                    r = await media_level(calls, srtp, args.seconds, args.warmup)
                    pair[srtp] = r
                    ok = "ok" if r["p99"] <= GAP_LIMIT_MS and r["loss"] < 0.001 else "FAIL"
                    print(f"{calls:>6} {'srtp' if srtp else 'rtp':>5} {r['p99']:>10.1f} "
                          f"{r['loss']:>6.1%} {r['cpu_pct']:>10.1f} {r['us_per_packet']:>9.1f} "
                          f"{r['cpu_ms_per_call_s']:>13.2f} {r['auth_failures']:>9} "
                          f"{r['peer_rate']:>9.0%} {ok:>4} "
                          f"{r['batch']:>5.1f}  [{uptime()}]", flush=True)
                ratio = pair[True]["us_per_packet"] / max(0.001, pair[False]["us_per_packet"])
                print(f"{calls:>6} SRTP/RTP CPU per packet (= per call) {ratio:.2f} (goal <= 1.3)",
                      flush=True)
    if args.registrations:
        r = await registrations(args.registrations, args.hold)
        print(f"TLS registrations: {r['registered']}/{args.registrations} registered in "
              f"{r['seconds']:.1f} s ({r['errors']} errors {r['first_error']}); bindings "
              f"{r['bindings']}; after {args.hold:.0f} s held with CRLF pings: "
              f"{r['connections_held']} connections held, {r['alive']} answered the last "
              f"ping; core CPU {r['register_cpu_s']:.1f} s to register, "
              f"{r['hold_cpu_pct']:.1f} % while holding; RSS {r['rss_mb']:.0f} MB  "
              f"[{uptime()}]", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
