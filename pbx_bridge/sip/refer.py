"""SIP REFER from a registered phone (RFC 3515) and its `Replaces` (RFC 3891).

Reading the request: exactly one Refer-To, a SIP or tel URI; an embedded `Replaces`
(the `?Replaces=` URI header, percent-encoded) names a dialog by Call-ID, to-tag and
from-tag. Anything else is malformed and answered 400 by the server, the call
untouched. Progress goes back in NOTIFYs of the `refer` event package whose body is a
`message/sipfrag` status line (RFC 3515 2.4.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from pbx_bridge.sip.message import NameAddr, SipParseError, SipRequest, SipUri


class ReferError(Exception):
    """A REFER the server answers with `status` (the call goes on untouched)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Replaces:
    call_id: str
    to_tag: str
    from_tag: str


@dataclass(frozen=True)
class ReferTarget:
    user: str  # an agent's phone user, a queue id, or a number
    uri: str
    replaces: Replaces | None = None


def parse_refer(req: SipRequest) -> ReferTarget:
    """The REFER's target; `ReferError(400)` when Refer-To is missing, doubled or
    malformed."""
    values = [v for v in req.get_all("refer-to") if v.strip()]
    if len(values) != 1:
        raise ReferError(400, "Bad Request (exactly one Refer-To needed)")
    try:
        addr = NameAddr.parse(values[0])
        uri_text = addr.uri
        _, _, headers = uri_text.partition("?")
        uri = SipUri.parse(uri_text)
    except SipParseError as exc:
        raise ReferError(400, f"Bad Request (malformed Refer-To: {exc.reason[:40]})") from None
    if not uri.user:
        raise ReferError(400, "Bad Request (Refer-To names no user)")
    replaces = None
    for header in filter(None, headers.split("&")):
        name, _, value = header.partition("=")
        if name.strip().lower() == "replaces":
            replaces = parse_replaces(unquote(value))
    return ReferTarget(uri.user, uri_text, replaces)


def parse_replaces(value: str) -> Replaces:
    """`callid;to-tag=a;from-tag=b` (RFC 3891 6.1); malformed → `ReferError(400)`."""
    call_id, _, rest = value.partition(";")
    params = {}
    for part in rest.split(";"):
        key, _, val = part.partition("=")
        params[key.strip().lower()] = val.strip()
    if not call_id.strip() or not params.get("to-tag") or not params.get("from-tag"):
        raise ReferError(400, "Bad Request (malformed Replaces)")
    return Replaces(call_id.strip(), params["to-tag"], params["from-tag"])


def sipfrag(status: int, reason: str) -> bytes:
    return f"SIP/2.0 {status} {reason}\r\n".encode()


def notify_headers(req: SipRequest, *, final: bool) -> None:
    """The refer package's headers on an in-dialog NOTIFY we send."""
    req.add("Event", "refer")
    req.add("Subscription-State",
            "terminated;reason=noresource" if final else "active;expires=60")
    req.add("Content-Type", "message/sipfrag;version=2.0")
