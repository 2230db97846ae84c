"""Identifiers: sortable by creation time, so logs and tables read in order."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A 26-char, time-ordered, URL-safe id (ULID-like: 48-bit ms time + 80 random bits)."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | rand
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    out = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        out.append(alphabet[rem])
    return "".join(reversed(out))
