"""Fixtures for the ops checks: repo paths, and a loopback HTTP server speaking the bot's control-API shapes.

The stand-in API is for testing the operator scripts' decisions (health-check.sh, validate_perpbot_v2.py)
against states a real bot is hard to put in on demand (a feed down, a leaked secret, a critical alert).
The real bot is exercised end to end in test_deployed_stack.py.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCRIPTS = DEPLOY / "scripts"
TOKEN = "ops-test-token-5b1f"


def loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy_state() -> dict[str, Any]:
    venues = {"okx": ["BTC-USDT-SWAP"], "hyperliquid": ["BTC"]}
    return {
        "/health/live": (200, {"status": "ok"}),
        "/health/ready": (200, {"ready": True}),
        "/api/websocket/status": (200, {v: {"connected": True, "connected_since": 1700000000.0, "last_message_age_s": 0.1,
                                            "reconnects": 0, "latency_ms": 42.0} for v in venues}),
        "/api/balances": (200, [{"venue": v, "equity": "10000", "available": "9000", "used_margin": "1000"} for v in venues]),
        "/api/positions": (200, [{"venue": "okx", "symbol": "BTC-USDT-SWAP", "side": "long", "size": "0.01",
                                  "entry_price": "60000", "mark_price": "60010", "unrealized_pnl": "0.1", "leverage": "3"}]),
        "/api/orders/active": (200, []),
        "/api/trading/state": (200, {"state": "ACTIVE", "reason": None}),
        "/api/pnl/today": (200, {"realized": "1.5", "unrealized": "0.1", "fees": "0.2", "funding": "0.05"}),
        "/api/trades": (200, []),
        "/api/config": (200, {"mode": "sim", "api_token": "**********",
                              "risk": {"max_position_size_usdt": "1000", "max_leverage": "3"},
                              "venues": {v: {"enabled": True, "symbols": s, "api_key": None, "api_secret": "**********"}
                                         for v, s in venues.items()}}),
        "/api/books/okx/BTC-USDT-SWAP": (200, {"valid": True, "best_bid": "60000.1", "best_ask": "60000.2"}),
        "/api/books/hyperliquid/BTC": (200, {"valid": True, "best_bid": "60001", "best_ask": "60002"}),
        "/api/openapi.json": (200, {"openapi": "3.0.3", "paths": {
            "/api/websocket/status": {"get": {}}, "/api/balances": {"get": {}}, "/api/positions": {"get": {}},
            "/api/sync/positions": {"post": {}}, "/api/trading/pause": {"post": {}}, "/api/trading/resume": {"post": {}},
            "/api/orders/active": {"get": {}}, "/api/positions/close-all": {"post": {}}, "/api/config": {"get": {}},
            "/metrics": {"get": {}}}}),
        "/metrics": (200, METRICS_TEXT),
        "/api/v2/alerts": (200, []),
        "POST /api/sync/positions": (200, {"changed": []}),
    }


METRICS_TEXT = "\n".join(
    ["# TYPE perpbot_system_health gauge", "perpbot_system_health 96.0",
     "# TYPE perpbot_websocket_connected gauge",
     'perpbot_websocket_connected{exchange="okx"} 1.0', 'perpbot_websocket_connected{exchange="hyperliquid"} 1.0']
    + [f"# TYPE {n} counter" for n in ("perpbot_orders", "perpbot_orders_success", "perpbot_arbitrage_opportunities",
                                       "perpbot_websocket_messages", "perpbot_websocket_reconnects", "perpbot_book_resyncs",
                                       "perpbot_risk_refusals", "perpbot_orders_rejected")]
    + ['perpbot_orders_total{exchange="okx",side="buy"} 3.0', 'perpbot_orders_success_total{exchange="okx",side="buy"} 3.0',
       'perpbot_arbitrage_opportunities_total{strategy="price_spread"} 7.0']
    + [f"# TYPE {n} histogram" for n in ("perpbot_order_execution_duration_seconds", "perpbot_websocket_latency_seconds",
                                         "perpbot_event_loop_lag_seconds")]
    + ['perpbot_order_execution_duration_seconds_count{exchange="okx"} 3.0',
       'perpbot_websocket_latency_seconds_count{exchange="okx"} 30.0', "perpbot_event_loop_lag_seconds_count 10.0"]
    + [f"# TYPE {n} gauge\n{n} 0.0" for n in (
        "perpbot_capital_utilization_percent", "perpbot_active_positions", "perpbot_pnl_realized_usdt",
        "perpbot_pnl_unrealized_usdt", "perpbot_fees_paid_usdt", "perpbot_funding_pnl_usdt", "perpbot_unhedged_notional_usdt")]
    + ["# TYPE perpbot_websocket_latency_current_seconds gauge", 'perpbot_websocket_latency_current_seconds{exchange="okx"} 0.04',
       "# TYPE perpbot_books_valid gauge", 'perpbot_books_valid{exchange="okx"} 1.0',
       "# TYPE perpbot_equity_usdt gauge", 'perpbot_equity_usdt{exchange="okx"} 10000.0',
       "# TYPE perpbot_trading_state gauge", 'perpbot_trading_state{state="ACTIVE"} 1.0',
       "# TYPE perpbot_component_health gauge", 'perpbot_component_health{component="feeds"} 1.0']
) + "\n"


class FakeBotAPI:
    """ThreadingHTTPServer on 127.0.0.1:<ephemeral>; `state` maps path (or 'POST path') -> (status, body)."""

    def __init__(self) -> None:
        self.state = healthy_state()
        self.requests: list[tuple[str, str, str | None]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                api.requests.append((method, self.path, self.headers.get("Authorization")))
                if method == "POST":
                    if path in ("/api/trading/pause", "/api/positions/close-all", "/api/trading/resume",
                                "/api/sync/positions") and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                        status, body = 401, {"error": "missing or wrong bearer token"}
                    else:
                        status, body = api.state.get(f"POST {path}", (200, {"ok": True}))
                else:
                    status, body = api.state.get(path, (404, {"error": f"no route {path}"}))
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._answer("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def set(self, path: str, status: int, body: Any) -> None:
        self.state[path] = (status, copy.deepcopy(body))

    def __enter__(self) -> "FakeBotAPI":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake_api():
    with FakeBotAPI() as api:
        yield api
