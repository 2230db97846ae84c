"""The `survey` node: one CSAT (1–5) or NPS (0–10) question to a caller after the call.

Kept apart from the interpreter's other nodes because its rules are the survey's, not
the IVR's (docs/kpis.md, Surveys — the same rules as the survey after a conversation):

- CSAT is one key. NPS is one or two digits: `10` is two keys; a single digit is taken
  when the caller presses `#` or pauses `inter_digit_timeout` seconds.
- A key pressed during the conversation is never the answer (typed-ahead digits are
  discarded before the question).
- Out of range (`7` for CSAT, `11` for NPS, `*`) or nothing pressed → the retry prompt
  and the question once more; a second miss is recorded as no answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from config.schema.ivr import SurveyNode
from ivr.call_leg import CallLeg

RANGES = {"csat": (1, 5), "nps": (0, 10)}
ATTEMPTS = 2  # asked, then asked again once

Player = Callable[[list[str], bool], Awaitable[str | None]]


def score_of(kind: str, entry: str) -> int | None:
    """The score an entry stands for, None when it is not a valid answer."""
    if not entry or not entry.isascii() or not entry.isdigit() or len(entry) > 2:
        return None
    value = int(entry)
    low, high = RANGES[kind]
    return value if low <= value <= high else None


async def _entry(leg: CallLeg, node: SurveyNode, play: Player) -> str:
    """Play the question (a key stops it) and read the caller's answer."""
    first = await play(node.prompts, True)
    if first is None:
        first = await leg.collect_digits(1, first_digit_timeout=node.timeout_seconds,
                                         inter_digit_timeout=node.timeout_seconds,
                                         terminator=None)
    if not first or first == "#":
        return ""
    if node.kind == "csat" or not first.isdigit():
        return first
    rest = await leg.collect_digits(1, first_digit_timeout=node.inter_digit_timeout,
                                    inter_digit_timeout=node.inter_digit_timeout,
                                    terminator="#")
    return first + rest


async def ask(leg: CallLeg, node: SurveyNode, play: Player) -> tuple[int | None, list[str]]:
    """(score or None for no answer, what was typed per attempt — "timeout" for nothing).
    `CallerHangup` from the leg goes through to the caller of `ask`. The caller of
    `ask` discards the typed-ahead digits first (`CallLeg.discard_typed_ahead`)."""
    tries: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        entry = await _entry(leg, node, play)
        tries.append(entry or "timeout")
        score = score_of(node.kind, entry)
        if score is not None:
            return score, tries
        if attempt < ATTEMPTS:
            await play(node.retry_prompts, False)
    return None, tries
