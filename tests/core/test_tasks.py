"""core.tasks.raise_if_cancelling: a retry loop ends when cancelled, even when the
cancellation reaches it as the error it retries on."""

from __future__ import annotations

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError

from core.tasks import raise_if_cancelling


async def _read_that_turns_a_cancel_into_an_error() -> None:
    """A client read that reports a cancellation landing in it as a lost connection."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        raise RedisConnectionError("connection lost while reading") from None


async def _retry_loop(guarded: bool, rounds: list[int], stop: list[bool]) -> None:
    while not stop:
        rounds.append(1)
        try:
            await _read_that_turns_a_cancel_into_an_error()
        except RedisConnectionError:
            if guarded:
                raise_if_cancelling()
            await asyncio.sleep(0)


async def test_a_guarded_retry_loop_ends_when_cancelled() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(_retry_loop(True, rounds, []))
    await asyncio.sleep(0)
    task.cancel()
    done, _pending = await asyncio.wait({task}, timeout=5)
    assert done and task.cancelled() and len(rounds) == 1


async def test_an_unguarded_retry_loop_swallows_the_cancel() -> None:
    """Why the guard exists: without it the loop reads again after the cancel."""
    rounds: list[int] = []
    stop: list[bool] = []
    task = asyncio.create_task(_retry_loop(False, rounds, stop))
    await asyncio.sleep(0)
    task.cancel()
    _done, pending = await asyncio.wait({task}, timeout=0.2)
    assert pending and len(rounds) >= 2
    stop.append(True)  # end it for the test's sake: its next round sees the flag
    task.cancel()
    done, _pending = await asyncio.wait({task}, timeout=5)
    assert done
