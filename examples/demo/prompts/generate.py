"""Regenerate the demo's prompt recordings with espeak-ng (and sox, when installed).

    .venv/bin/python examples/demo/prompts/generate.py

Writes `<lang>/<key>.wav` next to this file for every key in DEMO_KEYS, as 8 kHz 16-bit
mono WAV (what the IVR caches anyway), with leading/trailing silence trimmed so the
files stay small. Real sites replace these with studio recordings of the same keys.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from ivr.audio import read_wav, to_telephony, write_wav  # noqa: E402
from ivr.prompts import TEXTS  # noqa: E402

LANGUAGES = ("nl", "en")
DEMO_KEYS = [
    "welcome", "choose_language", "menu_main", "closed", "holiday", "invalid_option",
    "no_input", "invalid_entry", "enter_customer_number", "enter_order_number",
    "leave_message", "message_saved", "callback_confirmed", "transferring", "goodbye",
    "queue/all_busy", "queue/you_are_number", "queue/in_line", "queue/you_are_next",
    "queue/wait_time_is", "queue/about", "queue/less_than_a_minute", "queue/minute",
    "queue/minutes", "queue/hour", "queue/hours", "queue/and", "queue/callback_offer",
    "queue/voicemail_offer",
    *[f"digits/{n}" for n in range(21)], *[f"digits/{n}" for n in range(30, 100, 10)],
    "digits/hundred", "digits/thousand", "digits/and", "digits/star", "digits/hash",
]


def main() -> None:
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None:
        sys.exit("espeak-ng is not installed")
    for lang in LANGUAGES:
        for key in DEMO_KEYS:
            text = TEXTS[lang][key]
            target = HERE / lang / f"{key}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "raw.wav"
                subprocess.run([espeak, "-v", lang, "-s", "160", "-w", str(raw), "--", text],
                               check=True, capture_output=True)
                if sox:
                    subprocess.run(
                        [sox, str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed",
                         str(target), "silence", "1", "0.02", "0.5%", "reverse", "silence",
                         "1", "0.02", "0.5%", "reverse"],
                        check=True, capture_output=True,
                    )
                else:
                    write_wav(target, to_telephony(read_wav(raw)))
            print(f"{lang}/{key}.wav  {text}")


if __name__ == "__main__":
    main()
