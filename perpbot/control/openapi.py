"""The control API's route table and its OpenAPI 3.1 document (GET /api/openapi.json).

`ROUTES` is the single table perpbot.control.server builds its router and auth/engine guard
from; `openapi_document` describes the same table, the answers' schemas taken from their
pydantic models (perpbot.control.models). Each route has a scope: `public` (health, metrics),
`read` (open unless http.read_token is set) or `trade` (state-changing: always the trade token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from perpbot.control.attribution_export import MAX_ATTRIBUTION_DAYS
from perpbot.control.models import RESPONSE_MODELS, component_schemas

DEFAULT_DEPTH = 10
MAX_DEPTH = 500
MAX_TRADE_HOURS = 24 * 30
MAX_AUDIT_HOURS = 24 * 30
MAX_WAIT_S = 60


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler_name: str
    summary: str
    scope: Literal["public", "read", "trade"] = "read"
    engine: bool = False  # answers 503 when no engine is wired
    params: tuple[tuple[str, str, str], ...] = ()  # (name, in, description)

    @property
    def protected(self) -> bool:
        """State-changing: needs the trade token, a JSON body (if any) and no foreign Origin."""
        return self.scope == "trade"


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/websocket/status", "websocket_status",
          "Per venue: connected, since when, last message age, reconnects, resyncs, latency; "
          "its private stream under `private` (null when it has none)"),
    Route("GET", "/api/books/{venue}/{symbol}", "book",
          "Best bid/ask and top levels of one book, validity and age",
          params=(("venue", "path", "okx | hyperliquid | binance | bybit"), ("symbol", "path", "native symbol"),
                  ("depth", "query", f"levels per side, 1..{MAX_DEPTH} (default {DEFAULT_DEPTH})"))),
    Route("GET", "/metrics", "metrics", "Prometheus exposition", scope="public"),
    Route("GET", "/health/live", "live", "Liveness: the event loop answers", scope="public"),
    Route("GET", "/health/ready", "ready", "Readiness: feeds connected, books usable, health >= 70",
          scope="public"),
    Route("GET", "/api/health", "health_detail", "Health score and its components"),
    Route("GET", "/api/config", "config", "The configuration in force, secrets redacted"),
    Route("GET", "/api/openapi.json", "openapi", "This document"),
    Route("GET", "/api/balances", "balances", "Per venue: equity, available, used margin (USDT)", engine=True),
    Route("GET", "/api/positions", "positions", "Open positions per venue and symbol", engine=True),
    Route("POST", "/api/sync/positions", "sync_positions",
          "Reconcile local positions with the venues; returns what changed (with dry_run=true: what it "
          "would change, changing nothing). Answers within http.operation_wait_s with the result, else "
          "202 with an operation to poll; a sync asked while one runs joins it",
          scope="trade", engine=True,
          params=(("dry_run", "query", "true: only report the differences, apply nothing (default false)"),)),
    Route("POST", "/api/trading/pause", "pause", "Stop opening new trades now (positions stay)",
          scope="trade", engine=True),
    Route("POST", "/api/trading/resume", "resume", "Resume trading after a pause", scope="trade", engine=True),
    Route("GET", "/api/trading/state", "trading_state", "Current trading state", engine=True),
    Route("GET", "/api/orders/active", "active_orders", "Orders still working at any venue", engine=True),
    Route("POST", "/api/positions/close-all", "close_all",
          "Flatten every position on every venue (reduce-only); result per position. Answers within "
          "http.operation_wait_s with the result, else 202 with an operation to poll; a close-all asked "
          "while one runs joins it (acts once)", scope="trade", engine=True),
    Route("GET", "/api/operations/{operation_id}", "operation",
          "A close-all or sync operation: running, done (with its result) or failed (with the error)",
          params=(("operation_id", "path", "the id a 202 answer named"),
                  ("wait", "query", f"seconds to wait for it to finish, 0..{MAX_WAIT_S} "
                                    "(capped at http.operation_wait_s; default 0)"))),
    Route("GET", "/api/audit", "audit", "Audit trail: every state-changing request and every refusal",
          params=(("hours", "query", f"look-back in hours, 0 < hours <= {MAX_AUDIT_HOURS} (default 24)"),)),
    Route("GET", "/api/pnl/today", "pnl_today", "Today's PnL: realised, unrealised, fees, funding", engine=True),
    Route("GET", "/api/trades", "trades", "Trade history", engine=True,
          params=(("hours", "query", f"look-back in hours, 0 < hours <= {MAX_TRADE_HOURS} (default 24)"),)),
    Route("GET", "/api/trades/{trade_id}", "trade",
          "One trade's attribution per leg: realised against expected prices (depth and top of book), "
          "slippage, fees, funding for the time held, basis PnL and the total", engine=True,
          params=(("trade_id", "path", "a trade id (trade_id of /api/trades)"),)),
    Route("GET", "/api/pnl/attribution", "pnl_attribution",
          "Per UTC day, strategy and venue: the attribution of the trades closed (format=csv: a CSV export)",
          engine=True,
          params=(("days", "query", f"UTC days back, today included, 1..{MAX_ATTRIBUTION_DAYS} (default 1)"),
                  ("format", "query", "json (default) | csv"))),
)


def response_schema(handler_name: str) -> dict[str, Any]:
    """The documented schema of a route's answer: a reference to its model's component."""
    return {"$ref": f"#/components/schemas/{RESPONSE_MODELS[handler_name].__name__}"}


def _param_schema(name: str) -> dict[str, Any]:
    if name in ("depth", "hours", "wait", "days"):
        return {"type": "integer"}
    if name == "dry_run":
        return {"type": "boolean"}
    return {"type": "string"}


def openapi_document(routes: tuple[Route, ...] = ROUTES) -> dict[str, Any]:
    """OpenAPI 3.1 description generated from the same table that builds the router, the
    answers' schemas from their pydantic models (perpbot.control.models)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        ok: dict[str, Any] = {"description": "OK"}
        if route.handler_name in RESPONSE_MODELS:
            ok["content"] = {"application/json": {"schema": response_schema(route.handler_name)}}
        else:  # /metrics: Prometheus text exposition
            ok["content"] = {"text/plain": {"schema": {"type": "string"}}}
        op: dict[str, Any] = {
            "operationId": route.handler_name,
            "summary": route.summary,
            "responses": {
                "200": ok,
                "400": {"description": "Bad input", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "404": {"description": "Not found"},
            },
        }
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        if route.scope != "public":
            # Read routes need a token only when http.read_token is set (then the read or the trade token).
            op["security"] = [{"bearer": []}] if route.protected else [{}, {"bearer": []}]
            op["responses"]["401"] = {"description": "Missing, malformed or wrong bearer token", "content": error}
            op["responses"]["403"] = {"description": "Token without the route's scope, foreign Origin, or a "
                                                     "non-loopback Host while bound to loopback", "content": error}
        if route.protected:
            op["parameters"] = [{"name": "Idempotency-Key", "in": "header", "required": False,
                                 "description": "a retry with the same key within http.idempotency_window_s "
                                                "gets the first answer (acts once)",
                                 "schema": {"type": "string", "maxLength": 200}}]
            op["responses"]["415"] = {"description": "A body that is not JSON", "content": error}
            op["responses"]["422"] = {"description": "Idempotency-Key reused for another request", "content": error}
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}
        if route.handler_name in ("close_all", "sync_positions"):
            op["responses"]["202"] = {"description": "Still running: poll the operation",
                                      "content": {"application/json": {"schema": response_schema("operation")}}}
        if route.handler_name == "ready":
            op["responses"]["503"] = {"description": "Not ready (same body as 200)",
                                      "content": {"application/json": {"schema": response_schema("ready")}}}
        if route.engine:
            op["responses"]["503"] = {"description": "Trading engine not running (market-data-only)"}
        if route.params:
            op["parameters"] = op.get("parameters", []) + [
                {"name": name, "in": where, "required": where == "path", "description": text,
                 "schema": _param_schema(name)}
                for name, where, text in route.params
            ]
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "perpbot control API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": component_schemas(),
        },
    }
