"""`reports:` — the KPI definitions where contact centers differ (docs/kpis.md).

Everything has a default that matches the common industry reading, so a config without
this section reports sensibly; a centre that measures FCR over 3 days instead of 7, or
reads its headline service level against answered contacts only, says so here.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from config.schema.base import Strict

ServiceLevelVariant = Literal["offered", "offered_excl_short", "answered"]


class MailSettings(Strict):
    """The SMTP relay scheduled reports are sent through."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, gt=0, lt=65536)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field("centrale@localhost", pattern=r"^[^@\s]+@[^@\s]+$")


class ScheduledReport(Strict):
    """Yesterday's report (the site's previous local day), e-mailed every day at `at`
    (site time) as CSV and XLSX attachments with the totals in the text."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    at: str = Field("07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    by: Literal["queue", "channel", "agent", "wrap_up_code"] = "queue"
    granularity: Literal["15min", "30min", "60min", "day"] = "60min"
    to: list[str] = Field(min_length=1)

    @field_validator("to")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            if not re.fullmatch(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+", address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return v


class ConversationSurvey(Strict):
    """A CSAT (1–5) or NPS (0–10) question sent when a conversation ends, on the listed
    channels; WhatsApp gets it as a list of quick replies (docs/kpis.md, Surveys)."""

    channels: list[Literal["whatsapp", "webchat", "sms"]] = []  # none: no survey
    kind: Literal["csat", "nps"] = "csat"
    period_days: float = Field(30, gt=0, le=365)  # not more often per customer
    question: str | None = Field(None, max_length=1024)  # None: the default for `kind`
    retry: str | None = Field(None, max_length=1024)
    thanks: str = Field("Thank you for your answer.", max_length=1024)
    # outside WhatsApp's 24-hour window: this approved template (none: no survey)
    whatsapp_template: str | None = Field(None, max_length=512)
    template_language: str = "en"


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
    mail: MailSettings = MailSettings()
    # The survey after a call (a queue's `survey_flow`): a customer who answered or was
    # asked a survey on any channel within this many days is not asked again.
    call_survey_period_days: float = Field(30, gt=0, le=365)
    conversation_survey: ConversationSurvey = ConversationSurvey()
    scheduled: list[ScheduledReport] = []

    @field_validator("scheduled")
    @classmethod
    def _unique_ids(cls, v: list[ScheduledReport]) -> list[ScheduledReport]:
        ids = [s.id for s in v]
        if dup := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"scheduled report ids must be unique: {', '.join(dup)}")
        return v
