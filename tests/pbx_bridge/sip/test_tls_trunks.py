"""TLS trunks (issue 26) between two real SIP stacks over real TLS: this node calls
out through a carrier that is itself a Centrale SIP core with its own certificate.

* mutual TLS: the carrier identifies us by our client certificate alone (no address
  list, no digest) and the call's media is SRTP both ways;
* the carrier's certificate is checked against its name: a mismatched, expired or
  untrusted certificate refuses the call at once with a log line naming the trunk.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from conftest import AGENTS
from tls_kit import TestCa, tls_settings

from pbx_bridge.media.audio import PromptDirectory
from pbx_bridge.sip.leg import SipCallLeg
from pbx_bridge.sip.ports import CallRecord, TrunkConfig
from pbx_bridge.sip.server import SipServer


class Carrier:
    """The far end: answers every call it admits and keeps it up until BYE."""

    def __init__(self) -> None:
        self.legs: list[SipCallLeg] = []
        self.records: list[CallRecord] = []
        self.answered = asyncio.Event()
        self.server: SipServer | None = None

    async def handle(self, leg: SipCallLeg) -> None:
        await leg.answer()
        self.legs.append(leg)
        self.answered.set()
        await leg.call.ended.wait()

    async def sink(self, record: CallRecord) -> None:
        self.records.append(record)


@pytest.fixture
async def nodes(tmp_path: Path, prompt_dir: Path):  # type: ignore[no-untyped-def]
    started: list[SipServer] = []

    async def start(settings, *, trunks, handler, sink=None):  # type: ignore[no-untyped-def]
        server = SipServer(settings, inbound_handler=handler, credentials=AGENTS,
                           trunks=trunks, prompts=PromptDirectory(prompt_dir),
                           call_record_sink=sink)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


async def no_inbound(leg: SipCallLeg) -> None:
    await leg.hangup("unexpected")


async def start_carrier(nodes, ca: TestCa, cert_name: str = "localhost", *,  # type: ignore[no-untyped-def]
                        expired: bool = False, client_names=("node-a.example",)):
    carrier = Carrier()
    pem = ca.issue(f"carrier-{cert_name}-{expired}", dns=(cert_name,), ips=("127.0.0.1",),
                   expired=expired)
    settings = tls_settings(pem, ca, client_ca=ca)
    carrier.server = await nodes(settings, handler=carrier.handle, sink=carrier.sink, trunks=[
        TrunkConfig("node-a", tls_client_names=frozenset(client_names), srtp="optional")])
    return carrier


async def start_node_a(nodes, ca: TestCa, trust: TestCa, carrier_port: int, *,  # type: ignore[no-untyped-def]
                       server_name: str | None = None, srtp: str = "optional"):
    client = ca.issue("node-a.example", dns=("node-a.example",), client=True)
    settings = tls_settings(client, trust, client=client)
    return await nodes(settings, handler=no_inbound, trunks=[
        TrunkConfig("carrier", outbound_host="localhost", outbound_port=carrier_port,
                    outbound_transport="tls", tls_server_name=server_name, srtp=srtp)])


async def test_mutual_tls_trunk_identified_by_certificate_with_srtp(nodes, tmp_path: Path):
    ca = TestCa(tmp_path / "pki")
    carrier = await start_carrier(nodes, ca)
    node_a = await start_node_a(nodes, ca, ca, carrier.server.transport.tls_port)
    result = await node_a.place_outbound_call("0612345678", timeout=20)
    assert result.status == "answered" and result.leg is not None, result.status
    await asyncio.wait_for(carrier.answered.wait(), 10)
    far = carrier.legs[0].call
    # admitted only by the certificate: the carrier's trunk has no address and no digest
    assert far.peer.transport == "TLS"
    assert "node-a.example" in far.peer.certificate_names
    ours = result.leg.call
    assert ours.rtp is not None and ours.rtp.srtp is not None
    assert far.rtp is not None and far.rtp.srtp is not None
    # play on our side; the carrier decrypts it with the key we sent it
    await result.leg.play(["welcome"], "en")
    assert far.rtp.stats.packets_in >= 20 and far.rtp.srtp.auth_failures == 0
    await result.leg.hangup("done")
    await asyncio.wait_for(far.ended.wait(), 10)
    assert carrier.records and carrier.records[0].srtp


async def test_client_certificate_of_another_name_is_refused(nodes, tmp_path: Path):
    ca = TestCa(tmp_path / "pki")
    carrier = await start_carrier(nodes, ca, client_names=("someone-else.example",))
    node_a = await start_node_a(nodes, ca, ca, carrier.server.transport.tls_port)
    result = await node_a.place_outbound_call("0612345678", timeout=20)
    assert result.status in ("rejected", "failed"), result.status
    assert not carrier.legs


@pytest.mark.parametrize(("case", "expected"), [
    ("mismatched", "certificate name does not match"),
    ("expired", "certificate expired"),
    ("untrusted", "certificate not trusted"),
])
async def test_bad_carrier_certificate_refuses_the_call_and_names_the_trunk(
        nodes, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str, expected: str):
    ca = TestCa(tmp_path / "pki")
    carrier = await start_carrier(nodes, ca, expired=case == "expired")
    trust = TestCa(tmp_path / "other", "Another CA") if case == "untrusted" else ca
    node_a = await start_node_a(nodes, ca, trust, carrier.server.transport.tls_port,
                                server_name="carrier.example" if case == "mismatched" else None)
    caplog.set_level(logging.WARNING, logger="pbx_bridge.sip.transport")
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await node_a.place_outbound_call("0612345678", timeout=30)
    assert result.status != "answered"
    assert loop.time() - started < 15  # refused at the handshake, not after timer B
    assert not carrier.legs
    lines = [r.getMessage() for r in caplog.records if "trunk carrier" in r.getMessage()]
    assert any(expected in line for line in lines), [r.getMessage() for r in caplog.records]


async def test_srtp_with_a_wrong_key_decodes_nothing_and_is_reported(
        nodes, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from pbx_bridge.media.srtp import CryptoAttribute, SrtpContext

    ca = TestCa(tmp_path / "pki")
    carrier = await start_carrier(nodes, ca)
    node_a = await start_node_a(nodes, ca, ca, carrier.server.transport.tls_port,
                                srtp="required")
    result = await node_a.place_outbound_call("0612345678", timeout=20)
    assert result.status == "answered" and result.leg is not None
    await asyncio.wait_for(carrier.answered.wait(), 10)
    ours, far = result.leg.call.rtp, carrier.legs[0].call.rtp
    assert ours is not None and far is not None and ours.srtp is not None
    # our side now encrypts with a key the carrier never received
    wrong = CryptoAttribute.generate(ours.srtp.local.tag)
    ours.srtp = SrtpContext(wrong, ours.srtp.remote, label="wrong key")
    decoded_before = far.stats.packets_in
    caplog.set_level(logging.WARNING, logger="pbx_bridge.media.srtp")
    await result.leg.play(["welcome"], "en")  # 0.6 s of audio the carrier cannot decrypt
    assert far.srtp is not None and far.srtp.auth_failures >= 20
    assert far.stats.packets_in == decoded_before  # nothing decoded, nothing relayed
    assert any("packet refused" in r.getMessage() for r in caplog.records)
    await result.leg.hangup("done")  # the call itself is fine and ends normally
    await asyncio.wait_for(carrier.legs[0].call.ended.wait(), 10)
    record = carrier.records[0]
    assert record.srtp and record.srtp_auth_failures >= 20


async def test_certificate_reload_keeps_the_live_tls_call(nodes, tmp_path: Path):
    import ssl
    from types import SimpleNamespace

    ca = TestCa(tmp_path / "pki")
    carrier = await start_carrier(nodes, ca)
    assert carrier.server is not None
    node_a = await start_node_a(nodes, ca, ca, carrier.server.transport.tls_port)
    result = await node_a.place_outbound_call("0612345678", timeout=20)
    assert result.status == "answered" and result.leg is not None
    await asyncio.wait_for(carrier.answered.wait(), 10)
    far = carrier.legs[0].call
    settings = carrier.server.settings

    def served_serial() -> int:
        ctx = ssl.create_default_context(cafile=str(ca.path))
        with (ssl.create_connection(("127.0.0.1", carrier.server.transport.tls_port)) as raw,
              ctx.wrap_socket(raw, server_hostname="localhost") as tls):
            der = tls.getpeercert(binary_form=True)
        from cryptography import x509
        return x509.load_der_x509_certificate(der).serial_number

    before = await asyncio.to_thread(served_serial)
    renewed = ca.issue("renewed", dns=("localhost",), ips=("127.0.0.1",))
    await asyncio.to_thread(Path(settings.tls.cert_file).write_bytes, renewed.cert.read_bytes())  # type: ignore[arg-type]
    await asyncio.to_thread(Path(settings.tls.key_file).write_bytes, renewed.key.read_bytes())  # type: ignore[arg-type]
    await carrier.server.apply_config(SimpleNamespace(server=SimpleNamespace(sip=settings)))
    after = await asyncio.to_thread(served_serial)
    assert after != before  # new connections get the renewed certificate
    # the live call's TLS connection and media are untouched
    assert not far.ended.is_set()
    assert far.rtp is not None
    heard = far.rtp.stats.packets_in
    await result.leg.play(["welcome"], "en")
    assert far.rtp.stats.packets_in >= heard + 20
    await result.leg.hangup("done")  # BYE over the connection made before the reload
    await asyncio.wait_for(far.ended.wait(), 10)
    assert carrier.records[0].ended_by == "caller"


async def test_reload_with_a_broken_key_keeps_the_current_certificate(
        nodes, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from types import SimpleNamespace

    ca = TestCa(tmp_path / "pki")
    carrier = await start_carrier(nodes, ca)
    assert carrier.server is not None
    settings = carrier.server.settings
    await asyncio.to_thread(Path(settings.tls.key_file).write_text, "not a key")  # type: ignore[arg-type]
    caplog.set_level(logging.ERROR, logger="pbx_bridge.sip.server")
    await carrier.server.apply_config(SimpleNamespace(server=SimpleNamespace(sip=settings)))
    assert any("keeping the current certificate" in r.getMessage() for r in caplog.records)
    node_a = await start_node_a(nodes, ca, ca, carrier.server.transport.tls_port)
    result = await node_a.place_outbound_call("0612345678", timeout=20)
    assert result.status == "answered"


async def test_expired_client_certificate_is_refused_and_logged_with_the_trunk(
        nodes, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """The carrier side of mutual TLS: a trunk presenting an expired client
    certificate is refused at the handshake, and the carrier's log names the trunk."""
    ca = TestCa(tmp_path / "pki")
    carrier = Carrier()
    pem = ca.issue("carrier", dns=("localhost",), ips=("127.0.0.1",))
    carrier.server = await nodes(tls_settings(pem, ca, client_ca=ca), handler=carrier.handle,
                                 trunks=[TrunkConfig("node-a", allowed_ips=frozenset(
                                     {"127.0.0.1"}), tls_client_names=frozenset(
                                     {"node-a.example"}))])
    expired = ca.issue("node-a-old", dns=("node-a.example",), client=True, expired=True)
    node_a = await nodes(tls_settings(expired, ca, client=expired), handler=no_inbound,
                         trunks=[TrunkConfig("carrier", outbound_host="localhost",
                                             outbound_port=carrier.server.transport.tls_port,
                                             outbound_transport="tls")])
    caplog.set_level(logging.WARNING, logger="pbx_bridge.sip.transport")
    result = await node_a.place_outbound_call("0612345678", timeout=30)
    assert result.status != "answered" and not carrier.legs
    lines = [r.getMessage() for r in caplog.records]
    assert any("TLS from trunk node-a" in line and "expired" in line for line in lines), lines
