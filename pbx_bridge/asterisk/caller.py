"""Who is calling, and what they dialled, from the FastAGI `agi_*` environment."""

from __future__ import annotations

from collections.abc import Mapping

from ivr.call_leg import CallerData

#: Caller-ID values Asterisk and carriers use for "no number".
WITHHELD_NUMBERS = frozenset(
    {"", "unknown", "anonymous", "restricted", "private", "unavailable", "withheld", "<unknown>"}
)
_NO_DNID = frozenset({"", "unknown", "<unknown>"})

# agi_callingpres: the Q.931 presentation byte; bits 5-6 are the presentation
# indicator (0x00 allowed, 0x20 restricted, 0x40 not available).
_PRES_MASK = 0x60
_PRES_ALLOWED = 0x00


def _presentation_allowed(raw: str) -> bool:
    try:
        return (int(raw) & _PRES_MASK) == _PRES_ALLOWED
    except ValueError:
        return True  # absent or odd: judge by the number alone


def caller_from_env(
    env: Mapping[str, str], call_id: str, *, args: list[str] | None = None
) -> CallerData:
    """CallerData for one inbound FastAGI session.

    The dialled number is, in order: the first AGI argument (the dialplan passes
    `${EXTEN}` when it must: after a Goto to `s`, agi_extension no longer holds the
    DID), `agi_dnid`, then `agi_extension`. A withheld caller (anonymous number or a
    restricted presentation) gets `caller_id=None` and is never matched to a customer.
    """
    number = env.get("agi_callerid", "").strip()
    withheld = number.lower() in WITHHELD_NUMBERS or not _presentation_allowed(
        env.get("agi_callingpres", "0")
    )
    name = env.get("agi_calleridname", "").strip()
    if name.lower() in WITHHELD_NUMBERS or name == number or withheld:
        name = ""
    dialled = ""
    if args and args[0].strip():
        dialled = args[0].strip()
    elif env.get("agi_dnid", "").strip() not in _NO_DNID:
        dialled = env["agi_dnid"].strip()
    else:
        dialled = env.get("agi_extension", "").strip()
    return CallerData(
        call_id=call_id,
        caller_id=None if withheld else number,
        dialled=dialled,
        withheld=withheld,
        display_name=name or None,
        channel_vars=dict(env),
    )
