"""The IVR under test in `sip_bench.py`, run as a child process so its CPU and RSS
can be measured alone: `centrale` (the embedded SIP core) or `pyvoip` (pyVoIP 1.6.8,
the baseline).  Both answer, play a prompt, read one DTMF digit, then play music on
hold until the caller hangs up.  Counters are written to a JSON file twice a second.

    python bench/sip_bench_ivr.py centrale PORT PROMPT_DIR STATS_JSON
    python bench/sip_bench_ivr.py pyvoip PORT PROMPT_DIR STATS_JSON REGISTRAR_PORT
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EXPECTED_DIGIT = "5"


def write_stats(path: Path, stats: dict[str, int]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats))
    tmp.replace(path)


async def run_centrale(port: int, prompt_dir: Path, stats_path: Path) -> None:
    from config.schema.server import SipSettings
    from ivr.call_leg import CallerHangup
    from pbx_bridge.media.audio import PromptDirectory
    from pbx_bridge.sip.ports import TrunkConfig
    from pbx_bridge.sip.server import SipServer

    stats = {"calls": 0, "digits_ok": 0, "digits_bad": 0, "errors": 0, "ready": 0}

    async def ivr(leg) -> None:  # type: ignore[no-untyped-def]
        stats["calls"] += 1
        try:
            await leg.answer()
            result = await leg.play(["menu"], "en", barge_in=True)
            digit = result.interrupted_by or await leg.collect_digits(
                1, first_digit_timeout=5, inter_digit_timeout=1)
            stats["digits_ok" if digit == EXPECTED_DIGIT else "digits_bad"] += 1
            await leg.start_music_on_hold()
            await leg.wait_ended()
        except CallerHangup:
            pass

    settings = SipSettings(enabled=True, host="127.0.0.1", port=port, transports=["udp"],
                           rtp_port_min=20000, rtp_port_max=29999)
    server = SipServer(
        settings, inbound_handler=ivr, credentials={},
        trunks=[TrunkConfig("bench", allowed_ips=frozenset({"127.0.0.1"}))],
        prompts=PromptDirectory(prompt_dir), music=lambda _cls: prompt_dir / "moh.wav",
        symmetric_rtp=False,  # RTP goes to the SDP address: the bench's measuring sink
    )
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stats["ready"] = 1
    while not stop.is_set():
        stats["late_ticks"] = server.media.late_ticks
        stats["tick_lateness_ms"] = server.media.lateness_ms  # type: ignore[assignment]
        stats["tick_cost_ms"] = server.media.tick_cost_ms  # type: ignore[assignment]
        write_stats(stats_path, stats)
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
    await server.stop()


def run_pyvoip(port: int, prompt_dir: Path, stats_path: Path, registrar_port: int) -> None:
    from pyVoIP.VoIP import CallState, InvalidStateError, VoIPPhone

    def load_8bit(path: Path) -> bytes:
        """pyVoIP writes 8-bit unsigned linear audio at 8 kHz."""
        with wave.open(str(path), "rb") as wav:
            raw = wav.readframes(wav.getnframes())
            width, rate = wav.getsampwidth(), wav.getframerate()
        samples = [int.from_bytes(raw[i:i + 2], "little", signed=True)
                   for i in range(0, len(raw) - 1, width)]
        if rate == 16000:
            samples = samples[::2]
        return bytes(((s >> 8) + 128) & 0xFF for s in samples)

    prompt = load_8bit(prompt_dir / "en" / "menu.wav")
    moh = load_8bit(prompt_dir / "moh.wav")
    stats = {"calls": 0, "digits_ok": 0, "digits_bad": 0, "errors": 0, "ready": 0}
    lock = threading.Lock()

    def bump(key: str) -> None:
        with lock:
            stats[key] += 1

    def ivr(call) -> None:  # type: ignore[no-untyped-def]  # one pyVoIP thread per call
        bump("calls")
        try:
            call.answer()
            call.write_audio(prompt)
            deadline = time.monotonic() + len(prompt) / 8000 + 5
            digit = ""
            while call.state == CallState.ANSWERED and time.monotonic() < deadline:
                digit = call.get_dtmf()
                if digit:
                    break
                time.sleep(0.02)
            bump("digits_ok" if digit == EXPECTED_DIGIT else "digits_bad")
            while call.state == CallState.ANSWERED:
                call.write_audio(moh)
                time.sleep(len(moh) / 8000)
        except InvalidStateError:
            pass
        except Exception:
            bump("errors")

    phone = VoIPPhone("127.0.0.1", registrar_port, "bench", "bench", myIP="127.0.0.1",
                      callCallback=ivr, sipPort=port, rtpPortLow=30000, rtpPortHigh=39999)
    phone.start()
    stats["ready"] = 1
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not stopping.is_set():
        with lock:
            write_stats(stats_path, dict(stats))
        stopping.wait(0.5)
    write_stats(stats_path, stats)
    import os

    os._exit(0)  # pyVoIP's stop() would try to deregister with a registrar that is gone


def main() -> None:
    mode, port, prompt_dir, stats_path = sys.argv[1:5]
    if mode == "centrale":
        asyncio.run(run_centrale(int(port), Path(prompt_dir), Path(stats_path)))
    else:
        run_pyvoip(int(port), Path(prompt_dir), Path(stats_path), int(sys.argv[5]))


if __name__ == "__main__":
    main()
