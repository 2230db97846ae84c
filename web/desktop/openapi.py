"""The OpenAPI 3.1 document of /api, generated from the same pydantic models that
validate the bodies, so the document and the server cannot disagree on a field."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from web.desktop import api, calls, recording_routes
from web.desktop.assist import OPERATIONS as ASSIST_OPERATIONS

# (method, path, tag, summary, minimum role, body model)
OPERATIONS: list[tuple[str, str, str, str, str, type | None]] = [
    ("get", "/api/me", "auth", "The caller: user, role, agent and CSRF token", "agent", None),
    ("get", "/api/tasks", "tasks", "Tasks offered or assigned to the caller (supervisor: all)",
     "agent", None),
    ("post", "/api/offers/{offer_id}/accept", "tasks", "Accept an offer made to the caller",
     "agent", None),
    ("post", "/api/offers/{offer_id}/reject", "tasks", "Reject an offer", "agent", None),
    ("post", "/api/tasks/{task_id}/complete", "tasks",
     "End the task and start wrap-up with a disposition code and notes", "agent",
     api.CompleteBody),
    ("post", "/api/tasks/{task_id}/wrap-up/end", "tasks",
     "End wrap-up, with the code and notes chosen during it", "agent", api.EndWrapUpBody),
    ("post", "/api/tasks/{task_id}/transfer", "tasks",
     "Hand an accepted conversation to another queue or to a named agent (not taken: "
     "back to this agent, then the queue)", "agent", api.TransferBody),
    ("post", "/api/tasks/{task_id}/wrap-up/extend", "tasks", "Extend wrap-up", "agent",
     api.ExtendBody),
    ("get", "/api/agents", "agents", "Agents with their live state", "supervisor", None),
    ("post", "/api/agents/{agent_id}/state", "agents",
     "Set an agent's state (own, or any as supervisor)", "agent", api.StateBody),
    ("get", "/api/queues", "queues", "Queues (with live figures for supervisors)", "agent",
     None),
    ("get", "/api/stats", "queues", "Wallboard figures and the day's history", "supervisor",
     None),
    ("get", "/api/reports", "reports",
     "Contact figures per interval (15/30/60 min, day, week, month, site time zone) and "
     "per queue|channel|agent|wrap_up_code; format=csv|xlsx for a file", "supervisor",
     None),
    ("get", "/api/kpis", "reports",
     "Omnichannel KPIs of a period: FCR, channel switching, repeat contacts, AHT per "
     "channel with concurrency, occupancy and utilisation per agent, CSAT, NPS "
     "(definitions: docs/kpis.md)", "supervisor", None),
    ("get", "/api/customers/{customer_id}", "customers", "A customer, identities, cases",
     "agent", None),
    ("patch", "/api/customers/{customer_id}", "customers", "Update name, language, tags",
     "agent", api.CustomerPatch),
    ("post", "/api/customers/merge", "merge", "Merge two customers (agents: suggested only)",
     "agent", api.MergeBody),
    ("post", "/api/merges/{merge_id}/undo", "merge", "Undo a merge", "supervisor", None),
    ("get", "/api/cases/{case_id}", "cases", "A case with customer, timeline, conversations",
     "agent", None),
    ("get", "/api/cases/{case_id}/timeline", "timeline", "The whole cross-channel timeline",
     "agent", None),
    ("post", "/api/cases/{case_id}/notes", "timeline", "Add a note to the timeline", "agent",
     api.NoteBody),
    ("post", "/api/cases/{case_id}/close", "cases", "Close a case", "agent", None),
    ("post", "/api/cases/{case_id}/reopen", "cases", "Reopen a closed case", "agent", None),
    ("get", "/api/search", "customers",
     "Customers and cases by name, phone, e-mail, WhatsApp id or case id (q=)", "agent",
     None),
    ("post", "/api/conversations/{conversation_id}/messages", "messages",
     "Reply in a digital conversation of a case", "agent", api.MessageBody),
    ("post", "/api/calls", "tasks", "Click-to-call from the agent's phone", "agent",
     api.CallBody),
    ("post", "/api/callbacks", "tasks", "Schedule a callback for a case", "agent",
     api.CallbackBody),
    ("get", "/api/webhooks", "webhooks", "Outgoing webhook subscriptions", "admin", None),
    ("post", "/api/webhooks", "webhooks", "Subscribe a URL to case/task events", "admin",
     api.WebhookBody),
    ("delete", "/api/webhooks/{webhook_id}", "webhooks", "Deactivate a subscription", "admin",
     None),
    ("get", "/api/webhooks/deliveries", "webhooks", "Recent deliveries and their status",
     "admin", None),
    ("post", "/api/tokens", "auth", "Issue an API token (shown once)", "admin", api.TokenBody),
    ("delete", "/api/tokens/{token_id}", "auth", "Revoke an API token", "admin", None),
    ("post", "/api/admin/reload", "admin", "Reload the config; 422 with the errors", "admin",
     None),
]
OPERATIONS += ASSIST_OPERATIONS

_RANGE = [
    {"name": "from", "in": "query", "schema": {"type": "string"},
     "description": "YYYY-MM-DD (a local day) or an ISO date-time; default today"},
    {"name": "to", "in": "query", "schema": {"type": "string"},
     "description": "YYYY-MM-DD (included) or an ISO date-time (excluded)"},
]
QUERY_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/api/reports": [
        {"name": "by", "in": "query", "schema": {
            "enum": ["queue", "channel", "agent", "wrap_up_code"], "default": "queue"}},
        {"name": "granularity", "in": "query", "schema": {
            "enum": ["15min", "30min", "60min", "day", "week", "month"],
            "default": "60min"}},
        *_RANGE,
        {"name": "queue", "in": "query", "schema": {"type": "string"},
         "description": "comma-separated keys of `by` to keep (also agent, channel, "
                        "wrap_up_code); an unknown one is a 422 naming it"},
        {"name": "format", "in": "query", "schema": {
            "enum": ["json", "csv", "xlsx"], "default": "json"}},
        {"name": "page_size", "in": "query", "schema": {
            "type": "integer", "minimum": 1, "maximum": 1000},
         "description": "page by key: the rows of this many keys of `by` (sorted); the "
                        "answer's `page` says {number, size, pages, keys}; `totals` and "
                        "`overall` still cover every key. Default: no paging"},
        {"name": "page", "in": "query", "schema": {
            "type": "integer", "minimum": 1, "default": 1}},
    ],
    "/api/kpis": _RANGE,
}
RANGE_ERROR = {"description": "a bad parameter: `field` names it (by, granularity, from, "
                              "to, format, or the key filter), e.g. a range too large",
               "content": {"application/json": {"schema": {
                   "$ref": "#/components/schemas/Error"}}}}
OPERATIONS += calls.OPENAPI_OPERATIONS
OPERATIONS += recording_routes.OPENAPI_OPERATIONS

ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string"}, "field": {"type": "string"},
    "problems": {"type": "array", "items": {"type": "object"}}}}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR}
    for method, path, tag, summary, role, model in OPERATIONS:
        op: dict[str, Any] = {
            "tags": [tag], "summary": summary, "x-minimum-role": role,
            "operationId": f"{method}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
            "parameters": [{"name": name, "in": "path", "required": True,
                            "schema": {"type": "string"}}
                           for name in re.findall(r"{(\w+)}", path)],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                **{code: {"description": text, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}
                   for code, text in (("401", "not logged in / bad token"),
                                      ("403", "wrong role, not your task, or bad CSRF token"),
                                      ("404", "not found"))},
            },
        }
        if path in QUERY_PARAMETERS:
            op["parameters"] += QUERY_PARAMETERS[path]
            op["responses"]["422"] = RANGE_ERROR
        if model is not None:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[model.__name__] = schema
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
            for code, text in (("400", "malformed JSON"), ("413", "body too large"),
                               ("415", "not application/json"), ("422", "invalid fields")):
                op["responses"][code] = {"description": text, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Centrale API", "version": "1",
                 "description": "Contact-center tasks, agents, queues, customers, cases, "
                                "timeline, messages and merges. Authenticate with "
                                "`Authorization: Bearer <token>`, or a session cookie plus "
                                "the `X-CSRF-Token` header on writes."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "centrale_session"}}},
        "x-webhooks": {"signature": "X-Centrale-Signature: sha256=HMAC-SHA256(secret, "
                                    "'<X-Centrale-Timestamp>.<body>')",
                       "topics": ["case.*", "task.*", "customer.merged", "customer.unmerged"]},
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())
