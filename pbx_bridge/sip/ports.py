"""What the SIP core needs from the rest of Centrale (the bottom of its layers).

The SIP core imports nothing from `cases`, `queues` or the IVR interpreter: the
composition root (`centrale/`) passes callables that satisfy these protocols.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol


class PromptResolver(Protocol):
    """Maps a prompt key and language to a WAV file (the IVR's prompt cache)."""

    def resolve(self, prompt: str, language: str) -> Path | None: ...


class MusicResolver(Protocol):
    """Maps a music-on-hold class to a WAV file that is played in a loop."""

    def __call__(self, music_class: str) -> Path | None: ...


class CredentialLookup(Protocol):
    """Agent phone SIP username -> password (from config `Agent.sip`), None if unknown."""

    def __call__(self, username: str) -> str | None: ...


@dataclass(frozen=True)
class TrunkConfig:
    """A SIP trunk allowed to send calls in (and used for outbound calls).

    A request is from this trunk when its source IP is in `allowed_ips` and/or it
    authenticates with `username`/`password`.  `trusted` trunks may assert the
    caller's identity with P-Asserted-Identity; from others, PAI is ignored.
    `outbound_host`/`outbound_port` is where outbound calls (callbacks) are sent;
    with `register`, Centrale registers there as `username` (digest) and refreshes.
    """

    name: str
    allowed_ips: frozenset[str] = frozenset()
    username: str | None = None
    password: str | None = None
    trusted: bool = False
    outbound_host: str | None = None
    outbound_port: int = 5060
    outbound_transport: str = "udp"
    register: bool = False
    register_expires: int = 600
    # TLS (docs/security.md): name the trunk's server certificate must carry (default
    # outbound_host); client-certificate names that identify the trunk (mutual TLS)
    tls_server_name: str | None = None
    tls_client_names: frozenset[str] = frozenset()
    srtp: str = "off"  # "off" | "optional" | "required" (SDES, only over TLS)


@dataclass
class CallRecord:
    """Written when a call ends; the wiring turns it into a case timeline entry."""

    call_id: str
    direction: str  # "inbound" | "outbound"
    caller_id: str | None
    dialled: str
    withheld: bool
    started_at: datetime
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    agent_username: str | None = None
    ended_by: str = "unknown"  # "caller" | "agent" | "server" | "cancel"
    cause: str = "normal"
    digits: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    rtp_packets_in: int = 0
    rtp_packets_out: int = 0
    srtp: bool = False  # the media was SRTP
    srtp_auth_failures: int = 0  # SRTP packets that failed authentication (wrong key?)


CallRecordSink = Callable[[CallRecord], Awaitable[None]]
