"""Waiting in tests for something another task, process or node does."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def wait_until(predicate: Callable[[], bool | Awaitable[bool]],
                     timeout: float = 15.0, step: float = 0.05) -> None:
    """Poll `predicate` (plain or async) until it holds; fail the test after `timeout`
    seconds. For conditions with nothing to wait on: Redis keys, rows, process logs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = predicate()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert loop.time() < deadline, f"condition not reached within {timeout} s"
        await asyncio.sleep(step)
