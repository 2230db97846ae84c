"""Parties that speak a tone and keep what they hear, for checking who hears whom.

- `ToneCallerMedia`: the media side of a sipp caller. sipp does the signalling (its
  SDP names this endpoint's port); this endpoint answers the server's RTP with a
  tone, sends RFC 4733 digits when told, and keeps every audio frame it receives.
- `TonePhone`: a pyVoIP agent phone (registers, auto-answers) that speaks a tone and
  keeps every audio frame it receives.

`mark()` / `heard_since(mark)` cut a window out of what was received; the FFT in
tests/tones.py tells which tones it holds.
"""

from __future__ import annotations

import asyncio
import random
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pbx_bridge" / "sip"))

from sip_testkit import PyVoipAgentPhone, uac_scenario

from pbx_bridge.media import g711
from tests.tones import decode_g711, tone_linear
from tests.waiting import wait_until


class ToneCallerMedia(asyncio.DatagramProtocol):
    def __init__(self, frequency: float) -> None:
        from array import array

        self.frequency = frequency
        linear = tone_linear(frequency, 1.0, amplitude=15000)
        self.voice = g711.encode_ulaw(array("h", linear.tobytes()))
        self.received: list[tuple[bytes, int]] = []
        self.remote: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._sender: asyncio.Task[None] | None = None
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._ssrc = random.getrandbits(32)
        self._digits: list[str] = []
        self.digits_heard = ""  # RFC 4733 events received (one per key press)
        self._event_stamps: set[int] = set()
        self.port = 0

    @classmethod
    async def open(cls, frequency: float) -> ToneCallerMedia:
        loop = asyncio.get_running_loop()
        _, media = await loop.create_datagram_endpoint(lambda: cls(frequency),
                                                       local_addr=("127.0.0.1", 0))
        assert media.transport is not None
        media.port = media.transport.get_extra_info("sockname")[1]
        return media

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        if len(data) < 12:
            return
        pt = data[1] & 0x7F
        if self.remote is None:
            self.remote = addr
            self._sender = asyncio.ensure_future(self._send_loop())
        if pt in (0, 8):
            self.received.append((data[12:], pt))
        elif pt == 101 and len(data) >= 16:
            stamp = struct.unpack_from("!I", data, 4)[0]
            if stamp not in self._event_stamps:  # all packets of a press share it
                self._event_stamps.add(stamp)
                self.digits_heard += "0123456789*#ABCD"[data[12] & 0x0F]

    def _packet(self, pt: int, payload: bytes, marker: bool = False) -> bytes:
        self._seq = (self._seq + 1) & 0xFFFF
        return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self._seq,
                           self._ts & 0xFFFFFFFF, self._ssrc) + payload

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        position = 0
        next_at = loop.time()
        while self.transport is not None and not self.transport.is_closing():
            if self._digits:
                digit = "0123456789*#".index(self._digits.pop(0))
                for n in range(1, 9):  # 160 ms, then three end packets
                    end = n >= 6
                    self.transport.sendto(self._packet(101, struct.pack(
                        "!BBH", digit, (0x80 if end else 0) | 10, min(n, 6) * 160),
                        marker=n == 1), self.remote)
                    next_at += 0.02
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                self._ts += 6 * 160
                continue
            frame = self.voice[position:position + 160]
            position = (position + 160) % (len(self.voice) - 160)
            self._ts += 160
            self.transport.sendto(self._packet(0, frame), self.remote)
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def press(self, digits: str) -> None:
        self._digits.extend(digits)

    def mark(self) -> int:
        return len(self.received)

    def heard_since(self, mark: int) -> np.ndarray:
        frames = self.received[mark:]
        if not frames:
            return np.zeros(0)
        return np.concatenate([decode_g711(p, pt) for p, pt in frames])

    async def listen(self, frames: int = 60) -> np.ndarray:
        """What arrives over the next `frames` 20 ms frames (waits for them)."""
        start = self.mark() + 5  # skip what was in flight
        await wait_until(lambda: self.mark() >= start + frames, timeout=20)
        return self.heard_since(start)[: frames * 160]

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        if self.transport is not None:
            self.transport.close()


def caller_scenario(media_port: int) -> str:
    """sipp: INVITE whose SDP points at our media endpoint, then wait for the BYE."""
    scenario = uac_scenario(wait_before_dtmf_ms=0, hold_ms=0, wait_for_bye=True)
    return scenario.replace("m=audio [media_port] ", f"m=audio {media_port} ")


class TonePhone(PyVoipAgentPhone):
    """A pyVoIP phone that auto-answers, speaks `frequency`, and records what it hears."""

    def __init__(self, server_port: int, username: str, password: str,
                 frequency: float) -> None:
        super().__init__(server_port, username, password)
        self.frequency = frequency
        self.frames: list[bytes] = []
        self._lock = threading.Lock()
        # pyVoIP takes 8-bit unsigned linear audio
        linear = tone_linear(frequency, 60.0, amplitude=60 * 256) // 256 + 128
        self.voice = linear.astype(np.uint8).tobytes()
        self.answered_at: list[float] = []

    def _on_call(self, call) -> None:  # type: ignore[no-untyped-def]  # pyVoIP thread
        self.calls.append(call)
        call.answer()
        self.answered_at.append(time.monotonic())
        for client in call.RTPClients:
            original = client.parse_packet

            def recording(packet: bytes, _orig=original) -> None:
                if len(packet) > 12 and packet[1] & 0x7F == 0:
                    with self._lock:
                        self.frames.append(packet[12:])
                self.packets_received += 1
                _orig(packet)

            client.parse_packet = recording
        call.write_audio(self.voice)

    def mark(self) -> int:
        with self._lock:
            return len(self.frames)

    async def listen(self, frames: int = 60) -> np.ndarray:
        start = self.mark() + 5
        await wait_until(lambda: self.mark() >= start + frames, timeout=20)
        with self._lock:
            chunk = self.frames[start:start + frames]
        return np.concatenate([decode_g711(p, 0) for p in chunk])
