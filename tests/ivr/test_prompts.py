"""Prompts: saying numbers/positions/durations in nl and en; WAV conversion and caching;
espeak-ng synthesis of missing prompts."""

from __future__ import annotations

import itertools
import math
import os
import shutil
import struct
from array import array
from pathlib import Path

import pytest

from ivr.audio import (
    Audio,
    AudioError,
    alaw_decode,
    alaw_encode,
    read_wav,
    to_telephony,
    ulaw_decode,
    ulaw_encode,
    write_wav,
)
from ivr.prompts import (
    PromptLibrary,
    key_for_dtmf,
    number_keys,
    number_words,
    say_duration,
    say_position,
)

# ---- saying things ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "nl", "en"),
    [
        (0, "nul", "zero"),
        (1, "één", "one"),
        (13, "dertien", "thirteen"),
        (20, "twintig", "twenty"),
        (21, "eenentwintig", "twenty-one"),
        (22, "tweeëntwintig", "twenty-two"),
        (23, "drieëntwintig", "twenty-three"),
        (48, "achtenveertig", "forty-eight"),
        (80, "tachtig", "eighty"),
        (100, "honderd", "one hundred"),
        (115, "honderdvijftien", "one hundred fifteen"),
        (342, "driehonderdtweeënveertig", "three hundred forty-two"),
        (1000, "duizend", "one thousand"),
        (2026, "tweeduizend zesentwintig", "two thousand twenty-six"),
    ],
)
def test_number_words(n, nl, en):
    assert number_words(n, "nl") == nl
    assert number_words(n, "en") == en


def test_number_keys_follow_each_languages_order():
    assert number_keys(7, "en") == ["digits/7"]
    assert number_keys(21, "en") == ["digits/20", "digits/1"]
    assert number_keys(21, "nl") == ["digits/1", "digits/and", "digits/20"]
    assert number_keys(100, "nl") == ["digits/hundred"]  # "honderd", never "een honderd"
    assert number_keys(100, "en") == ["digits/1", "digits/hundred"]
    assert number_keys(230, "en") == ["digits/2", "digits/hundred", "digits/30"]
    assert number_keys(1015, "nl") == ["digits/thousand", "digits/15"]


def test_positions():
    three_en, three_nl = say_position(3, "en"), say_position(3, "nl")
    assert three_en.keys == ("queue/you_are_number", "digits/3", "queue/in_line")
    assert three_en.text == "You are number three in line."
    assert three_nl.keys == three_en.keys  # same pieces, recorded per language
    assert three_nl.text == "U bent nummer drie in de rij."
    assert say_position(1, "nl").text == "U bent de volgende."
    assert say_position(1, "en").keys == ("queue/you_are_next",)
    assert say_position(25, "nl").keys[1:4] == ("digits/5", "digits/and", "digits/20")


@pytest.mark.parametrize(
    ("seconds", "en", "nl"),
    [
        (0, "less than a minute", "minder dan een minuut"),
        (44, "less than a minute", "minder dan een minuut"),
        (50, "about one minute", "ongeveer één minuut"),
        (89, "about one minute", "ongeveer één minuut"),
        (240, "about four minutes", "ongeveer vier minuten"),
        (250, "about four minutes", "ongeveer vier minuten"),
        (1260, "about twenty-one minutes", "ongeveer eenentwintig minuten"),
        (3600, "about one hour", "ongeveer één uur"),
        (4500, "about one hour and fifteen minutes", "ongeveer één uur en vijftien minuten"),
        (7200, "about two hours", "ongeveer twee uur"),
    ],
)
def test_durations(seconds, en, nl):
    assert say_duration(seconds, "en").text == en
    assert say_duration(seconds, "nl").text == nl


def test_duration_keys():
    assert say_duration(240, "nl").keys == ("queue/about", "digits/4", "queue/minutes")
    assert say_duration(60, "en").keys == ("queue/about", "digits/1", "queue/minute")
    assert say_duration(7200, "nl").keys == ("queue/about", "digits/2", "queue/hours")


def test_saying_refuses_what_it_cannot_say():
    with pytest.raises(ValueError, match="language 'de'"):
        say_position(3, "de")
    with pytest.raises(ValueError, match=r"0\.\.999999"):
        number_words(-1, "en")
    with pytest.raises(ValueError, match="starts at 1"):
        say_position(0, "en")
    with pytest.raises(ValueError, match="non-negative"):
        say_duration(float("nan"), "en")
    with pytest.raises(ValueError, match="DTMF"):
        key_for_dtmf("12")
    assert key_for_dtmf("#") == "digits/hash" and key_for_dtmf("5") == "digits/5"


# ---- audio -----------------------------------------------------------------------------


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> list[float]:
    return [amp * math.sin(2 * math.pi * freq * i / rate) for i in range(int(rate * seconds))]


def write_raw_wav(path: Path, *, rate: int, channels: int, bits: int, tag: int,
                  frames: bytes, extensible: bool = False) -> None:
    block = channels * bits // 8
    fmt_tag = 0xFFFE if extensible else tag
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    if extensible:
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + bytes(14)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd chunk with pad byte
    body += b"data" + struct.pack("<I", len(frames)) + frames
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def encode(samples: list[float], fmt: str, channels: int) -> tuple[bytes, int, int]:
    """(frames, bits, tag) for a float signal in the given sample format."""
    inter = [s for s in samples for _ in range(channels)]
    if fmt == "pcm16":
        return array("h", (int(s * 32767) for s in inter)).tobytes(), 16, 1
    if fmt == "pcm8":
        return bytes(int(s * 127) + 128 for s in inter), 8, 1
    if fmt == "float32":
        return array("f", inter).tobytes(), 32, 3
    pcm = array("h", (int(s * 32767) for s in inter)).tobytes()
    if fmt == "ulaw":
        return ulaw_encode(pcm), 8, 7
    return alaw_encode(pcm), 8, 6


def crossings(samples: array) -> int:
    return sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))


@pytest.mark.parametrize(
    ("rate", "channels", "fmt", "extensible"),
    [
        (8000, 1, "pcm16", False),
        (8000, 1, "pcm8", False),
        (16000, 1, "pcm16", False),
        (16000, 2, "pcm16", False),
        (16000, 1, "pcm8", False),
        (44100, 2, "pcm16", False),
        (48000, 1, "float32", True),
        (8000, 1, "ulaw", False),
        (8000, 1, "alaw", False),
        (22050, 2, "pcm16", True),
    ],
)
def test_any_common_wav_becomes_8k_16bit_mono(tmp_path, rate, channels, fmt, extensible):
    frames, bits, tag = encode(tone(440, rate, 0.5), fmt, channels)
    src = tmp_path / "in.wav"
    write_raw_wav(src, rate=rate, channels=channels, bits=bits, tag=tag, frames=frames,
                  extensible=extensible)
    out = to_telephony(read_wav(src))
    assert out.rate == 8000 and out.channels == 1
    assert abs(len(out.samples) - 4000) <= 2
    # a 440 Hz tone keeps its pitch (~440 crossings in 0.5 s) and its level (~0.5)
    assert 430 <= crossings(out.samples) <= 450
    peak = max(abs(s) for s in out.samples[200:-200]) / 32767
    assert 0.4 < peak < 0.6, peak


def test_resampling_filters_what_a_phone_cannot_carry(tmp_path):
    src = tmp_path / "hi.wav"
    frames, bits, tag = encode(tone(6000, 16000, 0.5), "pcm16", 1)
    write_raw_wav(src, rate=16000, channels=1, bits=bits, tag=tag, frames=frames)
    out = to_telephony(read_wav(src))
    peak = max(abs(s) for s in out.samples[200:-200]) / 32767
    assert peak < 0.05, f"6 kHz must not alias into the phone band (peak {peak:.3f})"


def test_g711_round_trip_and_known_codes():
    assert ulaw_encode(b"\x00\x00") == b"\xff" and alaw_encode(b"\x00\x00") == b"\xd5"
    pcm = array("h", range(-32768, 32767, 97))
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        back = array("h", dec(enc(pcm.tobytes())))
        for a, b in zip(pcm, back, strict=True):
            assert abs(a - b) <= max(16, abs(a) // 14), (enc.__name__, a, b)


def test_not_a_wav_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"ID3 this is an mp3")
    with pytest.raises(AudioError, match="not a RIFF/WAVE"):
        read_wav(bad)
    odd = tmp_path / "odd.wav"
    write_raw_wav(odd, rate=8000, channels=1, bits=4, tag=0x11, frames=b"\x00" * 10)
    with pytest.raises(AudioError, match="unsupported encoding"):
        read_wav(odd)


# ---- the library -----------------------------------------------------------------------


def make_source(root: Path, lang: str, key: str, rate: int = 16000) -> Path:
    path = root / lang / f"{key}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = array("h", (int(8000 * s) for s in tone(300, rate, 0.2, 1.0)))
    write_wav(path, Audio(rate, 1, samples))
    return path


def test_library_converts_once_and_again_when_the_source_changes(tmp_path):
    src = make_source(tmp_path / "prompts", "nl", "digits/3")
    lib = PromptLibrary(tmp_path / "prompts", tmp_path / "cache", synthesize=False)
    out = lib.resolve("digits/3", "nl")
    assert out == tmp_path / "cache" / "nl" / "digits" / "3.wav"
    audio = read_wav(out)
    assert (audio.rate, audio.channels) == (8000, 1)
    first = out.stat().st_mtime_ns
    os.utime(out, ns=(first - 10**9, first - 10**9))  # pretend the cache is older...
    os.utime(src, ns=(first - 2 * 10**9, first - 2 * 10**9))  # ...but newer than src
    stamp = out.stat().st_mtime_ns
    assert lib.resolve("digits/3", "nl") == out and out.stat().st_mtime_ns == stamp
    os.utime(src, ns=(first + 10**9, first + 10**9))  # the admin replaced the recording
    lib.resolve("digits/3", "nl")
    assert out.stat().st_mtime_ns != stamp
    assert len(lib.pcm("digits/3", "nl") or b"") == 2 * len(audio.samples)


def test_library_refuses_bad_keys_and_survives_bad_files(tmp_path):
    (tmp_path / "p" / "en").mkdir(parents=True)
    (tmp_path / "p" / "en" / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    lib = PromptLibrary(tmp_path / "p", tmp_path / "c", synthesize=False)
    assert lib.resolve("broken", "en") is None
    assert lib.resolve("../../etc/passwd", "en") is None
    assert lib.resolve("welcome", "../x") is None
    assert lib.resolve("welcome", "en") is None  # missing, and no synthesis
    assert lib.prepare(["welcome", "broken"], ["en"]) == {"en": ["welcome", "broken"]}


def test_missing_prompt_is_synthesised_once_with_espeak(tmp_path):
    # espeak-ng is a documented dependency of the voice image (Debian package espeak-ng)
    assert shutil.which("espeak-ng"), "install espeak-ng (apt-get install espeak-ng)"
    lib = PromptLibrary(tmp_path / "none", tmp_path / "cache")
    out = lib.resolve("queue/about", "nl")
    assert out == tmp_path / "cache" / "tts" / "nl" / "queue" / "about.wav"
    audio = read_wav(out)
    assert audio.rate == 8000 and audio.seconds > 0.2
    stamp = out.stat().st_mtime_ns
    assert lib.resolve("queue/about", "nl") == out and out.stat().st_mtime_ns == stamp
    # a key without text cannot be synthesised
    assert lib.resolve("no_such_prompt", "nl") is None
    # a recording wins over synthesis
    make_source(tmp_path / "none", "nl", "queue/about")
    assert lib.resolve("queue/about", "nl") == tmp_path / "cache" / "nl" / "queue" / "about.wav"
