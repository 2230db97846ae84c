"""Identifiers: sortable by creation time, so logs and tables read in order."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Two digits per 10 bits: 13 lookups instead of 26 `divmod`s (an inbound call makes ~25
# ids; the loop showed in the call path's profile, issue 21).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def new_id() -> str:
    """A 26-char, time-ordered, URL-safe id (ULID-like: 48-bit ms time + 80 random bits)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in range(120, -1, -10)])
