"""Prompt files: WAV -> 8 kHz G.711, converted once and cached.

Prompts arrive as WAV files of various shapes (8 or 16 kHz, 8 or 16 bit, mono or
stereo).  Each file is converted the first time it is played into both PCMU and
PCMA at 8 kHz, and cached by path and modification time, so a thousand callers
hearing the same menu cost one conversion.
"""

from __future__ import annotations

import logging
import sys
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

from pbx_bridge.media import g711
from pbx_bridge.media.g711 import PCMA, PCMU

log = logging.getLogger(__name__)

FRAME_SAMPLES = 160  # 20 ms at 8 kHz


class AudioFormatError(ValueError):
    """A prompt file that is not a WAV we can convert."""


@dataclass(frozen=True)
class EncodedAudio:
    """The same audio in both G.711 laws, ready to be sliced into 160-byte frames."""

    pcmu: bytes
    pcma: bytes

    def for_codec(self, payload_type: int) -> bytes:
        return self.pcma if payload_type == PCMA else self.pcmu

    @property
    def seconds(self) -> float:
        return len(self.pcmu) / 8000


def read_wav_as_8k_linear(path: Path) -> array:
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            if wav.getnframes() > rate * 3600:
                raise AudioFormatError(f"{path}: longer than one hour")
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(f"{path}: {exc}") from exc
    if width == 1:
        samples = array("h", ((b - 128) << 8 for b in raw))
    elif width == 2:
        samples = array("h")
        samples.frombytes(raw[: len(raw) - len(raw) % 2])
        if sys.byteorder == "big":
            samples.byteswap()
    else:
        raise AudioFormatError(f"{path}: {width * 8}-bit samples are not supported")
    if channels == 2:
        samples = _average_pairs(samples)  # stereo -> mono
    elif channels != 1:
        raise AudioFormatError(f"{path}: {channels} channels are not supported")
    if rate == 16000:
        # average pairs: a crude low-pass before decimation, enough for speech prompts
        samples = _average_pairs(samples)
    elif rate != 8000:
        raise AudioFormatError(f"{path}: {rate} Hz is not supported (8000 or 16000)")
    return samples


def _average_pairs(samples: array) -> array:
    even, odd = samples[0::2], samples[1::2]
    n = min(len(even), len(odd))
    return array("h", map(_mean, even[:n], odd[:n]))


def _mean(a: int, b: int) -> int:
    return (a + b) >> 1


def encode_linear(samples: array) -> EncodedAudio:
    return EncodedAudio(g711.encode_ulaw(samples), g711.encode_alaw(samples))


class AudioCache:
    """Converted prompt files keyed by (path, mtime)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, float], EncodedAudio] = {}

    def load(self, path: Path) -> EncodedAudio:
        stat = path.stat()
        key = (str(path), stat.st_mtime)
        audio = self._cache.get(key)
        if audio is None:
            audio = encode_linear(read_wav_as_8k_linear(path))
            self._cache[key] = audio
        return audio


class PromptDirectory:
    """Default prompt resolver: `<root>/<language>/<key>.wav`, then `<root>/<key>.wav`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, prompt: str, language: str) -> Path | None:
        if ".." in prompt.split("/") or prompt.startswith("/"):
            return None
        for candidate in (self.root / language / f"{prompt}.wav", self.root / f"{prompt}.wav"):
            if candidate.is_file():
                return candidate
        return None


def tone(frequency: float, seconds: float, amplitude: int = 8000) -> EncodedAudio:
    """A sine tone (used for beeps and test prompts)."""
    import math

    n = int(8000 * seconds)
    samples = array("h", (int(amplitude * math.sin(2 * math.pi * frequency * i / 8000))
                          for i in range(n)))
    return encode_linear(samples)


__all__ = ["PCMA", "PCMU"]
