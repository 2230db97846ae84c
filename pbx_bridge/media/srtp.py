"""SRTP (RFC 3711) for one RTP leg, keyed by SDES (RFC 4568 `a=crypto`).

The crypto is libsrtp, through `pylibsrtp` (the binding aiortc uses). A leg has two
libsrtp sessions: one protecting what we send with our key, one checking and
decrypting what we receive with the peer's key. A bridge between two legs decrypts
on one and encrypts on the other with that leg's own key (re-encryption per leg), so
an SRTP leg can be bridged to a plain RTP leg or to another SRTP leg.

A packet that fails authentication (a wrong key, tampering, a replay) is dropped and
counted; the first failure of a leg is logged once, and the count goes into the call
record. It never raises out of the receive path.

Two ways of calling libsrtp, the same results (tests run both):

- with the optional C extension `_srtp_batch` (built by `pip install -e .` when a C
  compiler and Python's headers are there): `protect` and `unprotect` are C callables,
  and the media engine hands it whole batches — a scheduler sub-tick's sends
  (`protect_all`), an event-loop pass's received datagrams (`unprotect_all`) — so that
  libsrtp runs back to back with warm caches and no Python between packets;
  With it, libsrtp's HMAC-SHA1 and AES-CM are also replaced (through libsrtp's own
  `srtp_replace_auth_type` / `srtp_replace_cipher_type`) by the extension's, whose
  state is one block instead of OpenSSL 3's dozen objects
  (`CENTRALE_SRTP_CRYPTO=libsrtp` keeps libsrtp's);
- without it: closures over libsrtp's functions through pylibsrtp's cffi binding, one
  call per packet (or pylibsrtp's public API, should that binding change).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pylibsrtp

try:  # the C functions behind pylibsrtp's Session (see SrtpContext for why)
    from pylibsrtp._binding import __file__ as _binding_path
    from pylibsrtp._binding import ffi, lib
except ImportError:  # a pylibsrtp laid out otherwise: its public API, slower
    ffi = lib = _binding_path = None

try:  # libsrtp over batches of packets; optional (pyproject.toml's ext-modules)
    from pbx_bridge.media import _srtp_batch
except ImportError:
    _srtp_batch = None  # type: ignore[assignment]

from core.numbers import ascii_int

log = logging.getLogger(__name__)

# SDES suite name -> libsrtp profile; both use a 16-byte key and a 14-byte salt
SUITES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
DEFAULT_SUITE = "AES_CM_128_HMAC_SHA1_80"
KEY_SALT_BYTES = 30
# Room for one packet: a UDP datagram on a 1500-byte MTU, and the auth tag libsrtp
# appends (up to 16 bytes; no MKI). A longer datagram is no RTP we take.
BUFFER_BYTES = 1500
TRAILER_BYTES = 16


# The C prototype _srtp_batch.c declares for srtp_protect / srtp_unprotect (libsrtp 2;
# libsrtp 3 changed them): the extension is used only when pylibsrtp's match it.
_LIBSRTP2_CALL = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"


def _bind_batch() -> ModuleType | None:
    """The C extension with libsrtp's functions bound, or None (not built, or a
    pylibsrtp whose libsrtp has other prototypes: the Python path then)."""
    if _srtp_batch is None or lib is None:
        return None
    try:
        if any(ffi.typeof(fn).cname != _LIBSRTP2_CALL or ffi.sizeof("srtp_err_status_t") != 4
               for fn in (lib.srtp_protect, lib.srtp_unprotect)):
            return None
        _srtp_batch.bind(*(int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
                           for name in ("srtp_protect", "srtp_unprotect")))
    except (AttributeError, TypeError, ValueError, ffi.error):
        return None
    # libsrtp's HMAC-SHA1 and AES-CM through OpenSSL 3's EVP layer touch a dozen
    # scattered objects per packet, cold for each of hundreds of legs; the extension's
    # (RFC 2104 over OpenSSL's SHA-1; OpenSSL's AES-NI CTR routine; each with its state
    # in one block, each checked by libsrtp's known-answer test before libsrtp takes
    # it) cost ~15 % of an RTP call less per SRTP call (docs/performance.md, "SRTP
    # media"). CENTRALE_SRTP_CRYPTO=libsrtp keeps libsrtp's own.
    if os.environ.get("CENTRALE_SRTP_CRYPTO", "flat") == "flat":
        for install, what in ((_srtp_batch.install_hmac, "HMAC-SHA1"),
                              (_srtp_batch.install_aes, "AES-CM")):
            try:
                install(_binding_path)
            except ImportError as exc:
                log.info("SRTP: libsrtp's own %s is kept (%s)", what, exc)
    return _srtp_batch


# The C extension in use, or None: SrtpContexts made while it is None take the
# Python path (tests set it to None to run that path).
batch: ModuleType | None = _bind_batch()


class CryptoError(ValueError):
    """A malformed or unusable `a=crypto` attribute (answered with 488)."""


@dataclass(frozen=True)
class CryptoAttribute:
    """One `a=crypto:<tag> <suite> inline:<key||salt>[|lifetime][|mki:len]` value."""

    tag: int
    suite: str
    key: bytes  # master key || master salt, 30 bytes
    supported: bool = True  # False: a suite we do not do (skipped, not an error)

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        parts = value.split()
        if len(parts) < 3:
            raise CryptoError(f"malformed a=crypto {value[:60]!r}")
        tag = ascii_int(parts[0], max_digits=9)
        if tag is None:
            raise CryptoError(f"a=crypto tag {parts[0][:12]!r} is not a number")
        suite = parts[1]
        if suite not in SUITES:
            return cls(tag, suite, b"", supported=False)
        params = parts[2]
        if not params.startswith("inline:"):
            raise CryptoError("a=crypto key method is not inline:")
        if ";inline:" in params:
            raise CryptoError("a=crypto with several keys is not supported")
        key_text, *rest = params[len("inline:"):].split("|")
        if any(":" in part for part in rest):
            raise CryptoError("a=crypto with an MKI is not supported")
        try:
            key = base64.b64decode(key_text + "=" * (-len(key_text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("a=crypto key is not base64") from None
        if len(key) != KEY_SALT_BYTES:
            raise CryptoError(f"a=crypto key is {len(key)} bytes, {KEY_SALT_BYTES} expected")
        return cls(tag, suite, key)

    def serialize(self) -> str:
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"

    @classmethod
    def generate(cls, tag: int = 1, suite: str = DEFAULT_SUITE) -> CryptoAttribute:
        return cls(tag, suite, secrets.token_bytes(KEY_SALT_BYTES))


class SrtpContext:
    """Protects outgoing and unprotects incoming packets of one leg.

    `protect` and `unprotect` run for every packet (100 a second per call), so they
    are plain closures over libsrtp's C functions, set on the instance: one Python
    frame, a preallocated buffer and length cell per direction, no exception and no
    allocation besides the packet that is returned. pylibsrtp's own `Session.protect`
    does the same C call but allocates a length cell, type-checks and goes through two
    more Python frames on every packet — about as much CPU as the AES and HMAC
    themselves (docs/performance.md, "SRTP media"). The pylibsrtp objects still
    create, own and free the libsrtp sessions; only the per-packet call is taken over
    (with pylibsrtp's public API as the fallback should its binding change).

    With the C extension, `protect` and `unprotect` are its streams instead (callable
    the same way, no Python frame at all), and `batched` tells the leg to queue what it
    receives for the engine's batch (`MediaEngine.open_inbox`).
    """

    def __init__(self, local: CryptoAttribute, remote: CryptoAttribute, *,
                 label: str = "") -> None:
        profile = SUITES[local.suite]
        out_policy = pylibsrtp.Policy(key=local.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                      srtp_profile=profile)
        out_policy.allow_repeat_tx = True  # a relay may resend a sequence number
        self._out = pylibsrtp.Session(out_policy)
        self._in = pylibsrtp.Session(pylibsrtp.Policy(
            key=remote.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=SUITES[remote.suite]))
        self.local = local
        self.remote = remote
        self.label = label
        self._refusals = _Refusals(label)
        self.protect: Callable[[bytes], bytes | None]
        self.unprotect: Callable[[bytes], bytes | None]
        # True: `unprotect` is a C stream, and the leg queues what it receives for the
        # loop pass's batch (MediaEngine.open_inbox) instead of calling it per packet
        self.batched = batch is not None and _direct(self._out) and _direct(self._in)
        if self.batched:
            assert batch is not None
            self.protect = batch.Stream(_address(self._out), self._out, False)
            self.unprotect = batch.Stream(_address(self._in), self._in, True, self._refusals)
        else:
            self.protect = _protector(self._out)
            self.unprotect = _unprotector(self._in, self._refusals)

    @property
    def auth_failures(self) -> int:
        """Packets refused on this leg (goes into the call record)."""
        return self._refusals.count

    @property
    def on_failure(self) -> Callable[[int], None] | None:
        """Called with the running count after each refused packet."""
        return self._refusals.on_failure

    @on_failure.setter
    def on_failure(self, callback: Callable[[int], None] | None) -> None:
        self._refusals.on_failure = callback


class _Refusals:
    """The slow path: a packet libsrtp would not decrypt (or one too long). Its own
    object, not a method of the context, so the `unprotect` closure that calls it
    holds no reference back to the context (no cycle: the libsrtp sessions are freed
    when the leg drops its context, not at the next garbage collection)."""

    __slots__ = ("count", "label", "on_failure")

    def __init__(self, label: str) -> None:
        self.label = label
        self.count = 0
        self.on_failure: Callable[[int], None] | None = None

    def __call__(self, status: int | str) -> None:
        self.count += 1
        if self.count == 1:
            errors = getattr(pylibsrtp, "ERRORS", ())
            reason = status if isinstance(status, str) else errors[status] \
                if 0 < status < len(errors) else f"libsrtp status {status}"
            log.warning("SRTP %s: packet refused (%s): wrong key or tampering; "
                        "its audio is not decoded", self.label, reason)
        if self.on_failure is not None:
            try:  # called from the C batch too, where a raise would lose other packets
                self.on_failure(self.count)
            except Exception:
                log.exception("SRTP %s: the refusal callback failed", self.label)


def protect_all(outbox: Sequence[tuple[Any, bytes]]) -> list[bytes | None]:
    """The packets of a scheduler sub-tick as they go on the wire, in order: `outbox`
    holds (leg, RTP packet); a leg without `srtp` sends its packet as it is, an SRTP
    leg its protected packet, or None when libsrtp refused it (a send drop)."""
    if batch is not None:
        return batch.protect_batch(outbox)
    return [packet if leg.srtp is None else leg.srtp.protect(packet)
            for leg, packet in outbox]


def unprotect_all(inbox: Sequence[tuple[Any, ...]]) -> list[bytes | None]:
    """The RTP packets of (unprotect, datagram, ...) items, in order, None where the
    datagram was refused (counted by that leg's context)."""
    if batch is not None:
        return batch.unprotect_batch(inbox)
    return [item[0](item[1]) for item in inbox]


def _address(session: pylibsrtp.Session) -> int:
    """The address of the libsrtp context `session` owns (for the C extension)."""
    return int(ffi.cast("uintptr_t", session._srtp[0]))


def _direct(session: pylibsrtp.Session) -> bool:
    """Whether libsrtp's C functions can be called on this session's context."""
    return lib is not None and hasattr(session, "_srtp")


def _protector(session: pylibsrtp.Session) -> Callable[[bytes], bytes | None]:
    """`protect(rtp) -> srtp`, or None for a packet that does not fit (libsrtp does
    not check the room it writes the tag into: the length is checked here)."""
    if not _direct(session):
        def protect_api(packet: bytes) -> bytes | None:
            try:
                return session.protect(packet)
            except (pylibsrtp.Error, ValueError):
                return None
        return protect_api
    srtp = session._srtp[0]
    buf = ffi.new("unsigned char[]", BUFFER_BYTES)
    view = ffi.buffer(buf)
    size = ffi.new("int *")
    call = lib.srtp_protect
    limit = BUFFER_BYTES - TRAILER_BYTES

    def protect(packet: bytes) -> bytes | None:
        n = len(packet)
        if n > limit:
            return None
        view[0:n] = packet
        size[0] = n
        if call(srtp, buf, size):
            return None  # libsrtp refused (a key past its lifetime): the frame is lost
        return view[0:size[0]]

    protect.session = session  # type: ignore[attr-defined]  # owns (and frees) srtp
    return protect


def _unprotector(session: pylibsrtp.Session,
                 refused: Callable[[int | str], None]) -> Callable[[bytes], bytes | None]:
    """`unprotect(srtp) -> rtp`, or None (counted by `refused`) when it fails
    authentication or replay, or is longer than any RTP packet we take."""
    if not _direct(session):
        def unprotect_api(data: bytes) -> bytes | None:
            try:
                return session.unprotect(data)
            except (pylibsrtp.Error, ValueError) as exc:
                refused(str(exc))
                return None
        return unprotect_api
    srtp = session._srtp[0]
    buf = ffi.new("unsigned char[]", BUFFER_BYTES)
    view = ffi.buffer(buf)
    size = ffi.new("int *")
    call = lib.srtp_unprotect

    def unprotect(data: bytes) -> bytes | None:
        n = len(data)
        if n > BUFFER_BYTES:
            refused(6)  # "can't process as much data as requested"
            return None
        view[0:n] = data
        size[0] = n
        status = call(srtp, buf, size)
        if status:
            refused(status)
            return None
        return view[0:size[0]]

    unprotect.session = session  # type: ignore[attr-defined]
    return unprotect


__all__ = ["DEFAULT_SUITE", "SUITES", "CryptoAttribute", "CryptoError", "SrtpContext",
           "protect_all", "unprotect_all"]
