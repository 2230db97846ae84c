"""Digest authentication (RFC 2617 / RFC 3261 22) and brute-force rate limiting.

Nonces are stateless: `timestamp:hmac(timestamp)` signed with a per-process secret,
so a challenge costs no memory and a forged or stale nonce is recognised.  Both the
`qop=auth` response and the RFC 2069 form (no qop, used by pyVoIP 1.6.8) are
accepted.  Failures are counted per source IP; past the limit the source gets 403
without a challenge until its window expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from core.numbers import ascii_int

NONCE_LIFETIME = 300.0


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # MD5 is what RFC 2617 digest requires


def parse_auth_params(value: str) -> dict[str, str]:
    """`Digest username="a", realm="b", ...` -> {'username': 'a', ...} (lower-case keys)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    params: dict[str, str] = {}
    i = 0
    n = len(rest)
    while i < n:
        while i < n and rest[i] in " ,\t":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            end = i + 1
            buf = []
            while end < n and rest[end] != '"':
                if rest[end] == "\\" and end + 1 < n:
                    end += 1
                buf.append(rest[end])
                end += 1
            params[key] = "".join(buf)
            i = end + 1
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return params


def digest_response(
    username: str, realm: str, password: str, method: str, uri: str, nonce: str,
    qop: str | None = None, nc: str = "", cnonce: str = "",
) -> str:
    ha1 = md5_hex(f"{username}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    if qop:
        return md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5_hex(f"{ha1}:{nonce}:{ha2}")


def authorization_header(
    challenge: str, username: str, password: str, method: str, uri: str
) -> str:
    """Answer a WWW-Authenticate/Proxy-Authenticate challenge (client side)."""
    params = parse_auth_params(challenge)
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    qop = "auth" if "auth" in params.get("qop", "").split(",") else None
    cnonce = secrets.token_hex(8)
    nc = "00000001"
    response = digest_response(username, realm, password, method, uri, nonce, qop, nc, cnonce)
    header = (f'Digest username="{username}", realm="{realm}", nonce="{nonce}", '
              f'uri="{uri}", response="{response}", algorithm=MD5')
    if qop:
        header += f', qop={qop}, nc={nc}, cnonce="{cnonce}"'
    if "opaque" in params:
        header += f', opaque="{params["opaque"]}"'
    return header


class FailureLimiter:
    """At most `max_failures` failed authentications per source in `window` seconds.

    The table is bounded: at most `capacity` sources are remembered, in least-recently-
    failed order (an OrderedDict used as an LRU), each with at most `max_failures`
    timestamps. Looking a source up never adds it, so sources that never fail cost
    nothing. Under a distributed attack with more sources than `capacity`, the source
    that failed longest ago is forgotten first; each source still gets at most
    `max_failures` guesses before it is blocked, so eviction does not widen the attack
    much, and memory stays at `capacity * max_failures` floats whatever arrives.
    """

    def __init__(self, max_failures: int = 10, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, capacity: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.capacity = capacity
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._failures)

    def blocked(self, source: str) -> bool:
        times = self._failures.get(source)
        if times is None:
            return False
        self._expire(source, times)
        return len(times) >= self.max_failures

    def record_failure(self, source: str) -> None:
        times = self._failures.get(source)
        if times is None:
            times = deque(maxlen=max(1, self.max_failures))
            self._failures[source] = times
            while len(self._failures) > self.capacity:
                self._failures.popitem(last=False)
                self.evicted += 1
        else:
            self._failures.move_to_end(source)
        times.append(self.clock())

    def _expire(self, source: str, times: deque[float]) -> None:
        now = self.clock()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[source]


class DigestAuthenticator:
    """Issues challenges and verifies Authorization headers against a password lookup."""

    def __init__(self, realm: str, clock: Callable[[], float] = time.time) -> None:
        self.realm = realm
        self.clock = clock
        self._secret = secrets.token_bytes(16)

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:24]

    def new_nonce(self) -> str:
        stamp = f"{self.clock():.0f}"
        return f"{stamp}.{self._sign(stamp)}"

    def challenge(self, stale: bool = False) -> str:
        header = (f'Digest realm="{self.realm}", nonce="{self.new_nonce()}", '
                  'algorithm=MD5, qop="auth"')
        return header + (", stale=true" if stale else "")

    def nonce_state(self, nonce: str) -> str:
        """'ok', 'stale' or 'bad'."""
        stamp, _, sig = nonce.partition(".")
        issued = ascii_int(stamp, max_digits=12)
        # compare_digest refuses non-ASCII str: compare the UTF-8 bytes instead
        if issued is None or not hmac.compare_digest(
                sig.encode("utf-8", "replace"), self._sign(stamp).encode()):
            return "bad"
        if self.clock() - issued > NONCE_LIFETIME:
            return "stale"
        return "ok"

    def verify(
        self, authorization: str | None, method: str, lookup: Callable[[str], str | None]
    ) -> tuple[str, str | None]:
        """Returns (outcome, username): outcome is 'ok', 'missing', 'stale' or 'bad'."""
        if not authorization:
            return "missing", None
        params = parse_auth_params(authorization)
        if not params:
            return "missing", None  # not Digest: challenge again
        username = params.get("username")
        if not username or "response" not in params or "nonce" not in params:
            return "bad", username
        if params.get("realm") != self.realm:
            return "bad", username
        state = self.nonce_state(params["nonce"])
        if state == "bad":
            return "bad", username
        password = lookup(username)
        if password is None:
            return "bad", username
        expected = digest_response(
            username, self.realm, password, method, params.get("uri", ""), params["nonce"],
            params.get("qop"), params.get("nc", ""), params.get("cnonce", ""),
        )
        if not hmac.compare_digest(expected.encode(),
                                   params["response"].lower().encode("utf-8", "replace")):
            return "bad", username
        if state == "stale":
            return "stale", username
        return "ok", username
