"""The ACD's errors: one class per kind of bad input, so callers (web API, IVR) can map
them to a status code or a prompt without parsing messages.

Every public engine method validates before it changes anything: when one of these is
raised, the engine's state is exactly what it was before the call.
"""

from __future__ import annotations

from core.health import Unavailable


class AcdError(Exception):
    """Base of every error the ACD engine raises on bad input."""

    code = "acd_error"


class AcdConfigError(AcdError):
    code = "config"


class InvalidArgumentError(AcdError):
    code = "invalid_argument"


class UnknownQueueError(AcdError):
    code = "unknown_queue"


class UnknownAgentError(AcdError):
    code = "unknown_agent"


class UnknownTaskError(AcdError):
    code = "unknown_task"


class DuplicateTaskError(AcdError):
    code = "duplicate_task"


class UnknownOfferError(AcdError):
    code = "unknown_offer"


class UnknownReasonCodeError(AcdError):
    code = "unknown_reason_code"


class UnknownWrapUpCodeError(AcdError):
    code = "unknown_wrap_up_code"


class WrapUpCodeRequiredError(AcdError):
    """The queue wants a wrap-up code (`wrap_up_code_required`) and none was given."""

    code = "wrap_up_code_required"


class ChannelNotServedError(AcdError):
    code = "channel_not_served"


class AgentAlreadyLoggedInError(AcdError):
    code = "agent_already_logged_in"


class AgentNotLoggedInError(AcdError):
    code = "agent_not_logged_in"


class AgentBusyError(AcdError):
    """Log-out refused while the agent still handles accepted tasks."""

    code = "agent_busy"


class ForbiddenStateChangeError(AcdError):
    code = "forbidden_state_change"


class OfferExpiredError(AcdError):
    code = "offer_expired"


class OfferWithdrawnError(AcdError):
    code = "offer_withdrawn"


class OfferNotYoursError(AcdError):
    code = "offer_not_yours"


class TaskStateError(AcdError):
    """The task is not in a state that allows the operation (e.g. abandon an answered task)."""

    code = "task_state"


class NotInWrapUpError(AcdError):
    code = "not_in_wrap_up"


class RemoteNodeError(AcdError, Unavailable):
    """Shared state: the node that owns the task did not answer a forwarded call in
    time (it may be dying; its tasks are adopted within seconds — retry), or Redis
    could not register a new task. Nothing changed; the caller may retry."""

    code = "remote_node"
