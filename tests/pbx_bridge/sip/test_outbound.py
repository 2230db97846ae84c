"""Outbound INVITEs: callbacks through a trunk, and ring-no-answer with CANCEL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sip_testkit import ANSWERING_PHONE, start_sipp_peer

from pbx_bridge.sip.message import SipRequest
from pbx_bridge.sip.ports import TrunkConfig
from pbx_bridge.sip.transport import Peer
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp


RINGING_PHONE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ring no answer">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ring
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <recv request="CANCEL"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ring
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ring
      [last_Call-ID:]
      CSeq: 1 INVITE
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""


def register_contact(server, username: str, port: int) -> None:  # type: ignore[no-untyped-def]
    """Bind a contact directly (the sipp phone does not REGISTER itself)."""
    register = SipRequest(method="REGISTER", uri="sip:centrale")
    for name, value in [("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKr"),
                        ("From", f"<sip:{username}@centrale>;tag=1"),
                        ("To", f"<sip:{username}@centrale>"),
                        ("Call-ID", f"r-{port}"), ("CSeq", "1 REGISTER"),
                        ("Contact", f"<sip:{username}@127.0.0.1:{port}>")]:
        register.add(name, value)
    server.registrar.register(username, register, Peer("UDP", "127.0.0.1", port))


async def _never_called(leg) -> None:  # type: ignore[no-untyped-def]
    raise AssertionError("no inbound call expected")


async def test_callback_through_trunk_to_sipp_uas(make_server, tmp_path: Path):
    # the carrier first: its port is known (and held) before the trunk points at it
    uas_port, uas = await start_sipp_peer(ANSWERING_PHONE, tmp_path)
    server = await make_server(_never_called, trunks=[
        TrunkConfig("carrier", allowed_ips=frozenset({"127.0.0.1"}),
                    outbound_host="127.0.0.1", outbound_port=uas_port)])
    result = await server.place_outbound_call("0611223344", caller_id="0800123", timeout=5)
    assert result.answered, result
    leg = result.leg
    assert leg is not None and leg.answered
    assert leg.call.rtp is not None and leg.call.rtp.payload_type == 8  # PCMA answered
    await leg.send_dtmf("12")
    await leg.hangup()
    sipp = await uas
    assert sipp.returncode == 0, sipp.stderr + sipp.errors  # it saw ACK, then our BYE
    assert leg.ended


async def test_ring_no_answer_is_cancelled_and_reported_as_timeout(make_server,
                                                                    tmp_path: Path):
    phone_port, phone = await start_sipp_peer(RINGING_PHONE, tmp_path)
    server = await make_server(_never_called)
    register_contact(server, "alice", phone_port)
    result = await server.ring_agent("alice", caller_id="+33123", timeout=1.0)
    assert result.status == "timeout" and result.leg is None
    sipp = await phone
    assert sipp.returncode == 0, sipp.stderr + sipp.errors
    assert (await server.ring_agent("nobody")).status == "unregistered"


async def test_trunk_registers_to_provider_with_digest(make_server):
    provider = await make_server(_never_called)  # plays the provider's registrar
    ours = await make_server(_never_called, trunks=[
        TrunkConfig("carrier", username="alice", password="alice-secret",
                    outbound_host="127.0.0.1", outbound_port=provider.port, register=True),
        TrunkConfig("wrong", username="bob", password="guess",
                    outbound_host="127.0.0.1", outbound_port=provider.port, register=True)])
    await wait_until(lambda: len(ours.trunk_status) == 2, timeout=30)
    assert ours.trunk_status == {"carrier": "registered", "wrong": "failed: 403"}
    assert provider.registrar.is_registered("alice")
    assert not provider.registrar.is_registered("bob")


async def test_all_contacts_ring_first_answer_wins_the_other_is_cancelled(make_server,
                                                                           tmp_path: Path):
    from sip_testkit import PyVoipAgentPhone

    server = await make_server(_never_called)
    desk = PyVoipAgentPhone(server.port, "alice", "alice-secret")  # answers after ~1 s
    await desk.start()
    soft_port, soft = await start_sipp_peer(RINGING_PHONE, tmp_path)
    register_contact(server, "alice", soft_port)  # a softphone that only rings
    assert len(server.registrar.contacts("alice")) == 2
    try:
        result = await server.ring_agent("alice", caller_id="+33123", timeout=8)
        assert result.answered and result.leg is not None
        sipp = await soft
        assert sipp.returncode == 0, sipp.stderr + sipp.errors  # it was CANCELled
        await result.leg.hangup()
    finally:
        await desk.stop()
