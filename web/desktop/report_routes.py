"""Report and KPI routes: the page with its chart, the REST API (JSON, CSV, XLSX) and the
omnichannel KPIs. Figures come from `reports.ReportService` (ctx.services["reports"]);
these handlers parse, render and export only."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from reports import ReportQueryError, ReportService, parse_query
from reports.exports import to_csv, to_xlsx
from web.desktop.auth import requires
from web.desktop.pages import render
from web.desktop.state import ctx_of

routes = web.RouteTableDef()
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHART_FIGURES = ("contacts", "offered", "answered", "abandoned", "service_level",
                 "asa_seconds", "aht_seconds")
# The page shows an agent report 25 agents at a time (a month of hours by 200 agents is
# 148,800 rows: too many to build in a request and to read on a screen); the API and
# the exports page only when asked (`page_size`). docs/kpis.md.
SCREEN_PAGE_SIZE = {"agent": 25}


def service_of(request: web.Request) -> ReportService:
    svc = ctx_of(request).services.get("reports")
    if svc is None:
        raise web.HTTPServiceUnavailable(text=json.dumps({"error": "reports are not wired"}),
                                         content_type="application/json")
    return svc  # type: ignore[no-any-return]


def _invalid(exc: ReportQueryError) -> web.HTTPException:
    return web.HTTPUnprocessableEntity(
        text=json.dumps({"error": exc.message, "field": exc.field,
                         "problems": [{"field": exc.field, "message": exc.message}]}),
        content_type="application/json")


async def _report(request: web.Request) -> dict[str, Any]:
    ctx = ctx_of(request)
    try:
        q = parse_query(dict(request.query), ctx.config, ctx.clock.now())
    except ReportQueryError as exc:
        raise _invalid(exc) from None
    return await service_of(request).report(q)


def _export(report: dict[str, Any], fmt: str) -> web.StreamResponse:
    name = f"report-{report['by']}-{report['granularity']}-{report['from'][:10]}"
    if fmt == "csv":
        return web.Response(text=to_csv(report), content_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"'})
    return web.Response(body=to_xlsx(report), content_type=XLSX, headers={
        "Content-Disposition": f'attachment; filename="{name}.xlsx"'})


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv", "xlsx"):
        raise _invalid(ReportQueryError("format", "must be one of json, csv, xlsx"))
    return fmt


@routes.get("/api/reports")
@requires("supervisor")
async def api_reports(request: web.Request) -> web.StreamResponse:
    fmt = _format(request)
    report = await _report(request)
    if fmt in ("csv", "xlsx"):
        return _export(report, fmt)
    return web.json_response(report)


@routes.get("/api/kpis")
@requires("supervisor")
async def api_kpis(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    params = {**request.query, "granularity": "day"}
    try:
        q = parse_query(params, ctx.config, ctx.clock.now())
    except ReportQueryError as exc:
        raise _invalid(exc) from None
    return web.json_response(await service_of(request).kpis(q.start, q.end))


@routes.get("/reports")
@requires("supervisor")
async def reports_page(request: web.Request) -> web.StreamResponse:
    fmt = _format(request)
    ctx = ctx_of(request)
    error: ReportQueryError | None = None
    params = dict(request.query)
    default_size = SCREEN_PAGE_SIZE.get(params.get("by", "queue"))
    if fmt == "json" and default_size and not params.get("page_size"):
        params["page_size"] = str(default_size)
    try:
        q = parse_query(params, ctx.config, ctx.clock.now())
    except ReportQueryError as exc:
        error = exc
        q = parse_query({}, ctx.config, ctx.clock.now())
    if error is not None and fmt in ("csv", "xlsx"):
        raise _invalid(error)
    svc = service_of(request)
    report = await svc.report(q)
    if fmt in ("csv", "xlsx"):
        return _export(report, fmt)
    kpis = await svc.kpis(q.start, q.end)
    chart = {"figures": CHART_FIGURES, "labels": sorted({r["interval_start"]
                                                         for r in report["rows"]}),
             "series": _series(report), "from": q.start.timestamp(),
             "to": q.end.timestamp(), "timezone": report["timezone"]}
    query = {k: v for k, v in request.query.items() if k != "format"}
    pager = None
    if report.get("page"):
        base = {k: v for k, v in query.items() if k != "page"}
        pager = {**report["page"], "base": base}
    resp = render(request, "reports.html", report=report, kpis=kpis, error=error, pager=pager,
                  query=query, chart_json=json.dumps(chart),
                  # the period, for the assist panel the page includes (data-from/to)
                  start=q.start.isoformat(), end=q.end.isoformat(),
                  params={"by": q.by, "granularity": q.granularity,
                          "from": request.query.get("from", q.start.date().isoformat()),
                          "to": request.query.get("to", "")})
    if error is not None:
        resp.set_status(422)
    return resp


def _series(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{figure: {key: {interval_start: value}}} for the chart script."""
    out: dict[str, dict[str, dict[str, Any]]] = {f: {} for f in CHART_FIGURES}
    for row in report["rows"]:
        for f in CHART_FIGURES:
            out[f].setdefault(row["key"], {})[row["interval_start"]] = row[f]
    return out
