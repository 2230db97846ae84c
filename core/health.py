"""The one exception a health check raises to say a dependency is degraded."""

from __future__ import annotations


class Degraded(Exception):
    """Not usable now. The message is shown on /healthz, so it says what is wrong (which
    channel, which backend) and never holds a secret."""
