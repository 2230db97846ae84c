"""The survey after a call on the Asterisk backend, against Asterisk's documented
FastAGI exchanges: the agent's leg is originated with CENTRALE_SURVEY, the dialplan's
`Bridge(...,F(centrale-survey^s^1))` sends the caller to `agi://…/survey` when the
agent hangs up, and that session is answered here like res_agi answers (GET VARIABLE
`200 result=1 (value)`, STREAM FILE interrupted by a key `200 result=<ASCII code>
endpos=…`). The real VoiceService, ACD and case store take it from there: the task
completes when the agent hangs up (not after the survey), the answer lands on the
timeline and goes out as `survey.answered`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import SecretStr

from cases import CaseService, IdentityRef
from config.schema import CentraleConfig
from config.schema.server import AmiSettings, AsteriskSettings
from core.clock import ManualClock, SystemClock
from core.db import Database
from pbx_bridge.asterisk.backend import AsteriskBackend
from pbx_bridge.asterisk.call_leg import AgiCallLeg
from pbx_bridge.asterisk.testing import AgiScript, FakeAgiClient, FakeAmiServer
from pbx_bridge.voice import ActiveCall, VoiceService
from queues.engine import AcdEngine
from queues.ports import CollectingPublisher

SITE = CentraleConfig.model_validate({
    "queues": [{"id": "sales", "channels": ["voice"], "survey_flow": "after_call"}],
    "agents": [{"id": "anna", "name": "Anna", "queues": ["sales"],
                "sip": {"username": "1001", "password": "x"}}],
    "flows": [{"id": "after_call", "languages": ["en"], "start": "ask", "nodes": {
        "ask": {"type": "survey", "kind": "csat", "prompts": ["survey_csat"],
                "retry_prompts": ["invalid_entry"], "thanks_prompts": ["thanks"]}}}],
})


async def not_inbound(leg: AgiCallLeg) -> None:
    raise AssertionError("not an inbound call")


async def test_agent_hangs_up_caller_answers_the_survey_over_fastagi(
        database: Database, fixtures_dir: Path, ami_server: FakeAmiServer) -> None:
    bus = CollectingPublisher()
    cases = CaseService(database, bus, SystemClock(), default_region="NL")  # type: ignore[arg-type]
    acd = AcdEngine(SITE, ManualClock(), bus, stats_interval_seconds=1e9)
    voice = VoiceService(config=SITE, cases=cases, acd=acd, bus=bus,  # type: ignore[arg-type]
                         clock=SystemClock())
    backend = AsteriskBackend(AsteriskSettings(ami=AmiSettings(
        port=ami_server.port, username="ccadmin", secret=SecretStr("ccsecret"))),
        inbound=not_inbound)
    backend.survey_handler = voice.handle_agi_survey
    voice.asterisk = backend
    await backend.start(agi_host="127.0.0.1", agi_port=0)
    try:
        # a caller of queue sales connected to anna (the state after ring → answer)
        res = await cases.resolve(IdentityRef("phone", "+31612345678"))
        task = await acd.enqueue(queue_id="sales", channel="voice", case_id=res.case.id,
                                 customer_id=res.customer.id, attributes={"call_id": "c1"})
        await acd.agent_login("anna", "s")
        (offer,) = bus.of("task.offered")
        await acd.accept(offer.payload["offer_id"], "anna")
        call = ActiveCall(call_id="c1", backend="asterisk", leg=None,  # type: ignore[arg-type]
                          case_id=res.case.id, customer_id=res.customer.id,
                          caller_number="+31612345678", task_id=task.id, agent_id="anna")
        voice.calls_by_id["c1"] = call
        assert await voice.survey_flow_for(call) == "after_call"

        # the agent hung up: Asterisk runs centrale-survey on the caller's channel
        env = AgiScript.load(fixtures_dir / "agi_session_ivr.txt").env
        env = env.replace(b"agi_network_script: ivr\n", b"agi_network_script: survey\n")
        client = FakeAgiClient(env, [
            ("GET VARIABLE CENTRALE_CALL_ID", b"200 result=1 (c1)\n"),
            ("GET VARIABLE CENTRALE_TASK_ID", f"200 result=1 ({task.id})\n".encode()),
            ("GET VARIABLE CENTRALE_CASE_ID", f"200 result=1 ({res.case.id})\n".encode()),
            ("GET VARIABLE CENTRALE_CUSTOMER_ID",
             f"200 result=1 ({res.customer.id})\n".encode()),
            ("GET VARIABLE CENTRALE_QUEUE_ID", b"200 result=1 (sales)\n"),
            ("ANSWER", b"200 result=0\n"),
            ("STREAM FILE question", b"200 result=55 endpos=5120\n"),  # '7': out of range
            ("STREAM FILE retry", b"200 result=0 endpos=9120\n"),
            ("STREAM FILE question", b"200 result=52 endpos=4480\n"),  # '4'
            ("STREAM FILE thanks", b"200 result=0 endpos=8000\n"),
            ("HANGUP", b"200 result=1\n"),
        ], match="verb")
        assert backend.agi_port is not None
        await asyncio.wait_for(client.run("127.0.0.1", backend.agi_port), 10)
    finally:
        await backend.stop()
    assert client.errors == []
    streams = [c for c in client.commands if c.startswith("STREAM FILE")]
    assert [s.split()[2].rsplit("/", 1)[-1] for s in streams] == \
        ["survey_csat", "invalid_entry", "survey_csat", "thanks"]
    assert client.commands[-1] == "HANGUP"

    assert acd.task(task.id).status != "assigned"  # completed when the agent hung up
    assert acd.agent("anna").state == "wrap_up"
    (answered,) = bus.of("survey.answered")
    assert {k: answered.payload[k] for k in ("kind", "score", "channel", "agent_id",
                                             "queue_id", "task_id", "case_id")} == {
        "kind": "csat", "score": 4, "channel": "voice", "agent_id": "anna",
        "queue_id": "sales", "task_id": task.id, "case_id": res.case.id}
    timeline = await cases.timeline(res.case.id)
    bodies = [t.body for t in timeline if t.kind == "survey"]
    assert bodies == ["Survey (CSAT) asked after the call", "Survey (CSAT): 4"]
    ended = [t for t in timeline if t.meta.get("event") == "ended"]
    assert len(ended) == 1 and ended[0].meta["agent_id"] == "anna"

    # within the period the same customer is not surveyed again, so the next agent
    # leg is originated without CENTRALE_SURVEY (option x: hung up with the agent)
    again = ActiveCall(call_id="c2", backend="asterisk", leg=None,  # type: ignore[arg-type]
                       case_id=res.case.id, customer_id=res.customer.id,
                       caller_number="+31612345678", task_id=task.id)
    assert await voice.survey_flow_for(again) is None
