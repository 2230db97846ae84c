"""`/metrics` and `/healthz` of a whole node after real traffic: a signed WhatsApp
message (and one with a bad signature), a sipp call that goes through the IVR to a queue
and hangs up waiting, an agent who takes the conversation and whose replies fail because
the Graph API is unreachable. The scrape is parsed with prometheus_client's parser."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sip_testkit import run_sipp, uac_scenario

from cases import IdentityRef
from digital.whatsapp.signature import sign
from tests.e2e.test_whatsapp_then_call import whatsapp_text
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp


async def scrape(http: aiohttp.ClientSession, port: int) -> dict[tuple, float]:
    resp = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert resp.status == 200
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def value(samples: dict[tuple, float], name: str, **labels: str) -> float:
    return samples.get((name, *sorted(labels.items())), 0.0)


async def test_metrics_and_health_after_calls_and_messages(site_dir, make_node,
                                                           tmp_path: Path) -> None:
    node = await make_node(site_dir())
    c = node.c
    acd = c.services["acd"]
    base = f"http://127.0.0.1:{node.port}"
    async with aiohttp.ClientSession() as http:
        before = await scrape(http, node.port)
        health = await (await http.get(base + "/healthz")).json()
        assert health["status"] == "ok", health
        assert health["checks"]["voice.sip"] == "ok" and health["checks"]["channels"] == "ok"

        raw = json.dumps(whatsapp_text("31687654321", "Waar blijft mijn pakket?",
                                       "wamid.METRICS1")).encode()
        url = base + "/webhooks/whatsapp"
        bad = await http.post(url, data=raw, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64})
        assert bad.status == 401
        ok = await http.post(url, data=raw, headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign("e2e-app-secret", raw)})
        assert ok.status == 200

        await wait_until(lambda: acd.stats()["queues"]["support"]["waiting"] == 1)
        scenario = uac_scenario(digits="2", wait_before_dtmf_ms=1500, hold_ms=1500)
        result = await run_sipp(scenario, tmp_path, c.services["sip"].port, service="100",
                                timeout=30)
        assert result.returncode == 0, result.stderr + result.errors
        await wait_until(lambda: acd.stats()["queues"]["support"]["abandoned"] == 1)
        await wait_until(lambda: not c.services["voice"].calls_by_id)  # hang-up handled

        after = await scrape(http, node.port)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("centrale_events_published_total", topic="task.enqueued") == 2
        assert delta("centrale_queue_entered_total", queue="support", channel="whatsapp") == 1
        assert delta("centrale_queue_entered_total", queue="support", channel="voice") == 1
        # hung up ~1.5 s after the menu choice: under the queue's 5 s, a short abandon
        assert delta("centrale_queue_abandoned_total", queue="support", channel="voice",
                     short="true") == 1
        assert delta("centrale_queue_offered_total", queue="support", channel="voice") == 1
        assert delta("centrale_messages_total", channel="whatsapp", direction="inbound") == 1
        assert delta("centrale_webhook_rejects_total", channel="whatsapp",
                     reason="signature") == 1
        assert value(after, "centrale_queue_waiting", queue="support") == 1
        assert value(after, "centrale_queue_oldest_wait_seconds", queue="support") > 0
        assert value(after, "centrale_queue_service_level_ratio", queue="support") == 0.0
        assert value(after, "centrale_agents", state="logged_out") == 2
        assert value(after, "centrale_calls_in_progress", backend="sip") == 0
        assert value(after, "centrale_voice_backend_up", backend="sip") == 1
        assert value(after, "centrale_db_pool_connections", use="size") > 0
        assert value(after, "centrale_rtp_packets_lost_total", backend="sip") >= 0
        assert ("centrale_rtp_packets_lost_total", ("backend", "asterisk")) in after
        lags = [k for k in after if k[0] == "centrale_bus_lag_events"]
        assert any(dict(k[1:])["group"].startswith("reports.recorder") for k in lags)

        # The agent takes the conversation; the Graph API is unreachable, so each reply
        # fails: after three in a row the node says the channel is degraded.
        await acd.agent_login("bram", "desk-1")
        await acd.set_state("bram", "available")
        await wait_until(lambda: bool(acd.offers_for("bram")))
        (offer,) = acd.offers_for("bram")
        await acd.accept(offer.id, "bram")
        conversations = c.services["digital"].conversations
        res = await c.cases.resolve(IdentityRef("whatsapp", "31687654321"))
        (conv,) = await conversations.conversations_for_case(res.case.id)

        async def assigned_to_bram() -> bool:
            # the accept reaches the conversation through the bus, after accept returns
            current = await conversations.get(conv.id)
            return current.state == "assigned" and current.agent_id == "bram"

        await wait_until(assigned_to_bram)
        for _ in range(3):
            sent = await conversations.reply(conv.id, "bram", "We kijken ernaar")
            # stored and handed to the adapter, which failed (not refused before sending)
            assert not sent.ok and sent.message_id is not None, sent
        resp = await http.get(base + "/healthz")
        assert resp.status == 503
        health = await resp.json()
        assert health["status"] == "degraded"
        assert health["checks"]["channels"] == "error: whatsapp: last 3 sends failed"
        assert health["checks"]["database"] == "ok"
        final = await scrape(http, node.port)
        assert value(final, "centrale_messages_out_total", channel="whatsapp",
                     outcome="failed") - value(before, "centrale_messages_out_total",
                                               channel="whatsapp", outcome="failed") == 3
        assert value(final, "centrale_agents", state="busy") == 1
