"""The Asterisk voice backend: AMI + FastAGI + the channel registry, as one service.

Call path (see docs/asterisk.md for the dialplan):

1. Asterisk runs `AGI(agi://centrale:4573/inbound)`. The `inbound` route marks the
   channel as Centrale's (`CENTRALE_CALL_ID`, `CENTRALE_STATE=ivr`), builds an
   `AgiCallLeg` and awaits the `InboundCallHandler` port (customer, IVR, enqueue).
2. The handler parks the caller with `leg.send_to_holding(task_id=...)`; the AGI
   ends and the dialplan loops in `centrale-hold`: music on hold, and every N s a
   call to the `hold` route for the position/EWT announcement (`HoldAnnouncer`).
3. The ACD offers the task to an agent; the wiring calls `ring_agent(offer)`. We
   Originate to the agent's endpoint into `centrale-dial,agent`, which bridges the
   agent with the waiting caller once the agent answers. The caller hears music
   on hold until then and stays parked if the agent does not answer (RONA).
4. The caller hanging up while parked is an abandon (`CallerAbandoned`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from config.schema.server import AsteriskSettings
from core import metrics
from core.ids import new_id
from ivr.call_leg import CallerHangup
from pbx_bridge.asterisk.agi import AgiError, AgiServer, AgiSession
from pbx_bridge.asterisk.ami import (
    AmiClient,
    AmiConnectionLost,
    AmiError,
    AmiTimeout,
    Backoff,
)
from pbx_bridge.asterisk.call_leg import AgiCallLeg
from pbx_bridge.asterisk.caller import caller_from_env
from pbx_bridge.asterisk.channels import (
    STATE_CONNECTED,
    STATE_IVR,
    STATE_WAITING,
    VAR_CALL_ID,
    VAR_CASE_ID,
    VAR_CUSTOMER_ID,
    VAR_OFFER_ID,
    VAR_QUEUE_ID,
    VAR_ROLE,
    VAR_STATE,
    VAR_TASK_ID,
    ChannelRegistry,
    TrackedChannel,
)
from pbx_bridge.asterisk.events import ChannelHungUp, VoiceEvent
from pbx_bridge.asterisk.ports import (
    AgentOffer,
    CallbackRequest,
    HoldAnnouncer,
    InboundCallHandler,
    PromptResolver,
    RingOutcome,
    RingResult,
    VoiceEventListener,
    default_prompt_resolver,
)
from pbx_bridge.asterisk.rtcp import RtcpLossCounter

log = logging.getLogger(__name__)

ROUTE_INBOUND = "inbound"
ROUTE_HOLD = "hold"
ROUTE_SURVEY = "survey"
EXTEN_AGENT = "agent"
EXTEN_CALLBACK = "callback"
VAR_CALLER_CHANNEL = "CENTRALE_CALLER_CHANNEL"
VAR_CALLBACK_NUMBER = "CENTRALE_CALLBACK_NUMBER"
VAR_SURVEY = "CENTRALE_SURVEY"
#: what the survey route reads from the caller's channel (set by the IVR and holding)
SURVEY_VARIABLES = (VAR_CALL_ID, VAR_TASK_ID, VAR_CASE_ID, VAR_CUSTOMER_ID, VAR_QUEUE_ID)

#: OriginateResponse `Reason` (Asterisk's AST_CONTROL_* outcome) -> ring outcome.
ORIGINATE_REASONS = {
    "0": RingOutcome.FAILED,  # no such endpoint / not registered / failure
    "1": RingOutcome.NO_ANSWER,  # hung up (declined) before answering
    "3": RingOutcome.NO_ANSWER,  # rang out (our ring timeout)
    "4": RingOutcome.ANSWERED,
    "5": RingOutcome.BUSY,
    "8": RingOutcome.FAILED,  # congestion
}


class AsteriskBackend:
    """Owns the AMI client, the FastAGI server and the registry; the wiring builds
    one, adds listeners, calls `start()`, and drives offers with `ring_agent`."""

    def __init__(
        self,
        settings: AsteriskSettings,
        *,
        inbound: InboundCallHandler,
        hold_announcer: HoldAnnouncer | None = None,
        prompt_resolver: PromptResolver = default_prompt_resolver,
        ami: AmiClient | None = None,
        registry: ChannelRegistry | None = None,
        backoff: Backoff | None = None,
        settle_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.settle_timeout = settle_timeout
        if registry is None:
            registry = ami.registry if ami is not None else ChannelRegistry()
        self.registry = registry
        self.ami = (
            ami
            if ami is not None
            else AmiClient(
                settings.ami.host,
                settings.ami.port,
                settings.ami.username,
                settings.ami.secret.get_secret_value(),
                registry=self.registry,
                backoff=backoff,
            )
        )
        self._inbound = inbound
        # The survey after a call: (leg, the caller channel's CENTRALE_* variables);
        # set by the wiring (VoiceService.handle_agi_survey). None: no survey route.
        self.survey_handler: Any = None
        self._announcer = hold_announcer
        self._resolve = prompt_resolver
        self._listeners: list[VoiceEventListener] = []
        self._gone_waiters: dict[str, list[asyncio.Future[ChannelHungUp]]] = {}
        # Offers made while their caller is still in the IVR wait for the hand-over to
        # the holding context (the ACD offers a task the moment it is queued).
        self._holding_waiters: dict[str, list[asyncio.Future[None]]] = {}
        # Uniqueids this process handed over to holding. The registry's CENTRALE_STATE
        # can lag behind: AMI delivers the VarSet events of the IVR's own `SET
        # VARIABLE`s (state=ivr) after the AGI session has moved on.
        self._handed_over: set[str] = set()
        self.agi: AgiServer | None = None
        self.agi_port: int | None = None
        self.ami.add_listener(self._on_voice_event)
        # RTP loss and jitter from Asterisk's own RTCP reports (AMI RTCPSent): the same
        # metric as the embedded core's, labelled asterisk (pbx_bridge/asterisk/rtcp.py)
        self.rtcp = RtcpLossCounter(metrics.rtp_packets_lost.labels("asterisk").inc,
                                    metrics.rtp_jitter.labels("asterisk").set)
        if hasattr(self.ami, "add_raw_listener"):
            self.ami.add_raw_listener(self.rtcp)

    # --- lifecycle -------------------------------------------------------------------
    async def start(self, *, agi_host: str | None = None, agi_port: int | None = None) -> None:
        """Start FastAGI first (calls can arrive as soon as Asterisk can reach us),
        then AMI (raises AmiLoginError on refused credentials)."""
        self.agi = AgiServer()
        self.agi.add_route(ROUTE_INBOUND, self._route_inbound)
        self.agi.add_route(ROUTE_HOLD, self._route_hold)
        self.agi.add_route(ROUTE_SURVEY, self._route_survey)
        self.agi_port = await self.agi.start(
            agi_host or self.settings.fastagi_host,
            self.settings.fastagi_port if agi_port is None else agi_port,
        )
        try:
            await self.ami.start()
        except Exception:
            await self.agi.stop()
            raise

    async def stop(self) -> None:
        await self.ami.close()
        if self.agi is not None:
            await self.agi.stop()

    def add_listener(self, listener: VoiceEventListener) -> None:
        """Domain voice events (ChannelCreated ... ChannelHungUp, CallerAbandoned,
        CallRecovered); `event.to_bus_event()` gives a `core.events.Event`."""
        self._listeners.append(listener)

    def agent_endpoint(self, sip_username: str) -> str:
        return self.settings.agent_endpoint_template.format(sip_username=sip_username)

    # --- events ----------------------------------------------------------------------
    async def _on_voice_event(self, event: VoiceEvent) -> None:
        if isinstance(event, ChannelHungUp):
            self._handed_over.discard(event.uniqueid)
            for waiter in self._gone_waiters.pop(event.uniqueid, []):
                if not waiter.done():
                    waiter.set_result(event)
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
            except Exception:
                log.exception("voice listener failed on %r", event)

    def _wait_gone(self, uniqueid: str) -> asyncio.Future[ChannelHungUp]:
        future: asyncio.Future[ChannelHungUp] = asyncio.get_running_loop().create_future()
        self._gone_waiters.setdefault(uniqueid, []).append(future)
        return future

    def _drop_waiter(self, uniqueid: str, future: asyncio.Future[ChannelHungUp]) -> None:
        waiters = self._gone_waiters.get(uniqueid, [])
        if future in waiters:
            waiters.remove(future)
        if not waiters:
            self._gone_waiters.pop(uniqueid, None)

    # --- FastAGI routes ------------------------------------------------------------
    async def _route_inbound(self, session: AgiSession) -> None:
        call_id = new_id()
        caller = caller_from_env(session.env, call_id, args=session.args)
        uniqueid = session.env.get("agi_uniqueid", "")
        channel = session.env.get("agi_channel", "")
        tracked = self.registry.ensure(uniqueid, channel, caller_id=caller.caller_id)
        tracked.caller_name = tracked.caller_name or caller.display_name
        leg = AgiCallLeg(
            session, caller, prompt_resolver=self._resolve, on_holding=self._mark_holding
        )
        try:
            # Mark the channel first: a resync finds Centrale's calls by these.
            await leg.set_variable(VAR_CALL_ID, call_id)
            await leg.set_variable(VAR_ROLE, "caller")
            await leg.set_variable(VAR_STATE, STATE_IVR)
            for name, value in (
                (VAR_CALL_ID, call_id),
                (VAR_ROLE, "caller"),
                (VAR_STATE, STATE_IVR),
            ):
                self.registry.set_variable(tracked.uniqueid, name, value)
            await self._inbound(leg)
        except CallerHangup:
            log.info("caller %s hung up in the IVR (%s)", call_id, channel)

    async def _route_survey(self, session: AgiSession) -> None:
        """The caller's channel after the agent hung up (`Bridge(...,F(centrale-survey^
        s^1))`): run the queue's survey flow on it. The dialplan hangs up after."""
        if self.survey_handler is None:
            return
        variables: dict[str, str] = {}
        for name in SURVEY_VARIABLES:
            try:
                reply = await session.command(f"GET VARIABLE {name}")
            except AgiError:
                return  # the caller is gone already
            variables[name] = reply.data if reply.result == "1" else ""
        call_id = variables[VAR_CALL_ID] or new_id()
        caller = caller_from_env(session.env, call_id, args=session.args)
        leg = AgiCallLeg(session, caller, prompt_resolver=self._resolve)
        try:
            await self.survey_handler(leg, variables)
        except CallerHangup:
            log.info("caller %s hung up during the survey", call_id)

    def _mark_holding(self, leg: AgiCallLeg, task_id: str) -> None:
        self.registry.set_variable(leg.uniqueid, VAR_TASK_ID, task_id)
        self.registry.set_variable(leg.uniqueid, VAR_STATE, STATE_WAITING)
        self._handed_over.add(leg.uniqueid)
        for waiter in self._holding_waiters.pop(leg.uniqueid, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_until_holding(self, caller: TrackedChannel, limit: float) -> None:
        """Wait (up to `limit` s) until the caller's IVR hands them over to holding,
        or until they hang up."""
        loop = asyncio.get_running_loop()
        holding: asyncio.Future[None] = loop.create_future()
        self._holding_waiters.setdefault(caller.uniqueid, []).append(holding)
        gone = self._wait_gone(caller.uniqueid)
        try:
            await asyncio.wait({holding, gone}, timeout=max(0.0, limit),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._drop_waiter(caller.uniqueid, gone)
            waiters = self._holding_waiters.get(caller.uniqueid, [])
            if holding in waiters:
                waiters.remove(holding)
            if not waiters:
                self._holding_waiters.pop(caller.uniqueid, None)

    async def _route_hold(self, session: AgiSession) -> None:
        """The holding dialplan asks for an announcement (position / EWT)."""
        if self._announcer is None:
            return
        try:
            reply = await session.command(f"GET VARIABLE {VAR_TASK_ID}")
        except AgiError:
            return
        task_id = reply.data if reply.result == "1" else ""
        if not task_id:
            return
        language = session.env.get("agi_language", "") or "en"
        try:
            items = await self._announcer(task_id, language)
        except Exception:
            log.exception("hold announcer failed for task %s", task_id)
            return
        try:
            for item in items:
                if isinstance(item, int):
                    await session.command(f'SAY NUMBER {int(item)} ""')
                else:
                    await session.command(f'STREAM FILE {self._resolve(item, language)} ""')
        except AgiError as exc:
            log.info("hold announcement for task %s cut: %s", task_id, exc)

    # --- agent connection ---------------------------------------------------------
    async def ring_agent(self, offer: AgentOffer) -> RingResult:
        """Ring the agent for a waiting caller; answer = accept, no answer in time =
        RONA, caller hung up first = CALLER_GONE (and the agent leg is dropped)."""
        caller = self.registry.by_call_id(offer.call_id)
        if caller is None:
            return RingResult(RingOutcome.CALLER_GONE, reason="caller not on the system")
        ring_timeout = offer.ring_timeout
        if caller.state in (STATE_IVR, "") and caller.uniqueid not in self._handed_over:
            # The ACD offers a task as soon as the IVR queues it, a moment before the
            # IVR ends and hands the caller over to holding: ring once they are there,
            # for what is left of the offer's ring time.
            started = asyncio.get_running_loop().time()
            await self._wait_until_holding(caller, offer.ring_timeout)
            if caller.uniqueid not in self.registry:
                return RingResult(RingOutcome.CALLER_GONE, reason="caller hung up in the IVR")
            ring_timeout -= asyncio.get_running_loop().time() - started
        if caller.uniqueid in self._handed_over and caller.state in (STATE_IVR, ""):
            self.registry.set_variable(caller.uniqueid, VAR_STATE, STATE_WAITING)  # a late VarSet
        if caller.state != STATE_WAITING:
            # never ring a second agent for a caller who is already connected
            return RingResult(RingOutcome.FAILED, reason=f"caller is {caller.state or 'unknown'}")
        if ring_timeout < 1.0:
            return RingResult(RingOutcome.NO_ANSWER, reason="offer expired before holding")
        gone = self._wait_gone(caller.uniqueid)
        ring_ms = int(ring_timeout * 1000)
        originate = asyncio.ensure_future(
            self.ami.action(
                "Originate",
                reply_timeout=ring_timeout + 15,
                Channel=offer.endpoint,
                Context=self.settings.dial_context,
                Exten=EXTEN_AGENT,
                Priority="1",
                Timeout=str(ring_ms),
                CallerID=_callerid(caller.caller_id, caller.caller_name),
                Async="true",
                Variable=[
                    f"{VAR_OFFER_ID}={offer.offer_id}",
                    f"{VAR_CALLER_CHANNEL}={caller.channel}",
                    f"{VAR_TASK_ID}={offer.task_id}",
                    f"{VAR_ROLE}=agent",
                    *([f"{VAR_SURVEY}={offer.survey_flow}"] if offer.survey_flow else []),
                ],
            )
        )
        try:
            done, _ = await asyncio.wait({originate, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone in done and originate not in done:
                await self._drop_agent_leg(offer.offer_id)
                originate.add_done_callback(_consume)
                return RingResult(RingOutcome.CALLER_GONE, reason="caller hung up while ringing")
            try:
                reply = originate.result()
            except (AmiConnectionLost, AmiTimeout) as exc:
                return await self._settle_after_outage(offer, caller, str(exc))
            except AmiError as exc:
                log.warning("Originate to %s for offer %s refused: %s",
                            offer.endpoint, offer.offer_id, exc)
                return RingResult(RingOutcome.FAILED, reason=str(exc))
        finally:
            self._drop_waiter(caller.uniqueid, gone)
        result = _ring_result(reply)
        if result.outcome is RingOutcome.FAILED:
            log.warning("agent endpoint %s unreachable for offer %s (%s)",
                        offer.endpoint, offer.offer_id, result.reason)
        if result.outcome is RingOutcome.ANSWERED:
            if caller.uniqueid not in self.registry:
                return RingResult(
                    RingOutcome.CALLER_GONE,
                    result.agent_channel,
                    "caller hung up as the agent answered",
                )
            await self._mark_connected(caller)
        return result

    async def _settle_after_outage(
        self, offer: AgentOffer, caller: TrackedChannel, why: str
    ) -> RingResult:
        """The AMI link failed while the agent's phone rang, so the OriginateResponse
        is lost. Wait for the reconnect + resync and judge from what Asterisk still
        has: an agent leg in a bridge means the agent answered (the call is on and
        must not be offered again); a leg still ringing is dropped (FAILED, the ACD
        may offer again without two phones ringing for one caller); no leg means it
        rang out or failed."""
        try:
            await asyncio.wait_for(self.ami.wait_ready(), offer.ring_timeout + self.settle_timeout)
        except TimeoutError:
            return RingResult(RingOutcome.FAILED, reason=f"{why}; AMI not back in time")
        if caller.uniqueid not in self.registry:
            return RingResult(RingOutcome.CALLER_GONE, reason=f"{why}; caller gone meanwhile")
        leg = self.registry.by_offer_id(offer.offer_id)
        if leg is None:
            return RingResult(RingOutcome.FAILED, reason=f"{why}; no agent leg left")
        if leg.bridge_id:
            await self._mark_connected(caller)
            return RingResult(RingOutcome.ANSWERED, leg.channel, f"{why}; answered meanwhile")
        await self._drop_agent_leg(offer.offer_id)
        return RingResult(RingOutcome.FAILED, leg.channel, f"{why}; ringing agent leg dropped")

    async def _mark_connected(self, caller: TrackedChannel) -> None:
        self.registry.set_variable(caller.uniqueid, VAR_STATE, STATE_CONNECTED)
        with contextlib.suppress(AmiError):
            await self.ami.action(
                "Setvar", Channel=caller.channel, Variable=VAR_STATE, Value=STATE_CONNECTED
            )

    async def _drop_agent_leg(self, offer_id: str) -> None:
        agent_leg = self.registry.by_offer_id(offer_id)
        if agent_leg is None:
            return
        try:
            await self.ami.action("Hangup", Channel=agent_leg.channel, Cause="16")
        except AmiError as exc:
            log.info("agent leg %s already gone: %s", agent_leg.channel, exc)

    async def place_callback(self, request: CallbackRequest) -> RingResult:
        """Agent first, then the customer: ring the agent's endpoint; once the agent
        answers, `centrale-dial,callback` dials the customer through the trunk."""
        variables = [
            f"{VAR_CALL_ID}={request.callback_id}",
            f"{VAR_TASK_ID}={request.task_id}",
            f"{VAR_ROLE}=callback",
            f"{VAR_CALLBACK_NUMBER}={request.number}",
            *(f"{k}={v}" for k, v in request.variables.items()),
        ]
        if not request.number or not all(c.isdigit() or c in "+*#" for c in request.number):
            raise ValueError(f"not a dialable callback number: {request.number!r}")
        try:
            reply = await self.ami.action(
                "Originate",
                reply_timeout=request.ring_timeout + 15,
                Channel=request.endpoint,
                Context=self.settings.dial_context,
                Exten=EXTEN_CALLBACK,
                Priority="1",
                Timeout=str(int(request.ring_timeout * 1000)),
                CallerID=_callerid(request.number, "Callback"),
                Async="true",
                Variable=variables,
            )
        except AmiError as exc:
            return RingResult(RingOutcome.FAILED, reason=str(exc))
        return _ring_result(reply)

    async def hangup_call(self, call_id: str, cause: int = 16) -> bool:
        """Hang up a Centrale call by id (supervisor action, shutdown)."""
        tracked = self.registry.by_call_id(call_id)
        if tracked is None:
            return False
        try:
            await self.ami.action("Hangup", Channel=tracked.channel, Cause=str(cause))
        except AmiError as exc:
            log.info("hangup of %s: %s", tracked.channel, exc)
            return False
        return True


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _callerid(number: str | None, name: str | None) -> str:
    number = "".join(c for c in (number or "") if c.isalnum() or c in "+*#")
    name = (name or "").replace('"', "'").replace("\r", " ").replace("\n", " ")
    return f'"{name}" <{number}>' if name else f"<{number}>"


def _ring_result(reply: Any) -> RingResult:
    messages = reply if isinstance(reply, list) else [reply]
    final = next((m for m in messages if m.get("Event") == "OriginateResponse"), None)
    if final is None:
        return RingResult(RingOutcome.FAILED, reason="no OriginateResponse")
    reason = str(final.get("Reason", ""))
    outcome = ORIGINATE_REASONS.get(reason, RingOutcome.FAILED)
    if final.get("Response") == "Success":
        outcome = RingOutcome.ANSWERED
    elif outcome is RingOutcome.ANSWERED:
        outcome = RingOutcome.FAILED
    return RingResult(
        outcome, agent_channel=str(final.get("Channel", "")) or None, reason=f"Reason {reason}"
    )
