"""What a health check raises to say a dependency is degraded, and what any service
raises when a dependency it needs did not answer (retry later: not the input's fault)."""

from __future__ import annotations


class Degraded(Exception):
    """Not usable now. The message is shown on /healthz, so it says what is wrong (which
    channel, which backend) and never holds a secret."""


class Unavailable(Exception):
    """A dependency (Redis, another node, the database) did not answer; nothing was
    changed and the same call may succeed later. Workers that retry bad input a few
    times before setting it aside (the digital inbox) do not count these as the
    input's failures: a Redis outage must not turn acknowledged messages into poison."""
