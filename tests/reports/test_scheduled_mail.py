"""The scheduled report arrives by e-mail at a real SMTP peer (aiosmtpd): at the set
site time, yesterday's figures in the text and as CSV and XLSX attachments, once per
day even with two nodes running the schedule."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from openpyxl import load_workbook
from seed import History, config, service

from reports.mailer import ReportMailer


class Mailbox:
    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), msg))
        self.arrived.set()
        return "250 OK"


@pytest.fixture
async def mailbox() -> AsyncIterator[tuple[Mailbox, int]]:
    box = Mailbox()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(box), "127.0.0.1", 0)
    yield box, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def mail_config(port: int, **extra):
    return config(mail={"smtp_port": port, "sender": "reports@centrale.example"},
                  scheduled=[{"id": "daily", "at": "07:00", "by": "queue",
                              "granularity": "60min",
                              "to": ["lead@centrale.example", "ops@centrale.example"]}],
                  **extra)


async def test_the_daily_report_arrives_at_seven_once(database, mailbox) -> None:
    box, port = mailbox
    cfg = mail_config(port)
    # 5 January 2026, 05:59 UTC = 06:59 in Amsterdam
    svc = service(database, cfg, datetime(2026, 1, 5, 5, 59, tzinfo=UTC))
    h = History(svc)
    await h.contact(datetime(2026, 1, 4, 9, 0, tzinfo=UTC), wait=10, talk=100, wrap=20)
    await h.contact(datetime(2026, 1, 4, 9, 30, tzinfo=UTC), wait=40, abandon=True)
    await h.contact(datetime(2026, 1, 5, 5, 0, tzinfo=UTC), wait=5)  # today: not in it

    clock = svc.clock

    async def fast_sleep(seconds: float) -> None:  # time passes for the schedule only
        clock.advance(seconds)  # type: ignore[attr-defined]
        await asyncio.sleep(0)

    node_a = ReportMailer(svc, node_id="a", sleep=fast_sleep)
    node_b = ReportMailer(svc, node_id="b")
    assert await node_a.send_due(clock.now()) == []  # 06:59: not yet
    await node_a.start()  # the loop sleeps until 07:00 and sends
    await asyncio.wait_for(box.arrived.wait(), 10)
    await node_a.stop()
    assert await node_b.send_due(clock.now()) == []  # the other node: already sent
    assert await node_a.send_due(clock.now()) == []

    (rcpts, msg), = box.received
    assert sorted(rcpts) == ["lead@centrale.example", "ops@centrale.example"]
    assert msg["Subject"] == "Centrale report daily: 2026-01-04"
    assert msg["From"] == "reports@centrale.example"
    text = msg.get_body(("plain",)).get_content()
    assert "sales: offered 2, answered 1, abandoned 1, service level 0.50" in text
    attachments = {a.get_filename(): a.get_content() for a in msg.iter_attachments()}
    rows = list(csv.DictReader(io.StringIO(attachments["report-daily-2026-01-04.csv"])))
    assert [(r["interval_start"], r["offered"]) for r in rows] == [
        ("2026-01-04T10:00:00+01:00", "2")]
    wb = load_workbook(io.BytesIO(attachments["report-daily-2026-01-04.xlsx"]))
    assert list(wb["report"].iter_rows(values_only=True))[2][1] == "sales"


async def test_an_unreachable_relay_is_logged_and_not_retried_as_sent(database) -> None:
    cfg = mail_config(9)  # nothing listens on port 9
    svc = service(database, cfg, datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    mailer = ReportMailer(svc)
    assert await mailer.send_due(svc.clock.now()) == []
    from sqlmodel import select

    from reports.tables import ReportMailSent

    async with database.session() as s:
        (row,) = list(await s.exec(select(ReportMailSent)))
    assert row.sent_at is None and row.error and "ConnectionRefusedError" in row.error
