"""WAV reading, conversion to telephony audio and G.711 coding, in pure Python.

Prompts arrive as whatever admins record (8/16/22.05/44.1/48 kHz, 8/16/24/32-bit PCM,
float, µ-law or A-law WAV, mono or stereo). Backends want one thing: 8 kHz 16-bit mono
PCM (Asterisk plays it as `.wav`; the SIP core encodes it to G.711 per RTP packet).
Conversion runs once per prompt (see `ivr.prompts`), so clarity beats speed here; no
numpy, no audioop (gone in Python 3.13).
"""

from __future__ import annotations

import math
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TELEPHONY_RATE",
    "Audio",
    "AudioError",
    "alaw_decode",
    "alaw_encode",
    "read_wav",
    "to_telephony",
    "ulaw_decode",
    "ulaw_encode",
    "write_wav",
]

TELEPHONY_RATE = 8000
_PCM, _FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class AudioError(ValueError):
    """A file that is not a WAV we can read, with the reason."""


@dataclass
class Audio:
    """Mono or multi-channel audio as signed 16-bit samples (interleaved)."""

    rate: int
    channels: int
    samples: array  # array('h')

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.channels / self.rate if self.rate else 0.0


# ---- G.711 ---------------------------------------------------------------------------


def _ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    value = ((mantissa << 3) + 0x84) << exponent
    value -= 0x84
    return -value if sign else value


def _alaw_to_linear(byte: int) -> int:
    byte ^= 0x55
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    if exponent == 0:
        value = (mantissa << 4) + 8
    else:
        value = ((mantissa << 4) + 0x108) << (exponent - 1)
    return value if sign else -value


def _linear_to_ulaw(sample: int) -> int:
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _linear_to_alaw(sample: int) -> int:
    sign = 0x80 if sample >= 0 else 0
    if sample < 0:
        sample = -sample - 1
    sample = min(sample, 32767) >> 3  # 13-bit magnitude
    if sample < 32:
        encoded = sample >> 1
    else:
        exponent = 1
        value = sample >> 5
        while value > 1 and exponent < 7:
            value >>= 1
            exponent += 1
        encoded = (exponent << 4) | ((sample >> exponent) & 0x0F)
    return (sign | encoded) ^ 0x55


_ULAW_DEC = [_ulaw_to_linear(b) for b in range(256)]
_ALAW_DEC = [_alaw_to_linear(b) for b in range(256)]
_ULAW_ENC = bytes(_linear_to_ulaw(s - 32768) for s in range(65536))
_ALAW_ENC = bytes(_linear_to_alaw(s - 32768) for s in range(65536))


def ulaw_encode(pcm16: bytes) -> bytes:
    """16-bit little-endian PCM -> G.711 µ-law (PCMU)."""
    samples = array("h", pcm16)
    return bytes(_ULAW_ENC[s + 32768] for s in samples)


def alaw_encode(pcm16: bytes) -> bytes:
    """16-bit little-endian PCM -> G.711 A-law (PCMA)."""
    samples = array("h", pcm16)
    return bytes(_ALAW_ENC[s + 32768] for s in samples)


def ulaw_decode(data: bytes) -> bytes:
    return array("h", (_ULAW_DEC[b] for b in data)).tobytes()


def alaw_decode(data: bytes) -> bytes:
    return array("h", (_ALAW_DEC[b] for b in data)).tobytes()


# ---- WAV -----------------------------------------------------------------------------


def read_wav(path: Path | str) -> Audio:
    """Read a WAV file into 16-bit samples; raises AudioError with the reason."""
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError(f"{path}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    payload: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise AudioError(f"{path}: fmt chunk too short")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            payload = body
        pos += 8 + size + (size & 1)
    if fmt is None or payload is None:
        raise AudioError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1 or channels > 8 or rate < 1000 or rate > 192000:
        raise AudioError(f"{path}: unsupported layout ({channels} channels, {rate} Hz)")
    return Audio(rate, channels, _decode(payload, tag, bits, path))


def _decode(payload: bytes, tag: int, bits: int, path: Path | str) -> array:
    if tag == _PCM and bits == 16:
        return array("h", payload[: len(payload) - len(payload) % 2])
    if tag == _PCM and bits == 8:  # unsigned
        return array("h", ((b - 128) << 8 for b in payload))
    if tag == _PCM and bits == 24:
        n = len(payload) // 3
        return array(
            "h",
            (int.from_bytes(payload[3 * i : 3 * i + 3], "little", signed=True) >> 8
             for i in range(n)),
        )
    if tag == _PCM and bits == 32:
        ints = array("i", payload[: len(payload) - len(payload) % 4])
        return array("h", (v >> 16 for v in ints))
    if tag == _FLOAT and bits in (32, 64):
        width = bits // 8
        floats = array("f" if bits == 32 else "d", payload[: len(payload) - len(payload) % width])
        return array("h", (max(-32768, min(32767, int(v * 32767))) for v in floats))
    if tag == _ULAW and bits == 8:
        return array("h", ulaw_decode(payload))
    if tag == _ALAW and bits == 8:
        return array("h", alaw_decode(payload))
    raise AudioError(f"{path}: unsupported encoding (format tag {tag}, {bits} bits)")


def write_wav(path: Path | str, audio: Audio) -> None:
    """Write 16-bit PCM WAV."""
    raw = audio.samples.tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + len(raw), b"WAVE", b"fmt ", 16, _PCM, audio.channels, audio.rate,
        audio.rate * audio.channels * 2, audio.channels * 2, 16, b"data", len(raw),
    )
    Path(path).write_bytes(header + raw)


# ---- conversion ----------------------------------------------------------------------


def _mono(audio: Audio) -> array:
    if audio.channels == 1:
        return audio.samples
    c = audio.channels
    s = audio.samples
    return array("h", (sum(s[i : i + c]) // c for i in range(0, len(s) - c + 1, c)))


def _resample(samples: array, rate: int, target: int) -> array:
    """Windowed-sinc resampling, evaluated only at output positions (band-limited to
    the lower Nyquist so 16/44.1/48 kHz prompts do not alias into the phone band)."""
    if rate == target or not samples:
        return array("h", samples)
    ratio = rate / target
    cutoff = min(1.0, 1.0 / ratio) * 0.9  # fraction of input Nyquist
    half = 8 if ratio <= 1 else int(8 * ratio)
    n_out = int(len(samples) / ratio)
    taps_cache: dict[int, list[float]] = {}
    out = array("h", bytes(2 * n_out))
    steps = 64  # fractional positions quantised: cheap and inaudible at 8 kHz
    for j in range(n_out):
        pos = j * ratio
        base = int(pos)
        frac = int((pos - base) * steps)
        taps = taps_cache.get(frac)
        if taps is None:
            taps = []
            f = frac / steps
            for k in range(-half + 1, half + 1):
                x = k - f
                sinc = cutoff if x == 0 else math.sin(math.pi * cutoff * x) / (math.pi * x)
                window = 0.5 + 0.5 * math.cos(math.pi * x / half) if abs(x) < half else 0.0
                taps.append(sinc * window)
            taps_cache[frac] = taps
        acc = 0.0
        start = base - half + 1
        for i, t in enumerate(taps):
            idx = start + i
            if 0 <= idx < len(samples):
                acc += samples[idx] * t
        out[j] = max(-32768, min(32767, round(acc)))
    return out


def to_telephony(audio: Audio) -> Audio:
    """Any Audio -> 8 kHz 16-bit mono."""
    return Audio(TELEPHONY_RATE, 1, _resample(_mono(audio), audio.rate, TELEPHONY_RATE))
