"""AMI client on `panoramisk.Manager`: login, reconnect with backoff, resync.

panoramisk handles framing and action/response matching; this module adds what a
contact center needs on top, each for a reason measured against Asterisk 20.20.1:

- **Backoff.** panoramisk reconnects every `reconnect_timeout` seconds forever; we
  reconnect with exponential backoff and jitter, reset after each good login.
- **Resync.** Events sent while the socket was down are lost. After every login the
  client lists the live channels (`CoreShowChannels`), reads back the variables
  Centrale set on unknown ones (`Getvar`) and reconciles its `ChannelRegistry`, so no
  call is forgotten (hung up during the outage -> reported once) or duplicated.
- **Liveness.** A peer that stops answering is detected by our own Ping with a
  timeout, and the transport is aborted so the reconnect path runs.
- **Pending actions fail, never hang or replay.** panoramisk re-sends unanswered
  actions after a reconnect (an Originate could ring an agent twice) and silently
  drops those with a partial answer (their future never resolves). We fail them all
  with `AmiConnectionLost` and every action carries a timeout.
- **`as_list`.** panoramisk guesses whether a reply is a list; the guess raises
  `KeyError: 'async'` inside the protocol on "DTMF successfully queued" (PlayDTMF)
  and never completes for QueueAdd. We pass `as_list=False` for every action that is
  not a known list action.
- **Bad input.** A malformed or truncated frame, garbage, or an exception while
  dispatching is logged and skipped; a runaway unterminated frame drops the
  connection (and the reconnect + resync restores the state).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from pbx_bridge.asterisk.channels import (
    CENTRALE_VARS,
    VAR_CALL_ID,
    VAR_OFFER_ID,
    ChannelRegistry,
    LiveChannel,
)
from pbx_bridge.asterisk.events import EventCounters, VoiceEvent, map_ami_event

log = logging.getLogger(__name__)

VoiceEventListener = Callable[[VoiceEvent], Awaitable[None] | None]

#: Actions whose reply is a list of events ended by a `...Complete` event.
LIST_ACTIONS = frozenset(
    {
        "coreshowchannels",
        "queuestatus",
        "queuesummary",
        "status",
        "sippeers",
        "pjsipshowendpoints",
        "pjsipshowcontacts",
        "bridgelist",
        "parkedcalls",
    }
)

#: An unterminated frame larger than this is not AMI: drop the connection.
MAX_PENDING_FRAME_BYTES = 1 << 20


class AmiError(Exception):
    """Asterisk answered `Response: Error` (or the action could not be sent)."""

    def __init__(self, message: str, response: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.response = dict(response) if response is not None else {}


class AmiLoginError(AmiError):
    """The AMI credentials were refused: a configuration error, not a network one."""


class AmiNotConnected(AmiError):
    """No authenticated AMI connection right now (reconnecting)."""


class AmiConnectionLost(AmiError):
    """The connection dropped while the action waited for its reply."""


class AmiTimeout(AmiError):
    """No reply within the action's timeout."""


class Backoff:
    """Exponential backoff with jitter: initial, x factor, capped at maximum."""

    def __init__(
        self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0, jitter: float = 0.2
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._attempt = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * (self.factor**self._attempt))
        self._attempt += 1
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt


class _Protocol(AMIProtocol):
    """panoramisk's protocol, hardened against bad input (see module docstring)."""

    counters: EventCounters | None = None

    def data_received(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except Exception:
            log.exception("AMI: unparseable data, dropping the connection to resync")
            self._abort()
            return
        pending = sum(len(chunk) for chunk in self.queue)
        if pending > MAX_PENDING_FRAME_BYTES:
            log.error("AMI: %d bytes without a frame end; dropping the connection", pending)
            self._abort()

    def handle_message(self, message: Message) -> None:
        try:
            super().handle_message(message)
        except Exception:
            if self.counters is not None:
                self.counters.malformed += 1
            log.exception("AMI: skipped a message that could not be handled: %r", message)

    def _abort(self) -> None:
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.abort()


class _Manager(Manager):
    """panoramisk's Manager with our reconnect policy and failure handling."""

    def __init__(self, client: AmiClient, **config: Any) -> None:
        super().__init__(**config)
        self._client = client

    def connection_made(self, f: asyncio.Future[Any]) -> None:  # type: ignore[override]
        if f.cancelled():
            return
        exc = f.exception()
        if exc is not None:
            self._connected = False
            self._client._connect_failed(exc)
            return
        super().connection_made(f)
        self.protocol.counters = self._client.counters
        self._client._connected()

    def login(self, future: asyncio.Future[Any]) -> bool:  # type: ignore[override]
        if future.cancelled() or future.exception() is not None:
            self.authenticated_future = None
            return False
        ok = bool(super().login(future))
        if not ok:
            self._client._login_refused(future.result())
        return ok

    def ping(self) -> None:  # panoramisk's fire-and-forget ping: replaced by our watchdog
        self.pinger = None

    def connection_lost(self, exc: Exception | None) -> None:  # type: ignore[override]
        self._connected = False
        self.authenticated = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        while self.awaiting_actions:
            action = self.awaiting_actions.popleft()
            if not action.future.done():
                action.future.set_exception(AmiConnectionLost("AMI connection lost"))
        self._client._disconnected(exc)


class AmiClient:
    """One AMI connection with Centrale's reconnect, resync and event mapping.

    Listeners receive `VoiceEvent`s (domain-level) in order, from one task.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        registry: ChannelRegistry | None = None,
        backoff: Backoff | None = None,
        action_timeout: float = 10.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        login_timeout: float = 10.0,
        start_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.registry = registry if registry is not None else ChannelRegistry()
        self.backoff = backoff if backoff is not None else Backoff()
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.login_timeout = login_timeout
        self.start_timeout = start_timeout
        self.counters = EventCounters()
        self.logins = 0
        self.resyncs = 0
        self.disconnects = 0
        self._listeners: list[VoiceEventListener] = []
        self._raw_listeners: list[Callable[[Message], None]] = []
        self._manager: _Manager | None = None
        self._queue: asyncio.Queue[VoiceEvent] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._ready = asyncio.Event()
        self._first_outcome: asyncio.Future[None] | None = None
        self._reconnect_handle: asyncio.TimerHandle | None = None
        self._login_timer: asyncio.TimerHandle | None = None
        self._resync_task: asyncio.Task[None] | None = None
        # When the link last dropped (time.monotonic): the resync after the reconnect
        # tells how long the outage lasted, so talk times can stop at its start.
        self._lost_at: float | None = None
        self._ids = itertools.count(1)
        self.resynced = asyncio.Condition()

    # --- lifecycle -----------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Logged in and resynced: actions can be sent."""
        return self._ready.is_set()

    async def start(self) -> None:
        """Connect and log in. Raises `AmiLoginError` when the credentials are refused.
        When Asterisk cannot be reached within `start_timeout`, logs it and returns:
        the client keeps reconnecting in the background."""
        loop = asyncio.get_running_loop()
        self._closing = False
        self._first_outcome = loop.create_future()
        self._manager = _Manager(
            self,
            host=self.host,
            port=self.port,
            username=self.username,
            secret=self._secret,
            loop=loop,
            ping_delay=10**9,
            reconnect_timeout=10**9,
            protocol_factory=_Protocol,
            on_login=self._logged_in,
        )
        self._manager.register_event("*", self._on_event)
        self._spawn(self._deliver())
        self._spawn(self._watchdog())
        self._manager.connect()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_outcome), self.start_timeout)
        except AmiLoginError:
            await self.close()
            raise
        except TimeoutError:
            log.warning(
                "AMI %s:%s not reachable yet; retrying in the background", self.host, self.port
            )

    async def close(self) -> None:
        self._closing = True
        self._ready.clear()
        for handle in (self._reconnect_handle, self._login_timer):
            if handle is not None:
                handle.cancel()
        if self._manager is not None:
            protocol = getattr(self._manager, "protocol", None)
            if protocol is not None:
                for action in list(protocol.responses.values()):
                    if not action.future.done():
                        action.future.set_exception(AmiConnectionLost("AMI client closed"))
            self._manager.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def add_listener(self, listener: VoiceEventListener) -> None:
        self._listeners.append(listener)

    def add_raw_listener(self, listener: Callable[[Message], None]) -> None:
        """Synchronous hook on every raw AMI event (for the backend's own needs)."""
        self._raw_listeners.append(listener)

    async def wait_ready(self) -> None:
        """Wait for a logged-in, resynced session (wrap in asyncio.wait_for)."""
        await self._ready.wait()

    # --- actions -------------------------------------------------------------------
    async def action(
        self,
        name: str,
        *,
        reply_timeout: float | None = None,
        as_list: bool | None = None,
        require_ready: bool = True,
        **headers: Any,
    ) -> Any:
        """Send an action; return its reply (a Message, or a list for list actions).

        Raises `AmiError` on `Response: Error`, `AmiNotConnected` when there is no
        session, `AmiTimeout` or `AmiConnectionLost`.
        """
        manager = self._manager
        if manager is None or not manager.authenticated or (require_ready and not self.ready):
            raise AmiNotConnected(f"AMI not connected; cannot send {name}")
        key = name.lower()
        if as_list is None:
            is_async_originate = key == "originate" and str(headers.get("Async", "")).lower() in (
                "true",
                "yes",
                "1",
            )
            as_list = True if key in LIST_ACTIONS else (None if is_async_originate else False)
        payload: dict[str, Any] = {"Action": name, "ActionID": f"centrale-{next(self._ids)}"}
        payload.update(headers)
        future = manager.send_action(payload, as_list=as_list)
        try:
            reply = await asyncio.wait_for(future, reply_timeout or self.action_timeout)
        except TimeoutError as exc:
            raise AmiTimeout(f"AMI {name}: no reply in time") from exc
        first = reply[0] if isinstance(reply, list) else reply
        if first.get("Response") in ("Error", "Failure", "Fail"):
            raise AmiError(f"AMI {name}: {first.get('Message', 'error')}", first)
        return reply

    # --- connection callbacks (from _Manager) ---------------------------------------
    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _schedule_reconnect(self) -> None:
        if self._closing or self._manager is None:
            return
        if self._reconnect_handle is not None:
            self._reconnect_handle.cancel()
        delay = self.backoff.next_delay()
        log.info("AMI: reconnecting to %s:%s in %.2fs", self.host, self.port, delay)
        loop = asyncio.get_running_loop()
        self._reconnect_handle = loop.call_later(delay, self._reconnect)

    def _reconnect(self) -> None:
        self._reconnect_handle = None
        if not self._closing and self._manager is not None:
            self._manager.connect()

    def _connect_failed(self, exc: BaseException) -> None:
        log.warning("AMI: cannot connect to %s:%s: %s", self.host, self.port, exc)
        self._schedule_reconnect()

    def _connected(self) -> None:
        log.info("AMI: connected to %s:%s", self.host, self.port)
        loop = asyncio.get_running_loop()
        if self._login_timer is not None:
            self._login_timer.cancel()
        self._login_timer = loop.call_later(self.login_timeout, self._login_timed_out)

    def _login_timed_out(self) -> None:
        self._login_timer = None
        manager = self._manager
        if manager is not None and not manager.authenticated and manager.protocol is not None:
            log.error("AMI: no login reply within %.1fs; reconnecting", self.login_timeout)
            manager.protocol._abort()

    def _login_refused(self, response: Message) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        reason = response.get("Message", "login refused")
        log.error("AMI: login as %r refused: %s", self.username, reason)
        if self._first_outcome is not None and not self._first_outcome.done():
            self._first_outcome.set_exception(
                AmiLoginError(f"AMI login as {self.username!r} refused: {reason}", response)
            )

    def _logged_in(self, manager: Manager) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self.logins += 1
        self.backoff.reset()
        log.info("AMI: logged in as %r", self.username)
        if self._resync_task is not None and not self._resync_task.done():
            self._resync_task.cancel()
        self._resync_task = self._spawn(self._resync())

    def _disconnected(self, exc: Exception | None) -> None:
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        self._ready.clear()
        self.disconnects += 1
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        if self._resync_task is not None and not self._resync_task.done():
            self._resync_task.cancel()
        if self._closing:
            return
        log.warning("AMI: connection to %s:%s lost (%s)", self.host, self.port, exc)
        self._schedule_reconnect()

    # --- resync ----------------------------------------------------------------------
    async def _resync(self) -> None:
        """Reconcile the registry with Asterisk's live channels (see module doc)."""
        try:
            known_before = {c.uniqueid for c in self.registry.all()}
            reply = await self.action("CoreShowChannels", require_ready=False)
            live = []
            for message in reply if isinstance(reply, list) else []:
                if message.get("Event") == "CoreShowChannel":
                    entry = LiveChannel.from_message(message)
                    if entry is not None:
                        live.append(entry)
            variables: dict[str, dict[str, str]] = {}
            for entry in self.registry.unknown_in(live):
                found = await self._read_centrale_vars(entry.channel)
                if found:
                    variables[entry.uniqueid] = found
            outage = 0.0 if self._lost_at is None else time.monotonic() - self._lost_at
            for event in self.registry.reconcile(
                live, variables, known_before=known_before, outage_seconds=round(outage, 3)
            ):
                self._queue.put_nowait(event)
            self._lost_at = None
        except asyncio.CancelledError:
            raise
        except AmiError as exc:
            log.error("AMI: resync failed (%s); reconnecting", exc)
            if self._manager is not None and self._manager.protocol is not None:
                self._manager.protocol._abort()
            return
        self.resyncs += 1
        self._ready.set()
        if self._first_outcome is not None and not self._first_outcome.done():
            self._first_outcome.set_result(None)
        async with self.resynced:
            self.resynced.notify_all()
        log.info("AMI: resynced, %d live channel(s), %d tracked", len(live), len(self.registry))

    async def _read_centrale_vars(self, channel: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for name in (VAR_CALL_ID, VAR_OFFER_ID):
            value = await self._getvar(channel, name)
            if value:
                found[name] = value
        if found:
            for name in CENTRALE_VARS:
                if name not in found:
                    value = await self._getvar(channel, name)
                    if value:
                        found[name] = value
        return found

    async def _getvar(self, channel: str, name: str) -> str:
        try:
            reply = await self.action("Getvar", require_ready=False, Channel=channel, Variable=name)
        except AmiError as exc:
            if isinstance(exc, AmiConnectionLost | AmiNotConnected):
                raise
            return ""  # "No such channel": it hung up since the snapshot
        return str(reply.get("Value", "") or "")

    # --- events --------------------------------------------------------------------
    def _on_event(self, manager: Manager, message: Message) -> None:
        """panoramisk dispatch callback: runs inside data_received, so never raises."""
        try:
            counters = self.counters
            counters.received += 1
            name = message.get("Event")
            if not isinstance(name, str):
                counters.malformed += 1
                return
            counters.by_name[name] = counters.by_name.get(name, 0) + 1
            for raw in self._raw_listeners:
                raw(message)
            if name == "VarSet":
                self.registry.apply_varset(message)
                counters.ignored += 1
                return
            event = map_ami_event(message)
            if event is None:
                counters.ignored += 1
                return
            counters.mapped += 1
            for emitted in self.registry.apply(event):
                self._queue.put_nowait(emitted)
        except Exception:
            self.counters.malformed += 1
            log.exception("AMI: failed to handle event %r", message)

    async def _deliver(self) -> None:
        while True:
            event = await self._queue.get()
            for listener in list(self._listeners):
                try:
                    result = listener(event)
                    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                        await result
                except Exception:
                    log.exception("voice event listener failed on %r", event)
            self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every event received so far reached the listeners."""
        await self._queue.join()

    async def _watchdog(self) -> None:
        """Ping the peer; abort the transport when it stops answering."""
        while True:
            await asyncio.sleep(self.ping_interval)
            manager = self._manager
            if manager is None or not self.ready:
                continue
            try:
                await self.action("Ping", reply_timeout=self.ping_timeout)
            except AmiTimeout:
                log.error(
                    "AMI: peer stopped answering (no Pong in %.1fs); reconnecting",
                    self.ping_timeout,
                )
                if manager.protocol is not None:
                    manager.protocol._abort()
            except AmiError as exc:
                log.debug("AMI: ping failed: %s", exc)
