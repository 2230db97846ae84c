"""Identifiers: sortable by creation time, so logs and tables read in order.

Random characters come from a pool filled by one `os.urandom` call per few hundred
ids: a call makes ~24 ids and its SIP dialogs a few tags and branches, and a syscall
per id (plus `int.from_bytes` and 13 table lookups to encode it) was ~3 % of the
node's event loop. The pool is still the kernel's CSPRNG output, each random
character from exactly one random byte (256 is a multiple of 32 and of 16, so every
character is equally likely), and a forked child empties its pools before its first
id (`os.register_at_fork`): parent and child never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_HEX = "0123456789abcdef"
# Two digits per 10 bits, for the time part (10 digits: 2 zero bits and 48 bits of ms).
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
# byte -> one digit from its low bits: bytes.translate turns a block of random bytes
# into digits in C, one pass for the whole pool.
_BASE32_OF_BYTE = bytes(ord(_ALPHABET[b & 31]) for b in range(256))
_HEX_OF_BYTE = bytes(ord(_HEX[b & 15]) for b in range(256))

RANDOM_DIGITS = 16  # 80 random bits, as the ULID-like format always had
_POOL_BYTES = 4096


class _DigitPool:
    """Random digits handed out in slices, refilled from `os.urandom` when used up.

    A lock, not a thread-local: ids are made on the event loop and, now and then, on a
    database thread; two threads must never get the same slice."""

    def __init__(self, table: bytes) -> None:
        self._table = table
        self._lock = threading.Lock()
        self._digits = ""
        self._next = 0

    def take(self, count: int) -> str:
        with self._lock:
            start = self._next
            end = start + count
            if end > len(self._digits):
                self._digits = os.urandom(max(_POOL_BYTES, count)).translate(
                    self._table).decode("ascii")
                start, end = 0, count
            self._next = end
            return self._digits[start:end]

    def forget(self) -> None:
        """In a forked child: the parent's pool must not be reused (the same ids on
        both sides); the lock may have been held by a parent thread at the fork."""
        self._lock = threading.Lock()
        self._digits = ""
        self._next = 0


_base32_pool = _DigitPool(_BASE32_OF_BYTE)
_hex_pool = _DigitPool(_HEX_OF_BYTE)
_time_digits: tuple[int, str] = (-1, "")


def _forget_pools() -> None:
    global _time_digits
    _base32_pool.forget()
    _hex_pool.forget()
    _time_digits = (-1, "")


os.register_at_fork(after_in_child=_forget_pools)


def time_digits(ms: int) -> str:
    """The 10 leading digits of an id made at `ms` (2 zero bits, then 48 bits of ms)."""
    p = _PAIRS
    return "".join((p[ms >> 40], p[(ms >> 30) & 1023], p[(ms >> 20) & 1023],
                    p[(ms >> 10) & 1023], p[ms & 1023]))


def new_id() -> str:
    """A 26-char, time-ordered, URL-safe id (ULID-like: 48-bit ms time + 80 random bits).

    The time part is encoded once per millisecond (several ids share one at load)."""
    global _time_digits
    ms = int(time.time() * 1000)
    cached_ms, prefix = _time_digits
    if ms != cached_ms:
        prefix = time_digits(ms)
        _time_digits = (ms, prefix)
    return prefix + _base32_pool.take(RANDOM_DIGITS)


def random_hex(digits: int) -> str:
    """`digits` random hex digits (what `secrets.token_hex(digits // 2)` gives), from the
    pool: SIP tags and branches, several per call."""
    return _hex_pool.take(digits)
