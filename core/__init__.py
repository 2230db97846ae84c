"""Shared kernel: domain events, the event bus, the database, the clock, ids, settings.

Nothing in `core` imports any other Centrale package.
"""
