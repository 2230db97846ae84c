"""Alembic migrations for every package's tables (one linear history)."""
