"""Masking before text leaves the node: phone numbers, e-mail addresses and IBANs are
replaced by placeholders when `assist.model.mask_personal_data` is on.

IBANs are checked with the ISO 13616 mod-97 test so an order number is not taken for
one; phone numbers are runs of 8+ digits with the usual separators (+31 6 1234 5678,
06-12345678, (020) 123 4567, 0031...), which also covers card-like numbers — masking
too much is the safe side.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b",
                   re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w])(?:\+|00)?\(?\d[\d\s().\-/]{6,}\d(?![\w])")

EMAIL_MASK = "[email]"
IBAN_MASK = "[iban]"
PHONE_MASK = "[phone]"


def _is_iban(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    digits = "".join(str(int(ch, 36)) for ch in moved)
    return int(digits) % 97 == 1


def mask(text: str) -> str:
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _IBAN.sub(lambda m: IBAN_MASK if _is_iban(m.group(0)) else m.group(0), text)

    def phone(m: re.Match[str]) -> str:
        digits = sum(ch.isdigit() for ch in m.group(0))
        return PHONE_MASK if digits >= 8 else m.group(0)

    return _PHONE.sub(phone, text)
