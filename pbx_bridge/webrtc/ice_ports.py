"""Browser-phone media ports inside the configured RTP range.

aioice (aiortc's ICE agent) binds each host candidate's UDP socket to port 0: the
kernel picks any ephemeral port, which a firewall opened for the RTP range
(`server.sip.rtp_port_min`–`rtp_port_max`) would drop. aioice has no setting for it,
so the binding is steered from outside: `aioice.ice` reaches the event loop through
its module's `asyncio` name, which is replaced by a shim whose loop binds a port-0
datagram endpoint to a free port of the range instead (any other call is the real
asyncio's). Only aioice's own module sees the shim; nothing else changes.

Tested by tests/pbx_bridge/webrtc/test_browser_leg.py (candidates in the range).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aioice.ice

_ATTEMPTS = 64


class _RangedLoop:
    """The running loop, with port-0 datagram binds moved into [low, high]."""

    def __init__(self, loop: asyncio.AbstractEventLoop, low: int, high: int) -> None:
        self._loop = loop
        self._low, self._high = low, high

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(self, factory: Any, local_addr: Any = None,
                                       **kwargs: Any) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return _small_reads(await self._loop.create_datagram_endpoint(
                factory, local_addr=local_addr, **kwargs))
        last: OSError | None = None
        for _ in range(_ATTEMPTS):
            port = random.randint(self._low, self._high)
            try:
                return _small_reads(await self._loop.create_datagram_endpoint(
                    factory, local_addr=(local_addr[0], port), **kwargs))
            except OSError as exc:  # taken: try another
                last = exc
        raise OSError(f"no free port for ICE in {self._low}-{self._high}: {last}")


def _small_reads(endpoint: Any) -> Any:
    """An ICE socket reads datagrams of at most 4 KB (RTP legs: 2 KB): asyncio's 256 KB
    per read cost a heap trim or an mmap per packet (pbx_bridge/media/rtp.py,
    RECV_BYTES; docs/performance.md, "SRTP media"). STUN, DTLS records and SRTP
    packets on a 1500-byte path fit."""
    transport = endpoint[0]
    if hasattr(transport, "max_size"):  # the selector loop's datagram transport
        transport.max_size = 4096
    return endpoint


class _AsyncioShim:
    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def get_running_loop(self) -> Any:
        return _RangedLoop(asyncio.get_running_loop(), self.low, self.high)

    def get_event_loop(self) -> Any:
        return _RangedLoop(asyncio.get_event_loop(), self.low, self.high)


def bind_ice_in_range(low: int, high: int) -> None:
    """From now on, aioice's host candidates take ports in [low, high] (process-wide:
    one node has one RTP range)."""
    if not 0 < low <= high < 65536:
        raise ValueError(f"not a port range: {low}-{high}")
    aioice.ice.asyncio = _AsyncioShim(low, high)  # type: ignore[attr-defined]


def ice_port_range() -> tuple[int, int] | None:
    shim = aioice.ice.asyncio
    return (shim.low, shim.high) if isinstance(shim, _AsyncioShim) else None
