"""Call control end to end on the real composition root: a sipp caller (its media a
tone endpoint), pyVoIP agent phones speaking their own tones, the REST API as the
desktop uses it, and an FFT of what each party receives to say who hears whom."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.e2e.tone_parties import ToneCallerMedia, TonePhone, caller_scenario
from tests.tones import tone_levels
from tests.waiting import wait_until

pytestmark = pytest.mark.sipp

CALLER, ANNA, BRAM, SVEN = 600.0, 1000.0, 1750.0, 2500.0
MUSIC = 440.0  # the built-in music on hold (no moh/ file in the test site)
PRESENT, ABSENT = 0.05, 0.01

EXTRA = """
  - id: sven
    name: Sven Supervisor
    skills: {support: 1}
    queues: [support]
    sip: {username: "1003", password: sven-secret}
"""


def site(site_dir) -> Path:  # type: ignore[no-untyped-def]
    """The e2e site, plus a supervisor whose user is linked to a phone (sven)."""
    cfg = site_dir()
    yaml = (cfg / "site.yaml").read_text()
    yaml = yaml.replace("\nusers:\n", "\n" + EXTRA.strip("\n") + "\nusers:\n", 1)
    yaml = yaml.replace("{username: sam, role: supervisor, password: demo}",
                        "{username: sam, role: supervisor, agent: sven, password: demo}")
    (cfg / "site.yaml").write_text(yaml)
    return cfg


class Desk:
    """One logged-in user of the REST API (session cookie + CSRF header)."""

    def __init__(self, base: str, user: str) -> None:
        self.base, self.user = base, user
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self) -> Desk:
        async with self.http.get(f"{self.base}/login") as resp:
            assert resp.status == 200
        token = self.http.cookie_jar.filter_cookies(
            URL(f"{self.base}/login"))["centrale_login_csrf"].value
        async with self.http.post(f"{self.base}/login", allow_redirects=False, data={
                "username": self.user, "password": "demo", "csrf_token": token,
                "next": ""}) as resp:
            assert resp.status == 302, await resp.text()
        async with self.http.get(f"{self.base}/api/me") as resp:
            self.csrf = (await resp.json())["csrf_token"]
        return self

    async def post(self, path: str, body: dict[str, Any] | None = None,
                   csrf: bool = True) -> tuple[int, dict[str, Any]]:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        async with self.http.post(f"{self.base}{path}", json=body or {},
                                  headers=headers) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.base}{path}") as resp:
            return resp.status, await resp.json()

    async def close(self) -> None:
        await self.http.close()


def levels(samples, *freqs: float) -> dict[float, float]:  # type: ignore[no-untyped-def]
    return tone_levels(samples, list(freqs))


def assert_hears(samples, present: list[float], absent: list[float], who: str) -> None:  # type: ignore[no-untyped-def]
    got = levels(samples, *present, *absent)
    for f in present:
        assert got[f] > PRESENT, f"{who} should hear {f} Hz: {got}"
    for f in absent:
        assert got[f] < ABSENT, f"{who} should not hear {f} Hz: {got}"


class Scene:
    """A node, phones for anna/bram/sven, a sipp caller connected to anna."""

    def __init__(self, node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        self.node, self.tmp_path = node, tmp_path
        self.c = node.c
        self.sip = node.c.services["sip"]
        self.acd = node.c.services["acd"]
        self.voice = node.c.services["voice"]
        self.base = f"http://127.0.0.1:{node.port}"
        self.phones: dict[str, TonePhone] = {}
        self.desks: list[Desk] = []
        self.events: list[Any] = []
        self.caller: ToneCallerMedia | None = None
        self.sipp: asyncio.Task[Any] | None = None

    async def phone(self, username: str, password: str, freq: float) -> TonePhone:
        phone = TonePhone(self.sip.port, username, password, freq)
        await phone.start()
        self.phones[username] = phone
        await wait_until(lambda: self.sip.registrar.is_registered(username))
        return phone

    async def desk(self, user: str) -> Desk:
        desk = await Desk(self.base, user).login()
        self.desks.append(desk)
        return desk

    async def call_in(self, *, login_agent: bool = True) -> str:
        """The caller dials 100, presses 1 (sales), anna's phone answers: the call id.
        `login_agent=False`: anna made herself available on the desktop already."""
        from sip_testkit import run_sipp

        async def grab(e) -> None:  # type: ignore[no-untyped-def]
            self.events.append(e)

        await self.c.bus.subscribe("call.*", grab)
        if login_agent:
            await self.acd.agent_login("anna", "desk-anna")
            await self.acd.set_state("anna", "available")
        self.caller = await ToneCallerMedia.open(CALLER)
        self.sipp = asyncio.ensure_future(run_sipp(
            caller_scenario(self.caller.port), self.tmp_path, self.sip.port, service="100",
            timeout=90))
        await wait_until(lambda: self.caller.remote is not None, timeout=20)
        await asyncio.sleep(0.5)  # the menu prompt is playing
        self.caller.press("1")
        await wait_until(lambda: bool(self.voice.sip_control.sessions), timeout=30)
        return next(iter(self.voice.sip_control.sessions))

    def task_of(self, call_id: str) -> str:
        return self.voice.calls_by_id[call_id].task_id

    async def close(self) -> None:
        for desk in self.desks:
            await desk.close()
        if self.caller is not None:
            self.caller.close()
        for phone in self.phones.values():
            await phone.stop()
        if self.sipp is not None and not self.sipp.done():
            self.sipp.cancel()


@pytest.fixture
async def scene(site_dir, make_node, tmp_path: Path):  # type: ignore[no-untyped-def]
    node = await make_node(site(site_dir))
    s = Scene(node, tmp_path)
    yield s
    await s.close()


async def test_hold_resume_conference_and_hangup(scene: Scene) -> None:
    anna_phone = await scene.phone("1001", "anna-secret", ANNA)
    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    call_id = await scene.call_in()
    task_id = scene.task_of(call_id)
    anna, bram = await scene.desk("anna"), await scene.desk("bram")
    caller = scene.caller
    assert caller is not None

    assert_hears(await caller.listen(), [ANNA], [MUSIC], "caller, talking")
    assert_hears(await anna_phone.listen(), [CALLER], [], "anna, talking")

    # Hold: the caller hears the music and not anna; anna no longer hears the caller.
    status, body = await anna.post(f"/api/calls/{task_id}/hold")
    assert status == 200, body
    assert body["call"]["held"] is True and body["call"]["state"] == "held"
    assert_hears(await caller.listen(), [MUSIC], [ANNA], "caller, on hold")
    assert_hears(await anna_phone.listen(), [], [CALLER], "anna, caller on hold")
    status, body = await anna.post(f"/api/calls/{task_id}/hold")
    assert status == 409, body  # on hold already

    # Resume: voices again; the hold time was counted.
    status, body = await anna.post(f"/api/calls/{task_id}/resume")
    assert status == 200 and body["call"]["held"] is False
    assert body["call"]["hold_seconds"] >= 1.0, body
    assert_hears(await caller.listen(), [ANNA], [MUSIC], "caller, resumed")

    # DTMF to the far end (a third party's IVR): RFC 4733 events reach the caller.
    status, body = await anna.post(f"/api/calls/{task_id}/dtmf", {"digits": "12#"})
    assert status == 200, body
    await wait_until(lambda: caller.digits_heard == "12#")
    status, body = await anna.post(f"/api/calls/{task_id}/dtmf", {"digits": "9x"})
    assert status == 422, body

    # Another agent may not touch anna's call; unknown calls and targets are named.
    status, body = await bram.post(f"/api/calls/{task_id}/hold")
    assert status == 403, body
    status, body = await anna.post("/api/calls/no-such-call/hold")
    assert status == 404, body
    status, body = await anna.post(f"/api/calls/{task_id}/transfer",
                                   {"kind": "agent", "target": "zoe"})
    assert status == 422 and "zoe" in body["error"], body
    status, body = await anna.post(f"/api/calls/{task_id}/transfer",
                                   {"kind": "queue", "target": "billing"})
    assert status == 422 and "billing" in body["error"], body
    status, body = await anna.post(f"/api/calls/{task_id}/hold", csrf=False)
    assert status == 403, body  # no CSRF token

    # Conference with bram: each hears the other two and not itself.
    status, body = await anna.post(f"/api/calls/{task_id}/conference",
                                   {"kind": "agent", "target": "bram"})
    assert status == 200 and body["call"]["state"] == "conference", body
    heard = await asyncio.gather(caller.listen(), anna_phone.listen(), bram_phone.listen())
    assert_hears(heard[0], [ANNA, BRAM], [CALLER], "caller, conference")
    assert_hears(heard[1], [CALLER, BRAM], [ANNA], "anna, conference")
    assert_hears(heard[2], [CALLER, ANNA], [BRAM], "bram, conference")

    # Mute: anna is heard by nobody, and still hears both.
    status, body = await anna.post(f"/api/calls/{task_id}/mute")
    assert status == 200 and body["call"]["muted"] is True
    heard = await asyncio.gather(caller.listen(), bram_phone.listen())
    assert_hears(heard[0], [BRAM], [ANNA], "caller, anna muted")
    assert_hears(heard[1], [CALLER], [ANNA], "bram, anna muted")

    # Anna hangs up from the desktop: bram (an agent) owns the conference now; he
    # leaves too, which ends the call; the caller gets a BYE.
    status, body = await anna.post(f"/api/calls/{task_id}/hangup")
    assert status == 200, body
    await wait_until(lambda: scene.voice.calls_by_id[call_id].agent_id == "bram")
    status, body = await bram.post(f"/api/calls/{call_id}/hangup")
    assert status == 200, body
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors

    # An ended call: 409 with a reason, nothing changed.
    status, body = await anna.post(f"/api/calls/{task_id}/hold")
    assert status == 409 and "ended" in body["error"], body
    ops = [e.payload["operation"] for e in scene.events]
    assert ops[:4] == ["hold", "resume", "dtmf", "conference"], ops
    assert "mute" in ops and ops.count("hangup") == 2
    timeline = await scene.c.cases.timeline(scene.voice.calls_by_id.get(call_id).case_id
                                            if call_id in scene.voice.calls_by_id
                                            else scene.events[0].payload["case_id"])
    controls = [t for t in timeline if t.kind == "call_control"]
    assert [t.meta["event"] for t in controls][:4] == ["hold", "resume", "dtmf", "conference"]
    assert controls[1].meta["hold_seconds"] >= 1.0
    assert controls[0].meta["actor"] == "anna"


async def test_supervisor_listen_whisper_barge(scene: Scene,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="centrale.audit")
    anna_phone = await scene.phone("1001", "anna-secret", ANNA)
    sven_phone = await scene.phone("1003", "sven-secret", SVEN)
    call_id = await scene.call_in()
    anna, sam = await scene.desk("anna"), await scene.desk("sam")
    caller = scene.caller
    assert caller is not None

    status, body = await anna.post(f"/api/calls/{call_id}/monitor", {"mode": "listen"})
    assert status == 403, body  # agents may not monitor

    status, body = await sam.post(f"/api/calls/{call_id}/monitor", {"mode": "listen"})
    assert status == 200, body
    assert body["call"]["monitors"][0]["mode"] == "listen"
    heard = await asyncio.gather(caller.listen(), anna_phone.listen(), sven_phone.listen())
    assert_hears(heard[0], [ANNA], [SVEN], "caller, listen")
    assert_hears(heard[1], [CALLER], [SVEN], "anna, listen")
    assert_hears(heard[2], [CALLER, ANNA], [], "supervisor, listen")

    status, body = await sam.post(f"/api/calls/{call_id}/monitor", {"mode": "whisper"})
    assert status == 200, body
    heard = await asyncio.gather(caller.listen(), anna_phone.listen())
    assert_hears(heard[0], [ANNA], [SVEN], "caller, whisper")
    assert_hears(heard[1], [CALLER, SVEN], [], "anna, whisper")

    status, body = await sam.post(f"/api/calls/{call_id}/monitor", {"mode": "barge"})
    assert status == 200, body
    heard = await asyncio.gather(caller.listen(), anna_phone.listen(), sven_phone.listen())
    assert_hears(heard[0], [ANNA, SVEN], [CALLER], "caller, barge")
    assert_hears(heard[1], [CALLER, SVEN], [ANNA], "anna, barge")
    assert_hears(heard[2], [CALLER, ANNA], [SVEN], "supervisor, barge")

    monitors = [e for e in scene.events if e.payload["operation"] == "monitor"]
    assert [e.payload["mode"] for e in monitors] == ["listen", "whisper", "barge"]
    assert all(e.payload["actor"] == "sam" for e in monitors)
    audit = [r.getMessage() for r in caplog.records if r.name == "centrale.audit"]
    assert len(audit) == 3 and all("by=sam" in a and call_id in a for a in audit), audit

    status, body = await anna.post(f"/api/calls/{call_id}/hangup")
    assert status == 200
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors
    await wait_until(lambda: all(c.state.value == "ENDED" for c in sven_phone.calls))


async def test_blind_transfer_answered_and_unanswered(scene: Scene) -> None:
    """To a named agent through the ACD: bram gets a task of his own (offer with the
    same case and "transferred by anna: reason", busy while he talks, his wrap-up);
    a target who does not take it → back to the giver, never silence."""
    anna_phone = await scene.phone("1001", "anna-secret", ANNA)
    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    offered: list[Any] = []

    async def grab(e) -> None:  # type: ignore[no-untyped-def]
        offered.append(e)

    await scene.c.bus.subscribe("task.offered", grab)
    call_id = await scene.call_in()
    task_id = scene.task_of(call_id)
    case_id = scene.voice.calls_by_id[call_id].case_id
    await scene.acd.agent_login("bram", "desk-bram")
    await scene.acd.set_state("bram", "available")
    anna = await scene.desk("anna")
    caller = scene.caller
    assert caller is not None

    # To bram, who answers: the caller talks to bram; anna's phone is hung up.
    status, body = await anna.post(f"/api/calls/{call_id}/transfer",
                                   {"kind": "agent", "target": "bram",
                                    "reason": "billing question"})
    assert status == 200 and body["call"]["state"] == "transferring", body
    await wait_until(lambda: any(e.payload["operation"] == "transfer_connected"
                                 for e in scene.events), timeout=20)
    assert_hears(await caller.listen(), [BRAM], [ANNA], "caller, after transfer")
    assert_hears(await bram_phone.listen(), [CALLER], [], "bram, after transfer")
    await wait_until(lambda: anna_phone.call_states()[0] == "ENDED")
    assert scene.voice.calls_by_id[call_id].agent_id == "bram"
    pop = offered[-1].payload  # bram's screen-pop: the same task and case, who and why
    assert (pop["agent_id"], pop["task_id"], pop["case_id"]) == ("bram", task_id, case_id)
    assert pop["attributes"]["transfer"]["by"] == "anna"
    assert pop["attributes"]["transfer"]["reason"] == "billing question"
    task = scene.acd.task(task_id)
    assert (task.agent_id, task.status) == ("bram", "assigned")
    assert scene.acd.agent("bram").state == "busy"
    assert scene.acd.agent("anna").state == "available"  # no wrap-up for a transfer

    # Bram transfers to anna's phone while it is off the network: no answer → the
    # caller comes back to bram (his phone rings again and answers), never silence.
    bram = await scene.desk("bram")
    await anna_phone.stop()
    scene.phones.pop("1001")
    await wait_until(lambda: not scene.sip.registrar.is_registered("1001"))
    status, body = await bram.post(f"/api/calls/{call_id}/transfer",
                                   {"kind": "agent", "target": "anna"})
    assert status == 200, body
    await wait_until(lambda: any(e.payload["operation"] == "transfer_returned"
                                 for e in scene.events), timeout=40)
    failed = next(e for e in scene.events if e.payload["operation"] == "transfer_failed")
    assert failed.payload["status"] == "not_taken"
    assert [e.payload["agent_id"] for e in offered[-2:]] == ["anna", "bram"]
    assert_hears(await caller.listen(), [BRAM], [], "caller, back with bram")
    assert len(bram_phone.calls) == 2
    assert scene.acd.task(task_id).agent_id == "bram"

    status, body = await bram.post(f"/api/calls/{call_id}/hangup")
    assert status == 200
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors
    await wait_until(lambda: scene.acd.agent("bram").state == "wrap_up")  # his wrap-up


async def test_consult_then_cancel_then_complete(scene: Scene) -> None:
    anna_phone = await scene.phone("1001", "anna-secret", ANNA)
    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    call_id = await scene.call_in()
    task_id = scene.task_of(call_id)
    await scene.acd.agent_login("bram", "desk-bram")
    await scene.acd.set_state("bram", "not_ready", "lunch")  # not offered other calls
    anna = await scene.desk("anna")
    caller = scene.caller
    assert caller is not None

    status, body = await anna.post(f"/api/calls/{call_id}/consult",
                                   {"kind": "agent", "target": "bram"})
    assert status == 200 and body["call"]["state"] == "consulting", body
    heard = await asyncio.gather(caller.listen(), anna_phone.listen(), bram_phone.listen())
    assert_hears(heard[0], [MUSIC], [ANNA, BRAM], "caller, during the consult")
    assert_hears(heard[1], [BRAM], [CALLER], "anna, consulting")
    assert_hears(heard[2], [ANNA], [CALLER], "bram, consulted")

    status, body = await anna.post(f"/api/calls/{call_id}/consult/cancel")
    assert status == 200 and body["call"]["state"] == "talking", body
    assert_hears(await caller.listen(), [ANNA], [MUSIC, BRAM], "caller, consult cancelled")
    await wait_until(lambda: bram_phone.call_states()[0] == "ENDED")

    status, body = await anna.post(f"/api/calls/{call_id}/consult",
                                   {"kind": "agent", "target": "bram"})
    assert status == 200, body
    status, body = await anna.post(f"/api/calls/{call_id}/consult/complete",
                                   {"reason": "knows the contract"})
    assert status == 200 and body["call"]["agent_id"] == "bram", body
    assert_hears(await caller.listen(), [BRAM], [ANNA, MUSIC], "caller, transfer completed")
    await wait_until(lambda: anna_phone.call_states()[0] == "ENDED")
    transfer = next(e for e in scene.events if e.payload["operation"] == "transfer")
    assert transfer.payload["mode"] == "consultative"
    assert transfer.payload["reason"] == "knows the contract"
    # bram was not ready: the task cannot follow (the ACD refuses), anna's part ends
    # with a wrap-up whose notes say to whom — the documented fallback.
    await wait_until(lambda: scene.acd.agent("anna").state == "wrap_up")
    assert scene.voice.calls_by_id[call_id].task_id is None  # the call has no task now
    assert task_id not in scene.acd.agent("bram").tasks

    await bram_phone.stop()  # bram hangs up by going away: the caller gets a BYE
    scene.phones.pop("1002")
    result = await asyncio.wait_for(scene.sipp, 40)
    assert result.returncode == 0, result.stderr + result.errors


# ---------------------------------------------------------------- REFER from a desk phone

PHONE_ANSWERS = """
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="sip:[^&gt;;]*" search_in="hdr" header="Contact:" assign_to="ccontact"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" assign_to="cfrom"/>
      <ereg regexp="&lt;[^&gt;]*&gt;" search_in="hdr" header="To:" assign_to="cto"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:1001@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv request="ACK"/>
  <pause milliseconds="1500"/>
"""


def in_dialog(method: str, cseq: int, extra: str = "") -> str:
    return f"""
  <send retrans="500">
    <![CDATA[
      {method} [$ccontact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$cto];tag=[pid]SIPpTag01[call_number]
      To: [$cfrom]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:1001@[local_ip]:[local_port]>
      Max-Forwards: 70
{extra}      Content-Length: 0
    ]]>
  </send>
"""


def answer(request: str, body_check: str | None = None) -> str:
    check = (f'<action><ereg regexp="{body_check}" search_in="body" check_it="true" '
             f'assign_to="seen"/></action>') if body_check else ""
    return f"""
  <recv request="{request}">{check}</recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""


def phone_scenario(body: str) -> str:
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="desk-phone">\n'
            + PHONE_ANSWERS + body + "</scenario>\n")


async def sipp_desk_phone(scene: Scene, scenario: str, log_file: Path | None = None
                          ) -> asyncio.Task[Any]:
    """Register 1001 with sipp, then run `scenario` as that phone (same port); its
    `<log>` actions go to `log_file`."""
    from sip_testkit import free_udp_port, register_scenario, run_sipp

    port = free_udp_port()
    workdir = scene.tmp_path / "phone"
    workdir.mkdir(exist_ok=True)
    reg = await run_sipp(register_scenario("1001", "anna-secret", expect_final=200),
                         workdir, scene.sip.port, local_port=port)
    assert reg.returncode == 0, reg.stderr + reg.errors
    uas_dir = scene.tmp_path / "phone-uas"
    uas_dir.mkdir(exist_ok=True)
    path = uas_dir / "phone.xml"
    path.write_text(scenario)
    from sip_testkit import SIPP

    async def run() -> Any:
        proc = await asyncio.create_subprocess_exec(
            SIPP, "-sf", str(path), "-i", "127.0.0.1", "-p", str(port), "-m", "1",
            "-mp", str(free_udp_port(even=True)), "-nostdin", "-timeout", "60s",
            "-timeout_error", "-trace_err", "-error_file", str(uas_dir / "errors.log"),
            *(["-trace_logs", "-log_file", str(log_file)] if log_file else []),
            cwd=uas_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _out, err = await proc.communicate()
        errors = (uas_dir / "errors.log")
        return proc.returncode, err.decode(errors="replace") + (
            errors.read_text(errors="replace") if errors.exists() else "")

    task = asyncio.ensure_future(run())
    await asyncio.sleep(0.3)  # sipp is listening
    return task


async def test_refer_from_the_desk_phone_transfers_blind(scene: Scene) -> None:
    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    await scene.acd.agent_login("bram", "desk-bram")  # the task follows: bram must be in
    await scene.acd.set_state("bram", "available")
    phone = await sipp_desk_phone(scene, phone_scenario(
        in_dialog("REFER", 1, "      Refer-To: <sip:1002@127.0.0.1>\n"
                              "      Referred-By: <sip:1001@127.0.0.1>\n")
        + '  <recv response="202"/>\n'
        + answer("NOTIFY", "SIP/2.0 100") + answer("NOTIFY", "SIP/2.0 200") + answer("BYE")))
    call_id = await scene.call_in()
    caller = scene.caller
    assert caller is not None
    code, errors = await asyncio.wait_for(phone, 60)
    assert code == 0, errors  # 202, NOTIFY 100 Trying, NOTIFY 200 OK, then BYE
    await wait_until(lambda: any(e.payload["operation"] == "transfer_connected"
                                 for e in scene.events), timeout=20)
    assert_hears(await caller.listen(), [BRAM], [], "caller, after REFER")
    assert_hears(await bram_phone.listen(), [CALLER], [], "bram, after REFER")
    transfer = next(e for e in scene.events if e.payload["operation"] == "transfer")
    assert transfer.payload["actor_role"] == "phone" and transfer.payload["target"] == "bram"
    assert scene.voice.calls_by_id[call_id].agent_id == "bram"
    assert scene.acd.task(scene.task_of(call_id)).agent_id == "bram"  # his task now


async def test_refer_with_a_malformed_target_or_unknown_replaces_leaves_the_call(
        scene: Scene) -> None:
    phone = await sipp_desk_phone(scene, phone_scenario(
        in_dialog("REFER", 1, "      Refer-To: <not a uri\n") + '  <recv response="400"/>\n'
        + in_dialog("REFER", 2, "      Refer-To: <sip:1002@127.0.0.1?Replaces=nosuchcall%40x"
                                "%3Bto-tag%3Da%3Bfrom-tag%3Db>\n")
        + '  <recv response="481"/>\n'
        + in_dialog("REFER", 3, "      Refer-To: <sip:nobody-here@127.0.0.1>\n")
        + '  <recv response="404"/>\n'
        + '  <pause milliseconds="1500"/>\n'
        + in_dialog("BYE", 4) + '  <recv response="200"/>\n'))
    call_id = await scene.call_in()
    caller = scene.caller
    assert caller is not None
    states: list[str] = []

    async def watch() -> None:
        while call_id in scene.voice.sip_control.sessions:
            session = scene.voice.sip_control.sessions[call_id]
            states.append(f"{session.state}:{session.agent is not None}")
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch())
    code, errors = await asyncio.wait_for(phone, 60)
    assert code == 0, errors  # 400, 481, 404 as expected; our own BYE answered
    await asyncio.wait_for(watcher, 10)
    # Until the phone's BYE the call stayed as it was: talking, with the agent.
    assert states and set(states[:-1]) <= {"talking:True"}, set(states)
    assert not [e for e in scene.events if e.payload["operation"].startswith("transfer")]
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors


def reinvite(cseq: int, direction: str) -> str:
    """The phone's hold key: an in-dialog INVITE with `a=<direction>`, then its ACK."""
    return f"""
  <send retrans="500">
    <![CDATA[
      INVITE [$ccontact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$cto];tag=[pid]SIPpTag01[call_number]
      To: [$cfrom]
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:1001@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 {2353687637 + cseq} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a={direction}
    ]]>
  </send>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK [$ccontact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$cto];tag=[pid]SIPpTag01[call_number]
      To: [$cfrom]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""


async def test_the_desk_phones_hold_key_plays_music_to_the_caller(scene: Scene) -> None:
    phone = await sipp_desk_phone(scene, phone_scenario(
        reinvite(1, "sendonly") + '  <pause milliseconds="3000"/>\n'
        + reinvite(2, "sendrecv") + '  <pause milliseconds="3000"/>\n'
        + in_dialog("BYE", 3) + '  <recv response="200"/>\n'))
    await scene.call_in()
    caller = scene.caller
    assert caller is not None
    await wait_until(lambda: any(e.payload["operation"] == "hold" for e in scene.events),
                     timeout=20)
    assert_hears(await caller.listen(50), [MUSIC], [], "caller, phone on hold")
    await wait_until(lambda: any(e.payload["operation"] == "resume" for e in scene.events),
                     timeout=20)
    assert_hears(await caller.listen(50), [], [MUSIC], "caller, phone off hold")
    code, errors = await asyncio.wait_for(phone, 60)
    assert code == 0, errors
    hold = next(e for e in scene.events if e.payload["operation"] == "hold")
    assert hold.payload["actor_role"] == "phone" and hold.payload["agent_id"] == "anna"
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors


async def test_blind_transfer_to_a_number_through_the_trunk(site_dir, make_node,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    """The external party is sipp's UAS behind the trunk: it answers; anna's part of the
    task is over (wrap-up), the call belongs to nobody here; a supervisor ends it."""
    from sip_testkit import free_udp_port, run_sipp

    trunk_port = free_udp_port()
    cfg = site(lambda: site_dir(trunk_port=trunk_port))
    scene = Scene(await make_node(cfg), tmp_path)
    try:
        await scene.phone("1001", "anna-secret", ANNA)
        outside_dir = tmp_path / "outside"
        outside_dir.mkdir()
        outside = asyncio.ensure_future(run_sipp("uas", outside_dir, scene.sip.port,
                                                 local_port=trunk_port, timeout=60))
        call_id = await scene.call_in()
        anna, sam = await scene.desk("anna"), await scene.desk("sam")
        status, body = await anna.post(f"/api/calls/{call_id}/transfer",
                                       {"kind": "number", "target": "0201234567"})
        assert status == 200, body
        await wait_until(lambda: any(e.payload["operation"] == "transfer_connected"
                                     for e in scene.events), timeout=20)
        await wait_until(lambda: scene.acd.agent("anna").state == "wrap_up")
        assert scene.voice.calls_by_id[call_id].agent_id is None
        status, body = await anna.post(f"/api/calls/{call_id}/hold")
        assert status == 403, body  # not hers any more
        status, body = await sam.post(f"/api/calls/{call_id}/hangup")
        assert status == 200, body
        result = await asyncio.wait_for(scene.sipp, 30)
        assert result.returncode == 0, result.stderr + result.errors
        uas = await asyncio.wait_for(outside, 30)
        assert uas.returncode == 0, uas.stderr + uas.errors
    finally:
        await scene.close()


async def test_blind_transfer_to_a_queue_keeps_the_task_and_case(scene: Scene) -> None:
    """The task goes back to the ACD in `support`: same task, case and customer; bram
    (available there) is offered it, his phone rings and answers; anna is free at once
    (no wrap-up for a transfer); the caller hears music, then bram."""
    await scene.phone("1001", "anna-secret", ANNA)
    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    offered: list[Any] = []

    async def grab(e) -> None:  # type: ignore[no-untyped-def]
        offered.append(e)

    await scene.c.bus.subscribe("task.offered", grab)
    call_id = await scene.call_in()
    task_id = scene.task_of(call_id)
    case_id = scene.voice.calls_by_id[call_id].case_id
    await scene.acd.agent_login("bram", "desk-bram")
    await scene.acd.set_state("bram", "available")
    anna = await scene.desk("anna")
    caller = scene.caller
    assert caller is not None

    status, body = await anna.post(f"/api/calls/{task_id}/transfer",
                                   {"kind": "queue", "target": "support",
                                    "reason": "needs support"})
    assert status == 200 and body["call"]["state"] == "transferring", body
    await wait_until(lambda: any(e.payload["operation"] == "transfer_connected"
                                 for e in scene.events), timeout=30)
    assert_hears(await caller.listen(), [BRAM], [ANNA], "caller, after the queue transfer")
    assert_hears(await bram_phone.listen(), [CALLER], [], "bram, after the queue transfer")
    task = scene.acd.task(task_id)
    assert (task.agent_id, task.queue_id, task.case_id) == ("bram", "support", case_id)
    assert offered[-1].payload["agent_id"] == "bram"
    assert offered[-1].payload["case_id"] == case_id  # bram's screen-pop: the same case
    assert scene.acd.agent("anna").state == "available"
    timeline = await scene.c.cases.timeline(case_id)
    note = next(t for t in timeline if t.kind == "call_control"
                and t.meta.get("event") == "transfer")
    assert "needs support" in (note.body or "") and note.meta["actor"] == "anna"

    bram = await scene.desk("bram")
    status, body = await bram.post(f"/api/calls/{task_id}/hangup")
    assert status == 200, body
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors
    await wait_until(lambda: scene.acd.agent("bram").state == "wrap_up")


async def test_consult_turned_into_a_conference(scene: Scene) -> None:
    anna_phone = await scene.phone("1001", "anna-secret", ANNA)
    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    call_id = await scene.call_in()
    anna = await scene.desk("anna")
    caller = scene.caller
    assert caller is not None
    status, body = await anna.post(f"/api/calls/{call_id}/consult",
                                   {"kind": "agent", "target": "bram"})
    assert status == 200, body
    status, body = await anna.post(f"/api/calls/{call_id}/conference", {})
    assert status == 200 and body["call"]["state"] == "conference", body
    assert not body["call"]["held"]
    heard = await asyncio.gather(caller.listen(), anna_phone.listen(), bram_phone.listen())
    assert_hears(heard[0], [ANNA, BRAM], [CALLER, MUSIC], "caller, consult → conference")
    assert_hears(heard[1], [CALLER, BRAM], [ANNA], "anna, consult → conference")
    assert_hears(heard[2], [CALLER, ANNA], [BRAM], "bram, consult → conference")
    status, body = await anna.post(f"/api/calls/{call_id}/consult/complete", {})
    assert status == 409, body  # no consult any more: it became the conference
    await bram_phone.stop()  # the third party leaves: anna and the caller go on
    scene.phones.pop("1002")
    await wait_until(lambda: scene.voice.sip_control.sessions[call_id].state == "talking")
    assert_hears(await caller.listen(), [ANNA], [BRAM], "caller, after bram left")
    status, body = await anna.post(f"/api/calls/{call_id}/hangup")
    assert status == 200
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors


async def test_consultative_transfer_gives_the_target_the_task(scene: Scene) -> None:
    """Consult bram (logged in, available), complete: the ACD task follows the call to
    bram at once — his screen-pop has the case and "transferred by anna: reason", he
    is busy, his phone is not rung a second time, the wrap-up is his; anna is free."""
    anna_phone = await scene.phone("1001", "anna-secret", ANNA)
    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    offered: list[Any] = []

    async def grab(e) -> None:  # type: ignore[no-untyped-def]
        offered.append(e)

    await scene.c.bus.subscribe("task.offered", grab)
    call_id = await scene.call_in()
    task_id = scene.task_of(call_id)
    case_id = scene.voice.calls_by_id[call_id].case_id
    await scene.acd.agent_login("bram", "desk-bram")
    await scene.acd.set_state("bram", "available")
    anna = await scene.desk("anna")
    caller = scene.caller
    assert caller is not None
    status, body = await anna.post(f"/api/calls/{call_id}/consult",
                                   {"kind": "agent", "target": "bram"})
    assert status == 200, body
    status, body = await anna.post(f"/api/calls/{call_id}/consult/complete",
                                   {"reason": "knows the contract"})
    assert status == 200 and body["call"]["agent_id"] == "bram", body
    await wait_until(lambda: scene.acd.task(task_id).agent_id == "bram")
    pop = offered[-1].payload
    assert (pop["agent_id"], pop["case_id"]) == ("bram", case_id)
    assert pop["attributes"]["transfer"]["by"] == "anna"
    assert pop["attributes"]["transfer"]["reason"] == "knows the contract"
    assert scene.acd.agent("bram").state == "busy"
    assert scene.acd.agent("anna").state == "available"
    assert scene.voice.calls_by_id[call_id].task_id == task_id
    assert_hears(await caller.listen(), [BRAM], [ANNA, MUSIC], "caller, after the consult")
    await wait_until(lambda: anna_phone.call_states()[0] == "ENDED")
    assert len(bram_phone.calls) == 1  # the offer did not ring his phone again

    bram = await scene.desk("bram")
    status, body = await bram.post(f"/api/calls/{call_id}/hangup")
    assert status == 200, body
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors
    await wait_until(lambda: scene.acd.agent("bram").state == "wrap_up")


# ------------------------------------------- attended transfer from a desk phone (Replaces)
# anna's desk phone is three sipp processes sharing her identity (sipp runs one Call-ID
# per scenario): D1 answers the customer call and puts it on hold, D2 dials bram's
# extension through Centrale (digest-authenticated as 1001), and the REFER goes on D1
# with Refer-To carrying `Replaces` of D2 — each dialog's ids come from the phone's own
# sipp logs, as a phone would know them.

D1_LOG = ("      <log message=\"D1|[call_id]|[$ccontact]|[$cto]|[$cfrom]|"
          "[pid]SIPpTag01[call_number]\"/>\n")

CONSULT_CALL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="consult-call">
{invite}
  <recv response="401" auth="true"/>
  <send>
    <![CDATA[
      ACK sip:1002@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:1001@[remote_ip]>;tag=[pid]consult[call_number]
      To: <sip:1002@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
{invite_auth}
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="tag=[^;]*" search_in="hdr" header="To:" assign_to="ttag"/>
      <log message="D2|[call_id]|[pid]consult[call_number]|[$ttag]"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      ACK sip:1002@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:1001@[remote_ip]>;tag=[pid]consult[call_number]
      To: <sip:1002@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
</scenario>
"""

CONSULT_INVITE = """
  <send retrans="500">
    <![CDATA[
      INVITE sip:1002@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:1001@[remote_ip]>;tag=[pid]consult[call_number]
      To: <sip:1002@[remote_ip]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:1001@[local_ip]:[local_port]>
      Max-Forwards: 70
{auth}      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
"""

REFER_ON_D1 = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="refer-replaces">
  <Global variables="contact,fromuri,phonetag,touri,referto"/>
  <send retrans="500">
    <![CDATA[
      REFER [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$fromuri];tag=[$phonetag]
      To: [$touri]
      Call-ID: [call_id]
      CSeq: {cseq} REFER
      Contact: <sip:1001@[local_ip]:[local_port]>
      Refer-To: [$referto]
      Referred-By: <sip:1001@127.0.0.1>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="{status}"/>
</scenario>
"""


def write_scenario(workdir: Path, scenario: str) -> Path:
    workdir.mkdir(exist_ok=True)
    path = workdir / "scenario.xml"
    path.write_text(scenario)
    return path


async def run_sipp_file(workdir: Path, scenario: str, args: list[str],
                        timeout: int = 60) -> tuple[int, str]:
    """sipp on `scenario` with `args` (ports, target, -set …): (exit code, errors)."""
    from sip_testkit import SIPP, free_udp_port

    path = write_scenario(workdir, scenario)
    proc = await asyncio.create_subprocess_exec(
        SIPP, "-sf", str(path), "-i", "127.0.0.1", "-m", "1", "-nostdin",
        "-mp", str(free_udp_port(even=True)), "-timeout", f"{timeout}s", "-timeout_error",
        "-trace_err", "-error_file", str(workdir / "errors.log"), "-trace_logs",
        "-log_file", str(workdir / "phone.log"), *args, cwd=workdir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    errors = workdir / "errors.log"
    return proc.returncode or 0, err.decode(errors="replace") + (
        errors.read_text(errors="replace") if errors.exists() else "")


async def logged(path: Path, prefix: str) -> list[str]:
    """The words of the phone's log line starting with `prefix`, once it is written."""
    def line() -> list[str] | None:
        if not path.exists():
            return None
        for text in path.read_text(errors="replace").splitlines():
            if text.startswith(prefix + "|"):
                return text.split("|")[1:]
        return None

    await wait_until(lambda: line() is not None, timeout=30)
    words = line()
    assert words is not None
    return words


async def test_attended_transfer_from_the_desk_phone_with_replaces(scene: Scene) -> None:
    """anna's phone holds the customer, calls bram's extension through Centrale, then
    REFERs the customer call with Replaces of that consult call: the customer talks to
    bram, both of anna's dialogs end (NOTIFY 100, NOTIFY 200, BYE on D1; BYE on D2),
    and the bookkeeping is the desktop's consultative transfer (consult + transfer
    mode=consultative on the timeline, the task is bram's)."""
    from urllib.parse import quote

    from sip_testkit import free_udp_port

    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    await scene.acd.agent_login("bram", "desk-bram")
    await scene.acd.set_state("bram", "available")
    d1_dir = scene.tmp_path / "d1"
    d1_dir.mkdir()
    d1 = await sipp_desk_phone(scene, phone_scenario(
        reinvite(1, "sendonly")
        + answer("NOTIFY", "SIP/2.0 100") + answer("NOTIFY", "SIP/2.0 200")
        + answer("BYE")).replace("    </action>", D1_LOG + "    </action>", 1),
        log_file=d1_dir / "phone.log")
    call_id = await scene.call_in()
    task_id = scene.task_of(call_id)
    caller = scene.caller
    assert caller is not None
    await wait_until(lambda: any(e.payload["operation"] == "hold" for e in scene.events),
                     timeout=40)  # the phone's hold key, once connected (slow when loaded)
    d1_ids = await logged(d1_dir / "phone.log", "D1")

    consult_dir = scene.tmp_path / "d2"
    consult = asyncio.ensure_future(run_sipp_file(consult_dir, CONSULT_CALL.format(
        invite=CONSULT_INVITE.format(cseq=1, auth=""),
        invite_auth=CONSULT_INVITE.format(
            cseq=2, auth="      [authentication username=1001 password=anna-secret]\n")),
        ["-p", str(free_udp_port()), f"127.0.0.1:{scene.sip.port}"]))
    d2_call_id, d2_phone_tag, d2_our_tag = await logged(consult_dir / "phone.log", "D2")
    d2_our_tag = d2_our_tag.removeprefix("tag=")
    await wait_until(lambda: len(bram_phone.calls) == 1)
    assert_hears(await caller.listen(50), [MUSIC], [BRAM], "caller, on hold during consult")

    d1_call_id, contact, to_uri, from_hdr, phone_tag = d1_ids
    d1_our_tag = from_hdr.rsplit("tag=", 1)[1]

    async def refer(name: str, cseq: int, call: str, to_tag: str, from_tag: str,
                    status: int) -> None:
        replaces = quote(f"{call};to-tag={to_tag};from-tag={from_tag}", safe="")
        code, errors = await run_sipp_file(
            scene.tmp_path / name, REFER_ON_D1.format(cseq=cseq, status=status), [
                "-p", str(free_udp_port()), "-cid_str", d1_call_id,
                "-set", "contact", contact, "-set", "fromuri", to_uri,
                "-set", "phonetag", phone_tag, "-set", "touri", from_hdr,
                "-set", "referto", f"<sip:1002@127.0.0.1?Replaces={replaces}>",
                f"127.0.0.1:{scene.sip.port}"])
        assert code == 0, errors

    # Replaces naming the customer call itself: a dialog of ours, but not this phone's
    # consult call → 403, nothing changes (still on hold, bram still on the consult).
    await refer("refer-self", 20, d1_call_id, d1_our_tag, phone_tag, 403)
    assert scene.voice.sip_control.sessions[call_id].state == "talking"
    assert not [e for e in scene.events if e.payload["operation"].startswith("transfer")]
    assert scene.voice.sip_control.extensions.calls  # the consult call goes on
    await refer("refer", 21, d2_call_id, d2_our_tag, d2_phone_tag, 202)
    code, errors = await asyncio.wait_for(d1, 60)
    assert code == 0, errors  # NOTIFY 100 Trying, NOTIFY 200 OK, then BYE on D1
    code, errors = await asyncio.wait_for(consult, 60)
    assert code == 0, errors  # BYE on D2: the consult call is over for anna's phone
    assert_hears(await caller.listen(), [BRAM], [MUSIC], "caller, after the transfer")
    assert_hears(await bram_phone.listen(), [CALLER], [], "bram, after the transfer")
    ops = [e.payload for e in scene.events]
    consult_op = next(p for p in ops if p["operation"] == "consult")
    transfer = next(p for p in ops if p["operation"] == "transfer")
    assert consult_op["target"] == "bram" and consult_op["via"] == "phone"
    assert (transfer["mode"], transfer["target"], transfer["actor_role"]) == \
        ("consultative", "bram", "phone")
    assert scene.voice.calls_by_id[call_id].agent_id == "bram"
    await wait_until(lambda: scene.acd.task(task_id).agent_id == "bram")
    assert len(bram_phone.calls) == 1  # the task followed without ringing him again
    case_id = scene.voice.calls_by_id[call_id].case_id
    timeline = await scene.c.cases.timeline(case_id)
    kinds = [(t.meta or {}).get("event") for t in timeline if t.kind == "call_control"]
    assert kinds.index("consult") < kinds.index("transfer")
    bram = await scene.desk("bram")
    status, body = await bram.post(f"/api/calls/{call_id}/hangup")
    assert status == 200, body
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors


def extension_call(password: str, final: int) -> str:
    """Phone 1001 dials extension 1002: challenged, retried with `password`, expects
    `final` (an error, ACKed)."""
    ack = """
  <send>
    <![CDATA[
      ACK sip:1002@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:1001@[remote_ip]>;tag=[pid]consult[call_number]
      To: <sip:1002@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="ext">\n'
            + CONSULT_INVITE.format(cseq=1, auth="") + '  <recv response="401" auth="true"/>'
            + ack.format(cseq=1) + CONSULT_INVITE.format(
                cseq=2, auth=f"      [authentication username=1001 password={password}]\n")
            + '  <recv response="100" optional="true"/>\n'
            + '  <recv response="180" optional="true"/>\n'
            + f'  <recv response="{final}"/>' + ack.format(cseq=2) + "</scenario>\n")


async def test_a_phone_calling_an_extension_is_authenticated_and_told_the_outcome(
        scene: Scene) -> None:
    """Extension calls need the phone's own credentials (a trunk cannot place them by
    writing a phone's name in From): wrong password → 403; bram's phone not
    registered → 480 (nobody rings, nothing is left behind)."""
    from sip_testkit import free_udp_port

    for name, password, final in (("wrong", "not-annas", 403),
                                  ("unregistered", "anna-secret", 480)):
        code, errors = await run_sipp_file(
            scene.tmp_path / name, extension_call(password, final),
            ["-p", str(free_udp_port()), f"127.0.0.1:{scene.sip.port}"], timeout=30)
        assert code == 0, f"{name}: {errors}"
    assert not scene.voice.sip_control.extensions.calls
    assert not scene.voice.sip_control.sessions


REFER_ON_D2 = """
  <pause milliseconds="1500"/>
  <send retrans="500">
    <![CDATA[
      REFER sip:1002@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:1001@[remote_ip]>;tag=[pid]consult[call_number]
      To: <sip:1002@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 REFER
      Contact: <sip:1001@[local_ip]:[local_port]>
      Refer-To: [$referto]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="202"/>
""" + answer("NOTIFY", "SIP/2.0 100") + answer("NOTIFY", "SIP/2.0 200")


async def test_attended_transfer_with_the_refer_sent_on_the_consult_call(
        scene: Scene) -> None:
    """Some phones send the REFER on the consult call, naming the customer call in
    Replaces: the same transfer (NOTIFYs on the consult call, BYE on both)."""
    from urllib.parse import quote

    from sip_testkit import free_udp_port

    bram_phone = await scene.phone("1002", "bram-secret", BRAM)
    await scene.acd.agent_login("bram", "desk-bram")
    await scene.acd.set_state("bram", "available")
    d1_dir = scene.tmp_path / "d1"
    d1_dir.mkdir()
    d1 = await sipp_desk_phone(scene, phone_scenario(
        reinvite(1, "sendonly") + answer("BYE")).replace(
            "    </action>", D1_LOG + "    </action>", 1), log_file=d1_dir / "phone.log")
    call_id = await scene.call_in()
    task_id = scene.task_of(call_id)
    caller = scene.caller
    assert caller is not None
    await wait_until(lambda: any(e.payload["operation"] == "hold" for e in scene.events),
                     timeout=40)  # the phone's hold key, once connected (slow when loaded)
    d1_call_id, _contact, _to, from_hdr, phone_tag = await logged(d1_dir / "phone.log", "D1")
    replaces = quote(f"{d1_call_id};to-tag={phone_tag};"
                     f"from-tag={from_hdr.rsplit('tag=', 1)[1]}", safe="")
    scenario = CONSULT_CALL.format(
        invite=CONSULT_INVITE.format(cseq=1, auth=""),
        invite_auth=CONSULT_INVITE.format(
            cseq=2, auth="      [authentication username=1001 password=anna-secret]\n"))
    scenario = scenario.replace('<scenario name="consult-call">',
                                '<scenario name="consult-call">\n  <Global variables="referto"/>')
    scenario = scenario.replace('  <recv request="BYE"/>', REFER_ON_D2 + '  <recv request="BYE"/>')
    code, errors = await run_sipp_file(scene.tmp_path / "d2", scenario, [
        "-p", str(free_udp_port()),
        "-set", "referto", f"<sip:+33123456789@127.0.0.1?Replaces={replaces}>",
        f"127.0.0.1:{scene.sip.port}"])
    assert code == 0, errors  # 202, NOTIFY 100, NOTIFY 200, BYE on the consult call
    code, errors = await asyncio.wait_for(d1, 60)
    assert code == 0, errors  # BYE on the customer call
    assert_hears(await caller.listen(), [BRAM], [MUSIC], "caller, after the transfer")
    assert_hears(await bram_phone.listen(), [CALLER], [], "bram, after the transfer")
    transfer = next(e.payload for e in scene.events if e.payload["operation"] == "transfer")
    assert (transfer["mode"], transfer["target"]) == ("consultative", "bram")
    await wait_until(lambda: scene.acd.task(task_id).agent_id == "bram")
    bram = await scene.desk("bram")
    status, body = await bram.post(f"/api/calls/{call_id}/hangup")
    assert status == 200, body
    result = await asyncio.wait_for(scene.sipp, 30)
    assert result.returncode == 0, result.stderr + result.errors
