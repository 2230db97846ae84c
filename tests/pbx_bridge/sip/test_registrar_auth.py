"""Registrar bindings and digest verification."""

from __future__ import annotations

import pytest

from pbx_bridge.sip.auth import (
    DigestAuthenticator,
    FailureLimiter,
    authorization_header,
    parse_auth_params,
)
from pbx_bridge.sip.message import SipRequest
from pbx_bridge.sip.registrar import Registrar, RegistrationError
from pbx_bridge.sip.transport import Peer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def register(contacts: list[str], expires: str | None = None, cseq: int = 1,
             call_id: str = "c1") -> SipRequest:
    req = SipRequest(method="REGISTER", uri="sip:centrale")
    for name, value in [("Via", "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKr"),
                        ("From", "<sip:alice@centrale>;tag=1"), ("To", "<sip:alice@centrale>"),
                        ("Call-ID", call_id), ("CSeq", f"{cseq} REGISTER")]:
        req.add(name, value)
    for c in contacts:
        req.add("Contact", c)
    if expires is not None:
        req.add("Expires", expires)
    return req


PEER = Peer("UDP", "10.0.0.5", 5062)


def test_several_contacts_expiry_refresh_and_removal():
    clock = Clock()
    reg = Registrar(clock=clock)
    reg.register("alice", register(["<sip:alice@10.0.0.5:5062>", "<sip:alice@10.0.0.6>"],
                                   "120"), PEER)
    assert len(reg.contacts("alice")) == 2
    clock.now += 60
    reg.register("alice", register(["<sip:alice@10.0.0.6>;expires=300"], cseq=2), PEER)
    first = reg.contacts("alice")[0]
    assert first.contact == "sip:alice@10.0.0.6"  # most recently refreshed rings first
    clock.now += 100  # the first binding (120 s) has expired
    assert [b.contact for b in reg.contacts("alice")] == ["sip:alice@10.0.0.6"]
    reg.register("alice", register(["<sip:alice@10.0.0.6>"], "0", cseq=3), PEER)
    assert not reg.is_registered("alice")


def test_wildcard_and_bad_values():
    reg = Registrar(clock=Clock())
    reg.register("alice", register(["<sip:alice@10.0.0.5>"], "120"), PEER)
    reg.register("alice", register(["*"], "0", cseq=2), PEER)
    assert not reg.is_registered("alice")
    for contacts, expires, status in [(["*"], "60", 400), (["<sip:a@h>"], "30", 423),
                                      (["<sip:a@h>"], "soon", 400), (["<http://x>"], "60", 400)]:
        with pytest.raises(RegistrationError) as info:
            reg.register("alice", register(contacts, expires), PEER)
        assert info.value.status == status


def test_digest_round_trip_qop_and_rfc2069_and_stale_nonce():
    clock = Clock()
    auth = DigestAuthenticator("centrale", clock=clock)
    challenge = auth.challenge()
    assert parse_auth_params(challenge)["qop"] == "auth"
    lookup = {"alice": "pw"}.get
    header = authorization_header(challenge, "alice", "pw", "REGISTER", "sip:centrale")
    assert auth.verify(header, "REGISTER", lookup) == ("ok", "alice")
    # pyVoIP 1.6.8 style: no qop
    nonce = parse_auth_params(challenge)["nonce"]
    plain = authorization_header(f'Digest realm="centrale", nonce="{nonce}"', "alice", "pw",
                                 "REGISTER", "sip:centrale")
    assert "qop" not in plain and auth.verify(plain, "REGISTER", lookup)[0] == "ok"
    wrong = authorization_header(challenge, "alice", "nope", "REGISTER", "sip:centrale")
    assert auth.verify(wrong, "REGISTER", lookup)[0] == "bad"
    assert auth.verify(header.replace(nonce, "1.forged"), "REGISTER", lookup)[0] == "bad"
    assert auth.verify(None, "REGISTER", lookup)[0] == "missing"
    clock.now += 3600
    assert auth.verify(header, "REGISTER", lookup)[0] == "stale"


def test_failure_limiter_window():
    clock = Clock()
    limiter = FailureLimiter(max_failures=2, window=10, clock=clock)
    limiter.record_failure("1.2.3.4")
    assert not limiter.blocked("1.2.3.4")
    limiter.record_failure("1.2.3.4")
    assert limiter.blocked("1.2.3.4") and not limiter.blocked("5.6.7.8")
    clock.now += 11
    assert not limiter.blocked("1.2.3.4")
