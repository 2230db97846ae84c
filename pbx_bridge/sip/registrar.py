"""Registrar for agents' phones (RFC 3261 section 10): bindings per SIP username.

Bindings live in memory on the node that received the REGISTER; phones refresh
well within the expiry, so a restarted node is repopulated within one refresh
interval.  Several contacts per user are kept (desk phone and softphone), most
recently refreshed first; all of them ring when the agent is offered a call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.numbers import ascii_int
from pbx_bridge.sip.message import NameAddr, SipParseError, SipRequest, SipUri
from pbx_bridge.sip.transport import Peer

DEFAULT_EXPIRES = 3600
MIN_EXPIRES = 60
MAX_EXPIRES = 7200
MAX_CONTACTS_PER_USER = 10


class RegistrationError(ValueError):
    """A REGISTER that must be refused; carries the status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Binding:
    contact: str  # the Contact URI as sent
    expires_at: float
    peer: Peer  # where the REGISTER came from (NAT: ring there, not at the URI host)
    call_id: str
    cseq: int
    updated_at: float

    def target(self) -> Peer:
        """Where to send requests for this binding.

        The source of the REGISTER is used (it is what a NATed phone can receive
        on); over TCP the same connection is reused.
        """
        return self.peer


@dataclass
class Registrar:
    clock: Callable[[], float] = time.monotonic
    bindings: dict[str, list[Binding]] = field(default_factory=dict)

    def register(self, username: str, req: SipRequest, peer: Peer) -> list[Binding]:
        """Apply a REGISTER's Contact headers; returns the user's current bindings."""
        now = self.clock()
        current = [b for b in self.bindings.get(username, []) if b.expires_at > now]
        contacts = req.get_all("contact")
        header_expires = req.get("expires")
        call_id = req.call_id
        cseq, _ = req.cseq
        if header_expires is not None and ascii_int(header_expires.strip(), max_digits=10) is None:
            raise RegistrationError(400, "Bad Expires")
        if contacts == ["*"]:
            if header_expires is None or ascii_int(header_expires.strip(), max_digits=10) != 0:
                raise RegistrationError(400, "Wildcard Contact requires Expires: 0")
            self.bindings.pop(username, None)
            return []
        for value in contacts:
            if value.strip() == "*":
                raise RegistrationError(400, "Wildcard Contact mixed with others")
            try:
                addr = NameAddr.parse(value)
                SipUri.parse(addr.uri)
            except SipParseError as exc:
                raise RegistrationError(400, f"Bad Contact: {exc.reason}") from None
            raw = addr.params.get("expires", header_expires)
            if raw is None:
                expires = DEFAULT_EXPIRES
            elif ascii_int(raw.strip(), max_digits=10) is None:
                raise RegistrationError(400, "Bad expires parameter")
            else:
                expires = ascii_int(raw.strip(), max_digits=10) or 0
            if 0 < expires < MIN_EXPIRES:
                raise RegistrationError(423, "Interval Too Brief")
            expires = min(expires, MAX_EXPIRES)
            existing = next((b for b in current if b.contact == addr.uri), None)
            if existing is not None:
                if existing.call_id == call_id and cseq <= existing.cseq:
                    continue  # out-of-order retransmission (RFC 3261 10.3 step 7)
                current.remove(existing)
            if expires > 0:
                current.append(Binding(addr.uri, now + expires, peer, call_id, cseq, now))
        current.sort(key=lambda b: b.updated_at, reverse=True)
        current = current[:MAX_CONTACTS_PER_USER]
        if current:
            self.bindings[username] = current
        else:
            self.bindings.pop(username, None)
        return current

    def contacts(self, username: str) -> list[Binding]:
        now = self.clock()
        live = [b for b in self.bindings.get(username, []) if b.expires_at > now]
        if live:
            self.bindings[username] = live
        else:
            self.bindings.pop(username, None)
        return live

    def is_registered(self, username: str) -> bool:
        return bool(self.contacts(username))

    def contact_header(self, bindings: list[Binding]) -> list[str]:
        now = self.clock()
        return [f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}" for b in bindings]
