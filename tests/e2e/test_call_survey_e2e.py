"""The survey after a call, end to end on the embedded SIP core: a sipp caller (its
media a tone endpoint sending RFC 4733/2833 digits) dials 100, presses 1, the pyVoIP
agent phone answers, the agent hangs up on the phone (SIP BYE) — and the caller is not
hung up but hears the queue's survey flow. Out of range → asked again; the answer lands
on the case timeline and in the CSAT/NPS figures of `reports/`; a second call of the
same customer within the period is hung up with the agent, no survey."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sip_testkit import run_sipp

from cases import IdentityRef
from tests.e2e.tone_parties import ToneCallerMedia, TonePhone, caller_scenario
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp

SURVEY_FLOWS = """
  - id: after_sales
    languages: [nl]
    start: ask
    nodes:
      ask: {type: survey, kind: csat, prompts: [enter_customer_number],
            retry_prompts: [invalid_entry], thanks_prompts: [goodbye], timeout_seconds: 20}
  - id: after_support
    languages: [nl]
    start: ask
    nodes:
      ask: {type: survey, kind: nps, prompts: [enter_order_number],
            retry_prompts: [invalid_entry], thanks_prompts: [goodbye], timeout_seconds: 20,
            inter_digit_timeout: 10}
"""


def survey_site(site_dir) -> Path:  # type: ignore[no-untyped-def]
    cfg = site_dir()
    yaml = (cfg / "site.yaml").read_text()
    yaml = yaml.replace("sticky_agent_seconds: 30}",
                        "sticky_agent_seconds: 30, survey_flow: after_sales}")
    yaml = yaml.replace("{id: support, skills: {support: 2}, rona_seconds: 8, "
                        "wrap_up_seconds: 5}",
                        "{id: support, skills: {support: 2}, rona_seconds: 8, "
                        "wrap_up_seconds: 5, survey_flow: after_support}")
    assert yaml.count("survey_flow") == 2
    (cfg / "site.yaml").write_text(yaml.rstrip("\n") + "\n" + SURVEY_FLOWS)
    return cfg


class Caller:
    """One sipp call with a tone endpoint for its media."""

    def __init__(self, media: ToneCallerMedia, run: asyncio.Task[Any]) -> None:
        self.media, self.run = media, run

    @classmethod
    async def dial(cls, sip_port: int, workdir: Path, number: str) -> Caller:
        media = await ToneCallerMedia.open(600.0)
        scenario = caller_scenario(media.port).replace("+33123456789", number)
        await asyncio.to_thread(workdir.mkdir, exist_ok=True)
        run = asyncio.ensure_future(run_sipp(scenario, workdir, sip_port, service="100",
                                             timeout=90))
        await wait_until(lambda: media.remote is not None, timeout=30)
        return cls(media, run)

    async def ended(self) -> None:
        result = await asyncio.wait_for(self.run, 60)
        assert result.returncode == 0, result.stderr + result.errors  # got our BYE

    def close(self) -> None:
        self.media.close()
        if not self.run.done():
            self.run.cancel()


async def timeline_of(c, number: str) -> list[Any]:  # type: ignore[no-untyped-def]
    res = await c.cases.resolve(IdentityRef("phone", number))
    return await c.cases.timeline(res.case.id)


async def has_entry(c, number: str, body: str) -> bool:  # type: ignore[no-untyped-def]
    return any((t.body or "") == body for t in await timeline_of(c, number))


async def connect_and_agent_hangs_up(node, phone: TonePhone, caller: Caller,  # type: ignore[no-untyped-def]
                                     digit: str) -> None:
    voice, acd = node.c.services["voice"], node.c.services["acd"]
    await wait_until(lambda: caller.media.mark() > 10, timeout=20)  # the menu plays
    caller.media.press(digit)
    await wait_until(lambda: bool(voice.sip_control.sessions), timeout=30)
    await wait_until(lambda: acd.agent("anna").state == "busy", timeout=20)
    # the agent hangs up on the desk phone: pyVoIP sends BYE
    await asyncio.to_thread(phone.calls[-1].hangup)


async def test_caller_answers_the_survey_after_the_agent_hangs_up(
        site_dir, make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = await make_node(survey_site(site_dir))
    c = node.c
    sip, acd, reports = c.services["sip"], c.services["acd"], c.services["reports"]
    answers: list[Any] = []

    async def keep(event) -> None:  # type: ignore[no-untyped-def]
        answers.append(event)

    await c.bus.subscribe("survey.answered", keep)
    phone = TonePhone(sip.port, "1001", "anna-secret", 1000.0)
    await phone.start()
    callers: list[Caller] = []
    try:
        await wait_until(lambda: sip.registrar.is_registered("1001"))
        await acd.agent_login("anna", "desk-anna")
        await acd.set_state("anna", "available")

        # 1) sales (CSAT): 7 is out of range → asked again → 4
        first = await Caller.dial(sip.port, tmp_path / "call1", "+31612340001")
        callers.append(first)
        await connect_and_agent_hangs_up(node, phone, first, "1")
        await wait_until(lambda: has_entry(c, "+31612340001",
                                           "Survey (CSAT) asked after the call"), timeout=30)
        assert first.run.done() is False, "the caller is still on the line"
        first.media.press("74")
        await first.ended()  # thanks played, then Centrale hung up (BYE to sipp)
        await wait_until(lambda: len(answers) == 1, timeout=20)
        p = answers[0].payload
        assert (p["kind"], p["score"], p["channel"], p["agent_id"], p["queue_id"]) == \
            ("csat", 4, "voice", "anna", "sales")
        timeline = await timeline_of(c, "+31612340001")
        (answered,) = [t for t in timeline if t.kind == "survey"
                       and t.meta.get("event") == "answered"]
        assert answered.body == "Survey (CSAT): 4" and answered.meta["tries"] == ["7", "4"]
        ended = [t for t in timeline if t.meta.get("event") == "ended"]
        assert ended and ended[0].occurred_at <= answered.occurred_at  # call first
        assert acd.agent("anna").state == "wrap_up"  # the agent's part was over

        async def csat_recorded() -> bool:
            kpis = await reports.kpis(datetime(2000, 1, 1, tzinfo=UTC),
                                      datetime(2100, 1, 1, tzinfo=UTC))
            return kpis["csat"]["answers"] == 1 and kpis["csat"]["csat"] == 1.0
        await wait_until(csat_recorded, timeout=20)

        # 2) the same customer again within the period: hung up with the agent
        await wait_until(lambda: acd.agent("anna").state == "available", timeout=30)
        second = await Caller.dial(sip.port, tmp_path / "call2", "+31612340001")
        callers.append(second)
        await connect_and_agent_hangs_up(node, phone, second, "1")
        await second.ended()  # BYE right after the agent's
        timeline = await timeline_of(c, "+31612340001")
        assert len([t for t in timeline if t.meta.get("event") == "asked"]) == 1
        assert len(answers) == 1

        # 3) support (NPS), another customer: "10" is two keys
        await wait_until(lambda: acd.agent("anna").state == "available", timeout=30)
        third = await Caller.dial(sip.port, tmp_path / "call3", "+31612340002")
        callers.append(third)
        await connect_and_agent_hangs_up(node, phone, third, "2")
        await wait_until(lambda: has_entry(c, "+31612340002",
                                           "Survey (NPS) asked after the call"), timeout=30)
        third.media.press("10")
        await third.ended()
        await wait_until(lambda: len(answers) == 2, timeout=20)
        assert (answers[1].payload["kind"], answers[1].payload["score"]) == ("nps", 10)

        async def nps_recorded() -> bool:
            kpis = await reports.kpis(datetime(2000, 1, 1, tzinfo=UTC),
                                      datetime(2100, 1, 1, tzinfo=UTC))
            return kpis["nps"]["answers"] == 1 and kpis["nps"]["nps"] == 100.0
        await wait_until(nps_recorded, timeout=20)
    finally:
        for caller in callers:
            caller.close()
        await phone.stop()
