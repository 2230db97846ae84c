"""`server:` — where Centrale listens and stores, and the site-wide defaults."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from config.schema.base import Strict
from config.schema.recording import RecordingStorage


class CannedReply(Strict):
    """A ready answer an agent picks in the reply box. `{customer_name}` and
    `{agent_name}` are filled in on the desktop before the agent sends it."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    title: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=4096)
    language: str | None = None  # shown only to users of this language; None: to all


class WebSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None  # as the outside sees it (reverse proxy), for signatures
    session_secret: SecretStr | None = None
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # Reverse proxies (CIDRs) whose X-Forwarded-For is believed: only then is the client
    # address (log-in rate limiting, sessions) taken from that header. Empty: never.
    trusted_proxies: list[str] = []
    # A desktop whose last websocket closed: its open offers go to the next agent after
    # `offer_disconnect_grace_seconds` (a page reload reconnects well within it), the
    # agent goes not-ready ("disconnected") after `disconnect_grace_seconds`.
    disconnect_grace_seconds: float = Field(10, ge=0, le=600)
    offer_disconnect_grace_seconds: float = Field(2, ge=0, le=60)
    canned_replies: list[CannedReply] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IP address or CIDR network") from None
        return value


class DatabaseSettings(Strict):
    path: str = "var/centrale.db"  # SQLite file, relative to the config dir's parent
    url: SecretStr | None = None  # overrides path; CENTRALE_DATABASE_URL overrides both


class SipTrunk(Strict):
    """A provider or PBX allowed to send calls in, and where callbacks go out.

    A request comes from this trunk when its source address is in `allowed_ips` and/or
    it authenticates with `username`/`password`. Only `trusted` trunks may assert the
    caller with P-Asserted-Identity."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    allowed_ips: list[str] = []
    username: str | None = None
    password: SecretStr | None = None
    trusted: bool = False
    outbound_host: str | None = None
    outbound_port: int = Field(5060, ge=1, le=65535)
    outbound_transport: str = Field("udp", pattern=r"^(udp|tcp|tls)$")
    # TLS (issue 26): the name the trunk's server certificate must carry (default:
    # outbound_host), and the names (certificate CN or DNS SAN) of client certificates
    # that identify this trunk on inbound TLS, as well as or instead of allowed_ips.
    tls_server_name: str | None = None
    tls_client_names: list[str] = []
    # SRTP with SDES keys (docs/security.md): off, optional (offered/accepted when the
    # signalling is TLS), required (a call without SRTP is refused with 488).
    srtp: str = Field("off", pattern=r"^(off|optional|required)$")


class SipTlsSettings(Strict):
    """SIP over TLS (RFC 3261 section 26). Certificate and key are PEM files, read again
    on `centrale reload` (live calls and connections keep the old ones)."""

    enabled: bool = False
    port: int = Field(5061, ge=0, le=65535)
    cert_file: str | None = None  # our certificate chain (PEM)
    key_file: str | None = None
    # CA bundle to verify trunks' server certificates; None: the system store
    ca_file: str | None = None
    # CA bundle for client certificates (mutual TLS with trunks); None: none asked
    client_ca_file: str | None = None
    min_version: str = Field("1.2", pattern=r"^1\.[23]$")
    ciphers: str = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL:!MD5:!DSS"
    handshake_timeout_seconds: float = Field(10, gt=0, le=120)


class SipSettings(Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(5060, ge=0, le=65535)
    transports: list[str] = ["udp", "tcp"]
    rtp_port_min: int = Field(10000, ge=1024, le=65535)
    rtp_port_max: int = Field(20000, ge=1024, le=65535)
    realm: str = "centrale"
    public_address: str | None = None  # address written in SDP/Contact if not host
    trunks: list[SipTrunk] = []
    ring_timeout_seconds: float = Field(20, gt=0)
    # TCP connections one address may hold (phones behind one NAT address share it)
    tcp_max_connections_per_address: int = Field(100, ge=1, le=2000)
    # TCP + TLS connections in all (each phone registered over TLS holds one)
    tcp_max_connections: int = Field(2000, ge=1, le=100_000)
    tls: SipTlsSettings = SipTlsSettings()
    # Phones (agents' registrations), issue 26: SRTP policy and whether REGISTER is
    # accepted only over TLS (the internet-facing checklist in docs/security.md).
    phone_srtp: str = Field("off", pattern=r"^(off|optional|required)$")
    phones_tls_only: bool = False
    # User-Agent / Server header; no version unless the site writes one here
    user_agent: str = Field("Centrale", min_length=1, max_length=100)
    # INVITE scanners: unauthenticated INVITEs (403s) per source and window before the
    # source is refused outright, like failed REGISTERs
    invite_scan_limit: int = Field(20, ge=1)
    invite_scan_window_seconds: float = Field(60, gt=0)
    # Admission: new calls between INVITE and answer (identification, IVR start). Beyond
    # this the node answers 503 with Retry-After at once (docs/performance.md).
    max_calls_in_setup: int = Field(64, ge=1, le=10000)
    # ... and while the oldest call in setup has waited longer than this.
    max_setup_wait_seconds: float = Field(2.0, gt=0, le=30)


class IceServer(Strict):
    """A STUN or TURN server the browser phone's both ends use (coturn, usually)."""

    urls: list[str] = Field(min_length=1)
    username: str | None = None
    credential: SecretStr | None = None

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ValueError(f"{url!r} is not a stun:, turn: or turns: URL")
        return value

    @model_validator(mode="after")
    def _turn_needs_credentials(self) -> IceServer:
        # A browser refuses a TURN entry without both (the page's RTCPeerConnection
        # would not even be made, so no call could be answered); say so at load time.
        if any(url.startswith(("turn:", "turns:")) for url in self.urls) and \
                (not self.username or self.credential is None
                 or not self.credential.get_secret_value()):
            raise ValueError("a turn:/turns: server needs username and credential "
                             "(e.g. credential: ${CENTRALE_TURN_PASSWORD})")
        return self


class WebRtcSettings(Strict):
    """The desktop's browser phone (pbx_bridge/webrtc, docs/browser-phone.md). It runs
    where the embedded SIP core runs; `enabled: false` turns it off."""

    enabled: bool = True
    ice_servers: list[IceServer] = []  # none: host candidates only (a LAN)
    ice_timeout_seconds: float = Field(10, gt=0, le=120)  # answer → media up, or next agent
    grace_seconds: float = Field(10, ge=0, le=300)  # page or network lost mid-call


class AmiSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=0, le=65535)
    username: str = "centrale"
    secret: SecretStr = SecretStr("")


class AsteriskSettings(Strict):
    enabled: bool = False
    ami: AmiSettings = AmiSettings()
    fastagi_host: str = "127.0.0.1"
    fastagi_port: int = Field(4573, ge=0, le=65535)
    agent_endpoint_template: str = "PJSIP/{sip_username}"
    holding_context: str = "centrale-hold"
    dial_context: str = "centrale-dial"


class ContinuitySettings(Strict):
    reopen_window_days: float = Field(7, ge=0)


class DemoSettings(Strict):
    """The demo's customer simulator (`web/demo/`, served at `/demo`) and
    `centrale demo seed`. Off unless a config turns it on: with it off the simulator's
    routes do not exist. `config.validate` refuses it on a config that looks like
    production (reachable from other machines) while a demo default secret is in use."""

    enabled: bool = False
    # Agents whose SIP account gets a virtual desk phone on the simulator page, so a
    # call can ring them with nothing but a browser (web/demo/desk_phone.py).
    desk_phones: list[str] = []


class ServerSettings(Strict):
    name: str = "centrale"
    default_region: str = Field("NL", pattern=r"^[A-Z]{2}$")
    timezone: str = "Europe/Amsterdam"
    default_language: str = "en"
    web: WebSettings = WebSettings()
    database: DatabaseSettings = DatabaseSettings()
    sip: SipSettings = SipSettings()
    asterisk: AsteriskSettings = AsteriskSettings()
    webrtc: WebRtcSettings = WebRtcSettings()
    continuity: ContinuitySettings = ContinuitySettings()
    demo: DemoSettings = DemoSettings()
    recordings: RecordingStorage = RecordingStorage()  # docs/recording.md
    prompts_dir: str = "prompts"
    log_level: str = Field("info", pattern=r"^(debug|info|warning|error)$")
