"""Twilio's request signature: base64 HMAC-SHA1 (auth token) over the full public URL
followed by every POST parameter name+value, names sorted (as twilio's RequestValidator).

Behind a reverse proxy the URL Twilio signed is the *public* one, not the one the app
sees, which is why the caller passes `server.web.public_url` + path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from core.compare import same_secret


def compute(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    values: dict[str, set[str]] = {}
    for key, value in params:
        values.setdefault(key, set()).add(value)
    data = url
    for key in sorted(values):
        for value in sorted(values[key]):
            data += key + value
    # surrogateescape: a form value aiohttp could not decode is signed as its raw bytes
    mac = hmac.new(auth_token.encode(), data.encode("utf-8", "surrogateescape"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def verify(auth_token: str, url: str, params: list[tuple[str, str]],
           header: str | None) -> bool:
    if not header:
        return False
    try:
        expected = compute(auth_token, url, params)
    except UnicodeError:  # a parameter no client could have signed
        return False
    return same_secret(expected, header.strip())
