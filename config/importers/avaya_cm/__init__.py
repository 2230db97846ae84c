"""Avaya Communication Manager SAT capture importer."""

from config.importers.avaya_cm.importer import import_avaya_cm

__all__ = ["import_avaya_cm"]
