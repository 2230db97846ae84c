"""The ACD engine: one router for every channel — the public API.

`AcdEngine` validates every call before it changes anything (an `AcdError` leaves the
state as it was), applies the change, lets the core route whatever became routable, and
then publishes the events and stores the report records. See docs/acd.md.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from config.schema import CentraleConfig
from queues import errors as E
from queues.cluster import LOCAL, ClusterSync
from queues.core import LiveOffer
from queues.index import TaskIndex
from queues.model import (
    ABANDONED,
    ASSIGNED,
    CHANNELS,
    OFFERED,
    SETTABLE_STATES,
    WAITING,
    WRAP_UP,
    AgentView,
    LiveAgent,
    LiveTask,
    LiveWrapUp,
    Offer,
    Task,
    WrapUp,
)
from queues.stats import occupancy

log = logging.getLogger(__name__)

_CALLBACK_NUMBER = re.compile(r"^\+?[0-9*#]{2,32}$")
_MAX_EXTEND_SECONDS = 3600.0


class AcdEngine(ClusterSync):
    """Routes tasks to agents: `AcdEngine(config, clock, bus, store=None, shared=None)`.

    With `shared` (a `queues.shared.SharedAcdState`), several nodes route on one Redis:
    every decision is confirmed there before it is published (see queues.cluster).

    Run `await engine.run()` as one asyncio task per node (it calls `tick()` every
    tick_interval_seconds) and `await engine.stop()` on shutdown.
    """

    # ------------------------------------------------------------------ validation helpers

    @staticmethod
    def _check_id(name: str, value: Any, *, optional: bool = False) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not value or len(value) > 128:
            raise E.InvalidArgumentError(f"{name} must be a non-empty string of at most 128 chars")

    @staticmethod
    def _check_skills(skills: Any) -> dict[str, int]:
        if skills is None:
            return {}
        if not isinstance(skills, Mapping):
            raise E.InvalidArgumentError("skills must be a mapping of skill -> maximum level")
        out: dict[str, int] = {}
        for skill, level in skills.items():
            if not isinstance(skill, str) or not skill:
                raise E.InvalidArgumentError(f"skill name {skill!r} is not a string")
            if isinstance(level, bool) or not isinstance(level, int) or level < 1:
                raise E.InvalidArgumentError(
                    f"skill {skill!r}: level must be an integer >= 1, not {level!r}")
            out[skill] = level
        return out

    def _check_wrap_code(self, code: Any) -> None:
        if code is not None and code not in self._wrap_codes:
            raise E.UnknownWrapUpCodeError(f"unknown wrap-up code {code!r}")

    @staticmethod
    def _check_notes(notes: Any) -> None:
        if notes is not None and (not isinstance(notes, str) or len(notes) > 10_000):
            raise E.InvalidArgumentError("notes must be a string of at most 10000 chars")

    def _offer_for(self, offer_id: str, agent_id: str) -> LiveOffer:
        self._agent(agent_id)
        offer = self._offers.get(offer_id) if isinstance(offer_id, str) else None
        if offer is None:
            ended = self._ended_offers.get(offer_id) if isinstance(offer_id, str) else None
            if ended == "missed":
                raise E.OfferExpiredError(f"offer {offer_id!r} expired (not answered in time)")
            if ended is not None:
                raise E.OfferWithdrawnError(f"offer {offer_id!r} was {ended}")
            raise E.UnknownOfferError(f"unknown offer {offer_id!r}")
        if offer.agent_id != agent_id:
            raise E.OfferNotYoursError(f"offer {offer_id!r} is not for agent {agent_id!r}")
        if self._mono() >= offer.expires_mono:
            raise E.OfferExpiredError(f"offer {offer_id!r} expired at {offer.expires_at}")
        return offer

    # ------------------------------------------------------------------ public: tasks

    async def enqueue(
        self,
        *,
        queue_id: str,
        channel: str,
        case_id: str,
        customer_id: str,
        skills: Mapping[str, int] | None = None,
        priority: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        preferred_agent_id: str | None = None,
        task_id: str | None = None,
        enqueued_at: datetime | None = None,
        callback_number: str | None = None,
    ) -> Task:
        """Put a task in a queue. Returns its snapshot: usually `waiting` or `offered`,
        `exited` when the queue was full and has no exit queue. `enqueued_at` lets a
        re-queued contact keep its original time (and so its place). A
        `callback_number` makes it a voice callback task from the start (an agent or a
        web form asking to call a customer back), routed like any other."""
        q = self._queue(queue_id)
        if callback_number is not None:
            if channel != "voice":
                raise E.InvalidArgumentError("a callback task is a voice task")
            if not isinstance(callback_number, str) or \
                    not _CALLBACK_NUMBER.match(callback_number):
                raise E.InvalidArgumentError(
                    f"callback number {callback_number!r} is not a phone number")
        if channel not in CHANNELS:
            raise E.InvalidArgumentError(f"unknown channel {channel!r}; one of {CHANNELS}")
        if channel not in q.channels:
            raise E.ChannelNotServedError(f"queue {queue_id!r} does not take {channel}")
        self._check_id("case_id", case_id)
        self._check_id("customer_id", customer_id)
        self._check_id("task_id", task_id, optional=True)
        self._check_id("preferred_agent_id", preferred_agent_id, optional=True)
        own_skills = self._check_skills(skills)
        unknown = sorted(set(own_skills) - self._skills) if self._skills else []
        if unknown:
            raise E.InvalidArgumentError(f"unknown skill(s) {', '.join(unknown)}")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise E.InvalidArgumentError("priority must be an integer")
        if attributes is not None and not isinstance(attributes, Mapping):
            raise E.InvalidArgumentError("attributes must be a mapping")
        if task_id is not None and (task_id in self._tasks or task_id in self._finished):
            raise E.DuplicateTaskError(f"task {task_id!r} exists already")
        now = self._mono()
        enq_mono = now
        wall = self._clock.now()
        if enqueued_at is not None:
            if not isinstance(enqueued_at, datetime) or enqueued_at.tzinfo is None:
                raise E.InvalidArgumentError("enqueued_at must be a timezone-aware datetime")
            if enqueued_at > wall:
                raise E.InvalidArgumentError("enqueued_at is in the future")
            enq_mono = now - (wall - enqueued_at).total_seconds()
            wall = enqueued_at
        self._seq += 1
        t = LiveTask(
            id=task_id or self._new_id(),
            channel=channel,
            queue_id=q.id,
            case_id=case_id,
            customer_id=customer_id,
            own_skills=own_skills,
            base_priority=q.priority if priority is None else priority,
            enqueued_at=wall,
            enqueued_mono=enq_mono,
            seq=self._seq,
            attributes=dict(attributes or {}),
            preferred_agent_id=preferred_agent_id,
        )
        if callback_number is not None:
            t.kind = "callback"
            t.callback_number = callback_number
        if self._shared is not None:
            t.queue_entered_mono = now
            ring_all = self._rings_all(t)
            if task_id is None:
                self._op_register(t, ring_all)
            else:
                # A caller's id (a conversation id) must make one task cluster-wide: ask
                # Redis before anything changes here.
                reason = await self._register_now(t, ring_all)
                if reason != "ok" or t.id in self._tasks or t.id in self._finished:
                    raise E.DuplicateTaskError(
                        f"task {task_id!r} exists already (on this or another node)")
        self._tasks[t.id] = t
        self._cstats[channel].entered += 1
        self._emit("task.enqueued", self._task_payload(
            t, priority=t.base_priority, skills=own_skills,
            enqueued_at=wall.isoformat(), preferred_agent_id=preferred_agent_id,
            attributes=t.attributes))
        self._record(t, "enqueued")
        self._place(t)
        self._settle()
        view = self._view(t)
        await self._flush()
        return view

    async def abandon(self, task_id: str) -> Task:
        """The customer left (caller hung up, chat closed) before an agent accepted."""
        if (remote := await self._forward_task(task_id, "abandon", task_id=task_id)) \
                is not LOCAL:
            return remote
        t = self._task(task_id)
        if t.status not in (WAITING, OFFERED):
            raise E.TaskStateError(f"task {task_id!r} is {t.status}; only a waiting task "
                                   "can be abandoned")
        q = self._queues[t.queue_id]
        wait = self._mono() - t.enqueued_mono
        short = wait < q.short_abandon_seconds
        self._leave_queue(t, "abandoned")
        t.status = ABANDONED
        for counters in (self._qstats[q.id], self._cstats[t.channel]):
            counters.abandoned += 1
            counters.short_abandoned += short
        self._emit("task.abandoned", self._task_payload(t, wait_seconds=wait, short=short))
        self._record(t, "abandoned", wait_seconds=wait, reason="short" if short else None)
        self._finish(t)
        self._settle()
        await self._flush()
        return self._finished[t.id]

    async def request_callback(self, task_id: str, number: str) -> Task:
        """Virtual hold: the waiting contact becomes a voice callback task that keeps its
        enqueue time and so its place in line. When an agent accepts it, the voice backend
        places the call (it reads `callback_number` from task.accepted)."""
        self._coordinated()
        if (remote := await self._forward_task(task_id, "request_callback", task_id=task_id,
                                               number=number)) is not LOCAL:
            return remote
        t = self._task(task_id)
        if not isinstance(number, str) or not _CALLBACK_NUMBER.match(number):
            raise E.InvalidArgumentError(f"callback number {number!r} is not a phone number")
        if t.kind == "callback":
            raise E.TaskStateError(f"task {task_id!r} is a callback already")
        if t.status not in (WAITING, OFFERED):
            raise E.TaskStateError(f"task {task_id!r} is {t.status}, not waiting")
        if "voice" not in self._queues[t.queue_id].channels:
            raise E.ChannelNotServedError(
                f"queue {t.queue_id!r} takes no voice tasks, so no callbacks")
        self._withdraw_all(t, "callback")
        self._release_sticky(t)
        previous = t.channel
        t.kind = "callback"
        t.callback_number = number
        t.channel = "voice"
        t.status = WAITING
        self._index_task(t)
        self._dirty_tasks[t.id] = None
        self._op_update(t)
        self._emit("callback.requested", self._task_payload(
            t, number=number, previous_channel=previous,
            enqueued_at=t.enqueued_at.isoformat()))
        self._record(t, "callback_requested", reason=previous)
        self._settle()
        await self._flush()
        return self._view(self._tasks.get(t.id, t))

    async def move(self, task_id: str, queue_id: str) -> Task:
        """Move a waiting task to another queue (supervisor); it keeps its enqueue time."""
        self._coordinated()
        if (remote := await self._forward_task(task_id, "move", task_id=task_id,
                                               queue_id=queue_id)) is not LOCAL:
            return remote
        t = self._task(task_id)
        q = self._queue(queue_id)
        if t.status not in (WAITING, OFFERED):
            raise E.TaskStateError(f"task {task_id!r} is {t.status}, not waiting")
        if t.channel not in q.channels:
            raise E.ChannelNotServedError(f"queue {queue_id!r} does not take {t.channel}")
        if q.id == t.queue_id:
            raise E.InvalidArgumentError(f"task {task_id!r} is in queue {queue_id!r} already")
        self._move(t, q.id, "moved")
        self._settle()
        await self._flush()
        return self._view(self._tasks.get(t.id, t))

    async def transfer(self, task_id: str, agent_id: str, queue_id: str,
                       reason: str | None = None) -> Task:
        """An agent hands an accepted task to another queue; it keeps its enqueue time.
        The agent's capacity slot is freed at once (no wrap-up for a transfer)."""
        self._coordinated()
        if (remote := await self._forward_task(task_id, "transfer", task_id=task_id,
                                               agent_id=agent_id, queue_id=queue_id,
                                               reason=reason)) is not LOCAL:
            return remote
        a = self._agent(agent_id)
        t = self._task(task_id)
        q = self._queue(queue_id)
        self._check_transfer(t, agent_id, reason)
        if t.channel not in q.channels:
            raise E.ChannelNotServedError(f"queue {queue_id!r} does not take {t.channel}")
        from_queue = t.queue_id
        self._hand_over(t, a, reason, to_queue_id=q.id)
        t.queue_id = q.id
        self._emit("task.moved", self._task_payload(
            t, from_queue_id=from_queue, to_queue_id=q.id, reason="transfer",
            agent_id=agent_id, note=reason))
        self._record(t, "moved", agent_id=agent_id, reason=f"transfer:{from_queue}")
        self._op("requeue", t.id)
        self._place(t)
        if t.id in self._tasks:
            self._op_update(t)
        if t.status == WAITING:
            self._decline(t, agent_id)  # not straight back to the agent who handed it on
        self._settle()
        await self._flush()
        return self._view(self._tasks.get(t.id, t))

    async def transfer_to_agent(self, task_id: str, agent_id: str, by: str,
                                reason: str | None = None, *, answered: bool = False
                                ) -> Task:
        """Agent `by` hands an accepted task to agent `agent_id` by name (a "directed"
        transfer). The task keeps its queue, case, customer, priority and enqueue time;
        it is offered to that agent only, with the queue's RONA time. Not available
        (logged out, not ready, full), rejected or not answered → offered back to `by`;
        not taken there either → it waits in its queue like any other task. `by`'s slot
        is freed at once (no wrap-up for a transfer), so they can take it back. The
        offer's attributes carry `transfer` = {by, reason, to_agent_id}, which the
        receiving agent's screen-pop shows. See docs/acd.md "Transfers".

        `answered`: the target already talks with the customer (a consultative
        transfer completed, a conference the giver left): the task is offered and
        accepted at once — no ring, no fallback — and the target must be able to take
        it now (else AgentBusyError, nothing changed). The offer carries
        `transfer.answered` so the voice service does not ring their phone."""
        self._coordinated()
        if (remote := await self._forward_task(
                task_id, "transfer_to_agent", task_id=task_id, agent_id=agent_id, by=by,
                reason=reason, answered=answered)) is not LOCAL:
            return remote
        giver = self._agent(by)
        target = self._agent(agent_id)
        t = self._task(task_id)
        self._check_transfer(t, by, reason)
        if target.id == giver.id:
            raise E.InvalidArgumentError(f"task {task_id!r} is with {by!r} already")
        if target.id in self._retired_agents or target.capacity.get(t.channel, 0) <= 0:
            raise E.ChannelNotServedError(f"agent {agent_id!r} does not take {t.channel}")
        if answered and not target.can_take(t.channel):
            raise E.AgentBusyError(f"agent {agent_id!r} cannot take {t.channel} now "
                                   f"({target.presence})")
        self._hand_over(t, giver, reason, to_agent_id=target.id)
        if answered:
            t.attributes["transfer"]["answered"] = True
        # Timers of the task's earlier queue stay (overflow, max wait) compare this:
        # they must not fire on the directed offer. `_place` sets it again on fallback.
        t.queue_entered_mono = self._mono()
        self._emit("task.moved", self._task_payload(
            t, from_queue_id=t.queue_id, to_queue_id=t.queue_id, reason="transfer",
            agent_id=by, to_agent_id=target.id, note=reason))
        self._record(t, "moved", agent_id=by, reason=f"transfer_to_agent:{target.id}")
        self._op("requeue", t.id)
        self._op_update(t)
        t.status = OFFERED  # no offer yet: `_offer_directed` makes one or queues it
        t.directed = [target.id] if answered else [target.id, by]
        self._offer_directed(t)
        self._settle()
        await self._flush()  # on shared state: the claim is confirmed (or refused) here
        offer_id = t.offers.get(target.id)
        if answered and offer_id is not None and offer_id in self._offers:
            return await self.accept(offer_id, target.id)
        return self._view(self._tasks.get(t.id, t))

    def _check_transfer(self, t: LiveTask, agent_id: str, reason: str | None) -> None:
        if t.status != ASSIGNED or t.agent_id != agent_id:
            raise E.TaskStateError(f"task {t.id!r} is not with agent {agent_id!r}")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
            raise E.InvalidArgumentError("reason must be a string of at most 500 chars")

    def _hand_over(self, t: LiveTask, a: LiveAgent, reason: str | None,
                   **to: str) -> None:
        """The transferring agent's part ends: slot freed, who/why noted on the task."""
        a.active.pop(t.id, None)
        a.load[t.channel] -= 1
        a.total_load -= 1
        a.idle_since = self._mono()
        self._touch_agent(a)
        self._dirty_agents[a.id] = None
        t.agent_id = None
        t.hops += 1
        t.attributes["transfer"] = {"by": a.id, "reason": reason, **to,
                                    "at": self._clock.now().isoformat()}

    # ------------------------------------------------------------------ public: agents

    async def agent_login(self, agent_id: str, session_id: str) -> AgentView:
        """Log in as available. A second log-in from the same session is a no-op; from
        another session it is refused (log out there first)."""
        a = self._agent(agent_id)
        if agent_id in self._retired_agents:
            raise E.UnknownAgentError(f"agent {agent_id!r} is no longer in the config")
        self._check_id("session_id", session_id)
        if self._shared is not None and a.presence == "logged_out":
            await self._log_in_cluster_wide(a, session_id)
        if a.presence != "logged_out":
            if a.session_id == session_id:
                return self._agent_view(a)
            raise E.AgentAlreadyLoggedInError(
                f"agent {agent_id!r} is logged in from another session")
        now = self._mono()
        a.session_id = session_id
        a.presence = "available"
        a.reason = None
        a.idle_since = now
        self._op_agent_state(a)
        self._touch_agent(a)
        self._dirty_agents[a.id] = None
        self._settle()
        await self._flush()
        return self._agent_view(a)

    async def _log_in_cluster_wide(self, a: LiveAgent, session_id: str) -> None:
        """Claim the agent for `session_id` in Redis, atomically: of two nodes logging
        the same agent in at once from different sessions, one wins and the other
        learns of it (its view refreshed, so the refusal below names the winner's
        session)."""
        assert self._shared is not None
        try:
            claim = await self._shared.log_in(a.id, session_id)
            if getattr(claim, "reason", claim) != "ok":
                await self.refresh_agents([a.id])
        except Exception as exc:
            raise E.RemoteNodeError(
                f"cannot check whether {a.id!r} is logged in elsewhere: {exc!r}") from None

    async def agent_logout(self, agent_id: str, session_id: str | None = None) -> AgentView:
        """Log out. Refused while the agent holds accepted tasks; ringing offers go back
        to their queues (keeping their place), running wrap-ups end now."""
        a = self._logged_in(agent_id)
        if session_id is not None and session_id != a.session_id:
            raise E.ForbiddenStateChangeError(
                f"agent {agent_id!r} is logged in from another session")
        if a.active:
            raise E.AgentBusyError(
                f"agent {agent_id!r} still handles {len(a.active)} task(s); complete or "
                "transfer them first")
        if self._forwarding():
            await self._logout_elsewhere(a)
        self._drop_offers(a, "agent_logged_out")
        for w in list(a.wraps.values()):
            self._end_wrap(a, w, "logout")
        self._release_all_sticky(a)
        a.presence = "logged_out"
        a.session_id = None
        a.reason = None
        self._op_agent_state(a)
        self._touch_agent(a)
        self._settle()
        await self._flush()
        return self._agent_view(a)

    def _drop_offers(self, a: LiveAgent, reason: str) -> None:
        for offer_id in list(a.offers):
            offer = self._offers[offer_id]
            t = self._tasks[offer.task_id]
            self._end_offer(offer, "withdrawn")
            self._emit("task.offer_withdrawn", self._task_payload(
                t, offer_id=offer_id, agent_id=a.id, reason=reason))
            self._record(t, "offer_withdrawn", agent_id=a.id, offer_id=offer_id, reason=reason)
            self._return_to_waiting(t)

    async def set_state(self, agent_id: str, state: str, reason: str | None = None) -> AgentView:
        """available or not_ready (with a reason code). busy and wrap_up are the engine's;
        use agent_login / agent_logout for logged_out. Going not-ready withdraws ringing
        offers; tasks in hand continue."""
        a = self._agent(agent_id)
        if state not in SETTABLE_STATES:
            raise E.ForbiddenStateChangeError(
                f"state {state!r} cannot be set; one of {SETTABLE_STATES}"
                + (" (use agent_login/agent_logout)" if state == "logged_out" else ""))
        if a.presence == "logged_out":
            raise E.AgentNotLoggedInError(f"agent {agent_id!r} is not logged in")
        if state == "available" and reason is not None:
            raise E.InvalidArgumentError("a reason goes with not_ready only")
        if state == "not_ready" and reason is not None and reason not in self._reason_codes:
            raise E.UnknownReasonCodeError(f"unknown reason code {reason!r}")
        if state == a.presence and (state == "available" or reason == a.reason):
            return self._agent_view(a)
        if state == "not_ready":
            self._drop_offers(a, "agent_not_ready")
            self._release_all_sticky(a)
            a.presence = "not_ready"
            a.reason = reason
        else:
            a.presence = "available"
            a.reason = None
            a.idle_since = self._mono()
            self._dirty_agents[a.id] = None
        self._op_agent_state(a)
        self._touch_agent(a)
        self._settle()
        await self._flush()
        return self._agent_view(a)

    async def accept(self, offer_id: str, agent_id: str) -> Task:
        """The agent takes the offered task. Other ring-all offers are withdrawn."""
        self._coordinated()
        if (remote := await self._forward_offer("accept", offer_id, agent_id)) is not LOCAL:
            return remote
        offer = self._offer_for(offer_id, agent_id)
        a = self._agents[agent_id]
        t = self._tasks[offer.task_id]
        self._end_offer(offer, "accepted")
        self._withdraw_all(t, "answered_elsewhere")
        t.directed = None
        now = self._mono()
        t.status = ASSIGNED
        t.agent_id = a.id
        t.accepted_mono = now
        a.active[t.id] = None
        self._in_queue[t.queue_id].pop(t.id, None)
        # No data update: the accept op carries the agent and the time (ADOPT merges).
        q = self._queues[t.queue_id]
        wait = now - t.enqueued_mono
        in_sl = wait <= q.service_level_seconds
        for counters in (self._qstats[q.id], self._cstats[t.channel], self._astats[a.id]):
            counters.answered += 1
            counters.answered_in_sl += in_sl
            counters.wait_answered_total += wait
        self._emit("task.accepted", self._task_payload(
            t, offer_id=offer_id, agent_id=a.id, wait_seconds=wait,
            callback_number=t.callback_number, attributes=t.attributes))
        self._record(t, "accepted", agent_id=a.id, offer_id=offer_id, wait_seconds=wait)
        self._derive_state(a)
        self._settle()
        await self._flush()
        return self._view(t)

    async def reject(self, offer_id: str, agent_id: str) -> Task:
        """The agent declines; the task goes to the next agent (this one is skipped for
        it during one RONA period). The agent stays available."""
        self._coordinated()
        if (remote := await self._forward_offer("reject", offer_id, agent_id)) is not LOCAL:
            return remote
        offer = self._offer_for(offer_id, agent_id)
        t = self._tasks[offer.task_id]
        self._end_offer(offer, "rejected")
        self._decline(t, agent_id)
        self._qstats[t.queue_id].rejected += 1
        self._cstats[t.channel].rejected += 1
        self._astats[agent_id].rejected += 1
        self._emit("task.rejected", self._task_payload(t, offer_id=offer_id, agent_id=agent_id))
        self._record(t, "rejected", agent_id=agent_id, offer_id=offer_id)
        self._return_to_waiting(t)
        self._settle()
        await self._flush()
        return self._view(self._tasks.get(t.id, t))

    async def complete(
        self, task_id: str, agent_id: str, wrap_up_code: str | None = None,
        notes: str | None = None,
    ) -> WrapUp:
        """The conversation is over: wrap-up starts (the queue's wrap_up_seconds; zero
        ends it at once). The task keeps its capacity slot until wrap-up ends."""
        if (remote := await self._forward_task(
                task_id, "complete", task_id=task_id, agent_id=agent_id,
                wrap_up_code=wrap_up_code, notes=notes)) is not LOCAL:
            return remote
        a = self._agent(agent_id)
        t = self._task(task_id)
        if t.status != ASSIGNED or t.agent_id != agent_id:
            raise E.TaskStateError(f"task {task_id!r} is not in the hands of {agent_id!r}")
        self._check_wrap_code(wrap_up_code)
        self._check_notes(notes)
        q = self._queues[t.queue_id]
        now = self._mono()
        a.active.pop(t.id, None)
        t.status = WRAP_UP
        w = LiveWrapUp(t.id, q.id, t.channel, now + q.wrap_up_seconds, wrap_up_code, notes)
        a.wraps[t.id] = w
        view = self._wrap_view(a, w)
        self._emit("task.completed", self._task_payload(
            t, agent_id=a.id, talk_seconds=now - t.accepted_mono,
            wrap_up_seconds=q.wrap_up_seconds, wrap_up_code=wrap_up_code))
        self._record(t, "completed", agent_id=a.id, handle_seconds=now - t.accepted_mono,
                     wrap_up_code=wrap_up_code, notes=notes)
        if q.wrap_up_seconds <= 0:
            self._end_wrap(a, w, "no_wrap_up")  # its `end` op frees the slot in Redis
        else:
            self._op("wrap", t.id, a.id)
            self._op_update(t)
            self._timer(w.ends_mono, "wrap", a.id, t.id)
            self._derive_state(a)
        self._settle()
        await self._flush()
        return view

    def _wraps_of(self, a: LiveAgent, task_id: str | None) -> list[LiveWrapUp]:
        if task_id is None:
            if not a.wraps:
                raise E.NotInWrapUpError(f"agent {a.id!r} is not in wrap-up")
            return list(a.wraps.values())
        w = a.wraps.get(task_id)
        if w is None:
            raise E.NotInWrapUpError(f"agent {a.id!r} has no wrap-up for task {task_id!r}")
        return [w]

    async def end_wrap_up(
        self, agent_id: str, task_id: str | None = None, wrap_up_code: str | None = None,
        notes: str | None = None,
    ) -> None:
        """End wrap-up early (all of the agent's wrap-ups, or one task's)."""
        if task_id is not None:
            if (await self._forward_task(task_id, "end_wrap_up", agent_id=agent_id,
                                         task_id=task_id, wrap_up_code=wrap_up_code,
                                         notes=notes)) is not LOCAL:
                return
        elif remote_wraps := await self._remote_wraps(agent_id):
            # Wrap-ups of tasks other nodes own end there; the local ones (if any) here.
            self._check_wrap_code(wrap_up_code)
            self._check_notes(notes)
            for remote_task, owner in remote_wraps:
                await self._call(owner, "end_wrap_up", {
                    "agent_id": agent_id, "task_id": remote_task,
                    "wrap_up_code": wrap_up_code, "notes": notes})
            if not self._agent(agent_id).wraps:
                return
        a = self._agent(agent_id)
        wraps = self._wraps_of(a, task_id)
        self._check_wrap_code(wrap_up_code)
        self._check_notes(notes)
        for w in wraps:
            if wrap_up_code is not None:
                w.wrap_up_code = wrap_up_code
            if notes is not None:
                w.notes = notes
        if missing := [w.task_id for w in wraps if self._code_missing(w)]:
            raise E.WrapUpCodeRequiredError(
                f"a wrap-up code is required to end the wrap-up of {', '.join(missing)}")
        for w in wraps:
            self._end_wrap(a, w, "agent")
        self._settle()
        await self._flush()

    async def extend_wrap_up(
        self, agent_id: str, seconds: float, task_id: str | None = None
    ) -> list[WrapUp]:
        if task_id is not None and (remote := await self._forward_task(
                task_id, "extend_wrap_up", agent_id=agent_id, seconds=seconds,
                task_id=task_id)) is not LOCAL:
            return remote
        a = self._agent(agent_id)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                or not math.isfinite(seconds) or not 0 < seconds <= _MAX_EXTEND_SECONDS:
            raise E.InvalidArgumentError(
                f"seconds must be a number in (0, {_MAX_EXTEND_SECONDS:g}]")
        wraps = self._wraps_of(a, task_id)
        out = []
        for w in wraps:
            w.ends_mono += float(seconds)
            self._timer(w.ends_mono, "wrap", a.id, w.task_id)
            view = self._wrap_view(a, w)
            out.append(view)
            t = self._tasks[w.task_id]
            self._op_update(t)
            self._emit("task.wrap_up_extended", self._task_payload(
                t, agent_id=a.id, ends_at=view.ends_at.isoformat(), seconds=float(seconds)))
        await self._flush()
        return out

    # ------------------------------------------------------------------ public: config

    async def apply_config(self, config: CentraleConfig) -> None:
        """Hot reload (the node calls it after a valid config reload). Queues, agents'
        skills, capacities and queues, strategies, rules, codes take effect at once; live
        tasks keep their place and enqueue time, agents keep their session, work in hand
        and state. Waiting tasks of a removed queue leave it like a max-wait exit (reason
        `queue_removed`: to its exit queue, else `task.exited`); a removed agent gets no
        new offers, keeps what is in hand and cannot log in again. A capacity lowered
        below the work in hand takes effect as that work ends. An invalid config raises
        AcdConfigError and changes nothing."""
        self._check_config(config)
        self._load_config(config)
        self._generation += 1
        for t in list(self._tasks.values()):
            if t.status in (WAITING, OFFERED) and t.queue_id in self._closed_queues:
                self._exit(t, "queue_removed")
        for agent_id in sorted(self._retired_agents):
            retired = self._agents[agent_id]
            self._drop_offers(retired, "agent_removed")
            self._release_all_sticky(retired)
        self._task_index = TaskIndex()
        for t in self._tasks.values():
            if t.status not in (WAITING, OFFERED):
                continue
            rules = len(self._queues[t.queue_id].overflow)
            t.rules_in_force = {i for i in t.rules_in_force if i < rules}
            self._compute_requirements(t)
            self._schedule_queue_timers(t)
            if t.status == WAITING:
                self._index_task(t)
                self._dirty_tasks[t.id] = None
        for a in self._agents.values():
            self._touch_agent(a)
            if a.presence == "available":
                self._dirty_agents[a.id] = None
        for agent_id, capacity, exclusive in self.shared_agents() if self._shared else ():
            self._op("capacity", agent_id, int(exclusive),
                     *(x for pair in capacity.items() for x in pair))
        self._emit("acd.config_applied", {
            "queues": sorted(set(self._queues) - self._closed_queues),
            "agents": len(self._agents) - len(self._retired_agents),
            "closed_queues": sorted(self._closed_queues),
            "retired_agents": sorted(self._retired_agents),
        })
        self._settle()
        await self._flush()

    # ------------------------------------------------------------------ public: queries

    async def position(self, task_id: str) -> int:
        """1 = next in line for its queue and channel; 0 = being offered right now."""
        if (remote := await self._forward_task(task_id, "position", task_id=task_id)) \
                is not LOCAL:
            return remote
        t = self._task(task_id)
        if t.status == OFFERED:
            return 0
        if t.status != WAITING:
            raise E.TaskStateError(f"task {task_id!r} is {t.status}, not waiting")
        key = t.key()
        ahead = 0
        for tid in self._in_queue[t.queue_id]:
            other = self._tasks[tid]
            if other.channel == t.channel and other.status == WAITING and other.key() < key:
                ahead += 1
        return ahead + 1

    def _staffed(self, queue_id: str, channel: str) -> int:
        """Capacity for `channel` of the queue's agents who are logged in and not not-ready."""
        agents = self._agents
        return sum(
            agents[aid].capacity.get(channel, 0)
            for aid in self._members[queue_id]
            if agents[aid].presence == "available"
        )

    def _ewt(self, queue_id: str, channel: str, position: int) -> float | None:
        staffed = self._staffed(queue_id, channel)
        if staffed == 0:
            return None
        aht = self._aht.get((queue_id, channel), self._default_aht)
        return position * aht / staffed

    async def estimated_wait(self, task_id: str) -> float | None:
        """Seconds until an offer, estimated as position x AHT / staffed capacity (AHT: a
        moving average of the queue's handle time for the channel). None = nobody staffed."""
        if (remote := await self._forward_task(task_id, "estimated_wait", task_id=task_id)) \
                is not LOCAL:
            return remote
        position = await self.position(task_id)
        if position == 0:
            return 0.0
        t = self._tasks[task_id]
        return self._ewt(t.queue_id, t.channel, position)

    async def queue_estimated_wait(self, queue_id: str, channel: str) -> float | None:
        """The wait a new contact would face: for the IVR's announcement before enqueue."""
        self._queue(queue_id)
        if channel not in CHANNELS:
            raise E.InvalidArgumentError(f"unknown channel {channel!r}")
        waiting = sum(
            1 for tid in self._in_queue[queue_id]
            if self._tasks[tid].channel == channel and self._tasks[tid].status == WAITING
        )
        return self._ewt(queue_id, channel, waiting + 1)

    def task(self, task_id: str) -> Task:
        t = self._tasks.get(task_id)
        if t is not None:
            return self._view(t)
        if task_id in self._finished:
            return self._finished[task_id]
        raise E.UnknownTaskError(f"unknown task {task_id!r}")

    def agent(self, agent_id: str) -> AgentView:
        return self._agent_view(self._agent(agent_id))

    def offer(self, offer_id: str) -> Offer:
        o = self._offers.get(offer_id)
        if o is None:
            raise E.UnknownOfferError(f"no open offer {offer_id!r}")
        return Offer(o.id, o.task_id, o.agent_id, o.queue_id, o.expires_at)

    def offers_for(self, agent_id: str) -> list[Offer]:
        a = self._agent(agent_id)
        return [self.offer(oid) for oid in a.offers]

    def waiting(self, queue_id: str) -> list[Task]:
        """The queue's contacts not yet answered, in routing order."""
        self._queue(queue_id)
        tasks = sorted((self._tasks[tid] for tid in self._in_queue[queue_id]),
                       key=LiveTask.key)
        return [self._view(t) for t in tasks]

    @property
    def decisions(self) -> int:
        """Offers made since start (each ring-all offer counts)."""
        return self._decisions

    # ------------------------------------------------------------------ statistics

    def _time_in(self, a: LiveAgent, now: float) -> dict[str, float]:
        out = dict(a.time_in)
        out[a.state] = out.get(a.state, 0.0) + (now - a.state_since)
        return out

    def stats(self, *, agents: bool = True) -> dict[str, Any]:
        """Live statistics per queue, channel and (optionally) agent. See docs/acd.md."""
        now = self._mono()
        tasks = self._tasks
        queues: dict[str, Any] = {}
        channel_waiting = {c: 0 for c in CHANNELS}
        channel_oldest = {c: 0.0 for c in CHANNELS}
        time_cache: dict[str, dict[str, float]] = {}
        for qid, q in self._queues.items():
            if qid in self._closed_queues:
                continue
            fig = self._qstats[qid].figures()
            oldest = 0.0
            for tid in self._in_queue[qid]:
                t = tasks[tid]
                age = now - t.enqueued_mono
                oldest = max(oldest, age)
                channel_waiting[t.channel] += 1
                channel_oldest[t.channel] = max(channel_oldest[t.channel], age)
            by_state = {s: 0 for s in ("logged_out", "available", "not_ready", "busy", "wrap_up")}
            totals: dict[str, float] = {}
            for aid in self._members[qid]:
                a = self._agents[aid]
                by_state[a.state] += 1
                spent = time_cache.get(aid)
                if spent is None:
                    spent = time_cache[aid] = self._time_in(a, now)
                for state, secs in spent.items():
                    totals[state] = totals.get(state, 0.0) + secs
            fig.update(
                waiting=len(self._in_queue[qid]), oldest_wait_seconds=oldest,
                agents=by_state, occupancy=occupancy(totals),
                service_level_seconds=q.service_level_seconds,
            )
            queues[qid] = fig
        channels: dict[str, Any] = {}
        for c in CHANNELS:
            fig = self._cstats[c].figures()
            capacity = load = 0
            for a in self._agents.values():
                if a.presence != "logged_out":
                    capacity += a.capacity.get(c, 0)
                    load += a.load.get(c, 0)
            fig.update(waiting=channel_waiting[c], oldest_wait_seconds=channel_oldest[c],
                       capacity=capacity, load=load,
                       utilisation=load / capacity if capacity else None)
            channels[c] = fig
        out: dict[str, Any] = {
            "at": self._clock.now().isoformat(), "decisions": self._decisions,
            "queues": queues, "channels": channels,
        }
        if self._shared is not None:  # each node counts its own tasks: sum per node
            out["node_id"] = self._shared.node_id
        if agents:
            out["agents"] = {
                aid: {
                    **self._astats[aid].figures(), "state": a.state,
                    "reason": a.reason if a.presence == "not_ready" else None,
                    "load": dict(a.load), "time_in": (ti := self._time_in(a, now)),
                    "state_seconds": now - a.state_since,
                    "occupancy": occupancy(ti),
                }
                for aid, a in self._agents.items()
                if aid not in self._retired_agents or a.presence != "logged_out"
            }
        return out

    def snapshot(self) -> dict[str, Any]:
        """Everything a wallboard or a debugging session needs, JSON-serialisable."""
        return {
            "stats": self.stats(),
            "tasks": [
                {**self._task_payload(t), "status": t.status, "agent_id": t.agent_id,
                 "priority": t.priority, "enqueued_at": t.enqueued_at.isoformat(),
                 "offers": dict(t.offers)}
                for t in self._tasks.values()
            ],
            "agents": {
                a.id: {"state": a.state, "presence": a.presence, "reason": a.reason,
                       "load": dict(a.load), "offers": list(a.offers),
                       "tasks": list(a.active), "wrap_ups": list(a.wraps)}
                for a in self._agents.values()
            },
        }

    # ------------------------------------------------------------------ timers and loop

    async def tick(self) -> int:
        """Process every timer due by the clock (RONA, overflow, max wait, sticky release,
        retry after a decline, wrap-up end), route, publish throttled stats. Returns the
        number of timers fired."""
        now = self._mono()
        fired = 0
        timers = self._timers
        while timers and timers[0][0] <= now:
            # Every timer due at the same instant first, then route: two tasks whose
            # overflow rules fire together compete by priority and arrival, not by the
            # order their timers were set.
            due = timers[0][0]
            while timers and timers[0][0] == due:
                _due, _seq, kind, key, data = heapq.heappop(timers)
                self._fire(kind, key, data, now)
                fired += 1
            self._settle()
        self._settle()
        if self._stats_dirty and now - self._last_stats_pub >= self._stats_interval:
            self._last_stats_pub = now
            self._emit("stats.updated", self.stats(agents=False))
            self._stats_dirty = False
        await self._flush()
        return fired

    async def run(self) -> None:
        """The node's ACD loop: tick every tick_interval_seconds until stop()."""
        self._stopping = asyncio.Event()
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:  # a bug in one tick must not stop routing for the node
                log.exception("ACD tick failed")
            try:
                await asyncio.wait_for(self._stopping.wait(), self._tick_interval)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        await self._flush()

