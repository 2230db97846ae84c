"""Tones in, tones out: who hears whom, measured with an FFT.

Each party of a test call sends its own sine tone; what a party receives is decoded
and its spectrum says which tones (which parties) it hears."""

from __future__ import annotations

import math

import numpy as np

from pbx_bridge.media.g711 import ALAW_DECODE, PCMA, ULAW_DECODE

RATE = 8000


def tone_linear(frequency: float, seconds: float, amplitude: int = 6000) -> np.ndarray:
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    return (amplitude * np.sin(2 * math.pi * frequency * t)).astype(np.int16)


def decode_g711(payload: bytes, payload_type: int = 0) -> np.ndarray:
    table = np.array(ALAW_DECODE if payload_type == PCMA else ULAW_DECODE, dtype=np.int32)
    return table[np.frombuffer(payload, dtype=np.uint8)]


def tone_levels(samples: np.ndarray, frequencies: list[float]) -> dict[float, float]:
    """Each frequency's share of the signal's energy (0..1), over a Hann window; a
    tone that is present scores well above 0.1, an absent one close to 0."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < 800:
        return dict.fromkeys(frequencies, 0.0)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    total = spectrum.sum() or 1.0
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    out = {}
    for f in frequencies:
        band = (freqs > f - 15) & (freqs < f + 15)
        out[f] = float(spectrum[band].sum() / total)
    return out


def hears(samples: np.ndarray, frequency: float, threshold: float = 0.05) -> bool:
    return tone_levels(samples, [frequency])[frequency] > threshold
