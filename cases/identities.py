"""Normalising identities so that one person is one key, whatever form they arrive in.

Pure functions, no I/O. Phone numbers become E.164 with `phonenumbers` (the region a
national number is read in comes from config); a WhatsApp wa_id is the E.164 digits
without `+`, except for three countries where WhatsApp's form and the dialled form of
one mobile number differ by a digit (Brazil's ninth digit, Mexico's `1`, Argentina's
`9`). Those other forms are *candidates*: they are offered as suggestions, never linked
by themselves, because the same digits can be someone else's number.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers

IdentityKind = Literal["phone", "whatsapp", "whatsapp_bsuid", "email", "webchat", "sip"]
KINDS: tuple[str, ...] = ("phone", "whatsapp", "whatsapp_bsuid", "email", "webchat", "sip")

WITHHELD = {"", "anonymous", "unknown", "unavailable", "private", "restricted", "withheld",
            "asterisk", "invalid", "null"}


class InvalidIdentity(ValueError):
    """The raw value cannot be an identity of that kind."""


@dataclass(frozen=True)
class IdentityRef:
    """An identity as it arrived: kind plus the raw value."""

    kind: str
    raw: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidIdentity(f"unknown identity kind {self.kind!r}")


def is_withheld_caller(raw: str | None, *, privacy_id: bool = False) -> bool:
    """Anonymous or hidden caller IDs, which must never match a customer."""
    if privacy_id or raw is None:
        return True
    user = raw.strip().lower()
    if user.startswith(("sip:", "sips:", "tel:")):
        user = user.split(":", 1)[1].split("@", 1)[0]
    return user in WITHHELD or not re.search(r"[0-9a-z]", user)


def normalise(ref: IdentityRef, default_region: str) -> str:
    raw = ref.raw.strip()
    if ref.kind == "phone":
        return normalise_phone(raw, default_region)
    if ref.kind == "whatsapp":
        digits = re.sub(r"[^0-9]", "", raw)
        if not 6 <= len(digits) <= 15:
            raise InvalidIdentity(f"not a WhatsApp wa_id: {raw!r}")
        return digits
    if ref.kind == "email":
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", raw):
            raise InvalidIdentity(f"not an e-mail address: {raw!r}")
        return raw.lower()
    if ref.kind == "sip":
        m = re.fullmatch(r"(?:sips?:)?([^@;>\s]+)@([^;>\s:]+)(?::[0-9]+)?.*", raw, re.I)
        if not m:
            raise InvalidIdentity(f"not a SIP URI: {raw!r}")
        return f"sip:{m.group(1)}@{m.group(2).lower()}"
    if not raw or len(raw) > 200:
        raise InvalidIdentity(f"not a valid {ref.kind} id")
    return raw  # webchat visitor id, WhatsApp BSUID: opaque


def normalise_phone(raw: str, default_region: str) -> str:
    e164, error = _phone_e164(raw, default_region)
    if error is not None:
        raise InvalidIdentity(error)
    return e164


@functools.lru_cache(maxsize=4096)
def _phone_e164(raw: str, default_region: str) -> tuple[str, str | None]:
    """(E.164, None) or ("", why not). Cached: parsing takes ~0.1-1 ms, and one inbound
    call normalises its caller's number several times (routing, identity, person lock)."""
    cleaned = raw.strip()
    if cleaned.lower().startswith(("tel:", "sip:", "sips:")):
        cleaned = cleaned.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    try:
        number = phonenumbers.parse(cleaned, default_region)
    except phonenumbers.NumberParseException as exc:
        return "", f"not a phone number: {raw!r} ({exc})"
    if not phonenumbers.is_possible_number(number):
        return "", f"not a possible phone number: {raw!r}"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def wa_id_to_e164(wa_id: str) -> str:
    return "+" + wa_id


def e164_to_wa_id(e164: str) -> str:
    return e164.lstrip("+")


def whatsapp_candidates(digits: str) -> list[str]:
    """Other digit strings that may be the same mobile number (without `+`).

    Brazil (55): mobile numbers gained a 9 after the 2-digit area code; WhatsApp ids of
    older accounts lack it. Mexico (52): mobiles were dialled with 1 after 52; many wa_ids
    still carry it. Argentina (54): the mobile 9 after 54 appears in E.164 but not
    always in the dialled/national form.
    """
    out: list[str] = []
    if digits.startswith("55") and len(digits) in (12, 13):
        area, sub = digits[2:4], digits[4:]
        if len(sub) == 8 and sub[0] in "6789":
            out.append(f"55{area}9{sub}")
        elif len(sub) == 9 and sub[0] == "9":
            out.append(f"55{area}{sub[1:]}")
    elif digits.startswith("521") and len(digits) == 13:
        out.append("52" + digits[3:])
    elif digits.startswith("52") and len(digits) == 12:
        out.append("521" + digits[2:])
    elif digits.startswith("549") and len(digits) == 13:
        out.append("54" + digits[3:])
    elif digits.startswith("54") and len(digits) == 12:
        out.append("549" + digits[2:])
    return out


def equivalents(kind: str, value: str) -> list[tuple[str, str]]:
    """Identities that are the *same* key in another kind (exact, safe to auto-link):
    a phone E.164 and the wa_id with the same digits."""
    if kind == "phone":
        return [("whatsapp", e164_to_wa_id(value))]
    if kind == "whatsapp":
        return [("phone", wa_id_to_e164(value))]
    return []


def candidates(kind: str, value: str) -> list[tuple[str, str]]:
    """Identities that *may* be the same person (ambiguous: suggestions only)."""
    digits = value.lstrip("+") if kind in ("phone", "whatsapp") else None
    if digits is None:
        return []
    out: list[tuple[str, str]] = []
    for alt in whatsapp_candidates(digits):
        out += [("whatsapp", alt), ("phone", "+" + alt)]
    return out
