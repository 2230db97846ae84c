"""TLS contexts for SIP (RFC 3261 section 26): what the listener offers, how trunks are
verified, and how a certificate failure is put into words.

Everything is Python's `ssl` (OpenSSL): TLS 1.2 at least, forward-secret AEAD cipher
suites only for 1.2 (1.3 suites are all AEAD). Contexts are built from PEM files; a
reload builds new ones and new connections use them, connections already up keep the
context they were made with (so a live call's signalling is not dropped).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL:!MD5:!DSS"


class TlsConfigError(ValueError):
    """A certificate, key or CA file that cannot be used (named in the message)."""


@dataclass(frozen=True)
class TlsFiles:
    """Where our certificate, key and CA bundles are (PEM)."""

    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None  # verify servers (trunks); None = system store
    client_ca_file: str | None = None  # verify client certificates (mutual TLS)
    min_version: str = "1.2"
    ciphers: str = DEFAULT_CIPHERS


def _harden(ctx: ssl.SSLContext, files: TlsFiles) -> None:
    ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if files.min_version == "1.3"
                           else ssl.TLSVersion.TLSv1_2)
    try:
        ctx.set_ciphers(files.ciphers)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"sip.tls.ciphers {files.ciphers!r}: {exc}") from None
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)


def _load_chain(ctx: ssl.SSLContext, files: TlsFiles) -> None:
    if not files.cert_file:
        return
    try:
        ctx.load_cert_chain(files.cert_file, files.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(
            f"cannot load sip.tls.cert_file {files.cert_file!r} / key_file "
            f"{files.key_file!r}: {exc}") from None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The listener's context. With `client_ca_file`, a client certificate is asked
    for (not required: phones have none) and verified when given; a trunk is then
    identified by its names (`peer_names`)."""
    if not files.cert_file:
        raise TlsConfigError("sip.tls.enabled needs sip.tls.cert_file and key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, files)
    _load_chain(ctx, files)
    if files.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=files.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(
                f"cannot load sip.tls.client_ca_file {files.client_ca_file!r}: {exc}") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """For connections we open (trunks): the server certificate is verified against
    `ca_file` or the system store, and its name against the trunk's host name; our
    own certificate is presented when one is configured (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    _harden(ctx, files)
    try:
        if files.ca_file:
            ctx.load_verify_locations(cafile=files.ca_file)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load sip.tls.ca_file {files.ca_file!r}: {exc}") from None
    _load_chain(ctx, files)
    return ctx


def peer_names(peercert: dict[str, Any] | None) -> frozenset[str]:
    """The names a verified certificate carries: DNS SANs, else the subject CN."""
    if not peercert:
        return frozenset()
    sans = {value.lower() for kind, value in peercert.get("subjectAltName", ())
            if kind == "DNS"}
    if sans:
        return frozenset(sans)
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return frozenset({str(value).lower()})
    return frozenset()


def describe_failure(exc: BaseException) -> str:
    """Why a handshake failed, in the words an administrator searches for."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
        code = exc.verify_code
        if code == 10:
            return f"certificate expired ({message})"
        if code in (18, 19, 20, 21):
            return f"certificate not trusted ({message})"
        if code == 62 or "mismatch" in message.lower():
            return f"certificate name does not match ({message})"
        return f"certificate refused ({message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, TimeoutError):
        return "TLS handshake timed out"
    return f"{type(exc).__name__}: {exc}"


__all__ = ["TlsConfigError", "TlsFiles", "client_context", "describe_failure",
           "peer_names", "server_context"]
