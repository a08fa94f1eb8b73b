"""HTTP control plane (aiohttp, same event loop): thin routes over the engine, books, feeds, health and metrics.

Limits: a body over http.max_body_bytes answers 413; a handler running longer than
http.request_timeout_s is cancelled and answers 504 (JSON), other requests unaffected; a
connection that has not sent a complete request head within http.idle_timeout_s (idle
keep-alive, slow or unfinished headers) is closed without an answer.

Security: state-changing routes (every POST) need `Authorization: Bearer <api_token>`,
compared in constant time. With no token configured they are allowed only when the
server is bound to loopback (and answer 403 otherwise); the server refuses to start on a
non-loopback host without a token. Every error is JSON `{"error": "..."}`; bad input is
4xx; nothing escapes as an HTML page or a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from perpbot.control.models import RESPONSE_MODELS, dump
# The route table and its OpenAPI document live in perpbot.control.openapi; re-exported here.
from perpbot.control.openapi import (  # noqa: F401
    DEFAULT_DEPTH,
    MAX_DEPTH,
    MAX_TRADE_HOURS,
    ROUTES,
    Route,
    openapi_document,
    response_schema,
)
from perpbot.core.errors import VenueErrorBase
from perpbot.core.numbers import scaled_to_decimal
from perpbot.settings import ConfigError

log = logging.getLogger("perpbot.control")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_response(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, status=status, content_type="application/json")


def answer(handler_name: str, data: Any, status: int = 200) -> web.Response:
    """A route's answer: validated by its response model (perpbot.control.models), then JSON."""
    return json_response(dump(RESPONSE_MODELS[handler_name], data), status)


def error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


@dataclass(slots=True)
class ControlContext:
    """What the routes may read or command; anything None is 'not wired in this run'."""

    settings: Any
    metrics: Any
    store: Any = None
    supervisor: Any = None
    engine: Any = None  # perpbot.core.ports.EngineCommands
    health: Any = None  # perpbot.telemetry.health.HealthMonitor
    started_at: float = 0.0
    private_streams: Any = None  # perpbot.feeds.private_stream.PrivateStreams (set once the engine is wired)


class Routes:
    """Route handlers: each one line of reading or commanding, no trading logic."""

    def __init__(self, ctx: ControlContext) -> None:
        self.ctx = ctx
        self._openapi = openapi_document()

    # -- market data and operations ---------------------------------------------------
    async def websocket_status(self, request: web.Request) -> web.Response:
        sup = self.ctx.supervisor
        streams = self.ctx.private_streams
        return answer("websocket_status", with_private(sup.status() if sup is not None else {},
                                                       streams.status() if streams is not None else None))

    async def book(self, request: web.Request) -> web.Response:
        venue = request.match_info["venue"]
        symbol = request.match_info["symbol"]
        depth = _int_param(request, "depth", DEFAULT_DEPTH, 1, MAX_DEPTH)
        store = self.ctx.store
        book = store.get(venue, symbol) if store is not None else None
        if book is None:
            raise web.HTTPNotFound(reason=f"no book for venue {venue!r} symbol {symbol!r}")
        best_bid, best_ask = book.best_bid(), book.best_ask()
        now = time.time()
        return answer("book", {
            "venue": venue,
            "symbol": symbol,
            "valid": book.valid,
            "usable": store.is_usable(book, now),
            "invalid_reason": book.invalid_reason,
            "sequence": book.seq,
            "updates": book.updates,
            "last_update_age_s": round(now - book.recv_ts, 3) if book.recv_ts else None,
            "exchange_ts_ms": book.exchange_ts_ms or None,
            "best_bid": _price(best_bid),
            "best_ask": _price(best_ask),
            "bids": [[_price(p), _price(s)] for p, s in book.top(True, depth)],
            "asks": [[_price(p), _price(s)] for p, s in book.top(False, depth)],
        })

    async def metrics(self, request: web.Request) -> web.Response:
        body = self.ctx.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def live(self, request: web.Request) -> web.Response:
        return answer("live", {"status": "alive", "uptime_s": round(time.time() - self.ctx.started_at, 1)})

    async def ready(self, request: web.Request) -> web.Response:
        if self.ctx.health is None:
            return answer("ready", {"ready": True, "reasons": []})
        result = await self.ctx.health.evaluate()
        body = {"ready": result["ready"], "score": result["score"], "reasons": result["reasons"]}
        return answer("ready", body, 200 if result["ready"] else 503)

    async def health_detail(self, request: web.Request) -> web.Response:
        if self.ctx.health is None:
            return error(503, "health monitor not running")
        return answer("health_detail", await self.ctx.health.evaluate())

    async def config(self, request: web.Request) -> web.Response:
        return answer("config", self.ctx.settings.redacted())

    async def openapi(self, request: web.Request) -> web.Response:
        return answer("openapi", self._openapi)

    # -- engine commands ---------------------------------------------------------------
    async def balances(self, request: web.Request) -> web.Response:
        return answer("balances", self.ctx.engine.balances())

    async def positions(self, request: web.Request) -> web.Response:
        return answer("positions", self.ctx.engine.positions())

    async def sync_positions(self, request: web.Request) -> web.Response:
        return answer("sync_positions", await self.ctx.engine.sync_positions())

    async def pause(self, request: web.Request) -> web.Response:
        reason = "operator request"
        if request.can_read_body:
            try:
                body = await request.json(loads=orjson.loads)
            except ValueError:
                raise web.HTTPBadRequest(reason="body must be JSON, e.g. {\"reason\": \"...\"}") from None
            if isinstance(body, dict) and isinstance(body.get("reason"), str) and body["reason"].strip():
                reason = body["reason"].strip()[:200]
        return answer("pause", await self.ctx.engine.pause(reason))

    async def resume(self, request: web.Request) -> web.Response:
        return answer("resume", await self.ctx.engine.resume())

    async def trading_state(self, request: web.Request) -> web.Response:
        return answer("trading_state", self.ctx.engine.trading_state())

    async def active_orders(self, request: web.Request) -> web.Response:
        return answer("active_orders", self.ctx.engine.active_orders())

    async def close_all(self, request: web.Request) -> web.Response:
        return answer("close_all", await self.ctx.engine.close_all())

    async def pnl_today(self, request: web.Request) -> web.Response:
        return answer("pnl_today", self.ctx.engine.pnl_today())

    async def trades(self, request: web.Request) -> web.Response:
        hours = _float_param(request, "hours", 24.0, 0.0, float(MAX_TRADE_HOURS))
        trades = self.ctx.engine.trades_since(time.time() - hours * 3600.0)
        if inspect.isawaitable(trades):  # the engine may read older trades from its journal
            trades = await trades
        return answer("trades", trades)


def with_private(public: dict[str, Any], private: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """The feed status per venue, each with its private stream's status under "private" (None when the
    venue has none). The public feed's fields are left exactly as the supervisor reported them."""
    private = private or {}
    out: dict[str, Any] = {venue: {**item, "private": private.get(venue)} for venue, item in public.items()}
    for venue, item in private.items():
        out.setdefault(venue, {"private": item})  # a private stream with no public feed configured
    return out


def _price(value: int | None) -> str | None:
    return None if value is None else format(scaled_to_decimal(value).normalize(), "f")


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer between {low} and {high}") from None
    if not low <= value <= high:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer between {low} and {high}")
    return value


def _float_param(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be a number in ({low}, {high}]") from None
    if not (low < value <= high):  # also rejects nan
        raise web.HTTPBadRequest(reason=f"{name} must be a number in ({low}, {high}]")
    return value


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def build_app(ctx: ControlContext) -> web.Application:
    """The aiohttp application: middlewares (errors, limits, auth) and the route table."""
    http = ctx.settings.http
    token_secret = ctx.settings.api_token
    token = token_secret.get_secret_value().encode() if token_secret is not None else None
    bound_loopback = is_loopback(http.host)
    routes = Routes(ctx)
    meta: dict[tuple[str, str], Route] = {}

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await asyncio.wait_for(handler(request), http.request_timeout_s)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error(exc.status, exc.reason or exc.text or "error")
        except TimeoutError:
            return error(504, f"request took longer than {http.request_timeout_s}s")
        except VenueErrorBase as exc:
            return error(502, f"venue error: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leak a traceback page; the log has the details
            log.exception("Control route failed: %s %s", request.method, request.path)
            return error(503, f"internal error: {exc.__class__.__name__}")

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > http.max_body_bytes:
            return error(413, f"body larger than {http.max_body_bytes} bytes")
        resource = request.match_info.route.resource
        route = meta.get((request.method, resource.canonical)) if resource is not None else None
        if route is not None and route.protected:
            if token is None:
                if not bound_loopback:
                    return error(403, "state-changing routes are disabled: no api_token configured")
            else:
                given = _bearer(request)
                if given is None:
                    return error(401, "missing bearer token")
                if not hmac.compare_digest(given.encode(), token):
                    return error(401, "wrong bearer token")
        if route is not None and route.engine and ctx.engine is None:
            return error(503, "trading engine not running (market-data-only)")
        return await handler(request)

    app = web.Application(middlewares=[errors, guard], client_max_size=http.max_body_bytes)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, getattr(routes, route.handler_name))
        meta[(route.method, route.path)] = route
    return app


class ControlServer:
    """Runs the control app on settings.http.host:port inside the current event loop."""

    def __init__(self, ctx: ControlContext) -> None:
        self.ctx = ctx
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @staticmethod
    def check_bind(settings: Any) -> None:
        """Refuse a public bind with no token: anyone reaching the port could trade."""
        if not is_loopback(settings.http.host) and settings.api_token is None:
            raise ConfigError(
                f"config error: http.host = {settings.http.host!r}: binding a non-loopback address "
                "needs PERPBOT_API_TOKEN")

    async def start(self) -> None:
        settings = self.ctx.settings
        self.check_bind(settings)
        if not self.ctx.started_at:
            self.ctx.started_at = time.time()
        # keepalive_timeout is aiohttp's clock for "no complete request head yet": it starts when a
        # connection opens and restarts after each response, so it also cuts off unfinished headers.
        # lingering_time bounds how long an unread body (e.g. one still trickling in after a 504) is
        # read and discarded before the connection is closed: no longer than a request may run.
        self._runner = web.AppRunner(build_app(self.ctx), access_log=None, handle_signals=False,
                                     keepalive_timeout=settings.http.idle_timeout_s,
                                     lingering_time=settings.http.request_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.http.host, settings.http.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("Control API listening on http://%s:%s", settings.http.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
