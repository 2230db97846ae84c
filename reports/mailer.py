"""Scheduled reports: every day at a set site time, yesterday's report e-mailed to the
configured addresses (`reports.scheduled`, relay `reports.mail`), CSV and XLSX attached.

Each node runs the schedule; the first to insert (schedule, day) into
`report_mail_sent` sends, so a cluster sends each mail once. A node that was down at the
set time sends on start-up what is due today and not yet claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from config.schema.reports import MailSettings, ScheduledReport
from reports.exports import to_csv, to_xlsx
from reports.intervals import local_midnight
from reports.query import ReportQuery
from reports.service import ReportService
from reports.tables import ReportMailSent

log = logging.getLogger(__name__)
XLSX = "vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SUMMARY = (("offered", "offered"), ("answered", "answered"), ("abandoned", "abandoned"),
           ("service_level", "service level"), ("asa_seconds", "ASA (s)"),
           ("abandon_rate", "abandon rate"), ("aht_seconds", "AHT (s)"))


class ReportMailer:
    def __init__(self, reports: ReportService, *, node_id: str = "node-1",
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.reports = reports
        self.node_id = node_id
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="report-mailer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _due_today(self, schedule: ScheduledReport, now: datetime) -> datetime:
        tz = self.reports.tz()
        hour, minute = (int(x) for x in schedule.at.split(":"))
        today = now.astimezone(tz).date()
        naive = datetime.combine(today, time(hour, minute))
        return naive.replace(tzinfo=tz)  # in a DST gap: zoneinfo's fold=0 reading

    def next_due(self, now: datetime) -> datetime | None:
        """The next set time after `now` over every schedule."""
        times = []
        for s in self.reports.config().reports.scheduled:
            due = self._due_today(s, now)
            times.append(due if due > now else self._due_today(s, now + timedelta(days=1)))
        return min(times) if times else None

    async def run(self) -> None:
        while True:
            try:
                await self.send_due(self.reports.clock.now())
            except Exception:
                log.exception("scheduled reports: a round failed")
            now = self.reports.clock.now()
            nxt = self.next_due(now)
            # wake at the next set time, or in an hour to pick up a config reload
            wait = 3600.0 if nxt is None else min(3600.0, (nxt - now).total_seconds())
            await self._sleep(max(0.5, wait))

    async def send_due(self, now: datetime) -> list[str]:
        """Send every schedule whose set time today has passed and that no node sent
        for today; returns the ids sent."""
        sent = []
        for schedule in self.reports.config().reports.scheduled:
            if now < self._due_today(schedule, now):
                continue
            day = now.astimezone(self.reports.tz()).date() - timedelta(days=1)
            if not await self._claim(schedule.id, day, now):
                continue
            try:
                await self.send(schedule, day)
            except Exception as exc:
                log.error("scheduled report %s for %s not sent: %s", schedule.id, day,
                          type(exc).__name__)
                await self._mark(schedule.id, day, error=f"{type(exc).__name__}: {exc}"[:300])
                continue
            await self._mark(schedule.id, day, sent_at=self.reports.clock.now())
            sent.append(schedule.id)
        return sent

    async def send(self, schedule: ScheduledReport, day: date) -> None:
        tz = self.reports.tz()
        q = ReportQuery(by=schedule.by, granularity=schedule.granularity,
                        start=local_midnight(day, tz),
                        end=local_midnight(day + timedelta(days=1), tz))
        report = await self.reports.report(q)
        msg = build_message(self.reports.config().reports.mail, schedule, day, report)
        await asyncio.to_thread(deliver, self.reports.config().reports.mail, msg)
        log.info("scheduled report %s for %s sent to %d address(es)", schedule.id, day,
                 len(schedule.to))

    async def _claim(self, schedule_id: str, day: date, now: datetime) -> bool:
        try:
            async with self.reports.db.session() as s:
                s.add(ReportMailSent(schedule_id=schedule_id, day=day.isoformat(),
                                     node_id=self.node_id, claimed_at=now))
                await s.commit()
            return True
        except IntegrityError:
            return False  # sent (or being sent) by this or another node

    async def _mark(self, schedule_id: str, day: date, **values: Any) -> None:
        async with self.reports.db.session() as s:
            await s.exec(update(ReportMailSent)  # type: ignore[call-overload]
                         .where(ReportMailSent.schedule_id == schedule_id,  # type: ignore[arg-type]
                                ReportMailSent.day == day.isoformat())  # type: ignore[arg-type]
                         .values(**values))
            await s.commit()


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def build_message(mail: MailSettings, schedule: ScheduledReport, day: date,
                  report: dict[str, Any]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"Centrale report {schedule.id}: {day.isoformat()}"
    msg["From"] = mail.sender
    msg["To"] = ", ".join(schedule.to)
    lines = [f"Report {schedule.id} for {day.isoformat()} ({report['timezone']}), "
             f"per {schedule.by}, {schedule.granularity} intervals.", ""]
    for key, figures in [*report["totals"].items(), ("(all)", report["overall"])]:
        lines.append(f"{key}: " + ", ".join(f"{label} {_fmt(figures[name])}"
                                             for name, label in SUMMARY))
    if not report["totals"]:
        lines.append("No contacts that day.")
    lines += ["", "Definitions: docs/kpis.md. The intervals are attached (CSV, XLSX)."]
    msg.set_content("\n".join(lines))
    name = f"report-{schedule.id}-{day.isoformat()}"
    msg.add_attachment(to_csv(report).encode(), maintype="text", subtype="csv",
                       filename=f"{name}.csv")
    msg.add_attachment(to_xlsx(report), maintype="application", subtype=XLSX,
                       filename=f"{name}.xlsx")
    return msg


def deliver(mail: MailSettings, msg: EmailMessage) -> None:
    with smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=30) as smtp:
        if mail.starttls:
            smtp.starttls()
        if mail.username and mail.password is not None:
            smtp.login(mail.username, mail.password.get_secret_value())
        smtp.send_message(msg)
