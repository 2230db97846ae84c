"""The headline path (Foundation issue, DESIGN.md): a WhatsApp message from wa_id
31612345678 through the real signed webhook, then a call from caller ID 0612345678
(national format, default region NL) through the embedded SIP core: one customer, one
case, and the timeline shows the message and then the call, in order."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import pytest
from sip_testkit import run_sipp, uac_scenario

from cases import IdentityRef
from digital.whatsapp.signature import sign
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp


def whatsapp_text(wa_id: str, body: str, msg_id: str) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111",
                         "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Jan Jansen"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": msg_id, "timestamp": str(int(time.time())),
                          "type": "text", "text": {"body": body}}]}}]}]}


async def test_whatsapp_message_then_national_call_share_customer_and_case(
        site_dir, make_node, tmp_path: Path) -> None:
    node = await make_node(site_dir())
    c = node.c
    raw = json.dumps(whatsapp_text("31612345678", "Mijn pakket is niet aangekomen",
                                   "wamid.E2E1")).encode()
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{node.port}/webhooks/whatsapp"
        bad = await http.post(url, data=raw, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64})
        assert bad.status == 401
        resp = await http.post(url, data=raw, headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign("e2e-app-secret", raw)})
        assert resp.status == 200, await resp.text()

    async def message_on_timeline() -> bool:
        ids = await c.cases.resolve(IdentityRef("whatsapp", "31612345678"))
        return any(t.channel == "whatsapp" for t in await c.cases.timeline(ids.case.id))

    await wait_until(message_on_timeline)

    scenario = uac_scenario(digits="2", wait_before_dtmf_ms=1500, hold_ms=1500,
                            from_hdr='"Jan" <sip:0612345678@[local_ip]:[local_port]>')
    result = await run_sipp(scenario, tmp_path, c.services["sip"].port, service="100",
                            timeout=30)
    assert result.returncode == 0, result.stderr + result.errors

    by_whatsapp = await c.cases.resolve(IdentityRef("whatsapp", "31612345678"))
    by_phone = await c.cases.resolve(IdentityRef("phone", "0612345678"))
    assert by_phone.customer.id == by_whatsapp.customer.id
    assert by_phone.case.id == by_whatsapp.case.id
    timeline = await c.cases.timeline(by_phone.case.id)
    channels = [t.channel for t in timeline]
    first_voice = channels.index("voice")
    assert "whatsapp" in channels[:first_voice], channels
    message = next(t for t in timeline if t.channel == "whatsapp")
    assert message.body == "Mijn pakket is niet aangekomen"
    call = timeline[first_voice]
    assert call.kind == "call" and call.meta["caller"] == "0612345678"
    assert any("pressed 2" in (t.body or "") for t in timeline[first_voice:])
    kinds = sorted(i.kind for i in await c.cases.identities(by_phone.customer.id))
    assert kinds == ["phone", "whatsapp"]
