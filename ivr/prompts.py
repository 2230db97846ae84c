"""Prompts: per-language files converted once and cached, speech synthesis when a file
is missing, and saying numbers, queue positions and durations in Dutch and English.

Layout: `<source_dir>/<language>/<key>.wav` where a key may contain `/`
(`digits/3` -> `nl/digits/3.wav`). `PromptLibrary.resolve(key, language)` returns an
8 kHz 16-bit mono WAV in `<cache_dir>/<language>/<key>.wav`, converting the source the
first time (and again only when the source is newer). When no source file exists and
espeak-ng is installed, the key's text (built-in catalogue below, or `texts=`) is
synthesised into `<cache_dir>/tts/<language>/<key>.wav`, once.

Saying things is split in two: `say_number`, `say_position` and `say_duration` return
an `Utterance` with the sequence of prompt keys a backend plays (`queue/about`,
`digits/4`, `queue/minutes`) and the same sentence as text (for TTS and for the case
timeline). Dutch grammar is honoured: "eenentwintig" (units before tens), "honderd"
without "een", "1 minuut" / "4 minuten", "uur" without plural.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from core.numbers import is_ascii_digits
from ivr.audio import AudioError, read_wav, to_telephony, write_wav

__all__ = [
    "LANGUAGES",
    "TEXTS",
    "PromptLibrary",
    "Utterance",
    "key_for_dtmf",
    "number_keys",
    "number_words",
    "say_duration",
    "say_number",
    "say_position",
]

log = logging.getLogger(__name__)

LANGUAGES = ("en", "nl")
_KEY_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/")


@dataclass(frozen=True)
class Utterance:
    keys: tuple[str, ...]
    text: str


# ---- numbers -------------------------------------------------------------------------

_EN_SMALL = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_EN_TENS = {30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy",
            80: "eighty", 90: "ninety", 20: "twenty"}
_NL_SMALL = (
    "nul één twee drie vier vijf zes zeven acht negen tien elf twaalf dertien veertien "
    "vijftien zestien zeventien achttien negentien twintig"
).split()
_NL_TENS = {20: "twintig", 30: "dertig", 40: "veertig", 50: "vijftig", 60: "zestig",
            70: "zeventig", 80: "tachtig", 90: "negentig"}
_NL_UNIT_IN_COMPOUND = {1: "een", 2: "twee", 3: "drie", 4: "vier", 5: "vijf", 6: "zes",
                        7: "zeven", 8: "acht", 9: "negen"}
_MAX_NUMBER = 999_999


def _check(n: int, language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"no number rules for language {language!r} (have {LANGUAGES})")
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= _MAX_NUMBER:
        raise ValueError(f"can only say whole numbers 0..{_MAX_NUMBER}, not {n!r}")


def number_keys(n: int, language: str) -> list[str]:
    """Prompt keys that say `n` (digits/0..20, digits/30..90, digits/hundred,
    digits/thousand, digits/and)."""
    _check(n, language)
    if n <= 20:
        return [f"digits/{n}"]
    out: list[str] = []
    thousands, rest = divmod(n, 1000)
    if thousands:
        if not (language == "nl" and thousands == 1):
            out += number_keys(thousands, language)
        out.append("digits/thousand")
    hundreds, rest = divmod(rest, 100)
    if hundreds:
        if not (language == "nl" and hundreds == 1):
            out.append(f"digits/{hundreds}")
        out.append("digits/hundred")
    if rest == 0:
        return out
    if rest <= 20:
        return [*out, f"digits/{rest}"]
    tens, unit = divmod(rest, 10)
    if unit == 0:
        return [*out, f"digits/{tens * 10}"]
    if language == "nl":  # eenentwintig: unit, "en", tens
        return [*out, f"digits/{unit}", "digits/and", f"digits/{tens * 10}"]
    return [*out, f"digits/{tens * 10}", f"digits/{unit}"]


def number_words(n: int, language: str) -> str:
    """`n` written out: 'twenty-one', 'eenentwintig', 'tweehonderdvijf'."""
    _check(n, language)
    return _nl_words(n) if language == "nl" else _en_words(n)


def _en_words(n: int) -> str:
    if n <= 20:
        return _EN_SMALL[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _EN_TENS[tens * 10] + (f"-{_EN_SMALL[unit]}" if unit else "")
    if n < 1000:
        h, rest = divmod(n, 100)
        return f"{_EN_SMALL[h]} hundred" + (f" {_en_words(rest)}" if rest else "")
    t, rest = divmod(n, 1000)
    return f"{_en_words(t)} thousand" + (f" {_en_words(rest)}" if rest else "")


def _nl_words(n: int, compound: bool = False) -> str:
    if n <= 20:
        if compound and n == 1:
            return "een"
        return _NL_SMALL[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        if not unit:
            return _NL_TENS[tens * 10]
        unit_word = _NL_UNIT_IN_COMPOUND[unit]
        joiner = "ën" if unit_word.endswith("e") else "en"  # tweeëntwintig, drieëntwintig
        return f"{unit_word}{joiner}{_NL_TENS[tens * 10]}"
    if n < 1000:
        h, rest = divmod(n, 100)
        head = "honderd" if h == 1 else f"{_nl_words(h, True)}honderd"
        return head + (_nl_words(rest, True) if rest else "")
    t, rest = divmod(n, 1000)
    head = "duizend" if t == 1 else f"{_nl_words(t, True)}duizend"
    return head + (f" {_nl_words(rest, True)}" if rest else "")


def say_number(n: int, language: str) -> Utterance:
    return Utterance(tuple(number_keys(n, language)), number_words(n, language))


def say_position(position: int, language: str) -> Utterance:
    """'You are number 3 in line.' / 'U bent nummer 3 in de rij.'; 1 is 'next'."""
    _check(position, language)
    if position < 1:
        raise ValueError(f"a position in line starts at 1, not {position}")
    if position == 1:
        text = "You are next in line." if language == "en" else "U bent de volgende."
        return Utterance(("queue/you_are_next",), text)
    words = number_words(position, language)
    text = (f"You are number {words} in line." if language == "en"
            else f"U bent nummer {words} in de rij.")
    keys = ("queue/you_are_number", *number_keys(position, language), "queue/in_line")
    return Utterance(keys, text)


def say_duration(seconds: float, language: str) -> Utterance:
    """An estimated wait, rounded as people say it: 'less than a minute', 'about 1
    minute', 'about 4 minutes', 'about 1 hour and 15 minutes' (quarter-ish: to 5 min);
    Dutch: 'minder dan een minuut', 'ongeveer 1 minuut', 'ongeveer 4 minuten',
    'ongeveer 2 uur en 5 minuten'."""
    _check(0, language)
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ValueError(f"a duration must be a non-negative number of seconds, not {seconds}")
    en = language == "en"
    if seconds < 45:
        text = "less than a minute" if en else "minder dan een minuut"
        return Utterance(("queue/less_than_a_minute",), text)
    minutes = max(1, int(seconds / 60 + 0.5))
    about_key, about = "queue/about", ("about" if en else "ongeveer")
    if minutes < 60:
        unit_key = "queue/minute" if minutes == 1 else "queue/minutes"
        unit = ("minute" if minutes == 1 else "minutes") if en else (
            "minuut" if minutes == 1 else "minuten")
        return Utterance(
            (about_key, *number_keys(minutes, language), unit_key),
            f"{about} {number_words(minutes, language)} {unit}",
        )
    total = round(minutes / 5.0) * 5
    hours, mins = divmod(total, 60)
    hour_key = "queue/hour" if hours == 1 else "queue/hours"
    hour_word = ("hour" if hours == 1 else "hours") if en else "uur"
    keys = [about_key, *number_keys(hours, language), hour_key]
    text = f"{about} {number_words(hours, language)} {hour_word}"
    if mins:
        keys += ["queue/and", *number_keys(mins, language), "queue/minutes"]
        text += f" {'and' if en else 'en'} {number_words(mins, language)} " + (
            "minutes" if en else "minuten")
    return Utterance(tuple(keys), text)


def key_for_dtmf(digit: str) -> str:
    """The prompt key that says a DTMF key: digits/0..9, digits/star, digits/hash."""
    if digit == "*":
        return "digits/star"
    if digit == "#":
        return "digits/hash"
    if len(digit) == 1 and is_ascii_digits(digit):
        return f"digits/{digit}"
    raise ValueError(f"{digit!r} is not a DTMF key")


# ---- the built-in text catalogue (TTS fallback and the demo prompts) ----------------

_BASE_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "welcome": "Welcome to Centrale.",
        "choose_language": "Voor Nederlands, toets 1. For English, press 2.",
        "menu_main": "For sales, press 1. For support, press 2.",
        "closed": "We are closed right now. Please call again during our opening hours.",
        "holiday": "We are closed today for a public holiday.",
        "invalid_option": "That is not a valid option.",
        "no_input": "We did not hear your choice.",
        "invalid_entry": "That number is not valid.",
        "enter_customer_number": "Please enter your customer number, followed by hash.",
        "enter_order_number": "Please enter your order number, followed by hash.",
        "leave_message": "Please leave your message after the tone.",
        "message_saved": "Thank you, your message has been saved.",
        "callback_confirmed": "Thank you. We will call you back as soon as possible.",
        "transferring": "Please hold while we transfer your call.",
        "goodbye": "Goodbye.",
        "queue/all_busy": "All our colleagues are busy. Please hold.",
        "queue/you_are_number": "You are number",
        "queue/in_line": "in line.",
        "queue/you_are_next": "You are next in line.",
        "queue/wait_time_is": "The expected waiting time is",
        "queue/about": "about",
        "queue/less_than_a_minute": "less than a minute",
        "queue/minute": "minute",
        "queue/minutes": "minutes",
        "queue/hour": "hour",
        "queue/hours": "hours",
        "queue/and": "and",
        "queue/callback_offer": "To be called back instead of waiting, press",
        "queue/voicemail_offer": "To leave a message, press",
        "digits/hundred": "hundred",
        "digits/thousand": "thousand",
        "digits/and": "and",
        "digits/star": "star",
        "digits/hash": "hash",
    },
    "nl": {
        "welcome": "Welkom bij Centrale.",
        "choose_language": "Voor Nederlands, toets 1. For English, press 2.",
        "menu_main": "Voor verkoop, toets 1. Voor klantenservice, toets 2.",
        "closed": "Wij zijn op dit moment gesloten. Belt u ons tijdens onze openingstijden.",
        "holiday": "Wij zijn vandaag gesloten vanwege een feestdag.",
        "invalid_option": "Dat is geen geldige keuze.",
        "no_input": "Wij hebben uw keuze niet gehoord.",
        "invalid_entry": "Dat nummer is niet geldig.",
        "enter_customer_number": "Toets uw klantnummer, gevolgd door een hekje.",
        "enter_order_number": "Toets uw ordernummer, gevolgd door een hekje.",
        "leave_message": "Spreek na de toon uw bericht in.",
        "message_saved": "Dank u wel, uw bericht is opgeslagen.",
        "callback_confirmed": "Dank u wel. Wij bellen u zo snel mogelijk terug.",
        "transferring": "Een ogenblik, wij verbinden u door.",
        "goodbye": "Tot ziens.",
        "queue/all_busy": "Al onze medewerkers zijn in gesprek. Een ogenblik geduld.",
        "queue/you_are_number": "U bent nummer",
        "queue/in_line": "in de rij.",
        "queue/you_are_next": "U bent de volgende.",
        "queue/wait_time_is": "De verwachte wachttijd is",
        "queue/about": "ongeveer",
        "queue/less_than_a_minute": "minder dan een minuut",
        "queue/minute": "minuut",
        "queue/minutes": "minuten",
        "queue/hour": "uur",
        "queue/hours": "uur",
        "queue/and": "en",
        "queue/callback_offer": "Wilt u liever teruggebeld worden, toets",
        "queue/voicemail_offer": "Om een bericht in te spreken, toets",
        "digits/hundred": "honderd",
        "digits/thousand": "duizend",
        "digits/and": "en",
        "digits/star": "sterretje",
        "digits/hash": "hekje",
    },
}


def _catalogue() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for lang, texts in _BASE_TEXTS.items():
        merged = dict(texts)
        for n in [*range(21), *range(30, 100, 10)]:
            merged[f"digits/{n}"] = number_words(n, lang)
        out[lang] = merged
    return out


TEXTS: dict[str, dict[str, str]] = _catalogue()


# ---- the library ---------------------------------------------------------------------


def _valid_key(key: str) -> bool:
    return (
        bool(key)
        and set(key) <= _KEY_OK
        and not key.startswith("/")
        and ".." not in key.split("/")
        and "" not in key.split("/")
    )


def _valid_language(language: str) -> bool:
    return bool(language) and language.replace("-", "").replace("_", "").isalnum()


class PromptLibrary:
    """Finds, converts and caches prompt audio; synthesises what is missing.

    `resolve` does file work and may run espeak-ng: call it from a thread in async code
    (`await library.aresolve(...)`) or warm the cache at startup with `prepare`.
    """

    def __init__(
        self,
        source_dir: Path | str | None,
        cache_dir: Path | str,
        *,
        synthesize: bool = True,
        espeak: str | None = None,
        texts: Mapping[str, Mapping[str, str]] | None = None,
        voices: Mapping[str, str] | None = None,
    ) -> None:
        self.source_dir = Path(source_dir) if source_dir is not None else None
        self.cache_dir = Path(cache_dir)
        self.espeak = espeak or shutil.which("espeak-ng")
        self.synthesize = synthesize and self.espeak is not None
        self.texts: dict[str, dict[str, str]] = {k: dict(v) for k, v in TEXTS.items()}
        for lang, extra in (texts or {}).items():
            self.texts.setdefault(lang, {}).update(extra)
        self.voices = {"en": "en", "nl": "nl", **(voices or {})}

    def source(self, key: str, language: str) -> Path | None:
        """The admin's recording for key/language, if any."""
        if self.source_dir is None or not (_valid_key(key) and _valid_language(language)):
            return None
        for ext in (".wav", ".WAV"):
            path = self.source_dir / language / f"{key}{ext}"
            if path.is_file():
                return path
        return None

    def text(self, key: str, language: str) -> str | None:
        return self.texts.get(language, {}).get(key)

    def resolve(self, key: str, language: str) -> Path | None:
        """An 8 kHz 16-bit mono WAV for key/language, or None when there is neither a
        recording nor a way to synthesise it."""
        if not (_valid_key(key) and _valid_language(language)):
            log.warning("refusing prompt key %r / language %r", key, language)
            return None
        src = self.source(key, language)
        if src is not None:
            return self._converted(src, self.cache_dir / language / f"{key}.wav")
        if self.synthesize:
            text = self.text(key, language)
            if text:
                return self._synthesised(text, language,
                                         self.cache_dir / "tts" / language / f"{key}.wav")
        log.warning("prompt %s missing for language %s", key, language)
        return None

    async def aresolve(self, key: str, language: str) -> Path | None:
        return await asyncio.to_thread(self.resolve, key, language)

    def pcm(self, key: str, language: str) -> bytes | None:
        """Raw 8 kHz 16-bit little-endian mono samples (what RTP encoders take)."""
        path = self.resolve(key, language)
        return None if path is None else read_wav(path).samples.tobytes()

    def prepare(self, keys: Iterable[str], languages: Iterable[str]) -> dict[str, list[str]]:
        """Convert/synthesise up front; returns {language: [keys still missing]}."""
        missing: dict[str, list[str]] = {}
        langs = list(languages)
        for key in keys:
            for lang in langs:
                if self.resolve(key, lang) is None:
                    missing.setdefault(lang, []).append(key)
        return missing

    def _converted(self, src: Path, target: Path) -> Path | None:
        if target.is_file() and target.stat().st_mtime >= src.stat().st_mtime:
            return target
        try:
            audio = to_telephony(read_wav(src))
        except (AudioError, OSError) as exc:
            log.error("cannot convert prompt %s: %s", src, exc)
            return None
        _atomic_write(target, lambda tmp: write_wav(tmp, audio))
        return target

    def _synthesised(self, text: str, language: str, target: Path) -> Path | None:
        if target.is_file():
            return target
        assert self.espeak is not None
        voice = self.voices.get(language, language)
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "tts.wav"
            try:
                subprocess.run(
                    [self.espeak, "-v", voice, "-s", "150", "-w", str(raw), "--", text],
                    check=True, capture_output=True, timeout=30,
                )
                audio = to_telephony(read_wav(raw))
            except (subprocess.SubprocessError, OSError, AudioError) as exc:
                log.error("espeak-ng could not say %r in %s: %s", text, language, exc)
                return None
        _atomic_write(target, lambda tmp: write_wav(tmp, audio))
        return target


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Write via a temp file and rename, so concurrent readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp_name))
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
