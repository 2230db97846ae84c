"""Issue 26: SIP TLS/SRTP settings that cannot work are refused at load time with the
file and line (a missing certificate, SRTP required without TLS, client-certificate
trunks without a CA to check them)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from config import ConfigError, load_config


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(directory, env={})
    return [str(i) for i in info.value.issues]


def test_missing_certificate_and_impossible_srtp_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "server.yaml").write_text(textwrap.dedent(f"""\
        server:
          sip:
            enabled: true
            phone_srtp: required
            tls:
              enabled: false
              cert_file: {tmp_path}/nowhere.pem
            trunks:
              - name: carrier
                allowed_ips: [192.0.2.1]
                srtp: required
                tls_client_names: [carrier.example]
        """))
    errors = errors_of(tmp_path)
    assert any("server.yaml:4:" in e and "phone_srtp" in e and "enable server.sip.tls" in e
               for e in errors), errors
    assert any("server.yaml:11:" in e and "no TLS either way" in e for e in errors), errors
    assert any("server.yaml:12:" in e and "client_ca_file" in e for e in errors), errors


def test_enabled_tls_with_a_missing_key_file(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "server.yaml").write_text(textwrap.dedent(f"""\
        server:
          sip:
            enabled: true
            tls:
              enabled: true
              cert_file: {cert}
              key_file: {tmp_path}/missing-key.pem
        """))
    errors = errors_of(tmp_path)
    assert any("server.yaml:7:" in e and "file not found" in e for e in errors), errors


def test_a_coherent_tls_config_loads(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("pem")
    (tmp_path / "server.yaml").write_text(textwrap.dedent(f"""\
        server:
          sip:
            enabled: true
            phone_srtp: required
            phones_tls_only: true
            tls: {{enabled: true, cert_file: {tmp_path}/cert.pem,
                   key_file: {tmp_path}/key.pem, client_ca_file: {tmp_path}/ca.pem}}
            trunks:
              - {{name: carrier, tls_client_names: [carrier.example], srtp: required}}
        """))
    config = load_config(tmp_path, env={})
    assert config.server.sip.tls.enabled and config.server.sip.trunks[0].srtp == "required"
