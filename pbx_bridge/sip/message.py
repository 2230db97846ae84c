"""SIP message model, tolerant parser and serializer (RFC 3261 section 7).

The parser is written for the server role facing arbitrary peers: it accepts what
real phones and trunks send (compact header names, folded lines, bare LF line ends,
any header-name case, several Via values in one header) and rejects what cannot be
processed safely with a `SipParseError` that says exactly what is wrong.  The error
carries whatever headers were read, so the transport can still answer 400 when the
Via, Call-ID, From, To and CSeq needed to route a response are present, and drop the
datagram silently when they are not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.numbers import ascii_int, is_ascii_digits

MAX_MESSAGE_BYTES = 65_535
MAX_HEADERS = 128
MAX_LINE_BYTES = 8_192
MAX_BODY_BYTES = 32_768

COMPACT_FORMS = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "x": "session-expires",
    "u": "allow-events",
    "b": "referred-by",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
}

# Canonical spelling used when serializing; anything else is title-cased.
CANONICAL_NAMES = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "p-asserted-identity": "P-Asserted-Identity",
    "mime-version": "MIME-Version",
}

# Headers whose comma-separated values are separate header values (RFC 3261 7.3.1).
MULTI_VALUE_HEADERS = {"via", "contact", "route", "record-route", "allow", "supported", "require"}

REQUIRED_REQUEST_HEADERS = ("via", "from", "to", "call-id", "cseq")

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~\-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2})(?: (.*))?$")
# compiled once: `re.match(pattern, ...)` looked the pattern up in re's cache per call
_VIA = re.compile(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(;.*)?$", re.I)
_URI_SCHEME = re.compile(r"^(sips?|tel):(.*)$", re.I)


class SipParseError(ValueError):
    """A message that cannot be processed.

    `headers` holds the headers read before the error (possibly empty) and
    `is_request` whether the start line looked like a request; the transport uses
    them to decide between a 400 response and a silent drop.
    """

    def __init__(
        self,
        reason: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        is_request: bool = False,
        method: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers = headers or []
        self.is_request = is_request
        self.method = method


def _canonical_name(name: str) -> str:
    lowered = name.strip().lower()
    return COMPACT_FORMS.get(lowered, lowered)


def _title_name(key: str) -> str:
    return CANONICAL_NAMES.get(key) or "-".join(p.capitalize() for p in key.split("-"))


# Header names seen on every call, in the spellings peers and this code use, mapped to
# their key: the parser and `SipMessage.get` look a name up here before lower-casing
# it (canonical_name ran ~30 times per message). Every name in the table is a valid
# token, so the parser's token check is only needed for names not in it. The table
# is fixed: a name a peer invents never grows it (the memo below is bounded).
_COMMON_KEYS = (
    "via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "content-type",
    "content-length", "subject", "allow", "supported", "require", "user-agent", "server",
    "route", "record-route", "expires", "min-expires", "authorization",
    "proxy-authorization", "www-authenticate", "proxy-authenticate", "session-expires",
    "min-se", "accept", "p-asserted-identity", "p-preferred-identity", "remote-party-id",
    "privacy", "date", "event", "allow-events", "refer-to", "referred-by", "replaces",
    "unsupported", "retry-after", "organization", "diversion", "history-info",
    "identity", "reason", "subscription-state", "content-disposition", "accept-language",
    "mime-version",
)
_KNOWN_NAMES: dict[str, str] = {}
for _key in _COMMON_KEYS:
    for _spelling in (_key, _title_name(_key), _key.upper(), _key.title()):
        _KNOWN_NAMES[_spelling] = _key
for _short, _key in COMPACT_FORMS.items():
    _KNOWN_NAMES[_short] = _KNOWN_NAMES[_short.upper()] = _key
_TITLE_NAMES: dict[str, str] = {k: _title_name(k) for k in _COMMON_KEYS}
_MEMO_LIMIT = 512  # names from code are a few dozen; peers' invented names stay out


def canonical_name(name: str) -> str:
    """Lower-case name, with compact forms expanded: the key used for lookups."""
    key = _KNOWN_NAMES.get(name)
    return key if key is not None else _canonical_name(name)


def display_name_of(key: str) -> str:
    name = _TITLE_NAMES.get(key)
    if name is None:
        name = _title_name(key)
        if len(_TITLE_NAMES) < _MEMO_LIMIT:
            _TITLE_NAMES[key] = name
    return name


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated header on commas outside quotes and angle brackets."""
    # Fast paths, same result as the scan: with no comma there is nothing to
    # split; with no quote and no bracket every comma splits (Allow, Supported, most
    # Vias). The character loop ran for every such header of every message.
    if "," not in value:
        value = value.strip()
        return [value] if value else []
    if '"' not in value and "<" not in value and ">" not in value:
        return [p for p in (part.strip() for part in value.split(",")) if p]
    return split_header_values_by_scanning(value)


def split_header_values_by_scanning(value: str) -> list[str]:
    """The character scan behind `split_header_values` (its fast paths must equal it)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


@dataclass
class SipMessage:
    """A request or response: ordered headers (lower-case keys) and a body."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # Parsed Via/From/To/CSeq by header, each with the raw value it was parsed from:
    # the transaction layer, the dialog lookup and the call setup read them ~15 times
    # per message, and each read parsed the header again. A value is reused only while
    # the header's current text is the same string object it came from, so a header
    # replaced in `headers` (directly or by set/add/remove) is parsed again. The
    # parsed objects are shared between reads: treat them as read-only.
    _parsed: dict[str, tuple[object, object]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    # -- header access -------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name)
        for k, v in self.headers:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = canonical_name(name)
        return [v for k, v in self.headers if k == key]

    def set(self, name: str, value: str) -> None:
        """Replace every value of a header with one value (appended if absent)."""
        key = canonical_name(name)
        for i, (k, _) in enumerate(self.headers):
            if k == key:
                self.headers[i] = (key, value)
                self.headers = [
                    h for j, h in enumerate(self.headers) if j <= i or h[0] != key
                ]
                return
        self.headers.append((key, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical_name(name), value))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self.headers = [h for h in self.headers if h[0] != key]

    # -- common fields -------------------------------------------------
    def _first(self, key: str) -> str:
        """The first value of a header by its key (no canonicalisation), or ""."""
        for k, v in self.headers:
            if k == key:
                return v
        return ""

    @property
    def call_id(self) -> str:
        return self._first("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        raw = self._first("cseq")
        hit = self._parsed.get("cseq")
        if hit is not None and hit[0] is raw:
            return hit[1]  # type: ignore[return-value]
        value = parse_cseq(raw)
        self._parsed["cseq"] = (raw, value)
        return value

    @property
    def vias(self) -> list[Via]:
        raws = [v for k, v in self.headers if k == "via"]
        hit = self._parsed.get("via")
        if hit is not None and hit[0] == raws:  # equal texts parse equal
            return list(hit[1])  # type: ignore[call-overload]
        vias = [Via.parse(v) for v in raws]
        self._parsed["via"] = (raws, vias)
        return list(vias)

    def top_via(self) -> Via:
        """`self.vias[0]` (IndexError without a Via) without reading the others: the
        transaction key and the response's destination need only the top one."""
        raw = ""
        for k, raw in self.headers:  # noqa: B007 - `raw` is the value found
            if k == "via":
                break
        else:
            raise IndexError("no Via header")
        hit = self._parsed.get("via")
        if hit is not None:
            raws = hit[0]
            assert isinstance(raws, list)
            if raws and raws[0] is raw:
                return hit[1][0]  # type: ignore[index,no-any-return]
        return self.vias[0]

    def replace_top_via(self, value: str, parsed: Via) -> None:
        """Put `value` — `parsed.serialize()` — in place of the top Via.

        The transport stamps received=/rport= on every request's top Via; the new
        text was parsed again on the next read. `parsed` is kept as its parse when
        that parse is certain to be what `Via.parse(value)` gives: every parameter
        value free of leading or trailing blanks (the parser strips them, so such a
        value would not survive the round trip); otherwise the next read parses."""
        for i, (k, _) in enumerate(self.headers):
            if k == "via":
                self.headers[i] = ("via", value)
                break
        else:
            return
        hit = self._parsed.pop("via", None)
        if hit is None:
            return
        raws, vias = hit
        assert isinstance(raws, list) and isinstance(vias, list)
        if not raws or not all(v == v.strip() for v in parsed.params.values()):
            return
        raws, vias = [value, *raws[1:]], [parsed, *vias[1:]]
        self._parsed["via"] = (raws, vias)

    @property
    def from_addr(self) -> NameAddr:
        return self._name_addr("from")

    @property
    def to_addr(self) -> NameAddr:
        return self._name_addr("to")

    def _name_addr(self, key: str) -> NameAddr:
        raw = self._first(key)
        hit = self._parsed.get(key)
        if hit is not None and hit[0] is raw:
            return hit[1]  # type: ignore[return-value]
        value = NameAddr.parse(raw)
        self._parsed[key] = (raw, value)
        return value

    def _header_bytes(self) -> list[str]:
        lines = []
        for key, value in self.headers:
            if key == "content-length":
                continue
            lines.append(f"{display_name_of(key)}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return lines


@dataclass
class SipRequest(SipMessage):
    method: str = ""
    uri: str = ""

    def request_uri(self) -> SipUri:
        """`SipUri.parse(self.uri)`, parsed once while `uri` is unchanged (read-only:
        the parser validated it already; admission, identification and the
        extension check read it again for every INVITE)."""
        raw = self.uri
        hit = self._parsed.get("ruri")
        if hit is not None and hit[0] is raw:
            return hit[1]  # type: ignore[return-value]
        value = SipUri.parse(raw)
        self._parsed["ruri"] = (raw, value)
        return value

    def serialize(self) -> bytes:
        head = [f"{self.method} {self.uri} SIP/2.0", *self._header_bytes()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class SipResponse(SipMessage):
    status: int = 200
    reason: str = "OK"

    def serialize(self) -> bytes:
        head = [f"SIP/2.0 {self.status} {self.reason}", *self._header_bytes()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + self.body


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not is_ascii_digits(parts[0]) or len(parts[0]) > 10:
        raise SipParseError(f"malformed CSeq {value!r}")
    number = int(parts[0])
    if number >= 2**31:
        raise SipParseError(f"CSeq number out of range {value!r}")
    return number, parts[1]


def _params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            k, v = item.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"')
        else:
            params[item.lower()] = ""
    return params


@dataclass
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> Via:
        value = value.strip()
        m = _VIA.match(value)
        if not m:
            raise SipParseError(f"malformed Via {value[:80]!r}")
        host, port = split_hostport(m.group(2))
        return cls(m.group(1).upper(), host, port, _params(m.group(3) or ""))

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")

    def serialize(self) -> str:
        out = f"SIP/2.0/{self.transport} {join_hostport(self.host, self.port)}"
        for k, v in self.params.items():
            out += f";{k}={v}" if v != "" else f";{k}"
        return out


def split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"malformed IPv6 host {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest.startswith(":"):
            return host, _port(rest[1:])
        return host, None
    if ":" in text:
        host, port = text.rsplit(":", 1)
        return host, _port(port)
    return text, None


def _port(text: str) -> int:
    port = ascii_int(text, max_digits=5)
    if port is None or not 0 < port < 65536:
        raise SipParseError(f"bad port {text[:20]!r}")
    return port


def join_hostport(host: str, port: int | None) -> str:
    return f"{host}:{port}" if port else host


@dataclass
class SipUri:
    scheme: str
    user: str | None
    host: str
    port: int | None
    params: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        m = _URI_SCHEME.match(text)
        if not m:
            raise SipParseError(f"unsupported URI {text[:80]!r}")
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme == "tel":
            number, _, params = rest.partition(";")
            return cls(scheme, number, "", None, _params(params))
        rest, _, _headers = rest.partition("?")
        hostpart, _, params = rest.partition(";")
        user = None
        if "@" in hostpart:
            user, hostpart = hostpart.rsplit("@", 1)
            user = user.split(":", 1)[0]
        if not hostpart:
            raise SipParseError(f"URI without host {text[:80]!r}")
        host, port = split_hostport(hostpart)
        return cls(scheme, user, host, port, _params(params))

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{self.scheme}:{user}{join_hostport(self.host, self.port)}{params}"


@dataclass
class NameAddr:
    """`"Display" <uri>;params` or a bare `uri;params` (From, To, Contact, PAI)."""

    display: str | None
    uri: str
    params: dict[str, str]
    # (uri text, its SipUri): a message's From/To is parsed once now, and its URI
    # was parsed again by each reader (extension check, identification)
    _uri: tuple[str, SipUri] | None = field(default=None, init=False, repr=False,
                                            compare=False)

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        value = value.strip()
        if "<" in value:
            lt = value.index("<")
            gt = value.find(">", lt)
            if gt < 0:
                raise SipParseError(f"unterminated <URI> in {value[:80]!r}")
            display = value[:lt].strip().strip('"').strip() or None
            return cls(display, value[lt + 1 : gt].strip(), _params(value[gt + 1 :]))
        uri, _, params = value.partition(";")
        if not uri.strip():
            raise SipParseError("empty address")
        return cls(None, uri.strip(), _params(params))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def sip_uri(self) -> SipUri:
        """`SipUri.parse(self.uri)`, kept while `uri` is unchanged (read-only)."""
        hit = self._uri
        if hit is not None and hit[0] is self.uri:
            return hit[1]
        value = SipUri.parse(self.uri)
        self._uri = (self.uri, value)
        return value

    def serialize(self) -> str:
        disp = f'"{self.display}" ' if self.display else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{disp}<{self.uri}>{params}"


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep) :]
    return data, b""


def parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Parse start line and headers (no body). Raises SipParseError."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    if "\x00" in text:
        raise SipParseError("NUL byte in header")
    raw_lines = text.replace("\r\n", "\n").split("\n")
    while raw_lines and not raw_lines[0].strip():
        raw_lines.pop(0)  # RFC 3261 7.5: ignore leading empty lines
    if not raw_lines:
        raise SipParseError("empty message")
    start = raw_lines[0].strip()
    lines: list[str] = []
    for line in raw_lines[1:]:
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()  # folded continuation
        elif line.strip():
            lines.append(line)
    headers: list[tuple[str, str]] = []
    try:
        _parse_header_lines(lines, headers)
    except SipParseError as exc:
        exc.is_request = not start.startswith("SIP/")
        exc.method = start.split(" ", 1)[0] if exc.is_request else None
        raise
    return start, headers


def _parse_header_lines(lines: list[str], headers: list[tuple[str, str]]) -> None:
    """Fill `headers` (kept on error, so a 400 can still be routed)."""
    for line in lines:
        if len(line) > MAX_LINE_BYTES:
            raise SipParseError("header line too long", headers=headers)
        name, sep, value = line.partition(":")
        if not sep:
            raise SipParseError(f"header without colon {line[:60]!r}", headers=headers)
        key = _KNOWN_NAMES.get(name)  # a known spelling is a token, no scan needed
        if key is None:
            name = name.strip()
            if not _TOKEN.match(name):
                raise SipParseError(f"bad header name {name[:60]!r}", headers=headers)
            key = _canonical_name(name)
        value = value.strip()
        if key in MULTI_VALUE_HEADERS:
            headers.extend((key, v) for v in split_header_values(value))
        else:
            headers.append((key, value))
        if len(headers) > MAX_HEADERS:
            raise SipParseError("too many headers", headers=headers)


def parse_message(data: bytes, *, stream: bool = False) -> SipRequest | SipResponse:
    """Parse one complete SIP message.

    With `stream=True` (TCP framing already done by the caller) Content-Length is
    authoritative; over datagrams a missing Content-Length means "rest of packet"
    (RFC 3261 18.3) and a body longer than announced is truncated.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("message too large")
    head, body = _split_head(data)
    start, headers = parse_head(head)
    is_request = not start.startswith("SIP/")
    method = None
    if is_request:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2].upper() != "SIP/2.0":
            raise SipParseError(f"malformed request line {start[:80]!r}", headers=headers,
                                is_request=True)
        method, uri = parts[0], parts[1]
        if not _TOKEN.match(method) or len(method) > 32:
            raise SipParseError(f"bad method {method[:40]!r}", headers=headers, is_request=True)
        if ":" not in uri:
            raise SipParseError(f"bad Request-URI {uri[:80]!r}", headers=headers,
                                is_request=True, method=method)
        if uri.lower().startswith(("sip:", "sips:")):
            try:  # a SIP Request-URI the handlers cannot read is the sender's error
                request_uri: SipUri | None = SipUri.parse(uri)
            except SipParseError as exc:
                raise SipParseError(f"bad Request-URI: {exc.reason}", headers=headers,
                                    is_request=True, method=method) from None
        else:
            request_uri = None
    msg: SipRequest | SipResponse
    if is_request:
        assert method is not None
        msg = SipRequest(headers=headers, method=method, uri=uri)  # case-sensitive (7.1)
        if request_uri is not None:
            msg._parsed["ruri"] = (uri, request_uri)
    else:
        m = _STATUS_LINE.match(start)
        if not m:
            raise SipParseError(f"malformed status line {start[:80]!r}", headers=headers)
        msg = SipResponse(headers=headers, status=int(m.group(1)), reason=m.group(2) or "")

    def fail(reason: str) -> SipParseError:
        return SipParseError(reason, headers=headers, is_request=is_request, method=method)

    lengths = msg.get_all("content-length")
    if len(set(lengths)) > 1:
        raise fail("conflicting Content-Length headers")
    if lengths:
        cl = lengths[0].strip()
        if not is_ascii_digits(cl) or len(cl) > 9:
            raise fail(f"bad Content-Length {cl[:20]!r}")
        length = int(cl)
        if length > MAX_BODY_BYTES:
            raise fail("body too large")
        if length > len(body):
            raise fail(f"Content-Length {length} exceeds body of {len(body)} bytes")
        body = body[:length]
    elif stream:
        body = b""
    if len(body) > MAX_BODY_BYTES:
        raise fail("body too large")
    msg.body = body
    present = {k for k, _ in headers}  # one pass, not one scan per required header
    for name in REQUIRED_REQUEST_HEADERS:
        if name not in present:
            raise fail(f"missing {display_name_of(name)} header")
    call_id = msg.call_id
    if not call_id.strip() or len(call_id) > 256:
        raise fail("bad Call-ID")
    try:
        _, cseq_method = msg.cseq
        for via in msg.vias:
            if not via.host:
                raise fail("Via without host")
        msg.from_addr  # noqa: B018 - validates
        msg.to_addr  # noqa: B018
    except SipParseError as exc:
        raise fail(exc.reason) from None
    if isinstance(msg, SipRequest) and cseq_method != msg.method and msg.method != "ACK":
        raise fail("CSeq method does not match request method")
    if isinstance(msg, SipRequest) and msg.method == "ACK" and cseq_method != "ACK":
        raise fail("CSeq method does not match request method")
    return msg


def find_stream_message(buffer: bytes) -> tuple[int, int] | None:
    """For TCP: (head_end, total_length) of the first complete message, or None.

    Raises SipParseError when the buffer can never become a valid message.
    """
    stripped = len(buffer) - len(buffer.lstrip(b"\r\n"))
    idx = buffer.find(b"\r\n\r\n", stripped)
    if idx < 0:
        if len(buffer) > MAX_MESSAGE_BYTES:
            raise SipParseError("header block too large")
        return None
    head = buffer[stripped:idx]
    m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*$", head)
    length = int(m.group(1)) if m else 0
    if length > MAX_BODY_BYTES:
        raise SipParseError("body too large")
    total = idx + 4 + length
    if len(buffer) < total:
        return None
    return stripped, total
