"""The docker/asterisk config set's TLS and SRTP parts on a live Asterisk 20 (issue 26):
transport-tls loads with the certificate the image carries, res_srtp runs, and a
baresip phone registers to an `agent-endpoint-tls` endpoint over TLS with mandatory
SRTP (SDES)."""

from __future__ import annotations

import math
import re
import socket
import sys
import wave
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pbx_bridge" / "sip"))
from live_asterisk import LiveAsterisk, free_port
from tls_kit import TlsBaresip

from tests.waiting import wait_until

pytestmark = pytest.mark.asterisk


async def test_tls_transport_srtp_and_a_tls_phone_registration(build, tmp_path: Path):  # type: ignore[no-untyped-def]
    asterisk = LiveAsterisk(build, tmp_path / "asterisk", agi_port=free_port(),
                            trunk_port=free_port(socket.SOCK_DGRAM), rtp_ports=20)
    conf = asterisk.etc / "pjsip.conf"
    text = conf.read_text()
    tls_port = free_port()
    text = text.replace("[1004](agent-endpoint)", "[1004](agent-endpoint-tls)")
    text = re.sub(r"(\[transport-tls\][^\[]*?bind = 0\.0\.0\.0:)\d+",
                                rf"\g<1>{tls_port}", text)
    conf.write_text(text)
    await asterisk.start()
    phone = None
    try:
        code, transports = await asterisk.cli("pjsip show transports")
        assert code == 0 and "transport-tls" in transports and "tls" in transports, transports
        code, modules = await asterisk.cli("module show like res_srtp")
        assert "res_srtp.so" in modules and "Running" in modules, modules
        code, endpoint = await asterisk.cli("pjsip show endpoint 1004")
        assert "media_encryption" in endpoint and "sdes" in endpoint, endpoint
        tone = tmp_path / "tone.wav"
        with wave.open(str(tone), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(b"".join(
                int(5000 * math.sin(2 * math.pi * 440 * i / 8000)).to_bytes(2, "little",
                                                                            signed=True)
                for i in range(8000 * 5)))
        cert = asterisk.root / "varlib" / "keys" / "asterisk.crt"
        phone = TlsBaresip(tmp_path, "1004", ca=cert, tone=tone,
                           account=f"<sip:1004@127.0.0.1:{tls_port};transport=tls>;"
                                   "auth_pass=demo-sip;mediaenc=srtp-mand;regint=300")
        await phone.start()

        seen: list[str] = []

        async def registered() -> bool:
            _code, out = await asterisk.cli("pjsip show aor 1004")
            seen.append(out)
            return any("contact" in line and "sip:1004" in line
                       and "transport=tls" in line.lower() for line in out.splitlines())

        try:
            await wait_until(registered, 60, step=0.5)
        except AssertionError:
            raise AssertionError(f"no TLS contact for 1004: {seen[-1:]}") from None
    finally:
        if phone is not None:
            await phone.stop()
        await asterisk.stop()
