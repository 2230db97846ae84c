"""The reports over HTTP as a supervisor or a BI tool uses them: JSON, CSV and XLSX read
back, the page with its chart data, roles, and bad requests answered 422 naming the
field (never a 500)."""

from __future__ import annotations

import csv
import io
import json
import re
from html import unescape

from openpyxl import load_workbook

from cases import IdentityRef


async def seed(web_env) -> None:
    h = web_env.h
    res = await h.ctx.cases.resolve(IdentityRef("phone", "+31201112233"))
    for agent, code in (("anna", "sale"), ("bram", "=HYPERLINK(\"x\")")):
        offer = await h.acd.offer(agent_id=agent, case_id=res.case.id,
                                  customer_id=res.customer.id, channel="voice",
                                  queue_id="sales")
        await h.acd.accept(offer["offer_id"], agent)
        await h.acd.complete(offer["task_id"], agent, code, None)
        await h.acd.end_wrap_up(agent, offer["task_id"])
    await web_env.settle()


async def test_csv_and_xlsx_read_back(web_env) -> None:
    await seed(web_env)
    await web_env.login("sam")
    base = "/api/reports?by=agent&granularity=day"
    data = await (await web_env.client.get(base)).json()
    assert data["timezone"] == web_env.h.ctx.config.server.timezone
    resp = await web_env.client.get(base + "&format=csv")
    assert resp.headers["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert {r["key"]: r["aht_seconds"] for r in rows} == {"anna": "60.0", "bram": "60.0"}
    resp = await web_env.client.get(base + "&format=xlsx")
    assert resp.content_type.endswith("spreadsheetml.sheet")
    wb = load_workbook(io.BytesIO(await resp.read()))
    sheet = list(wb["report"].iter_rows(values_only=True))
    header = list(sheet[1])
    lines = [dict(zip(header, r, strict=True)) for r in sheet[2:]]
    assert {r["key"]: r["answered"] for r in lines} == {"anna": 1, "bram": 1}
    assert [r["aht_seconds"] for r in lines] == [60, 60]  # numbers stay numbers
    totals = {r[0]: r for r in wb["totals"].iter_rows(values_only=True)}
    assert totals["(all)"][1:3] == (2, 2)  # contacts, offered
    codes = await web_env.client.get("/api/reports?by=wrap_up_code&format=xlsx")
    wb = load_workbook(io.BytesIO(await codes.read()))
    keys = [r[1] for r in list(wb["report"].iter_rows(values_only=True))[2:]]
    assert "'=HYPERLINK(\"x\")" in keys  # a formula from an agent is text, not a formula


async def test_page_shows_table_chart_and_kpis(web_env) -> None:
    await seed(web_env)
    await web_env.login("sam")
    page = await web_env.client.get("/reports?by=queue&granularity=60min")
    assert page.status == 200
    html = await page.text()
    assert "/static/vendor/uplot-1.6.32/uPlot.iife.min.js" in html
    chart = json.loads(unescape(re.search(r'data-chart="([^"]*)"', html).group(1)))
    (label,) = chart["labels"]
    assert chart["series"]["answered"]["sales"][label] == 2
    assert 'id="kpi-table"' in html and "First-contact resolution" in html
    vendor = await web_env.client.get("/static/vendor/uplot-1.6.32/uPlot.iife.min.js")
    assert vendor.status == 200
    bad = await web_env.client.get("/reports?from=2026-13-01")
    assert bad.status == 422 and 'id="report-error"' in await bad.text()


async def test_bad_requests_name_the_field(web_env) -> None:
    await web_env.login("sam")
    cases = {
        "/api/reports?by=moon": "by",
        "/api/reports?granularity=5min": "granularity",
        "/api/reports?from=yesterday": "from",
        "/api/reports?from=2026-01-10&to=2026-01-01": "to",
        "/api/reports?from=2026-01-01&to=2026-03-01&granularity=15min": "to",  # too large
        "/api/reports?from=2020-01-01&to=2026-01-01&granularity=day": "to",
        "/api/reports?by=queue&queue=sales,nope": "queue",
        "/api/reports?format=pdf": "format",
        "/api/kpis?to=2026-02-30": "to",
    }
    for url, field in cases.items():
        resp = await web_env.client.get(url)
        assert resp.status == 422, url
        body = await resp.json()
        assert body["field"] == field, (url, body)
        assert body["problems"][0]["field"] == field
    ok = await web_env.client.get("/api/reports?from=2026-01-01&to=2026-01-31&granularity=15min")
    assert ok.status == 200


async def test_roles(web_env) -> None:
    await web_env.login("anna")
    for path in ("/api/reports", "/api/kpis", "/reports?format=csv"):
        assert (await web_env.client.get(path)).status == 403, path


async def test_openapi_documents_the_report_parameters(web_env) -> None:
    doc = await (await web_env.client.get("/api/openapi.json")).json()
    op = doc["paths"]["/api/reports"]["get"]
    names = {p["name"] for p in op["parameters"]}
    assert {"by", "granularity", "from", "to", "format", "queue"} <= names
    assert "422" in op["responses"] and op["x-minimum-role"] == "supervisor"
    assert "/api/kpis" in doc["paths"]


async def test_agent_reports_page_by_key_on_the_api_and_the_screen(web_env) -> None:
    await seed(web_env)
    await web_env.login("sam")
    base = "/api/reports?by=agent&granularity=60min"
    whole = await (await web_env.client.get(base)).json()
    assert "page" not in whole  # the API pages only when asked
    first = await (await web_env.client.get(base + "&page_size=1")).json()
    second = await (await web_env.client.get(base + "&page_size=1&page=2")).json()
    assert first["page"] == {"number": 1, "size": 1, "pages": 2, "keys": 2}
    assert [r["key"] for r in first["rows"]] == ["anna"]
    assert [r["key"] for r in second["rows"]] == ["bram"]
    assert first["rows"] + second["rows"] == sorted(
        whole["rows"], key=lambda r: (r["key"], r["interval_start"]))
    assert first["totals"] == second["totals"] == whole["totals"]
    bad = await web_env.client.get(base + "&page_size=0")
    assert bad.status == 422 and (await bad.json())["field"] == "page_size"

    page = await web_env.client.get("/reports?by=agent&granularity=60min&page_size=1&page=2")
    html = await page.text()
    assert page.status == 200 and 'id="page-of"' in html
    assert 'id="page-previous"' in html and 'id="page-next"' not in html
    assert "page=1" in unescape(re.search(r'id="page-previous" href="([^"]*)"',
                                          html).group(1))
