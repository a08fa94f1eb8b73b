"""The control API's route table and its OpenAPI 3.1 document (GET /api/openapi.json).

`ROUTES` is the single table perpbot.control.server builds its router and auth/engine guard
from; `openapi_document` describes the same table, the answers' schemas taken from their
pydantic models (perpbot.control.models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perpbot.control.models import RESPONSE_MODELS, component_schemas

DEFAULT_DEPTH = 10
MAX_DEPTH = 500
MAX_TRADE_HOURS = 24 * 30


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler_name: str
    summary: str
    protected: bool = False  # state-changing: needs the bearer token
    engine: bool = False  # answers 503 when no engine is wired
    params: tuple[tuple[str, str, str], ...] = ()  # (name, in, description)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/websocket/status", "websocket_status",
          "Per venue: connected, since when, last message age, reconnects, resyncs, latency; "
          "its private stream under `private` (null when it has none)"),
    Route("GET", "/api/books/{venue}/{symbol}", "book",
          "Best bid/ask and top levels of one book, validity and age",
          params=(("venue", "path", "okx | hyperliquid | binance | bybit"), ("symbol", "path", "native symbol"),
                  ("depth", "query", f"levels per side, 1..{MAX_DEPTH} (default {DEFAULT_DEPTH})"))),
    Route("GET", "/metrics", "metrics", "Prometheus exposition"),
    Route("GET", "/health/live", "live", "Liveness: the event loop answers"),
    Route("GET", "/health/ready", "ready", "Readiness: feeds connected, books usable, health >= 70"),
    Route("GET", "/api/health", "health_detail", "Health score and its components"),
    Route("GET", "/api/config", "config", "The configuration in force, secrets redacted"),
    Route("GET", "/api/openapi.json", "openapi", "This document"),
    Route("GET", "/api/balances", "balances", "Per venue: equity, available, used margin (USDT)", engine=True),
    Route("GET", "/api/positions", "positions", "Open positions per venue and symbol", engine=True),
    Route("POST", "/api/sync/positions", "sync_positions",
          "Reconcile local positions with the venues; returns what changed", protected=True, engine=True),
    Route("POST", "/api/trading/pause", "pause", "Stop opening new trades now (positions stay)",
          protected=True, engine=True),
    Route("POST", "/api/trading/resume", "resume", "Resume trading after a pause", protected=True, engine=True),
    Route("GET", "/api/trading/state", "trading_state", "Current trading state", engine=True),
    Route("GET", "/api/orders/active", "active_orders", "Orders still working at any venue", engine=True),
    Route("POST", "/api/positions/close-all", "close_all",
          "Flatten every position on every venue (reduce-only); result per position", protected=True, engine=True),
    Route("GET", "/api/pnl/today", "pnl_today", "Today's PnL: realised, unrealised, fees, funding", engine=True),
    Route("GET", "/api/trades", "trades", "Trade history", engine=True,
          params=(("hours", "query", f"look-back in hours, 0 < hours <= {MAX_TRADE_HOURS} (default 24)"),)),
)


def response_schema(handler_name: str) -> dict[str, Any]:
    """The documented schema of a route's answer: a reference to its model's component."""
    return {"$ref": f"#/components/schemas/{RESPONSE_MODELS[handler_name].__name__}"}


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
        if route.protected:
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {"description": "Missing or wrong bearer token"}
            op["responses"]["403"] = {"description": "No token configured and not bound to loopback"}
        if route.handler_name == "ready":
            op["responses"]["503"] = {"description": "Not ready (same body as 200)",
                                      "content": {"application/json": {"schema": response_schema("ready")}}}
        if route.engine:
            op["responses"]["503"] = {"description": "Trading engine not running (market-data-only)"}
        if route.params:
            op["parameters"] = [
                {"name": name, "in": where, "required": where == "path", "description": text,
                 "schema": {"type": "integer" if name in ("depth", "hours") else "string"}}
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
