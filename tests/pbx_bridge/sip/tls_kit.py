"""Certificates made by the test (a private CA, server, client, mismatched and expired
certificates), a TLS+SRTP baresip phone, and an FFT check of recorded audio."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sip_testkit import BARESIP, free_udp_port, wait_bound

from config.schema.server import SipSettings, SipTlsSettings


@dataclass
class Pem:
    cert: Path
    key: Path

    @property
    def combined(self) -> Path:
        """cert + key in one file (baresip's `sip_certificate`)."""
        path = self.cert.with_suffix(".both.pem")
        path.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        return path


class TestCa:
    __test__ = False  # not a test class: a certificate authority for tests

    """A private CA that signs the certificates a test needs."""

    def __init__(self, root: Path, name: str = "Centrale Test CA") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1))
                     .not_valid_after(now + dt.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, key_cert_sign=True, crl_sign=True,
                         content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, encipher_only=False,
                         decipher_only=False), True)
                     .sign(self.key, hashes.SHA256()))
        self.path = root / f"{name.replace(' ', '_')}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
              client: bool = False, expired: bool = False) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = (now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired \
            else (now - dt.timedelta(hours=1), now + dt.timedelta(days=10))
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.CLIENT_AUTH if client
                        else ExtendedKeyUsageOID.SERVER_AUTH,
                        ExtendedKeyUsageOID.SERVER_AUTH if client
                        else ExtendedKeyUsageOID.CLIENT_AUTH]), False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
        cert = builder.sign(self.key, hashes.SHA256())
        pem = Pem(self.root / f"{name}.crt.pem", self.root / f"{name}.key.pem")
        pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return pem


def tls_settings(server: Pem, ca: TestCa, *, client_ca: TestCa | None = None,
                 client: Pem | None = None, host: str = "127.0.0.1",
                 **extra: object) -> SipSettings:
    """SipSettings with TLS on an OS-chosen port. `client`: the certificate we present
    to trunks (mutual TLS) — it replaces `server` as our chain when given."""
    chain = client or server
    return SipSettings(
        enabled=True, host=host, port=0, transports=["udp", "tcp"],
        rtp_port_min=30000, rtp_port_max=39999,
        tls=SipTlsSettings(enabled=True, port=0, cert_file=str(chain.cert),
                           key_file=str(chain.key), ca_file=str(ca.path),
                           client_ca_file=str(client_ca.path) if client_ca else None),
        **extra)  # type: ignore[arg-type]


class TlsBaresip:
    """baresip 1.0 over TLS with SDES SRTP (`mediaenc=srtp-mand`): its microphone is a
    WAV file (`aufile`) and what it hears is dumped by `sndfile` (`dump-*-dec.wav`)."""

    def __init__(self, workdir: Path, name: str, *, ca: Path, tone: Path,
                 account: str, commands: list[str] | None = None,
                 certificate: Path | None = None) -> None:
        self.dir = workdir / f"baresip-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dumps = self.dir / "dumps"
        self.dumps.mkdir(exist_ok=True)
        self.ca, self.tone, self.certificate = ca, tone, certificate
        (self.dir / "accounts").write_text(account + "\n")
        self.commands = commands or []
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.log = self.dir / "baresip.log"

    def _write_config(self) -> None:
        self.port = free_udp_port()
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.port}",
            f"sip_cafile {self.ca}",
            f"audio_source aufile,{self.tone}",
            "audio_player aubridge,sink",
            "audio_alert aubridge,sink",
            f"snd_path {self.dumps}",
            "rtp_ports 40000-59998",
            "module_path /usr/lib/baresip/modules",
            "module g711.so", "module aufile.so", "module aubridge.so", "module srtp.so",
            "module sndfile.so",
            "module_app account.so", "module_app menu.so",
        ]
        if self.certificate is not None:
            lines.append(f"sip_certificate {self.certificate}")
        (self.dir / "config").write_text("\n".join(lines) + "\n")

    async def start(self) -> None:
        for _ in range(8):
            self._write_config()
            args = [BARESIP, "-f", str(self.dir)]
            for command in self.commands:
                args += ["-e", command]
            with self.log.open("ab") as out:
                self.proc = await asyncio.create_subprocess_exec(
                    *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
            if await wait_bound(self.proc, self.port):
                return
            await self.stop()
        raise AssertionError("baresip could not bind a SIP port")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def heard(self) -> np.ndarray:
        """What baresip decoded (the `-dec` dump), as float samples."""
        dumps = sorted(self.dumps.glob("dump-*-dec.wav"))
        assert dumps, f"no decoded audio dump in {self.dumps}: {self.log.read_text()[-2000:]}"
        with wave.open(str(dumps[-1])) as wav:
            data = wav.readframes(wav.getnframes())
            rate = wav.getframerate()
        assert rate == 8000, rate
        return np.frombuffer(data, dtype="<i2").astype(np.float64)


def dominant_frequencies(samples: np.ndarray, rate: int = 8000, window: float = 0.5
                         ) -> list[float]:
    """The strongest frequency of each loud `window`-second slice (silence skipped)."""
    size = int(rate * window)
    found = []
    for start in range(0, len(samples) - size, size):
        chunk = samples[start:start + size]
        if np.sqrt(np.mean(chunk ** 2)) < 300:
            continue
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(size)))
        found.append(float(np.fft.rfftfreq(size, 1 / rate)[int(np.argmax(spectrum))]))
    return found


def heard_tone(samples: np.ndarray, freq: float, *, slices: int = 2) -> bool:
    """At least `slices` half-second slices whose strongest frequency is `freq`."""
    return sum(abs(f - freq) <= 20 for f in dominant_frequencies(samples)) >= slices
