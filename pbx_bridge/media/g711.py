"""G.711 µ-law (PCMU) and A-law (PCMA), computed once into lookup tables.

`audioop` is deprecated (removed in Python 3.13), so the codecs are written here
after ITU-T G.711.  Encoding uses a 65 536-entry table indexed by the 16-bit sample
(as unsigned), decoding a 256-entry table; PCMU<->PCMA transcoding of a frame is a
single `bytes.translate` call, cheap enough to run inside the RTP relay.
"""

from __future__ import annotations

from array import array

PCMU = 0  # RTP payload type of G.711 µ-law (RFC 3551)
PCMA = 8  # RTP payload type of G.711 A-law

_BIAS = 0x84
_CLIP = 32635


def _ulaw_encode_sample(sample: int) -> int:
    """Sun's reference µ-law encoder on the 14-bit sample (the form audioop used)."""
    value = sample >> 2  # arithmetic shift: rounds toward -inf like the C code
    if value < 0:
        value = -value
        mask = 0x7F
    else:
        mask = 0xFF
    value = min(value, _CLIP >> 2) + (_BIAS >> 2)
    segment = 0
    while segment < 8 and value >= (0x40 << segment):
        segment += 1
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _ulaw_decode_byte(byte: int) -> int:
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    sample = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -sample if sign else sample


def _alaw_encode_sample(sample: int) -> int:
    sign = 0x80 if sample >= 0 else 0
    if sample < 0:
        sample = -sample - 1 if sample > -32768 else 32767
    sample >>= 3  # 13-bit magnitude
    if sample >= 0x1000:
        sample = 0xFFF
    if sample < 32:
        code = sample >> 1
    else:
        exponent = sample.bit_length() - 5  # 1..7
        code = (exponent << 4) | ((sample >> exponent) & 0x0F)
    return (code | sign) ^ 0x55


def _alaw_decode_byte(byte: int) -> int:
    byte ^= 0x55
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    if exponent == 0:
        sample = (mantissa << 4) + 8
    else:
        sample = ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if sign else -sample


ULAW_DECODE: tuple[int, ...] = tuple(_ulaw_decode_byte(b) for b in range(256))
ALAW_DECODE: tuple[int, ...] = tuple(_alaw_decode_byte(b) for b in range(256))
_ULAW_ENCODE = bytes(_ulaw_encode_sample(s - 65536 if s >= 32768 else s) for s in range(65536))
_ALAW_ENCODE = bytes(_alaw_encode_sample(s - 65536 if s >= 32768 else s) for s in range(65536))
ULAW_TO_ALAW = bytes(_ALAW_ENCODE[ULAW_DECODE[b] & 0xFFFF] for b in range(256))
ALAW_TO_ULAW = bytes(_ULAW_ENCODE[ALAW_DECODE[b] & 0xFFFF] for b in range(256))
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _as_unsigned(samples: array) -> memoryview:
    """View signed 16-bit samples as unsigned table indexes (no copy)."""
    return memoryview(samples).cast("B").cast("H")


def encode_ulaw(samples: array) -> bytes:
    """16-bit signed linear samples -> µ-law bytes."""
    return bytes(map(_ULAW_ENCODE.__getitem__, _as_unsigned(samples)))


def encode_alaw(samples: array) -> bytes:
    return bytes(map(_ALAW_ENCODE.__getitem__, _as_unsigned(samples)))


def decode_ulaw(data: bytes) -> array:
    return array("h", (ULAW_DECODE[b] for b in data))


def decode_alaw(data: bytes) -> array:
    return array("h", (ALAW_DECODE[b] for b in data))


def ulaw_to_alaw(data: bytes) -> bytes:
    return data.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    return data.translate(ALAW_TO_ULAW)
