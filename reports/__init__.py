"""KPIs, reports and survey figures (DESIGN.md: a domain package beside `ivr/`; may
import core, config, cases, queues). Definitions: docs/kpis.md."""

from reports.query import ReportQuery, ReportQueryError, parse_query
from reports.service import ReportService

__all__ = ["ReportQuery", "ReportQueryError", "ReportService", "parse_query"]
