"""A real Asterisk 20 for the tests: the config set from docker/asterisk/conf, run in the
foreground on ports from the OS, plus the peers around it (sipp trunk, RTP event pcaps
with distinct timestamps, a pyVoIP agent phone that sends a tone and listens for it).

The build comes from `scripts/build-asterisk` (a cached install prefix). The config is
`make samples` (as in docker/asterisk/Dockerfile) with docker/asterisk/conf copied over
it; the only changes this module makes are ports, addresses, paths, and the number of
seconds between hold announcements (30 s in the shipped dialplan, 3 s here so that a
test does not sit through half a minute of music).
"""

from __future__ import annotations

import asyncio
import cmath
import contextlib
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "docker" / "asterisk" / "conf"
BUILD_SCRIPT = REPO / "scripts" / "build-asterisk"
AMI_SECRET = "change-me-ami-secret"  # docker/asterisk/conf/manager.conf
AGENT_PASSWORD = "demo-sip"  # docker/asterisk/conf/pjsip.conf
TRUNK_IP = "127.0.0.2"  # sipp's address: the trunk is identified by IP (the agents use .1)
SIPP = "/usr/bin/sipp"
ANNOUNCE_EVERY = 3


# --------------------------------------------------------------------------- build
@dataclass(frozen=True)
class AsteriskBuild:
    prefix: Path | None
    why_missing: str = ""

    @property
    def binary(self) -> Path:
        assert self.prefix is not None
        return self.prefix / "sbin" / "asterisk"


def find_build() -> AsteriskBuild:
    """The install prefix of the Asterisk the tests run: CENTRALE_ASTERISK_PREFIX, or
    what `scripts/build-asterisk` builds (or finds cached). No prefix only when the
    source is absent; a build that fails raises."""
    given = os.environ.get("CENTRALE_ASTERISK_PREFIX")
    if given:
        prefix = Path(given)
        if not (prefix / "sbin" / "asterisk").is_file():
            raise RuntimeError(f"CENTRALE_ASTERISK_PREFIX={given} holds no sbin/asterisk")
        return AsteriskBuild(prefix)
    run = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    if run.returncode != 0:
        raise RuntimeError(f"scripts/build-asterisk failed:\n{run.stdout}\n{run.stderr}")
    last = lines[-1] if lines else ""
    if last.startswith("/") and (Path(last) / "sbin" / "asterisk").is_file():
        return AsteriskBuild(Path(last))
    return AsteriskBuild(None, last or "scripts/build-asterisk printed nothing")


# --------------------------------------------------------------------------- ports
def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_range(size: int) -> int:
    """The start of `size` UDP ports that are free now (Asterisk's RTP range)."""
    for _ in range(50):
        start = free_port(socket.SOCK_DGRAM)
        start -= start % 2
        if start + size > 65000:
            continue
        ok = True
        # Asterisk and pyVoIP skip a port that is taken; a sample is enough for big ranges.
        step = 2 if size <= 400 else 2 * (size // 200)
        for port in range(start, start + size, step):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("0.0.0.0", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return start
    raise RuntimeError(f"no free range of {size} UDP ports for RTP")


# --------------------------------------------------------------------------- prompts
def write_tone_wav(path: Path, freq: float, seconds: float, amplitude: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(8000 * seconds)
    samples = array("h", (int(amplitude * math.sin(2 * math.pi * freq * i / 8000))
                          for i in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.tobytes())


#: The prompts the test flows use, as tones: the language is in the frequency.
PROMPT_KEYS = ["choose_language", "goodbye", "queue/you_are_number", "queue/in_line",
               "queue/wait_time_is", "queue/about", "queue/minute", "queue/minutes"]
LANGUAGE_TONES = {"en": 600.0, "nl": 900.0}


# --------------------------------------------------------------------------- Asterisk
class LiveAsterisk:
    """One Asterisk process with the docker/asterisk config set, adapted in ports and
    paths only. `start()` waits until it is fully booted; `stop()` / `kill()`."""

    def __init__(self, build: AsteriskBuild, root: Path, *, agi_port: int,
                 trunk_port: int, rtp_ports: int = 200) -> None:
        self.build = build
        self.root = root
        self.etc = root / "etc"
        self.data = root / "data"
        self.log_dir = root / "log"
        self.run_dir = root / "run"
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.ami_port = free_port()
        self.rtp_ports = rtp_ports
        self.rtp_start = free_udp_range(rtp_ports)
        self.agi_port = agi_port
        self.trunk_port = trunk_port
        self.registrar_port = free_port(socket.SOCK_DGRAM, TRUNK_IP)  # nobody listens
        self.proc: asyncio.subprocess.Process | None = None
        self.output = root / "asterisk.out"
        self._render()

    # --- config ----------------------------------------------------------------
    def _render(self) -> None:
        assert self.build.prefix is not None
        prefix = self.build.prefix
        for d in (self.etc, self.data, self.log_dir, self.run_dir, self.root / "varlib",
                  self.root / "spool", self.root / "agi-bin", self.log_dir / "cdr-csv",
                  self.root / "varlib" / "keys"):
            d.mkdir(parents=True, exist_ok=True)
        # As the Dockerfile: `make samples`, then conf/ over it.
        shutil.copytree(prefix / "etc" / "asterisk", self.etc, dirs_exist_ok=True)
        for f in CONF.iterdir():
            shutil.copy(f, self.etc / f.name)
        # Sounds: Debian's (en, music on hold) and the test's own prompts.
        sounds = self.data / "sounds"
        sounds.mkdir(exist_ok=True)
        for entry in Path("/usr/share/asterisk/sounds").iterdir():
            if not (sounds / entry.name).exists():
                (sounds / entry.name).symlink_to(entry)
        if not (self.data / "moh").exists():
            (self.data / "moh").symlink_to("/usr/share/asterisk/moh")
        for entry in (prefix / "var" / "lib" / "asterisk").iterdir():  # documentation, ...
            if entry.name not in ("sounds", "moh") and not (self.data / entry.name).exists():
                (self.data / entry.name).symlink_to(entry)
        for lang, freq in LANGUAGE_TONES.items():
            for key in PROMPT_KEYS:
                write_tone_wav(sounds / "centrale" / lang / f"{key}.wav", freq, 0.6)
        write_tone_wav(sounds / "centrale" / "moh" / "tone.wav", 300.0, 2.0)

        paths = {
            "astetcdir": self.etc, "astmoddir": prefix / "lib" / "asterisk" / "modules",
            "astvarlibdir": self.root / "varlib", "astdbdir": self.root / "varlib",
            "astkeydir": self.root / "varlib", "astdatadir": self.data,
            "astagidir": self.root / "agi-bin", "astspooldir": self.root / "spool",
            "astrundir": self.run_dir, "astlogdir": self.log_dir,
            "astsbindir": prefix / "sbin",
        }
        self._edit("asterisk.conf", lambda s: re.sub(
            r"^(\w+)\s*=>\s*(\S+)",
            lambda m: f"{m[1]} => {paths.get(m[1], m[2])}", s, flags=re.M))
        keys = self.root / "varlib" / "keys"  # the image's self-signed certificate
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", "/CN=asterisk", "-keyout", str(keys / "asterisk.key"),
                        "-out", str(keys / "asterisk.crt")], check=True, capture_output=True)
        self._edit("pjsip.conf", lambda s: s
                   .replace("bind = 0.0.0.0:5060", f"bind = 0.0.0.0:{self.sip_port}")
                   .replace("bind = 0.0.0.0:5061", f"bind = 0.0.0.0:{free_port()}")
                   .replace("/etc/asterisk/keys/", f"{keys}/")
                   .replace("contact = sip:sip.carrier.example:5060",
                            f"contact = sip:{TRUNK_IP}:{self.trunk_port}")
                   .replace("match = sip.carrier.example", f"match = {TRUNK_IP}")
                   .replace("server_uri = sip:sip.carrier.example",
                            f"server_uri = sip:{TRUNK_IP}:{self.registrar_port}")
                   .replace("client_uri = sip:change-me@sip.carrier.example",
                            f"client_uri = sip:change-me@{TRUNK_IP}:{self.registrar_port}"))
        self._edit("manager.conf", lambda s: s.replace("port = 5038",
                                                       f"port = {self.ami_port}"))
        self._edit("rtp.conf", lambda s: s
                   .replace("rtpstart = 10000", f"rtpstart = {self.rtp_start}")
                   .replace("rtpend = 10999",
                            f"rtpend = {self.rtp_start + self.rtp_ports - 1}"))
        self._edit("extensions.conf", lambda s: s
                   .replace("CENTRALE_AGI = centrale:4573",
                            f"CENTRALE_AGI = 127.0.0.1:{self.agi_port}")
                   .replace("CENTRALE_ANNOUNCE_EVERY = 30",
                            f"CENTRALE_ANNOUNCE_EVERY = {ANNOUNCE_EVERY}"))
        self._edit("musiconhold.conf", lambda s: s.replace(
            "/var/lib/asterisk/sounds/centrale/moh", str(sounds / "centrale" / "moh")))

    def _edit(self, name: str, change) -> None:  # type: ignore[no-untyped-def]
        path = self.etc / name
        before = path.read_text()
        after = change(before)
        assert after != before, f"{name}: the test's port/path adaptation matched nothing"
        path.write_text(after)

    # --- process ---------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.etc / "asterisk.conf"

    async def start(self, timeout: float = 120.0) -> None:
        out = self.output.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            str(self.build.binary), "-C", str(self.config_file), "-f", "-vvv",
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        out.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.proc.returncode is not None:
                raise RuntimeError(f"asterisk exited with {self.proc.returncode}:\n"
                                   + self.tail())
            code, _ = await self.cli("core waitfullybooted", timeout=10)
            if code == 0:
                break
            if loop.time() > deadline:
                raise RuntimeError("asterisk did not boot in time:\n" + self.tail())
            await asyncio.sleep(0.2)
        await self.cli("core set verbose 3")

    async def cli(self, command: str, timeout: float = 10.0) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            str(self.build.binary), "-C", str(self.config_file), "-rx", command,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace")

    async def kill(self) -> None:
        """A crash: SIGKILL, no goodbye to any channel or to AMI."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        await self.cli("core stop now", timeout=10)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            await self.kill()

    def tail(self, lines: int = 60) -> str:
        if not self.output.exists():
            return ""
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""


# --------------------------------------------------------------------------- DTMF
def rfc2833_pcap(path: Path, digit: str, index: int, ssrc: int = 0x43454E54) -> Path:
    """One RFC 2833 event in a pcap for sipp's play_pcap_audio, its RTP timestamp and
    sequence numbers placed after those of the caller's earlier digits (`index`):
    Debian's stock pcaps all carry one timestamp, and Asterisk drops a second digit
    with the same timestamp as a repeat of the first."""
    event = "0123456789*#".index(digit) if digit in "0123456789" else {"*": 10, "#": 11}[digit]
    timestamp = 8000 * (index + 1)
    seq = 1000 + 20 * index
    packets: list[bytes] = []
    durations = [160 * (i + 1) for i in range(8)]
    for i, duration in enumerate(durations):
        end = i == len(durations) - 1
        for _ in range(3 if end else 1):
            rtp = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | 101, seq + i,
                              timestamp, ssrc)
            rtp += struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
            packets.append(rtp)
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n, rtp in enumerate(packets):
            udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                             socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
            frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
            usec = 20000 * min(n, len(durations) - 1)
            f.write(struct.pack("<IIII", 1, usec, len(frame), len(frame)) + frame)
    return path


def _write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> Path:
    """RTP packets (send time in seconds, RTP bytes) as a pcap for play_pcap_audio."""
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for at, rtp in packets:
            udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                             socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
            frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
            usec = round(at * 1_000_000)
            f.write(struct.pack("<IIII", 1 + usec // 1_000_000, usec % 1_000_000,
                                len(frame), len(frame)) + frame)
    return path


def speaking_caller_pcap(path: Path, digits: str, tone_hz: float, seconds: float,
                         ssrc: int = 0x544F4E45) -> Path:
    """What a caller who speaks sends, in one pcap (sipp plays one at a time: a second
    play_pcap_audio stops the first): the menu digits (RFC 2833, 0.4 s apart, distinct
    timestamps), then `seconds` of a µ-law tone at `tone_hz` — the caller's voice, so
    a recording's channels can be told apart by frequency (the echoing caller of the
    other tests would send the agent's own tone back)."""
    from pbx_bridge.media import g711

    packets: list[tuple[float, bytes]] = []
    seq, at = 1000, 0.0
    for index, digit in enumerate(digits):
        event = "0123456789*#".index(digit)
        timestamp = 8000 * (index + 1)
        for i in range(8):
            end = i == 7
            for _ in range(3 if end else 1):
                packets.append((at + 0.02 * i, struct.pack(
                    "!BBHIIBBH", 0x80, (0x80 if i == 0 else 0) | 101, seq, timestamp, ssrc,
                    event, (0x80 if end else 0) | 10, 160 * (i + 1))))
                seq += 1
        at += 0.4
    frames = int(seconds * 50)
    linear = array("h", (int(12000 * math.sin(2 * math.pi * tone_hz * i / 8000))
                         for i in range(160 * frames)))
    voice = g711.encode_ulaw(linear)
    timestamp = 8000 * (len(digits) + 2)
    for n in range(frames):
        packets.append((at + 0.02 * n, struct.pack(
            "!BBHII", 0x80, (0x80 if n == 0 else 0), seq & 0xFFFF, timestamp & 0xFFFFFFFF,
            ssrc) + voice[160 * n:160 * (n + 1)]))
        seq += 1
        timestamp += 160
    return _write_pcap(path, packets)


SIPP_INVITE = """
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:{caller}@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:{caller}@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""

SIPP_BYE = """
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:{caller}@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""

#: A bridged trunk call gets re-INVITEs from Asterisk (connected-line updates): the
#: caller answers them (same media) and goes back to waiting for `{until}`.
SIPP_REINVITE_LOOP = """
  <label id="wait"/>
  <recv request="INVITE" optional="true" next="reinvite"/>
  <recv request="{until}" next="until"/>
  <label id="reinvite"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:caller@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv request="ACK" next="wait"/>
  <label id="until"/>
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

SIPP_SIGNAL = SIPP_REINVITE_LOOP.replace("{until}", "INFO")
SIPP_WAIT_BYE = SIPP_REINVITE_LOOP.replace("{until}", "BYE")


def caller_scenario(workdir: Path, *, digits: str = "", caller: str = "+31201234567",
                    hold_ms: int = 0, then: str = "wait_bye",
                    wait_before_dtmf_ms: int = 1500, speaks: Path | None = None) -> str:
    """A trunk caller: INVITE, DTMF (distinct timestamps), then either waits for
    Asterisk's BYE (`then="wait_bye"`) or hangs up itself after `hold_ms`
    (`then="bye"`). `hold_ms` is a pause, the caller's own patience: a hang-up
    after it is the event under test, not a wait for something. `speaks`: a pcap
    of `speaking_caller_pcap` played instead of the digits (it holds them)."""
    body = SIPP_INVITE.format(caller=caller)
    body += f'  <pause milliseconds="{wait_before_dtmf_ms}"/>\n'
    if speaks is not None:
        body += f'  <nop><action><exec play_pcap_audio="{speaks}"/></action></nop>\n'
        digits = ""
    for i, digit in enumerate(digits):
        pcap = rfc2833_pcap(workdir / f"dtmf-{i}-{digit}.pcap", digit, i)
        body += f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
        if i < len(digits) - 1:  # the pcap plays in the background: space the digits
            body += '  <pause milliseconds="400"/>\n'
    # No pause after the last digit: a re-INVITE that comes while sipp pauses aborts
    # the call, and an agent can answer that fast.
    if then == "bye":
        body += f'  <pause milliseconds="{hold_ms}"/>\n' + SIPP_BYE.format(caller=caller)
    elif then == "signal":  # hang up when the test sends an INFO in this dialog
        body += SIPP_SIGNAL + SIPP_BYE.format(caller=caller)
    else:
        body += SIPP_WAIT_BYE
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="trunk caller">\n'
            + body + "</scenario>\n")


#: The carrier for callbacks: answers OPTIONS (Asterisk qualifies the trunk) and
#: INVITEs (the customer picks up), echoes RTP (-rtp_echo), waits for the BYE.
CARRIER_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier">
  <recv request="INVITE" optional="true" next="invite"/>
  <recv request="OPTIONS"/>
  <send next="done">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]options
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <label id="invite"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]carrier
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:customer@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
    ]]>
  </send>
  <recv request="ACK"/>
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
  <label id="done"/>
  <pause milliseconds="10"/>
</scenario>
"""


class Sipp:
    """One sipp process on TRUNK_IP (the trunk's address)."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.dir = workdir / f"sipp-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(socket.SOCK_DGRAM, TRUNK_IP)
        self.media_port = free_port(socket.SOCK_DGRAM, TRUNK_IP)
        self.media_port -= self.media_port % 2
        self.proc: asyncio.subprocess.Process | None = None
        self.stdout = b""
        self.stderr = b""

    async def start(self, scenario: str, *, target: str | None = None, service: str = "100",
                    calls: int = 1, rate: float = 1.0, limit: int = 1, timeout: float = 120,
                    rtp_echo: bool = True, extra: list[str] | None = None) -> None:
        path = self.dir / "scenario.xml"
        path.write_text(scenario)
        args = [SIPP, "-sf", str(path), "-i", TRUNK_IP, "-p", str(self.port),
                "-mi", TRUNK_IP, "-mp", str(self.media_port), "-s", service,
                "-m", str(calls), "-r", str(rate), "-l", str(limit), "-nostdin",
                "-timeout", f"{int(timeout)}s", "-timeout_error", "-trace_err",
                "-error_file", str(self.dir / "errors.log"), "-max_socket", "4096",
                *(["-rtp_echo"] if rtp_echo else []), *(extra or []),
                *([target] if target else [])]
        self.proc = await asyncio.create_subprocess_exec(
            *args, cwd=self.dir, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)

    async def wait(self, timeout: float = 120) -> int:
        assert self.proc is not None
        try:
            self.stdout, self.stderr = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            await self.kill()
        return self.proc.returncode if self.proc.returncode is not None else -1

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.stdout, self.stderr = await self.proc.communicate()

    def errors(self) -> str:
        path = self.dir / "errors.log"
        return (path.read_text(errors="replace") if path.exists() else "") + \
            self.stderr.decode(errors="replace")


# --------------------------------------------------------------------------- audio
def dominant_frequency(samples: list[float], rate: int = 8000,
                       band: tuple[float, float] = (200.0, 3400.0)) -> float:
    """The frequency of the strongest FFT bin within the telephone band (Hann window,
    DC removed per 20 ms frame: a jittery phone's frames do not share one offset, and
    the steps between them would otherwise show as energy at a few hertz)."""
    n = 1
    while n * 2 <= len(samples):
        n *= 2
    if n < 256:
        return 0.0
    chunk = list(samples[:n])
    for start in range(0, n, 160):
        frame = chunk[start:start + 160]
        mean = sum(frame) / len(frame)
        chunk[start:start + 160] = [v - mean for v in frame]
    x = [complex(v * (0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1))))
         for i, v in enumerate(chunk)]
    spectrum = _fft(x)
    low, high = (max(1, int(f * n / rate)) for f in band)
    best = max(range(low, min(high, n // 2)), key=lambda k: abs(spectrum[k]))
    return best * rate / n


def _fft(x: list[complex]) -> list[complex]:
    n = len(x)
    if n == 1:
        return x
    even, odd = _fft(x[0::2]), _fft(x[1::2])
    out = [0j] * n
    for k in range(n // 2):
        t = cmath.exp(-2j * math.pi * k / n) * odd[k]
        out[k] = even[k] + t
        out[k + n // 2] = even[k] - t
    return out


def rms(samples: list[float]) -> float:
    return math.sqrt(sum(v * v for v in samples) / len(samples)) if samples else 0.0


def _answer_options_in_pyvoip() -> None:
    """pyVoIP 1.6.8 drops OPTIONS, so Asterisk's qualify (agent AORs have
    `qualify_frequency = 30`) marks the phone Unreachable and will not ring it. A desk
    phone answers OPTIONS with 200: teach the test phone to do the same."""
    import pyVoIP
    from pyVoIP.SIP import SIPClient

    if getattr(SIPClient, "_centrale_options", False):
        return
    if "OPTIONS" not in pyVoIP.SIPCompatibleMethods:
        pyVoIP.SIPCompatibleMethods.append("OPTIONS")
    original = SIPClient.parse_message

    def parse_message(self, message) -> None:  # type: ignore[no-untyped-def]
        if getattr(message, "method", None) == "OPTIONS":
            address, port = message.headers["Via"][0]["address"]
            self.out.sendto(self.gen_ok(message).encode("utf8"), (address, int(port)))
            return
        original(self, message)

    SIPClient.parse_message = parse_message  # type: ignore[method-assign]
    SIPClient._centrale_options = True  # type: ignore[attr-defined]


class ToneAgentPhone:
    """A pyVoIP phone registered to Asterisk as an agent; it answers, sends a tone and
    keeps what it hears (8-bit unsigned linear PCM from pyVoIP, as floats around 0)."""

    def __init__(self, sip_port: int, username: str, password: str = AGENT_PASSWORD,
                 tone_hz: float = 1000.0) -> None:
        from pyVoIP.VoIP import VoIPPhone

        _answer_options_in_pyvoip()
        self.tone_hz = tone_hz
        self.calls: list[object] = []
        self.heard: list[float] = []
        self._stop = False
        self.port = free_port(socket.SOCK_DGRAM)
        rtp_low = free_udp_range(40)
        self.phone = VoIPPhone("127.0.0.1", sip_port, username, password,
                               myIP="127.0.0.1", callCallback=self._on_call,
                               sipPort=self.port, rtpPortLow=rtp_low,
                               rtpPortHigh=rtp_low + 38)

    def _on_call(self, call) -> None:  # type: ignore[no-untyped-def]  # pyVoIP thread
        import time

        self.calls.append(call)
        call.answer()
        phase = 0
        step = 2 * math.pi * self.tone_hz / 8000
        while not self._stop and call.state.value == "ANSWERED":
            frame = bytearray(160)
            for i in range(160):
                frame[i] = 128 + int(60 * math.sin(phase))
                phase += step
            call.write_audio(bytes(frame))
            data = call.read_audio(160, blocking=False)
            self.heard.extend(b - 128.0 for b in data)
            time.sleep(0.02)

    async def start(self) -> None:
        await asyncio.to_thread(self.phone.start)

    async def stop(self) -> None:
        self._stop = True
        for call in self.calls:
            with contextlib.suppress(Exception):
                if call.state.value == "ANSWERED":  # type: ignore[attr-defined]
                    await asyncio.to_thread(call.hangup)  # type: ignore[attr-defined]
        await asyncio.to_thread(self.phone.stop)

    def states(self) -> list[str]:
        return [call.state.value for call in self.calls]  # type: ignore[attr-defined]

    def hangup(self) -> None:
        for call in self.calls:
            with contextlib.suppress(Exception):
                if call.state.value == "ANSWERED":  # type: ignore[attr-defined]
                    call.hangup()  # type: ignore[attr-defined]
