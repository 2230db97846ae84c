"""Fuzzing the running SIP server (issue 18): grammar-generated hostile requests over
real UDP and TCP sockets, while a real call (sipp) is in progress.

Invariants, checked on every run:
- no error or traceback is logged by the server;
- every request that carries a Via (all of them, but ACK) gets a response; over TCP a
  message that never completes is closed instead;
- afterwards the transaction table, the calls and the SIP stack's memory return to
  their baseline;
- the call in progress keeps its audio (RTP keeps arriving) and ends normally.

The server runs on its own event loop thread, as in production; Hypothesis drives
plain blocking sockets from the test thread. CI runs a bounded number of examples;
`CENTRALE_FUZZ_EXAMPLES=5000` runs longer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sip_grammar import FuzzRequest, sip_request
from sip_testkit import WAIT_BYE, run_sipp

from config.schema.server import SipSettings
from pbx_bridge.media.audio import PromptDirectory
from pbx_bridge.sip import transaction
from pbx_bridge.sip.leg import SipCallLeg
from pbx_bridge.sip.ports import TrunkConfig
from pbx_bridge.sip.server import SipServer

pytestmark = pytest.mark.sipp

EXAMPLES = int(os.environ.get("CENTRALE_FUZZ_EXAMPLES", "120"))
RESPONSE_TIMEOUT = 10.0
LEGIT_SERVICE = "audio-call"

CALL_IN_PROGRESS = ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="legit">\n'
                    + """
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+31201234567@[local_ip]:[local_port]>;tag=[pid]legit
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+31201234567@[local_ip]:[local_port]>;tag=[pid]legit
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
""" + WAIT_BYE + "</scenario>\n")


class ThreadedSipServer:
    """A SipServer on its own loop thread; `run(coro)` executes there."""

    def __init__(self, prompt_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.legit_leg: SipCallLeg | None = None
        self.legit_answered = threading.Event()

        async def handler(leg: SipCallLeg) -> None:
            if leg.caller.dialled != LEGIT_SERVICE:
                await leg.hangup()  # fuzz INVITEs that got this far are refused (480)
                return
            await leg.answer()
            await leg.start_music_on_hold()
            self.legit_leg = leg
            self.legit_answered.set()
            await leg.wait_ended()

        settings_ = SipSettings(enabled=True, host="127.0.0.1", port=0,
                                transports=["udp", "tcp"], rtp_port_min=30000,
                                rtp_port_max=39999)
        self.server = SipServer(
            settings_, inbound_handler=handler, credentials={"alice": "alice-secret"},
            trunks=[TrunkConfig("local", allowed_ips=frozenset({"127.0.0.1"}), trusted=True)],
            prompts=PromptDirectory(prompt_dir), music=lambda cls: prompt_dir / "moh.wav")
        self.server.transport.tcp_incomplete_seconds = 1.0
        self.server.transport.tcp_silent_seconds = 2.0
        self.run(self.server.start())

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def state(self) -> dict[str, int]:
        async def read() -> dict[str, int]:
            s = self.server
            return {"server_transactions": len(s.transactions.server),
                    "client_transactions": len(s.transactions.client),
                    "calls": len(s.calls), "tcp_connections": len(s.transport.connections),
                    "tasks": len(s._tasks)}
        return self.run(read())

    def close(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def fuzz_server(prompt_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedSipServer]:
    # Short RFC timers so "the table returns to its baseline" is seen in seconds; the
    # code paths are the production ones.
    monkeypatch.setattr(transaction, "T1", 0.05)
    monkeypatch.setattr(transaction, "T4", 0.2)
    monkeypatch.setattr(transaction, "SERVER_TU_TIMEOUT", 2.0)
    server = ThreadedSipServer(prompt_dir)
    yield server
    server.close()


def _udp_exchange(port: int, request: FuzzRequest) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(RESPONSE_TIMEOUT if request.needs_response else 0.05)
        sock.sendto(request.data, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def _tcp_exchange(port: int, request: FuzzRequest) -> tuple[bytes, bool]:
    """(what came back, whether the server closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=RESPONSE_TIMEOUT) as sock:
        sock.sendall(request.data)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return b"", False
        except ConnectionResetError:
            return b"", True
        return data, data == b""


class Harness:
    def __init__(self, server: ThreadedSipServer, caplog: pytest.LogCaptureFixture,
                 tmp_path: Path) -> None:
        self.server = server
        self.caplog = caplog
        caplog.set_level(logging.WARNING)
        self.idle = server.state()  # what the server holds with nothing going on
        self.call = server.submit(run_sipp(CALL_IN_PROGRESS, tmp_path, server.server.port,
                                           service=LEGIT_SERVICE, timeout=600,
                                           extra=["-rtp_echo"]))
        assert server.legit_answered.wait(30), "the legitimate call was not answered"
        leg = server.legit_leg
        assert leg is not None and leg.call.rtp is not None
        self.rtp = leg.call.rtp
        self.audio_start = (time.monotonic(), self.rtp.stats.packets_in)
        self.sent = 0
        self.corpus: list[FuzzRequest] = []

    @staticmethod
    def _stack_memory() -> int:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, "*pbx_bridge*")])
        return sum(stat.size for stat in snapshot.statistics("filename"))

    def check_udp(self, request: FuzzRequest) -> None:
        self.sent += 1
        self.corpus.append(request)
        answer = _udp_exchange(self.server.server.port, request)
        if request.needs_response:
            assert answer is not None and answer.startswith(b"SIP/2.0 "), request.data[:300]

    def check_tcp(self, request: FuzzRequest) -> None:
        self.sent += 1
        self.corpus.append(request)
        answer, closed = _tcp_exchange(self.server.server.port, request)
        if request.needs_response:
            assert answer.startswith(b"SIP/2.0 ") or closed, request.data[:300]

    def send_only(self, request: FuzzRequest) -> None:
        self.sent += 1
        self.corpus.append(request)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.sendto(request.data, ("127.0.0.1", self.server.server.port))

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + 30
        while self.server.state() != self.idle and time.monotonic() < deadline:
            time.sleep(0.1)  # the transactions' own timers run down (T1 shortened)
        assert self.server.state() == self.idle

    def _memory_after_replay(self) -> int:
        """The corpus again, under tracemalloc (too slow to run during generation):
        what the SIP stack still holds once the server is idle again."""
        self._wait_idle()
        gc.collect()
        tracemalloc.start()
        try:
            before = self._stack_memory()
            for request in self.corpus:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.bind(("127.0.0.1", 0))
                    sock.sendto(request.data, ("127.0.0.1", self.server.server.port))
            self._wait_idle()
            gc.collect()
            return self._stack_memory() - before
        finally:
            tracemalloc.stop()

    def finish(self) -> None:
        elapsed = time.monotonic() - self.audio_start[0]
        received = self.rtp.stats.packets_in - self.audio_start[1]
        leg = self.server.legit_leg
        assert leg is not None and not leg.ended, "the call in progress was dropped"
        # the echoing caller returns our 20 ms packets: at least half of them arrived
        assert received >= 0.5 * elapsed / 0.02, (received, elapsed)
        self.server.run(leg.hangup())
        result = self.call.result(60)
        assert result.returncode == 0, result.stderr + result.errors
        self._wait_idle()
        grown = self._memory_after_replay()
        assert grown < 256 * 1024, f"the SIP stack kept {grown} bytes"
        errors = [r for r in self.caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not errors, errors[0].getMessage() + repr(errors[0].exc_info)
        print(f"fuzz: {self.sent} requests; the call kept {received} RTP packets in "
              f"{elapsed:.1f} s; stack memory {grown:+d} bytes")


# CI replays the same examples every run; CENTRALE_FUZZ_EXAMPLES explores new ones.
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck),
                         derandomize="CENTRALE_FUZZ_EXAMPLES" not in os.environ)


def test_fuzzed_requests_over_udp_are_all_answered_and_leave_nothing_behind(
        fuzz_server, caplog, tmp_path):
    harness = Harness(fuzz_server, caplog, tmp_path)
    client_port = 5060  # only written in the Via; rport routes the answer to the socket

    @FUZZ_SETTINGS
    @given(sip_request(transport="UDP", port=client_port))
    def one(request: FuzzRequest) -> None:
        harness.check_udp(request)

    one()
    harness.finish()


def test_fuzzed_requests_over_tcp_are_answered_or_closed(fuzz_server, caplog, tmp_path):
    harness = Harness(fuzz_server, caplog, tmp_path)

    @FUZZ_SETTINGS
    @given(sip_request(transport="TCP", port=5060))
    def one(request: FuzzRequest) -> None:
        harness.check_tcp(request)

    one()
    harness.finish()


def test_byte_mutated_requests_never_raise_or_leak(fuzz_server, caplog, tmp_path):
    """Mutated bytes may destroy the Via, so only the other invariants apply."""
    harness = Harness(fuzz_server, caplog, tmp_path)

    @FUZZ_SETTINGS
    @given(sip_request(transport="UDP", port=5060, mutate_bytes=True))
    def one(request: FuzzRequest) -> None:
        harness.send_only(request)

    one()
    harness.finish()
