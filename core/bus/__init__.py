"""The event bus: one interface, an in-process and a Redis Streams implementation."""

from core.bus.base import EventBus, Handler, Subscription, inline_listener
from core.bus.memory import InMemoryBus

__all__ = ["EventBus", "Handler", "InMemoryBus", "Subscription", "inline_listener"]
