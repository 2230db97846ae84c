"""The one websocket per browser, and the bus listener that feeds it.

Every node listens to the whole bus as a *broadcast* listener (no consumer group) and
pushes to the sockets it holds: a `task.offered` for agent A becomes A's screen-pop on
whichever node A's browser is connected to. The listener only sorts events and hands
them to per-agent workers, so the bus (and the ACD publishing on it) never waits for a
database read or a slow browser. Frames for one agent leave in event order (a pop is
never overtaken by the withdrawal of the same offer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from core.bus import Subscription, inline_listener
from core.events import Event
from digital.delivery import MessageDelivery, message_delivery
from web.desktop.figures import normalise_stats
from web.desktop.presence import Presence
from web.desktop.screenpop import build_screenpop, entry_view, iso_utc, plain

if TYPE_CHECKING:
    from web.desktop.ports import BrowserPhonePort
    from web.desktop.state import DesktopState

log = logging.getLogger(__name__)

AGENT_TASK_TOPICS = {"task.accepted", "task.offer_withdrawn", "task.rejected",
                     "task.offer_rejected", "task.offer_expired", "task.missed",
                     "task.completed",
                     "task.wrap_up_ended", "task.wrap_up_extended", "task.assigned",
                     "task.abandoned", "task.moved"}


class Hub:
    def __init__(self) -> None:
        self.state: DesktopState | None = None
        self.agents: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self.supervisors: set[web.WebSocketResponse] = set()
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Subscription | None = None
        self.pops_sent = 0
        self.presence = Presence()
        self._stopping = False

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self, state: DesktopState) -> None:
        self.state = state
        self.presence.start(state)
        phone = self._phone()
        if phone is not None:
            phone.attach_pages(self._send_agent, lambda agent_id: bool(self.agents.get(agent_id)))
        self._sub = await state.ctx.bus.subscribe("*", self.on_event)

    async def stop(self) -> None:
        self._stopping = True  # sockets closed by the shutdown are not agents leaving
        if self._sub is not None:
            await self._sub.close()
        await self.presence.stop()
        # Let in-flight work (a pop being built, a chart point being written) finish
        # briefly: a cancelled await leaves its database thread running past shutdown.
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        await self.close_sockets()

    async def close_sockets(self, timeout: float = 2.0) -> None:
        """Close every desktop websocket with 1001 (going away), all at once.

        Called when the server starts shutting down: an open websocket is a request
        in flight, and aiohttp would otherwise wait its whole shutdown timeout for each
        before the services can stop (21 s with desktops open). The browser's desktop
        reconnects to another node on 1001. A client that does not answer the close
        frame within `timeout` is dropped."""
        sockets = [*self.supervisors, *(w for s in self.agents.values() for w in s)]
        if not sockets:
            return

        async def close(ws: web.WebSocketResponse) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY,
                                                message=b"server shutting down"), timeout)

        await asyncio.gather(*(close(ws) for ws in sockets))

    def _phone(self) -> BrowserPhonePort | None:
        """The browser phone, when the node wires one (embedded SIP core)."""
        if self.state is None:
            return None
        return self.state.ctx.services.get("browser_phone")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- events ------------------------------------------------------------------

    @inline_listener  # never awaits: sorts the event and spawns the work
    async def on_event(self, event: Event) -> None:
        st = self.state
        if st is None:
            return
        st.ledger.note(event)
        topic, p = event.topic, event.payload
        st.cluster.seen(p.get("node_id"))
        if topic == "task.adopted":  # that node's tasks are counted by the adopter now
            st.cluster.drop(p.get("from_node"))
        agent = p.get("agent_id")
        if topic == "task.offered" and agent:
            if self.agents.get(agent):
                self._spawn(self._in_order(agent, self._pop(agent, p)))
            elif self.presence.is_gone(agent) and p.get("offer_id"):
                self.presence.offer_to_gone_agent(agent, p["offer_id"])
        elif topic in AGENT_TASK_TOPICS and agent:
            if self.agents.get(agent):
                # When it happened (aware UTC): the page's talk and wrap-up timers run
                # from it, also after a reload.
                frame = {"type": "task", "topic": topic, "payload": plain(p),
                         "occurred_at": iso_utc(event.occurred_at)}
                self._spawn(self._in_order(agent, self._send_agent(agent, frame)))
        elif topic == "agent.state_changed":
            frame = {"type": "agent_state", "payload": plain(p)}
            if agent and self.agents.get(agent):
                self._spawn(self._in_order(agent, self._send_agent(agent, frame)))
            self._spawn(self._send_supervisors(frame))
        elif topic.startswith("stats."):
            # Each node publishes its own figures; the board shows the cluster's.
            figures = normalise_stats(st.cluster.add(p))
            self._spawn(st.history.add(figures))  # the day charts, one line per queue
            if self.supervisors:
                self._spawn(self._send_supervisors({"type": "stats", "payload": figures}))
        elif topic == "message.status" and p.get("provider_message_id") and not p.get("case_id"):
            if any(self.agents.values()):  # nobody here to tell: no read
                self._spawn(self._delivery(p.get("provider"), str(p["provider_message_id"])))
        elif topic == "timeline.added" and p.get("case_id"):
            # The agents holding the case now, not when the task runs: the entry is
            # committed before its event, so a pop built for an offer made after this
            # point reads it already (for a new contact, always: the offer follows),
            # and a second frame with it would cost a read and a send for nothing.
            agents = self._agents_with_case(p["case_id"])
            if agents and p.get("entry_id"):
                self._spawn(self._timeline(p["case_id"], p["entry_id"], agents))
        elif topic.startswith(("message.", "conversation.")) and p.get("case_id"):
            frame = {"type": "conversation", "topic": topic, "payload": plain(p)}
            for agent_id in self._agents_with_case(p["case_id"]):
                self._spawn(self._in_order(agent_id, self._send_agent(agent_id, frame)))

    async def _in_order(self, agent_id: str, coro: Any) -> None:
        async with self._locks[agent_id]:
            await coro

    async def _pop(self, agent_id: str, payload: dict[str, Any]) -> None:
        assert self.state is not None
        try:
            frame = await build_screenpop(self.state.ctx, payload,
                                          limit=self.state.settings.timeline_limit)
        except Exception:
            log.exception("screen-pop for offer %s failed", payload.get("offer_id"))
            frame = {"type": "screenpop", "offer_id": payload.get("offer_id"),
                     "task_id": payload.get("task_id"), "case_id": payload.get("case_id"),
                     "error": "could not load the case; open it from the task list"}
        frame["sent_at"] = time.time()
        await self._send_agent(agent_id, frame)
        self.pops_sent += 1

    def _agents_with_case(self, case_id: str) -> list[str]:
        assert self.state is not None
        # Over the agents holding tasks on this node, not every connected desktop: this
        # runs for every message and timeline event (500 desktops, a few tasks each).
        live = self.state.ledger._live
        return [a for a, tasks in live.items() if case_id in tasks.values() and self.agents.get(a)]

    async def _timeline(self, case_id: str, entry_id: str, agents: list[str]) -> None:
        if self.state is None:
            return
        entry = await self.state.ctx.cases.timeline_entry(entry_id)
        if entry is None or entry.case_id != case_id:
            return
        view = entry_view(entry)
        meta = view["meta"]
        if entry.direction == "outbound" and meta.get("provider_message_id"):
            # A status that came before this entry existed has had its event already.
            found = await self._lookup_delivery(meta.get("provider"),
                                                str(meta["provider_message_id"]))
            if found is not None:
                meta["delivery"] = "failed" if found.failed else found.delivery
        frame = {"type": "timeline", "case_id": case_id, "entry": view}
        for agent_id in agents:
            await self._in_order(agent_id, self._send_agent(agent_id, frame))

    async def _lookup_delivery(self, provider: str | None, provider_message_id: str,
                               ) -> MessageDelivery | None:
        assert self.state is not None
        try:
            return await message_delivery(self.state.ctx.db, provider, provider_message_id)
        except Exception:
            log.exception("delivery status of %s %s unreadable", provider, provider_message_id)
            return None

    async def _delivery(self, provider: str | None, provider_message_id: str) -> None:
        """A status webhook was stored: tell the agents holding that message's case.
        The frame carries the stored maximum, never the report itself, so the page's
        tick only moves forward whatever order reports and frames arrive in."""
        found = await self._lookup_delivery(provider, provider_message_id)
        if found is None or not found.case_id:
            return
        frame = {"type": "delivery", "case_id": found.case_id,
                 "message_id": found.message_id, "conversation_id": found.conversation_id,
                 "delivery": found.delivery, "failed": found.failed,
                 "error_code": found.error_code}
        for agent_id in self._agents_with_case(found.case_id):
            await self._in_order(agent_id, self._send_agent(agent_id, frame))

    # ---- sending -----------------------------------------------------------------

    async def _send(self, ws: web.WebSocketResponse, text: str) -> bool:
        if ws.closed:
            return False
        try:
            await ws.send_str(text)
            return True
        except (ConnectionError, RuntimeError):
            return False

    async def _send_agent(self, agent_id: str, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, default=str)
        for ws in list(self.agents.get(agent_id, ())):
            if not await self._send(ws, text):
                self.agents[agent_id].discard(ws)

    async def _send_supervisors(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, default=str)
        for ws in list(self.supervisors):
            if not await self._send(ws, text):
                self.supervisors.discard(ws)

    # ---- the websocket endpoint ----------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        from web.desktop.auth import authenticate
        from web.middleware import json_error

        ident = await authenticate(request)
        if ident is None:
            return json_error(401, "not logged in or session expired; log in again")
        if not _same_origin(request):
            return json_error(403, "websocket from another origin refused")
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        try:
            await ws.prepare(request)
        except ConnectionResetError:  # the page navigated away during the handshake
            return ws
        user = ident.user
        if user.agent_id:
            self.agents[user.agent_id].add(ws)
            self.presence.connected(user.agent_id)
        if user.at_least("supervisor"):
            self.supervisors.add(ws)
        try:
            await ws.send_str(json.dumps({"type": "hello", "user": user.public()}))
            if user.agent_id:
                await self._send_current_state(ws, user.agent_id)
                self._spawn(self._in_order(user.agent_id, self._resend_offers(user.agent_id)))
                phone = self._phone()
                if phone is not None:  # a call kept through a reload: the page resumes it
                    self._spawn(phone.page_back(user.agent_id))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._client_frame(ws, msg.data, user.agent_id)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if user.agent_id:
                self.agents[user.agent_id].discard(ws)
                if not self.agents[user.agent_id] and not self._stopping:
                    self.presence.disconnected(user.agent_id)
                    phone = self._phone()
                    if phone is not None:
                        phone.page_gone(user.agent_id)
            self.supervisors.discard(ws)
        return ws

    async def _send_current_state(self, ws: web.WebSocketResponse, agent_id: str) -> None:
        acd = self.state.ctx.acd if self.state else None
        if acd is None or not hasattr(acd, "agent"):
            return
        try:
            view = plain(acd.agent(agent_id))
        except Exception:  # an agent the ACD does not know: the page shows logged out
            log.debug("no ACD view of agent %s", agent_id, exc_info=True)
            return
        if isinstance(view, dict):
            await self._send(ws, json.dumps({"type": "agent_state", "payload": {
                "agent_id": agent_id, "state": view.get("state"),
                "reason": view.get("reason")}}, default=str))

    async def _client_frame(self, ws: web.WebSocketResponse, data: str,
                            agent_id: str | None = None) -> None:
        """Browsers send pings here, and the browser phone's signalling (`phone.*`,
        handed to the phone with the agent id this socket authenticated); every other
        action is a CSRF-checked POST."""
        try:
            frame = json.loads(data)
        except ValueError:
            await self._send(ws, json.dumps({"type": "error", "error": "frame is not JSON"}))
            return
        if isinstance(frame, dict) and frame.get("type") == "ping":
            await self._send(ws, json.dumps({"type": "pong", "t": frame.get("t")}))
        elif isinstance(frame, dict) and str(frame.get("type", "")).startswith("phone."):
            phone = self._phone()
            if agent_id is None or phone is None:
                log.warning("phone frame refused: %s", "not an agent" if agent_id is None
                            else "no browser phone on this node")
                await self._send(ws, json.dumps({
                    "type": "phone.error",
                    "error": "only agents have a browser phone" if agent_id is None
                    else "the browser phone is not enabled on this node"}))
                return
            await phone.handle(agent_id, frame)

    async def _resend_offers(self, agent_id: str) -> None:
        """A reloaded page gets the offers still open for it."""
        assert self.state is not None
        for row in await self.state.ledger.tasks_of(agent_id):
            if row.status == "offered":
                await self._pop(agent_id, {"offer_id": row.offer_id, "task_id": row.task_id,
                                           "case_id": row.case_id, "channel": row.channel,
                                           "queue_id": row.queue_id, "agent_id": agent_id})


def _same_origin(request: web.Request) -> bool:
    """Cross-site websocket hijacking guard: a browser always sends Origin; it must be
    this host. Non-browser clients (Bearer tokens, the benchmark) send none."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host
