"""A report as CSV or XLSX: the rows `ReportService.report` returns, written as they
are. Used by the web layer's downloads and by the scheduled e-mail, so both files are
the same."""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import Workbook

LEAD = ("interval_start", "key")


def columns(report: dict[str, Any]) -> list[str]:
    rows = report["rows"]
    rest = [k for k in (rows[0] if rows else report["overall"]) if k not in LEAD]
    return [*LEAD, *rest]


def _safe(v: Any) -> Any:
    # A text cell starting with = + - @ is a formula to a spreadsheet: quote it away.
    return "'" + v if isinstance(v, str) and v[:1] in "=+-@\t\r" else v


def to_csv(report: dict[str, Any]) -> str:
    cols = columns(report)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    for row in report["rows"]:
        writer.writerow({k: _safe(row.get(k)) for k in cols})
    return buf.getvalue()


def to_xlsx(report: dict[str, Any]) -> bytes:
    """Sheet "report" with the rows, sheet "totals" with a line per key; numbers stay
    numbers (a BI tool or Excel can sum them)."""
    cols = columns(report)
    wb = Workbook()
    ws = wb.active
    ws.title = "report"
    ws.append([f"{report['by']} / {report['granularity']}", report["from"], report["to"],
               report["timezone"]])
    ws.append(cols)
    for row in report["rows"]:
        ws.append([_safe(row.get(k)) for k in cols])
    totals = wb.create_sheet("totals")
    totals.append(["key", *cols[2:]])
    for key, figures in report["totals"].items():
        totals.append([_safe(key), *(figures.get(k) for k in cols[2:])])
    totals.append(["(all)", *(report["overall"].get(k) for k in cols[2:])])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
