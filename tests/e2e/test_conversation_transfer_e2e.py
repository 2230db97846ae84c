"""A WhatsApp conversation transferred to a named agent from the desktop's REST API,
on the real composition root: the signed webhook brings the message, anna accepts,
hands it to bram by name with a reason; bram's screen-pop (over his websocket) is the
same case with "transferred by anna: reason", and once he accepts the task is his."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from digital.whatsapp.signature import sign
from tests.e2e.test_call_control_e2e import Desk
from tests.e2e.test_whatsapp_then_call import whatsapp_text


async def frame_of(ws: aiohttp.ClientWebSocketResponse, kind: str,
                   timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            if frame.get("type") == kind:
                return frame


async def test_a_conversation_transferred_to_a_named_agent(site_dir, make_node) -> None:  # type: ignore[no-untyped-def]
    node = await make_node(site_dir())
    acd = node.c.services["acd"]
    base = f"http://127.0.0.1:{node.port}"
    anna, bram = await Desk(base, "anna").login(), await Desk(base, "bram").login()
    bram_ws = await bram.http.ws_connect(f"{base}/ws")
    anna_ws = await anna.http.ws_connect(f"{base}/ws")
    try:
        await frame_of(bram_ws, "hello")
        await frame_of(anna_ws, "hello")
        await acd.agent_login("anna", "desk-anna")
        await acd.set_state("anna", "available")
        raw = json.dumps(whatsapp_text("31612349999", "Mijn factuur klopt niet",
                                       "wamid.XFER1")).encode()
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"{base}/webhooks/whatsapp", data=raw, headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign("e2e-app-secret", raw)})
            assert resp.status == 200, await resp.text()
        offered = await frame_of(anna_ws, "screenpop")  # anna's desktop pops the offer
        task_id = offered["task_id"]
        status, body = await anna.post(f"/api/offers/{offered['offer_id']}/accept")
        assert status == 200, body
        case_id = acd.task(task_id).case_id

        # Bad input changes nothing: unknown agent, no target, someone else's task.
        status, body = await anna.post(f"/api/tasks/{task_id}/transfer",
                                       {"agent_id": "nobody"})
        assert status == 422 and "nobody" in body["error"], body
        status, body = await anna.post(f"/api/tasks/{task_id}/transfer", {})
        assert status == 422, body
        status, body = await anna.post(f"/api/tasks/{task_id}/transfer",
                                       {"agent_id": "anna"})
        assert status == 422, body
        status, body = await bram.post(f"/api/tasks/{task_id}/transfer",
                                       {"agent_id": "bram"})
        assert status == 403, body
        status, body = await anna.post(f"/api/tasks/{task_id}/transfer",
                                       {"agent_id": "bram"}, csrf=False)
        assert status == 403, body
        assert acd.task(task_id).agent_id == "anna"

        await acd.agent_login("bram", "desk-bram")
        await acd.set_state("bram", "available")
        status, body = await anna.post(f"/api/tasks/{task_id}/transfer",
                                       {"agent_id": "bram", "reason": "factuurvraag <b>"})
        assert status == 200 and body["agent_id"] == "bram", body
        pop = await frame_of(bram_ws, "screenpop")
        assert (pop["task_id"], pop["case_id"]) == (task_id, case_id)
        assert pop["transfer"] == {"by": "anna", "reason": "factuurvraag <b>"}
        assert any(e["body"] == "Mijn factuur klopt niet" for e in pop["timeline"])
        assert acd.agent("anna").state == "available"  # her slot is free at once
        status, body = await bram.post(f"/api/offers/{pop['offer_id']}/accept")
        assert status == 200, body
        task = acd.task(task_id)
        assert (task.agent_id, task.status, task.case_id) == ("bram", "assigned", case_id)
        status, body = await bram.get(f"/api/cases/{case_id}")
        assert status == 200, body  # the case is bram's to open now
    finally:
        await anna_ws.close()
        await bram_ws.close()
        await anna.close()
        await bram.close()
