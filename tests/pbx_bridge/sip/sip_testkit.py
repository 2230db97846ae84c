"""Helpers to drive the real sipp (Debian sip-tester) against the server under test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

SIPP = "/usr/bin/sipp"
PCAP_DIR = Path("/usr/share/sip-tester")


def free_udp_port(even: bool = False) -> int:
    """A currently free UDP port (sipp needs explicit ports; collisions are retried)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not even or (port % 2 == 0 and port < 65000):
            with contextlib.suppress(OSError), socket.socket(socket.AF_INET,
                                                             socket.SOCK_DGRAM) as s2:
                s2.bind(("127.0.0.1", port + 2))
                return port
            if not even:
                return port
    raise RuntimeError("no free UDP port")


INVITE = """
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {from_hdr};tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
{extra}      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP {codec} 101
      a=rtpmap:{codec} {codec_name}/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {from_hdr};tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""

BYE = """
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {from_hdr};tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""

WAIT_BYE = """
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""


def dtmf_pcap(digit: str) -> Path:
    name = {"#": "pound", "*": "star"}.get(digit, digit)
    return PCAP_DIR / f"dtmf_2833_{name}.pcap"


def uac_scenario(
    *,
    digits: str = "",
    wait_before_dtmf_ms: int = 500,
    hold_ms: int = 1500,
    from_hdr: str = '"sipp" <sip:+33123456789@[local_ip]:[local_port]>',
    extra_headers: str = "",
    codec: int = 0,
    wait_for_bye: bool = False,
) -> str:
    """A caller: INVITE, ACK, send DTMF digits as RFC 2833 pcaps, then BYE."""
    codec_name = "PCMU" if codec == 0 else "PCMA"
    extra = "".join(f"      {h}\n" for h in extra_headers.splitlines() if h.strip())
    body = INVITE.format(from_hdr=from_hdr, extra=extra, codec=codec, codec_name=codec_name)
    body += f'  <pause milliseconds="{wait_before_dtmf_ms}"/>\n'
    for digit in digits:
        body += (f'  <nop><action><exec play_pcap_audio="{dtmf_pcap(digit)}"/>'
                 "</action></nop>\n  <pause milliseconds=\"400\"/>\n")
    body += f'  <pause milliseconds="{hold_ms}"/>\n'
    body += (WAIT_BYE if wait_for_bye else BYE.format(from_hdr=from_hdr))
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
            '<scenario name="centrale-uac">\n' + body + "</scenario>\n")


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    errors: str


def udp_ports_of(pid: int) -> set[int]:
    """The local UDP ports process `pid` holds (Linux /proc): how a test learns that a
    peer it started has bound its socket, instead of sleeping and hoping."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def wait_bound(proc: asyncio.subprocess.Process, port: int, timeout: float = 30) -> bool:
    """True once `proc` holds UDP `port`; False if it exited first (e.g. the port was
    taken between picking and binding)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while proc.returncode is None and loop.time() < deadline:
        if port in udp_ports_of(proc.pid):
            return True
        exited = asyncio.ensure_future(proc.wait())
        await asyncio.wait({exited}, timeout=0.02)
        exited.cancel()
    return proc.returncode is None and port in udp_ports_of(proc.pid)


async def run_sipp(scenario: str, workdir: Path, server_port: int, *, calls: int = 1,
                   rate: float = 1, limit: int = 1, service: str = "1000",
                   timeout: float = 30, extra: list[str] | None = None,
                   transport: str = "u1", local_port: int | None = None,
                   bound: asyncio.Future[int] | None = None) -> SippResult:
    """Run sipp; `scenario` is XML text, or "uas" for sipp's built-in answering UAS.

    Ports: sipp needs explicit ones, so they are picked free and, when sipp could not
    bind them (another process took one in between), picked again. `bound` gets
    sipp's SIP port once sipp holds it: a test that sends to sipp waits on it."""
    path = workdir / "scenario.xml"
    path.write_text(scenario)
    for attempt in range(8):
        port = local_port or free_udp_port()
        media_port = free_udp_port(even=True)
        args = [
            SIPP, *(["-sn", "uas"] if scenario == "uas" else ["-sf", str(path)]),
            "-m", str(calls), "-r", str(rate), "-l", str(limit),
            "-i", "127.0.0.1", "-p", str(port), "-mp", str(media_port),
            "-s", service, "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error",
            "-trace_err", "-error_file", str(workdir / "errors.log"), "-t", transport,
            "-max_socket", "4096",
            *(extra or []),
            *([] if scenario == "uas" else [f"127.0.0.1:{server_port}"]),
        ]
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        communicate = asyncio.ensure_future(proc.communicate())
        if bound is not None and not bound.done() and transport.startswith("u"):
            if await wait_bound(proc, port):
                bound.set_result(port)
        try:
            out, err = await asyncio.wait_for(communicate, timeout + 15)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
        stderr = err.decode(errors="replace")
        if proc.returncode and "bind" in stderr.lower() and attempt < 7 \
                and (bound is None or not bound.done()):
            continue  # a port was taken between picking and binding: pick again
        break
    errors_file = workdir / "errors.log"
    errors = errors_file.read_text(errors="replace") if errors_file.exists() else ""
    return SippResult(proc.returncode or 0, out.decode(errors="replace"), stderr, errors)


async def start_sipp_peer(scenario: str, workdir: Path, *, timeout: float = 15
                          ) -> tuple[int, asyncio.Future[SippResult]]:
    """A sipp phone or carrier (UAS) that a test's server will call: returns its SIP
    port once sipp holds it, and the run's future."""
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    run = asyncio.ensure_future(run_sipp(scenario, workdir, 0, timeout=timeout, bound=bound))
    await asyncio.wait({run, bound}, return_when=asyncio.FIRST_COMPLETED)
    if not bound.done():
        result = run.result()
        raise AssertionError(f"sipp did not start: {result.stderr}{result.errors}")
    return bound.result(), run


class PyVoipAgentPhone:
    """A pyVoIP 1.6.8 phone that registers to the server and auto-answers.

    pyVoIP is synchronous (threads); start/stop run in a worker thread so the
    server, in the test's event loop, can answer the REGISTER.
    """

    def __init__(self, server_port: int, username: str, password: str) -> None:
        from pyVoIP.VoIP import VoIPPhone

        self.packets_received = 0
        self.calls: list[object] = []
        self.sip_port = free_udp_port()
        rtp_low = free_udp_port(even=True)
        self.phone = VoIPPhone("127.0.0.1", server_port, username, password,
                               myIP="127.0.0.1", callCallback=self._on_call,
                               sipPort=self.sip_port, rtpPortLow=rtp_low,
                               rtpPortHigh=rtp_low + 20)

    def _on_call(self, call) -> None:  # type: ignore[no-untyped-def]  # pyVoIP thread
        self.calls.append(call)
        call.answer()
        for client in call.RTPClients:
            original = client.parse_packet

            def counting(packet: bytes, _orig=original) -> None:
                self.packets_received += 1
                _orig(packet)

            client.parse_packet = counting

    async def start(self) -> None:
        await asyncio.to_thread(self.phone.start)

    async def stop(self) -> None:
        for call in self.calls:
            with contextlib.suppress(Exception):
                for client in call.RTPClients:  # type: ignore[attr-defined]
                    client.stop()
        await asyncio.to_thread(self.phone.stop)

    def call_states(self) -> list[str]:
        return [call.state.value for call in self.calls]  # type: ignore[attr-defined]


def register_scenario(username: str, password: str, *, expect_final: int,
                      expires: int = 120) -> str:
    """REGISTER, answer the 401 challenge with sipp's own digest, expect `expect_final`."""
    def register(cseq: int, auth: str) -> str:
        return f"""
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{username}@[remote_ip]>;tag=[pid]reg[call_number]
      To: <sip:{username}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{username}@[local_ip]:[local_port]>
      Expires: {expires}
      Max-Forwards: 70
{auth}      Content-Length: 0
    ]]>
  </send>
"""
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="register">\n'
            + register(1, "") + '  <recv response="401" auth="true"/>\n'
            + register(2, f"      [authentication username={username} password={password}]\n")
            + f'  <recv response="{expect_final}"/>\n</scenario>\n')


def rejected_invite_scenario(status: int, *, authenticate: tuple[str, str] | None = None,
                             then_status: int = 200) -> str:
    """INVITE answered by `status` (ACKed); optionally retried with digest credentials."""
    invite = INVITE.split("  <recv")[0].format(
        from_hdr="<sip:+33999@[local_ip]:[local_port]>", extra="", codec=0, codec_name="PCMU")
    ack = """
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:+33999@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""
    body = invite + '  <recv response="100" optional="true"/>\n'
    body += f'  <recv response="{status}" auth="{str(authenticate is not None).lower()}"/>\n'
    body += ack.format(cseq=1)
    if authenticate is not None:
        user, password = authenticate
        retry = invite.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE").replace(
            "      Content-Type: application/sdp",
            f"      [authentication username={user} password={password}]\n"
            "      Content-Type: application/sdp")
        body += retry + '  <recv response="100" optional="true"/>\n'
        body += f'  <recv response="{then_status}"/>\n'
        if then_status == 200:
            body += ack.format(cseq=2).replace("[last_Via:]",
                                               "Via: SIP/2.0/[transport] [local_ip]:[local_port];"
                                               "branch=[branch]")
            body += BYE.format(from_hdr="<sip:+33999@[local_ip]:[local_port]>").replace(
                "CSeq: 2 BYE", "CSeq: 3 BYE")
        else:
            body += ack.format(cseq=2)
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="reject">\n'
            + body + "</scenario>\n")


class RawUa(asyncio.DatagramProtocol):
    """A minimal UDP endpoint to send hand-written requests and await responses."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[str] = asyncio.Queue()
        self.requests: asyncio.Queue[str] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        text = data.decode(errors="replace")
        (self.responses if text.startswith("SIP/2.0") else self.requests).put_nowait(text)

    @classmethod
    async def open(cls) -> tuple[RawUa, int]:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return proto, transport.get_extra_info("sockname")[1]

    def send(self, text: str, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(text.replace("\n", "\r\n").encode(), ("127.0.0.1", port))

    async def final(self, timeout: float = 3.0) -> str:
        while True:
            resp = await asyncio.wait_for(self.responses.get(), timeout)
            if not resp.startswith("SIP/2.0 1"):
                return resp

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


BARESIP = "/usr/bin/baresip"


class BaresipPhone:
    """A real baresip 1.0 user agent; `aubridge` loops what it hears back as its
    microphone, so media reaching it comes back to us (an echo phone)."""

    def __init__(self, workdir: Path, server_port: int, username: str, password: str, *,
                 register: bool = True, commands: list[str] | None = None) -> None:
        self.dir = workdir / f"baresip-{username}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        regint = "regint=120" if register else "regint=0"
        (self.dir / "accounts").write_text(
            f"<sip:{username}@127.0.0.1:{server_port};transport=udp>;auth_pass={password};"
            f"answermode=auto;{regint}\n")
        self.commands = commands or []
        self.proc: asyncio.subprocess.Process | None = None

    def _write_config(self) -> None:
        self.port = free_udp_port()
        (self.dir / "config").write_text(
            "poll_method epoll\n"
            f"sip_listen 127.0.0.1:{self.port}\n"
            "sip_trans_def udp\n"
            "audio_player aubridge,bridge\naudio_source aubridge,bridge\n"
            "audio_alert aubridge,bridge\n"
            # a wide range: baresip tries random ports in it until one binds
            "rtp_ports 40000-59998\n"
            "module_path /usr/lib/baresip/modules\n"
            "module g711.so\nmodule aubridge.so\n"
            "module_app account.so\nmodule_app menu.so\n")

    async def start(self) -> None:
        """Start baresip and return once it holds its SIP port (picked free; picked
        again if another process took it before baresip bound it)."""
        for _ in range(8):
            self._write_config()
            args = [BARESIP, "-f", str(self.dir)]
            for command in self.commands:
                args += ["-e", command]
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            if await wait_bound(self.proc, self.port):
                return
            await self.stop()
        raise AssertionError("baresip could not bind a SIP port")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# A phone (or carrier) that answers one INVITE with PCMA, then waits for the BYE.
ANSWERING_PHONE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answering phone">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ans
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:phone@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=phone 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
    ]]>
  </send>
  <recv request="ACK"/>
""" + WAIT_BYE + "</scenario>\n"
