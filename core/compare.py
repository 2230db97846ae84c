"""Constant-time comparison of a secret with what a peer sent.

`hmac.compare_digest` raises TypeError for a `str` with non-ASCII characters, and
`.encode()` raises for the surrogates aiohttp uses for undecodable header bytes — a
hostile `X-Hub-Signature-256: sha256=\\xe9` became a 500. A value that is not ASCII can
never equal an ASCII secret, so it is simply unequal.
"""

from __future__ import annotations

import hmac


def same_secret(expected: str, sent: str | None) -> bool:
    """True when `sent` equals `expected`, compared in constant time; False for None
    or non-ASCII input (which no hex/base64/token secret contains)."""
    if not sent or not sent.isascii() or not expected.isascii():
        return False
    return hmac.compare_digest(expected.encode("ascii"), sent.encode("ascii"))


__all__ = ["same_secret"]
