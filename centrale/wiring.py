"""Which services a node runs, built from the config: the ACD, the IVR, the voice
backends and the digital channels, each given its dependencies explicitly."""

from __future__ import annotations

import logging

from centrale.container import Container

log = logging.getLogger(__name__)


def wire(c: Container) -> None:
    """Add the optional services to the container, in start order."""
    return None
