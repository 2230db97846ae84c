"""Helpers to drive the real sipp (Debian sip-tester) against the server under test."""

from __future__ import annotations

import asyncio
import contextlib
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


async def run_sipp(scenario: str, workdir: Path, server_port: int, *, calls: int = 1,
                   rate: float = 1, limit: int = 1, service: str = "1000",
                   timeout: float = 30, extra: list[str] | None = None,
                   transport: str = "u1") -> SippResult:
    path = workdir / "scenario.xml"
    path.write_text(scenario)
    local_port = free_udp_port()
    media_port = free_udp_port(even=True)
    args = [
        SIPP, "-sf", str(path), "-m", str(calls), "-r", str(rate), "-l", str(limit),
        "-i", "127.0.0.1", "-p", str(local_port), "-mp", str(media_port),
        "-s", service, "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error",
        "-trace_err", "-error_file", str(workdir / "errors.log"), "-t", transport,
        "-max_socket", "4096",
        *(extra or []),
        f"127.0.0.1:{server_port}",
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout + 15)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    errors_file = workdir / "errors.log"
    errors = errors_file.read_text(errors="replace") if errors_file.exists() else ""
    return SippResult(proc.returncode or 0, out.decode(errors="replace"),
                      err.decode(errors="replace"), errors)


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
