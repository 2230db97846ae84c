"""What the desktop needs from packages that are wired in by the composition root.

The web layer talks to the ACD, the digital conversations and the voice bridge only
through these Protocols. `centrale.container` puts the real objects in `WebContext`
(`ctx.acd`, `ctx.services[...]`); tests hand in small fakes. A service that is not
wired answers 501 with a message naming what is missing, never a crash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class AcdPort(Protocol):
    """`ctx.acd` — queues.AcdEngine. Methods may be sync or async; the desktop awaits
    whatever comes back. Errors are raised as exceptions whose message is shown."""

    def agent_login(self, agent_id: str, session_id: str) -> Any: ...

    def agent_logout(self, agent_id: str, session_id: str | None = None) -> Any: ...

    def set_state(self, agent_id: str, state: str, reason: str | None = None) -> Any: ...

    def accept(self, offer_id: str, agent_id: str) -> Any: ...

    def reject(self, offer_id: str, agent_id: str) -> Any: ...

    def complete(self, task_id: str, agent_id: str, wrap_up_code: str | None = None,
                 notes: str | None = None) -> Any: ...

    def end_wrap_up(self, agent_id: str, task_id: str | None = None) -> Any: ...

    def extend_wrap_up(self, agent_id: str, seconds: float, task_id: str | None = None,
                       ) -> Any: ...

    def agent(self, agent_id: str) -> Any:
        """The agent's live view (state, reason): sent to a desktop when it connects."""

    def snapshot(self) -> Any:
        """Agents and tasks as they are now (dicts or dataclasses)."""

    def stats(self) -> Any:
        """Per-queue, per-agent and per-channel figures (see web/desktop/figures.py)."""


class ConversationPort(Protocol):
    """`ctx.services["conversations"]` — digital.ConversationService."""

    async def reply(self, conversation_id: str, agent_id: str, text: str) -> Any: ...

    async def conversations_for_case(self, case_id: str) -> list[Any]: ...

    async def window(self, conversation_id: str) -> Any:
        """The WhatsApp customer-service window: open or not, and when it closes."""


ReloadHook = Callable[[], Awaitable[list[str]]]
"""`ctx.services["reload_config"]`: reload the config files; the errors, empty if fine."""

Dialer = Callable[[str, str], Awaitable[Any]]
"""`ctx.services["dialer"]`: (agent_id, number) -> places a call from the agent's phone."""

CallbackScheduler = Callable[..., Awaitable[Any]]
"""`ctx.services["callbacks"]`: (case_id=, customer_id=, number=, queue_id=, agent_id=,
at=) -> schedules a callback task; returns its id."""


class BrowserPhonePort(Protocol):
    """`ctx.services["browser_phone"]` — pbx_bridge.webrtc.phone.BrowserPhone.

    The desktop's websocket carries the browser phone's signalling; the web layer holds
    no WebRTC code: it hands every `phone.*` frame of an agent's page over unread
    (with the agent id it authenticated), lends the phone a way to send frames to the
    agent's pages, and says when an agent's last page went or a page came back."""

    def attach_pages(self, send: Callable[[str, dict[str, Any]], Awaitable[None]],
                     has_page: Callable[[str], bool]) -> None: ...

    async def handle(self, agent_id: str, frame: Any) -> None: ...

    def page_gone(self, agent_id: str) -> None: ...

    async def page_back(self, agent_id: str) -> None: ...
