"""`reports:` — the KPI definitions where contact centers differ (docs/kpis.md).

Everything has a default that matches the common industry reading, so a config without
this section reports sensibly; a centre that measures FCR over 3 days instead of 7, or
reads its headline service level against answered contacts only, says so here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.schema.base import Strict

ServiceLevelVariant = Literal["offered", "offered_excl_short", "answered"]


class ReportsSettings(Strict):
    """How the figures are defined. Time zone: `server.timezone` (the site's)."""

    # FCR: a case whose first contact is not followed by another contact on the same
    # case within this many days ("window"), or a case closed after exactly one contact
    # ("closed_after_one").
    fcr_mode: Literal["window", "closed_after_one"] = "window"
    fcr_window_days: float = Field(7, gt=0, le=90)
    # Repeat contact: another contact from the same customer (any case) within N days.
    repeat_window_days: float = Field(7, gt=0, le=90)
    # The headline `service_level` figure; all variants are always reported as well.
    service_level_variant: ServiceLevelVariant = "offered"
    # Override of the queues' short_abandon_seconds for reports (None: the queue's, as
    # the ACD decided when the contact abandoned — so reports agree with the wallboard).
    short_abandon_seconds: float | None = Field(None, ge=0)
    # The largest range one request may ask for, per granularity family.
    max_interval_range_days: int = Field(31, gt=0, le=366)
    max_daily_range_days: int = Field(400, gt=0, le=3660)
