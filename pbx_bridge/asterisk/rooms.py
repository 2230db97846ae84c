"""Which channel sits in which ConfBridge room, from AMI `ConfbridgeJoin` / `Leave`.

Call control moves channels between a call's room and the hold extension with
`Redirect`. Asterisk accepts a Redirect of a channel whose `ConfBridge()` has started
but not yet joined its bridge; the join is then cut short, and against the live
Asterisk 20.20.1 the room the agent had joined was left orphaned: the customer came
back from hold into a second, empty room of the same name and the two never heard
each other again (one CI run in four). So an operation that puts a channel into a
room waits for Asterisk to say it joined before the next Redirect of that channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any


class RoomWatch:
    """A raw AMI listener (`AmiClient.add_raw_listener`) and the waits on it."""

    def __init__(self) -> None:
        self.rooms: dict[str, str] = {}  # channel -> conference it has joined
        self._waiters: list[tuple[str, str, asyncio.Future[None]]] = []

    def __call__(self, message: Mapping[str, Any]) -> None:
        event = message.get("Event")
        channel, conference = message.get("Channel"), message.get("Conference")
        if not isinstance(channel, str) or not isinstance(conference, str):
            return
        if event == "ConfbridgeJoin":
            self.rooms[channel] = conference
            for waiter in [w for w in self._waiters if w[:2] == (channel, conference)]:
                if not waiter[2].done():
                    waiter[2].set_result(None)
        elif event == "ConfbridgeLeave" and self.rooms.get(channel) == conference:
            del self.rooms[channel]

    def leaving(self, channel: str) -> None:
        """The channel is being redirected: what we knew of its room is stale."""
        self.rooms.pop(channel, None)

    async def joined(self, channels: list[str], conference: str, timeout: float) -> bool:
        """True once every channel has joined the room; False after `timeout` (the
        caller goes on: a missing event must not block call control)."""
        loop = asyncio.get_running_loop()
        pending = []
        for channel in channels:
            if self.rooms.get(channel) != conference:
                waiter = (channel, conference, loop.create_future())
                self._waiters.append(waiter)
                pending.append(waiter)
        try:
            if pending:
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*(w[2] for w in pending))
            return True
        except TimeoutError:
            return False
        finally:
            for waiter in pending:
                self._waiters.remove(waiter)
