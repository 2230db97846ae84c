"""Small helpers for the long-running asyncio loops every node runs."""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that arrived as another error.

    Why: a loop that retries on Redis errors (a reader, a lease renewal, the forwarded
    calls' server) must still end when its task is cancelled. A cancellation that lands
    inside the client's read can surface as a connection or timeout error instead of
    `CancelledError`; caught as "Redis did not answer, retry", it is swallowed and the
    loop runs on, so a node's stop (or a test's teardown) waits for it for good — a hang
    seen in the suite and in the benchmark's nodes. Call it first in such handlers."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
