"""Meta's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret,
raw body)>`. Checked over the exact bytes received, in constant time."""

from __future__ import annotations

import hashlib
import hmac

from core.compare import same_secret


def sign(app_secret: str, raw_body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    return same_secret(sign(app_secret, raw_body), header.strip())
