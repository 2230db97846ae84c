"""Presence follows the desktop: an agent whose last desktop websocket on this node
closed (browser closed, laptop asleep, network gone) must not keep receiving work.

- after `server.web.offer_disconnect_grace_seconds` (2 s: a page reload reconnects well
  within it) the offers still ringing for the agent are rejected, so the ACD offers the
  task to the next agent at once instead of waiting for the no-answer timer;
- after `server.web.disconnect_grace_seconds` (10 s) an agent still without a desktop is
  put not-ready with the reason `acd.disconnected_reason` ("disconnected"); calls and
  conversations in hand continue, only new work stops.
- an offer made to an agent whose desktop is gone (inside the grace) is rejected at once.

A reconnect inside the grace cancels both. Across nodes (Redis configured) the agent's
presence is cluster-wide: each node records the agents whose desktop it holds in the
presence directory (`presence_directory.py`), and a node where the desktop closed asks
it before acting — an agent whose browser reconnected to another node within the grace
keeps their offers and stays available. Without Redis, this node's sockets decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from web.desktop.screenpop import maybe_await

if TYPE_CHECKING:
    from web.desktop.state import DesktopState

log = logging.getLogger(__name__)


class Presence:
    def __init__(self) -> None:
        self.state: DesktopState | None = None
        self._gone: dict[str, list[asyncio.TimerHandle]] = {}  # agent -> pending timers
        self._tasks: set[asyncio.Task[None]] = set()
        self.directory: Any = None  # RedisPresenceDirectory, when the node has Redis
        self._refresh: asyncio.Task[None] | None = None
        # Directory writes go out one at a time, in the order they were asked for: a
        # refresh (or a connect's mark) still on its way to Redis must not land after
        # the clear of a socket that closed meanwhile and re-list this node for `ttl`
        # (the other node would then take the agent for connected here and never put
        # them not-ready). asyncio.Lock hands itself over first come, first served.
        self._writes = asyncio.Lock()

    def start(self, state: DesktopState) -> None:
        self.state = state
        self.directory = getattr(state.ctx, "services", {}).get("desktop_presence")
        if self.directory is not None:
            self._refresh = asyncio.get_running_loop().create_task(
                self._keep_marked(), name="desktop-presence")

    async def _keep_marked(self) -> None:
        """Refresh this node's entries for every agent whose desktop it holds."""
        period = self.directory.ttl_seconds / 3
        while True:
            await asyncio.sleep(period)
            assert self.state is not None
            async with self._writes:  # the sockets read under the lock: see __init__
                held = [a for a, sockets in self.state.hub.agents.items() if sockets]
                try:
                    await self.directory.mark(held)
                except Exception:
                    log.warning("desktop presence not refreshed (Redis)", exc_info=True)

    async def _elsewhere(self, agent_id: str) -> bool:
        """The agent's desktop is open on another node (never True without Redis)."""
        if self.directory is None:
            return False
        try:
            return bool(await self.directory.connected_elsewhere(agent_id))
        except Exception:  # Redis unreachable: act on what this node sees
            log.warning("desktop presence of %s unknown (Redis)", agent_id, exc_info=True)
            return False

    async def stop(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
            self._refresh = None
        for handles in self._gone.values():
            for h in handles:
                h.cancel()
        self._gone.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

    def is_gone(self, agent_id: str) -> bool:
        return agent_id in self._gone

    def connected(self, agent_id: str) -> None:
        for h in self._gone.pop(agent_id, []):
            h.cancel()
        if self.directory is not None:
            self._spawn(self._directory_call, "mark", [agent_id])

    def disconnected(self, agent_id: str) -> None:
        """The agent's last desktop socket on this node closed."""
        if self.directory is not None:
            self._spawn(self._directory_call, "clear", agent_id)
        if self.state is None or agent_id in self._gone:
            return
        web = self.state.ctx.config.server.web
        loop = asyncio.get_running_loop()
        self._gone[agent_id] = [
            loop.call_later(web.offer_disconnect_grace_seconds, self._spawn,
                            self.reject_offers, agent_id),
            loop.call_later(web.disconnect_grace_seconds, self._spawn,
                            self.not_ready, agent_id),
        ]

    def _spawn(self, fn: Any, *args: Any) -> None:
        task = asyncio.get_running_loop().create_task(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _directory_call(self, name: str, arg: Any) -> None:
        try:
            async with self._writes:
                await getattr(self.directory, name)(arg)
        except Exception:
            log.warning("desktop presence %s failed (Redis)", name, exc_info=True)

    def offer_to_gone_agent(self, agent_id: str, offer_id: str) -> None:
        """An offer for a desktop that is gone goes to the next agent at once."""
        self._spawn(self._reject, agent_id, offer_id)

    async def reject_offers(self, agent_id: str) -> None:
        if await self._came_back_elsewhere(agent_id):
            return
        acd = self._acd()
        if acd is None or not hasattr(acd, "offers_for"):
            return
        try:
            offers = list(acd.offers_for(agent_id))
        except Exception:  # an agent the ACD does not know (any more)
            log.debug("no offers of %s", agent_id, exc_info=True)
            return
        for offer in offers:
            await self._reject(agent_id, offer.id)

    async def _came_back_elsewhere(self, agent_id: str) -> bool:
        """The desktop reconnected to another node: this node's timers are moot."""
        if not await self._elsewhere(agent_id):
            return False
        for h in self._gone.pop(agent_id, []):
            h.cancel()
        log.info("agent %s has a desktop on another node: not treated as gone", agent_id)
        return True

    async def _reject(self, agent_id: str, offer_id: str) -> None:
        if await self._came_back_elsewhere(agent_id):
            return
        acd = self._acd()
        if acd is None:
            return
        try:
            await maybe_await(acd.reject(offer_id, agent_id))
            log.info("offer %s of %s rejected: the desktop is gone", offer_id, agent_id)
        except Exception as exc:  # answered, withdrawn meanwhile: nothing to do
            log.debug("offer %s of %s not rejected: %s", offer_id, agent_id, exc)

    async def not_ready(self, agent_id: str) -> None:
        """Still no desktop after the grace: the agent stops receiving work."""
        self._gone.pop(agent_id, None)
        assert self.state is not None
        if self.state.hub.agents.get(agent_id):
            return  # came back just now
        if await self._came_back_elsewhere(agent_id):
            return
        acd = self._acd()
        if acd is None:
            return
        reason = self.state.ctx.config.acd.disconnected_reason
        try:
            view = acd.agent(agent_id)
        except Exception:
            return
        if getattr(view, "state", None) in (None, "logged_out") or getattr(view, "reason",
                                                                           None):
            return  # logged out, or already not ready (a break of their own choosing)
        with contextlib.suppress(Exception):
            await self.reject_offers(agent_id)
        try:
            await maybe_await(acd.set_state(agent_id, "not_ready", reason))
            log.info("agent %s not ready (%s): the desktop went away", agent_id, reason)
        except Exception:
            log.warning("could not put %s not ready after a disconnect", agent_id,
                        exc_info=True)

    def _acd(self) -> Any:
        return self.state.ctx.acd if self.state is not None else None
