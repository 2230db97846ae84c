"""A report request, checked: which field is wrong is named in the error, so the REST API
answers 422 with it and the page shows it beside the field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from config.schema import CentraleConfig
from reports.intervals import GRANULARITIES, SUB_DAILY, local_midnight

BYS = ("queue", "channel", "agent", "wrap_up_code")


class ReportQueryError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ReportQuery:
    by: str
    granularity: str
    start: datetime  # aware, site time zone
    end: datetime  # exclusive
    keys: tuple[str, ...] = ()
    # Paging by key (an agent report's rows are agents × intervals: 148,800 for a month
    # of hours by 200 agents): the rows of `page_size` keys (sorted), page `page`
    # (1-based); the totals per key and overall still cover every key. None: all rows.
    page: int = 1
    page_size: int | None = None

MAX_PAGE_SIZE = 1000


def _moment(value: str, field: str, tz: ZoneInfo, *, end: bool) -> datetime:
    """A date is a whole local day (`to` includes it); a datetime without offset is
    local time; one with an offset is that instant."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return local_midnight(day + timedelta(days=1) if end else day, tz)
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ReportQueryError(field, f"{value[:40]!r} is not an ISO date "
                                      "(YYYY-MM-DD) or date-time") from None
    return at.replace(tzinfo=tz) if at.tzinfo is None else at.astimezone(tz)


def parse_query(params: dict[str, str], config: CentraleConfig, now: datetime) -> ReportQuery:
    tz = ZoneInfo(config.server.timezone)
    by = params.get("by", "queue")
    if by not in BYS:
        raise ReportQueryError("by", f"must be one of {', '.join(BYS)}")
    granularity = params.get("granularity") or params.get("interval") or "60min"
    granularity = {"hour": "60min", "15": "15min", "30": "30min", "60": "60min"}.get(
        granularity, granularity)
    if granularity not in GRANULARITIES:
        raise ReportQueryError("granularity", f"must be one of {', '.join(GRANULARITIES)}")
    today = local_midnight(now.astimezone(tz).date(), tz)
    start = _moment(params["from"], "from", tz, end=False) if params.get("from") else today
    end = (_moment(params["to"], "to", tz, end=True) if params.get("to")
           else local_midnight(start.date() + timedelta(days=1), tz))
    if end <= start:
        raise ReportQueryError("to", "must be after from")
    limit = (config.reports.max_interval_range_days if granularity in SUB_DAILY
             else config.reports.max_daily_range_days)
    if end - start > timedelta(days=limit):
        raise ReportQueryError("to", f"the range is at most {limit} days for "
                                     f"{granularity} reports")
    keys: tuple[str, ...] = ()
    raw = params.get(by) or params.get("keys")
    if raw:
        keys = tuple(k for k in raw.split(",") if k)
        known: set[str] | None = None
        if by == "queue":
            known = {q.id for q in config.queues}
        elif by == "agent":
            known = {a.id for a in config.agents}
        elif by == "wrap_up_code":
            known = {w.id for w in config.wrap_up_codes}
        elif by == "channel":
            known = {"voice", "whatsapp", "webchat", "email", "sms"}
        unknown = [k for k in keys if known is not None and k not in known]
        if unknown:
            raise ReportQueryError(by, f"unknown {by} {unknown[0][:64]!r}")
    page = _positive(params, "page", 1, 1_000_000) or 1
    page_size = _positive(params, "page_size", None, MAX_PAGE_SIZE)
    return ReportQuery(by, granularity, start, end, keys, page, page_size)


def _positive(params: dict[str, str], field: str, default: int | None, limit: int
              ) -> int | None:
    raw = params.get(field)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= limit:
        raise ReportQueryError(field, f"must be a whole number from 1 to {limit}")
    return int(raw)
