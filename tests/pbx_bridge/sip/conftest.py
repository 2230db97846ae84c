"""Fixtures for the SIP core tests: a server on an ephemeral port, prompt files."""

from __future__ import annotations

import sys
import wave
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # sip_testkit helpers

from config.schema.server import SipSettings
from pbx_bridge.media.audio import PromptDirectory
from pbx_bridge.sip.leg import InboundCallHandler
from pbx_bridge.sip.ports import TrunkConfig
from pbx_bridge.sip.server import SipServer

AGENTS = {"alice": "alice-secret", "bob": "bob-secret"}


def write_tone_wav(path: Path, seconds: float, rate: int = 8000, width: int = 2,
                   channels: int = 1, freq: float = 440.0) -> Path:
    import math

    n = int(rate * seconds)
    samples = [int(6000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)]
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        if width == 2:
            frames = array("h", [s for s in samples for _ in range(channels)]).tobytes()
        else:
            frames = bytes(((s >> 8) + 128) & 0xFF for s in samples for _ in range(channels))
        wav.writeframes(frames)
    return path


@pytest.fixture
def prompt_dir(tmp_path: Path) -> Path:
    root = tmp_path / "prompts"
    (root / "en").mkdir(parents=True)
    write_tone_wav(root / "en" / "welcome.wav", 0.6)
    write_tone_wav(root / "en" / "menu.wav", 3.0, rate=16000)
    write_tone_wav(root / "moh.wav", 1.0, freq=300)
    return root


ServerFactory = Callable[..., Awaitable[SipServer]]


@pytest.fixture
async def make_server(prompt_dir: Path) -> AsyncIterator[ServerFactory]:
    servers: list[SipServer] = []

    async def factory(handler: InboundCallHandler, *, trunks: list[TrunkConfig] | None = None,
                      transports: list[str] | None = None, **kwargs: object) -> SipServer:
        settings = SipSettings(enabled=True, host="127.0.0.1", port=0,
                               transports=transports or ["udp", "tcp"],
                               rtp_port_min=30000, rtp_port_max=39999)
        server = SipServer(
            settings, inbound_handler=handler, credentials=AGENTS,
            trunks=trunks if trunks is not None else [
                TrunkConfig("local", allowed_ips=frozenset({"127.0.0.1"}), trusted=True)],
            prompts=PromptDirectory(prompt_dir),
            music=lambda cls: prompt_dir / "moh.wav",
            **kwargs,  # type: ignore[arg-type]
        )
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()
