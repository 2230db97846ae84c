"""Small stand-ins for the ACD and the conversation service, speaking the ports of
web/desktop/ports.py and publishing the same bus events as the real ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cases import CaseService
from core.bus import EventBus
from core.clock import Clock
from core.events import Event
from core.ids import new_id


class RefusedError(Exception):
    code = "agent_already_logged_in"


class FakeAcd:
    def __init__(self, bus: EventBus, clock: Clock) -> None:
        self.bus, self.clock = bus, clock
        self.states: dict[str, tuple[str, str | None]] = {}
        self.sessions: dict[str, str] = {}
        self.offers: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.figures: dict[str, Any] = {"queues": {}, "agents": {}}

    async def _state(self, agent_id: str, state: str, reason: str | None = None) -> None:
        self.states[agent_id] = (state, reason)
        await self.bus.publish(Event("agent.state_changed", {
            "agent_id": agent_id, "state": state, "reason": reason}))

    async def agent_login(self, agent_id: str, session_id: str) -> None:
        """As queues.AcdEngine: logs in as available; another session is refused."""
        self.calls.append(("agent_login", (agent_id, session_id)))
        if agent_id in self.states and self.states[agent_id][0] != "logged_out":
            if self.sessions.get(agent_id) == session_id:
                return
            raise RefusedError(f"agent {agent_id} is already logged in")
        self.sessions[agent_id] = session_id
        await self._state(agent_id, "available")

    async def agent_logout(self, agent_id: str, session_id: str | None = None) -> None:
        self.calls.append(("agent_logout", (agent_id,)))
        await self._state(agent_id, "logged_out")

    async def set_state(self, agent_id: str, state: str, reason: str | None = None) -> None:
        self.calls.append(("set_state", (agent_id, state, reason)))
        await self._state(agent_id, state, reason)

    async def offer(self, *, agent_id: str, case_id: str, customer_id: str, channel: str,
                    queue_id: str = "support", attributes: dict[str, Any] | None = None,
                    ) -> dict[str, Any]:
        """What the real ACD does when it picks `agent_id` for a new task."""
        task_id, offer_id = new_id(), new_id()
        payload = {"offer_id": offer_id, "task_id": task_id, "agent_id": agent_id,
                   "channel": channel, "queue_id": queue_id, "case_id": case_id,
                   "customer_id": customer_id, "attributes": attributes or {},
                   "expires_at": (self.clock.now() + timedelta(seconds=30)).isoformat()}
        self.offers[offer_id] = payload
        self.tasks[task_id] = {**payload, "status": "offered"}
        await self.bus.publish(Event("task.offered", payload))
        return payload

    async def accept(self, offer_id: str, agent_id: str) -> dict[str, Any]:
        self.calls.append(("accept", (offer_id, agent_id)))
        offer = self.offers.pop(offer_id, None)
        if offer is None or offer["agent_id"] != agent_id:
            raise RefusedError(f"offer {offer_id} is no longer open")
        self.tasks[offer["task_id"]]["status"] = "assigned"
        await self.bus.publish(Event("task.accepted", {
            k: offer[k] for k in ("task_id", "agent_id", "case_id", "channel", "queue_id",
                                  "customer_id")} | {"wait_seconds": 4.0}))
        return {"task_id": offer["task_id"]}

    async def reject(self, offer_id: str, agent_id: str) -> None:
        self.calls.append(("reject", (offer_id, agent_id)))
        offer = self.offers.pop(offer_id)
        await self.bus.publish(Event("task.rejected", {
            "offer_id": offer_id, "task_id": offer["task_id"], "agent_id": agent_id}))

    async def complete(self, task_id: str, agent_id: str, wrap_up_code: str | None = None,
                       notes: str | None = None) -> None:
        self.calls.append(("complete", (task_id, agent_id, wrap_up_code, notes)))
        task = self.tasks[task_id]
        task.update(status="wrap_up", wrap_up_code=wrap_up_code, notes=notes)
        await self.bus.publish(Event("task.completed", {
            "task_id": task_id, "agent_id": agent_id, "queue_id": task["queue_id"],
            "case_id": task["case_id"], "channel": task["channel"],
            "wrap_up_code": wrap_up_code, "talk_seconds": 50.0}))

    async def end_wrap_up(self, agent_id: str, task_id: str | None = None) -> None:
        self.calls.append(("end_wrap_up", (agent_id, task_id)))
        task = self.tasks[task_id] if task_id else {}
        await self.bus.publish(Event("task.wrap_up_ended", {
            "task_id": task_id, "agent_id": agent_id, "case_id": task.get("case_id"),
            "queue_id": task.get("queue_id"), "channel": task.get("channel"),
            "wrap_up_code": task.get("wrap_up_code"), "notes": task.get("notes"),
            "handle_seconds": 60.0}))

    async def extend_wrap_up(self, agent_id: str, seconds: float,
                             task_id: str | None = None) -> None:
        self.calls.append(("extend_wrap_up", (agent_id, seconds, task_id)))

    def agent(self, agent_id: str) -> dict[str, Any]:
        state, reason = self.states.get(agent_id, ("logged_out", None))
        return {"id": agent_id, "state": state, "reason": reason}

    def snapshot(self) -> dict[str, Any]:
        return {"agents": {a: {"state": s, "reason": r} for a, (s, r) in self.states.items()}}

    def stats(self) -> dict[str, Any]:
        return self.figures


class FakeConversations:
    """Conversations per case; a reply lands on the case timeline as the real one does."""

    def __init__(self, cases: CaseService, clock: Clock) -> None:
        self.cases, self.clock = cases, clock
        self.by_case: dict[str, list[dict[str, Any]]] = {}
        self.sent: list[tuple[str, str, str]] = []

    def open(self, case_id: str, channel: str = "whatsapp") -> str:
        conv_id = new_id()
        self.by_case.setdefault(case_id, []).append({"id": conv_id, "channel": channel,
                                                      "case_id": case_id, "status": "open"})
        return conv_id

    async def conversations_for_case(self, case_id: str) -> list[dict[str, Any]]:
        return list(self.by_case.get(case_id, []))

    async def window(self, conversation_id: str) -> dict[str, Any]:
        return {"open": True,
                "expires_at": (self.clock.now() + timedelta(hours=23)).isoformat()}

    async def reply(self, conversation_id: str, agent_id: str, text: str) -> dict[str, Any]:
        case_id = next(c for c, convs in self.by_case.items()
                       if any(v["id"] == conversation_id for v in convs))
        self.sent.append((conversation_id, agent_id, text))
        entry, _ = await self.cases.add_timeline(
            case_id, kind="message", channel="whatsapp", direction="outbound", body=text,
            meta={"agent_id": agent_id, "status": "sent", "conversation_id": conversation_id})
        return {"message_id": entry.id}
