"""Who is calling and what was dialled, from an inbound INVITE.

P-Asserted-Identity is believed only from trusted trunks (anyone can write the
header); otherwise the From user is the caller.  Withheld callers (anonymous user
parts, the RFC 3323 `anonymous.invalid` host, `Privacy: id|user|header`) get
`withheld=True` and no caller id, so they are never matched to a customer.
"""

from __future__ import annotations

import contextlib

from ivr.call_leg import CallerData
from pbx_bridge.sip.message import NameAddr, SipParseError, SipRequest, split_header_values
from pbx_bridge.sip.ports import TrunkConfig

WITHHELD_USERS = {"anonymous", "restricted", "unknown", "unavailable", "private", "withheld"}
PRIVACY_WITHHOLDING = {"id", "user", "header"}


def caller_data(req: SipRequest, trunk: TrunkConfig) -> CallerData:
    identity = req.from_addr
    pai = req.get("p-asserted-identity")
    if pai and trunk.trusted:
        values = split_header_values(pai)
        with contextlib.suppress(SipParseError, IndexError):
            identity = NameAddr.parse(values[0])
    try:
        uri = identity.sip_uri()
        user, host = uri.user, uri.host
    except SipParseError:
        user, host = None, ""
    privacy = {p.strip().lower() for p in (req.get("privacy") or "").split(";")}
    withheld = bool(
        not user
        or user.lower() in WITHHELD_USERS
        or host.lower() == "anonymous.invalid"
        or privacy & PRIVACY_WITHHOLDING
    )
    return CallerData(
        call_id=req.call_id,
        caller_id=None if withheld else user,
        dialled=dialled_number(req),
        withheld=withheld,
        display_name=None if withheld else identity.display,
        channel_vars={"sip_trunk": trunk.name, "sip_from": req.get("from") or ""},
        caller_host=None if withheld else host or None,
    )


def dialled_number(req: SipRequest) -> str:
    """The Request-URI user part (the DID), falling back to the To user."""
    try:
        user = req.request_uri().user or req.to_addr.sip_uri().user or ""
    except SipParseError:
        return ""
    return user.split(";")[0]
