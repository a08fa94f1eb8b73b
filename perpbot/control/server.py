"""HTTP control plane (aiohttp, same event loop): thin routes over the engine, books, feeds, health and metrics.

Limits: a body over http.max_body_bytes answers 413; a handler running longer than
http.request_timeout_s is cancelled and answers 504 (JSON), other requests unaffected; a
connection that has not sent a complete request head within http.idle_timeout_s (idle
keep-alive, slow or unfinished headers) is closed without an answer.

Security (issue 17), in every configuration:
- Host: bound to loopback (or with http.allowed_hosts set), a Host header that is neither a loopback
  name/address nor listed is refused on every route (403 foreign_host): DNS rebinding.
- State-changing routes (scope `trade`, every POST) need `Authorization: Bearer <trade token>`. The
  trade token is PERPBOT_API_TOKEN, else one generated at first start into http.token_file (0600;
  `perpbot token` prints it). A foreign `Origin` (or Sec-Fetch-Site: cross-site) is refused, a body
  must be JSON (415 otherwise), an `Idempotency-Key` makes a retry return the first answer.
- Read routes need the read or the trade token once http.read_token is set; health and /metrics stay
  public. A token without the route's scope answers 403. No CORS headers are ever sent.
- close-all and sync run as operations (perpbot.control.operations): the answer comes within
  http.operation_wait_s, the result or a 202 handle to poll; a second one while one runs joins it.
- Every state-changing request and every refusal is journalled (perpbot.journal.audit; GET
  /api/audit) and refusals are counted in perpbot_control_refusals_total{reason}.
Every error is JSON `{"error": "...", "reason": "..."}` (the HTTP parser's own errors included); bad
input is 4xx; nothing escapes as an HTML page or a 500.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST

from perpbot.control.auth import (
    MalformedHeader, TokenFileError, Tokens, bearer, host_allowed, host_name, is_loopback, json_body_allowed, origin_allowed,
    resolve_tokens,
)
from perpbot.control.idempotency import BadKey, Conflict, IdempotencyCache, Stored, check_key, fingerprint
from perpbot.control.attribution_export import MAX_ATTRIBUTION_DAYS, csv_name, export_format, summary_csv
from perpbot.control.models import RESPONSE_MODELS, dump
# The route table and its OpenAPI document live in perpbot.control.openapi; re-exported here.
from perpbot.control.openapi import (  # noqa: F401
    DEFAULT_DEPTH,
    MAX_AUDIT_HOURS,
    MAX_DEPTH,
    MAX_TRADE_HOURS,
    MAX_WAIT_S,
    ROUTES,
    Route,
    openapi_document,
    response_schema,
)
from perpbot.control.operations import Operation, Operations
from perpbot.core.errors import VenueErrorBase
from perpbot.core.numbers import scaled_to_decimal
from perpbot.journal.audit import AuditEntry, AuditTrail
from perpbot.settings import ConfigError

log = logging.getLogger("perpbot.control")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def error(status: int, message: str, reason: str | None = None) -> web.Response:
    return json_response({"error": message, **({"reason": reason} if reason else {})}, status)


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
    order_sockets: Any = None  # perpbot.feeds.order_socket.OrderSockets (set once the engine is wired)
    audit: AuditTrail | None = None  # the journal's audit trail (opened by ControlServer.start)


class Routes:
    """Route handlers: each one line of reading or commanding, no trading logic."""

    def __init__(self, ctx: ControlContext, operations: Operations, operation_wait_s: float) -> None:
        self.ctx = ctx
        self.operations = operations
        self.operation_wait_s = operation_wait_s
        self._openapi = openapi_document()

    # -- market data and operations ---------------------------------------------------
    async def websocket_status(self, request: web.Request) -> web.Response:
        sup = self.ctx.supervisor
        streams = self.ctx.private_streams
        sockets = self.ctx.order_sockets
        return answer("websocket_status", with_private(sup.status() if sup is not None else {},
                                                       streams.status() if streams is not None else None,
                                                       sockets.status() if sockets is not None else None))

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
        engine = self.ctx.engine
        if _bool_param(request, "dry_run"):
            return await self._operation("sync_dry_run", engine.sync_preview, "sync_positions")
        return await self._operation("sync", engine.sync_positions, "sync_positions")

    async def pause(self, request: web.Request) -> web.Response:
        reason = "operator request"
        if request.body_exists:  # (can_read_body is False once an Idempotency-Key check has read it)
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
        return await self._operation("close_all", self.ctx.engine.close_all, "close_all")

    async def _operation(self, kind: str, work: Callable[[], Awaitable[Any]], model: str) -> web.Response:
        op, joined = self.operations.start_or_join(kind, work)
        return await self.answer_operation(op, model, joined)

    async def answer_operation(self, op: Operation, model: str, joined: bool = False) -> web.Response:
        """The operation's result when it finishes within http.operation_wait_s (its error as the
        route's error answer), else 202 with the operation to poll."""
        if not await self.operations.wait(op, self.operation_wait_s):
            response = answer("operation", op.view(), 202)
        elif op.error is not None:
            response = error(op.error_status or 503, op.error)
        else:
            body = dump(RESPONSE_MODELS[model], op.result)
            response = json_response({**body, "operation_id": op.id, **({"joined": True} if joined else {})})
        response[OPERATION_ID] = op.id
        return response

    async def operation(self, request: web.Request) -> web.Response:
        op = self.operations.get(request.match_info["operation_id"])
        if op is None:
            raise web.HTTPNotFound(reason="no such operation (finished ones are kept for a while only)")
        wait = min(_float_param(request, "wait", 0.0, -1.0, float(MAX_WAIT_S)), self.operation_wait_s)
        await self.operations.wait(op, max(wait, 0.0))
        view = op.view()
        if view["result"] is not None:
            view["result"] = dump(RESPONSE_MODELS["sync_positions" if op.kind.startswith("sync") else "close_all"],
                                  view["result"])
        return answer("operation", view)

    async def audit(self, request: web.Request) -> web.Response:
        hours = _float_param(request, "hours", 24.0, 0.0, float(MAX_AUDIT_HOURS))
        if self.ctx.audit is None:
            return error(503, "audit trail not open (see the log)")
        entries = await self.ctx.audit.since(time.time() - hours * 3600.0)
        return answer("audit", [entry.as_dict() for entry in entries])

    async def pnl_today(self, request: web.Request) -> web.Response:
        return answer("pnl_today", self.ctx.engine.pnl_today())

    async def trades(self, request: web.Request) -> web.Response:
        hours = _float_param(request, "hours", 24.0, 0.0, float(MAX_TRADE_HOURS))
        trades = self.ctx.engine.trades_since(time.time() - hours * 3600.0)
        if inspect.isawaitable(trades):  # the engine may read older trades from its journal
            trades = await trades
        return answer("trades", trades)

    async def trade(self, request: web.Request) -> web.Response:
        trade_id = request.match_info["trade_id"]
        found = await self.ctx.engine.trade_attribution(trade_id)
        if found is None:
            raise web.HTTPNotFound(reason=f"no trade {trade_id!r}")
        return answer("trade", found)

    async def pnl_attribution(self, request: web.Request) -> web.Response:
        days = _int_param(request, "days", 1, 1, MAX_ATTRIBUTION_DAYS)
        form = export_format(request.query.get("format"))
        rows = await self.ctx.engine.pnl_attribution(days)
        if form == "csv":
            return web.Response(text=summary_csv(rows), content_type="text/csv",
                                headers={"Content-Disposition": f'attachment; filename="{csv_name(days)}"'})
        return answer("pnl_attribution", {"days": days, "rows": rows})


def with_private(public: dict[str, Any], private: dict[str, dict[str, Any]] | None,
                 orders: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The feed status per venue, each with its private stream's status under "private" and its order
    socket's under "orders" (None when the venue has none). The public feed's fields are left exactly
    as the supervisor reported them."""
    private = private or {}
    orders = orders or {}
    out: dict[str, Any] = {venue: {**item, "private": private.get(venue), "orders": orders.get(venue)}
                           for venue, item in public.items()}
    for venue, item in private.items():
        out.setdefault(venue, {"private": item, "orders": orders.get(venue)})  # no public feed configured
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


def _bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise web.HTTPBadRequest(reason=f"{name} must be true or false")


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# A response's own mapping: the operation it answered (for the audit trail and idempotent retries).
OPERATION_ID = web.ResponseKey("perpbot_operation_id", str)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before its handler: HTTP status, reason code (the metric's label), message."""

    status: int
    reason: str
    message: str


OPERATIONS = web.AppKey("perpbot_operations", Operations)  # the app's long operations (close-all, sync)
SCOPE = web.RequestKey("perpbot_scope", str)  # the scope of the token a request presented
REFUSED = web.RequestKey("perpbot_refusal", Refusal)  # why the guard refused it


class Guard:
    """The checks every request passes before its handler (perpbot.control.auth's rules, in order)."""

    def __init__(self, settings: Any, tokens: Tokens) -> None:
        http = settings.http
        self.http = http
        self.tokens = tokens
        # Bound to loopback, or told which names to answer: any other Host is a rebinding attempt.
        self.check_host = is_loopback(host_name(http.host)) or bool(http.allowed_hosts)

    def refusal(self, request: web.Request, route: Route | None) -> Refusal | None:
        headers = request.headers
        if self.check_host and not host_allowed(headers.get("Host"), self.http.allowed_hosts):
            return Refusal(403, "foreign_host", "Host is not a loopback name or address (DNS rebinding refused)")
        protected = route.protected if route is not None else request.method not in SAFE_METHODS
        if protected:
            if headers.get("Sec-Fetch-Site", "").lower() == "cross-site" or not origin_allowed(
                    headers.get("Origin"), headers.get("Host"), request.secure, self.http.allowed_origins):
                return Refusal(403, "foreign_origin", "cross-origin requests may not change state")
            has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding") is not None
            if not json_body_allowed(headers.get("Content-Type"), has_body):
                return Refusal(415, "content_type", "state-changing requests take JSON only (application/json)")
        needs_token = protected or (route is not None and route.scope == "read" and self.tokens.reads_need_token)
        if not needs_token:
            return None
        try:
            given = bearer(headers.get("Authorization"))
        except MalformedHeader as exc:
            return Refusal(401, "malformed_token", str(exc))
        if given is None:
            return Refusal(401, "missing_token", "missing bearer token")
        scope = self.tokens.scope_of(given)
        if scope is None:
            return Refusal(401, "wrong_token", "wrong bearer token")
        request[SCOPE] = scope
        if protected and scope != "trade":
            return Refusal(403, "scope", "this token has the read scope only: state-changing routes need the trade token")
        return None


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, with its own errors (bad request line or headers, too-large
    headers: found before any route runs) answered in JSON like every other error."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            self.log_exception("Control API connection error from %s", getattr(request, "remote", None), exc_info=exc)
        else:  # a malformed request: the client's problem, answered and not worth a traceback
            self.logger.debug("Bad HTTP request from %s: %s", getattr(request, "remote", None), exc)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        text = "internal error" if status >= 500 else f"bad HTTP request: {exc.__class__.__name__ if exc else 'parse error'}"
        response = error(status, text, "bad_request" if status < 500 else None)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """An AppRunner whose connections answer the HTTP parser's errors in JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # same object and state; only the connection factory differs
        return server


def build_app(ctx: ControlContext) -> web.Application:
    """The aiohttp application: middlewares (audit, errors, guard) and the route table."""
    settings = ctx.settings
    http = settings.http
    guard_rules = Guard(settings, resolve_tokens(settings))
    operations = Operations()
    idempotency = IdempotencyCache(http.idempotency_window_s)
    routes = Routes(ctx, operations, http.operation_wait())
    meta: dict[tuple[str, str], Route] = {}
    metrics = ctx.metrics

    @web.middleware
    async def audit(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        refusal: Refusal | None = request.get(REFUSED)
        if refusal is not None:
            metrics.control_refusals_total.labels(refusal.reason).inc()
        trail = ctx.audit
        if trail is not None and (request.method not in SAFE_METHODS or refusal is not None):
            trail.record(AuditEntry(
                ts=time.time(), method=request.method, path=request.path, scope=request.get(SCOPE),
                remote=request.remote, origin=request.headers.get("Origin"), status=response.status,
                outcome=_outcome(response), idempotency_key=request.headers.get("Idempotency-Key"),
                operation_id=response.get(OPERATION_ID)))
        return response

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
            request[REFUSED] = Refusal(413, "body_too_large", f"body larger than {http.max_body_bytes} bytes")
            return error(413, request[REFUSED].message, "body_too_large")
        resource = request.match_info.route.resource
        route = meta.get((request.method, resource.canonical)) if resource is not None else None
        refusal = guard_rules.refusal(request, route)
        if refusal is not None:
            request[REFUSED] = refusal
            return error(refusal.status, refusal.message, refusal.reason)
        if route is not None and route.engine and ctx.engine is None:
            return error(503, "trading engine not running (market-data-only)")
        key = request.headers.get("Idempotency-Key")
        if route is None or not route.protected or key is None:
            return await handler(request)
        return await _idempotent(request, route, key, handler)

    async def _idempotent(request: web.Request, route: Route, raw_key: str, handler: Handler) -> web.StreamResponse:
        try:
            key = check_key(raw_key)
        except BadKey as exc:
            request[REFUSED] = Refusal(400, "idempotency_key", str(exc))
            return error(400, str(exc), "idempotency_key")
        body = await request.read()
        first: list[web.StreamResponse] = []

        async def produce() -> Stored:
            response = await handler(request)
            first.append(response)
            return Stored(response.status, getattr(response, "body", b"") or b"", response.get(OPERATION_ID))

        try:
            stored, replayed = await idempotency.run(
                route.path, key, fingerprint(request.method, route.path, request.query_string, body), produce)
        except Conflict as exc:
            request[REFUSED] = Refusal(422, "idempotency_conflict", str(exc))
            return error(422, str(exc), "idempotency_conflict")
        if not replayed:
            return first[0]
        op = operations.get(stored.operation_id) if stored.operation_id else None
        response = await routes.answer_operation(op, route.handler_name) if op is not None else web.Response(
            body=stored.body, status=stored.status, content_type="application/json")
        response.headers["Idempotent-Replayed"] = "true"
        return response

    async def close_operations(_: web.Application) -> None:
        await operations.close()

    app = web.Application(middlewares=[audit, errors, guard], client_max_size=http.max_body_bytes)
    app[OPERATIONS] = operations
    app.on_cleanup.append(close_operations)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, getattr(routes, route.handler_name))
        meta[(route.method, route.path)] = route
    return app


def _outcome(response: web.StreamResponse) -> str:
    """What a request got, for the audit trail: ok, running (an operation), or the error's message."""
    if response.status == 202:
        return "running"
    if response.status < 400:
        return "ok"
    try:
        body = orjson.loads(getattr(response, "body", b"") or b"{}")
        return str(body.get("error", response.reason))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return str(response.reason)


class ControlServer:
    """Runs the control app on settings.http.host:port inside the current event loop."""

    def __init__(self, ctx: ControlContext) -> None:
        self.ctx = ctx
        self._runner: web.AppRunner | None = None
        self._audit: AuditTrail | None = None  # opened here (closed by stop), not one handed in
        self.operations: Operations | None = None  # the running app's close-all / sync operations
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
        try:
            app = build_app(self.ctx)
        except TokenFileError as exc:
            raise ConfigError(f"config error: http.token_file: {exc}") from None
        if self.ctx.audit is None:
            await self._open_audit(settings.journal.path)
        # keepalive_timeout is aiohttp's clock for "no complete request head yet": it starts when a
        # connection opens and restarts after each response, so it also cuts off unfinished headers.
        # lingering_time bounds how long an unread body (e.g. one still trickling in after a 504) is
        # read and discarded before the connection is closed: no longer than a request may run.
        self.operations = app[OPERATIONS]
        self._runner = JsonErrorRunner(app, access_log=None, handle_signals=False,
                                       keepalive_timeout=settings.http.idle_timeout_s,
                                       lingering_time=settings.http.request_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.http.host, settings.http.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("Control API listening on http://%s:%s", settings.http.host, self.port)

    async def _open_audit(self, path: str) -> None:
        trail = AuditTrail(path)
        try:
            await trail.open()
        except Exception as exc:  # the control API still runs (operators must see why); /api/audit answers 503
            log.error("Control audit trail not opened (%s): state-changing requests are not journalled",
                      f"{exc.__class__.__name__}: {exc}"[:300])
            await trail.close()
            return
        self.ctx.audit = self._audit = trail

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._audit is not None:
            await self._audit.close()
            self.ctx.audit = self._audit = None
