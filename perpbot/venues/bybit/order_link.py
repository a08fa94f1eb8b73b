"""Bybit v5 order entry over the WebSocket trade endpoint (/v5/trade) as an OrderLink: the `auth` op,
then `order.create` / `order.cancel` ops, each answered by its `reqId`.

Wire (Bybit docs "Websocket Trade Guideline", docs/v5/websocket/trade/guideline.mdx; the doc examples
are in shared/fixtures/bybit/private_ws_frames.json):

* auth: {"op": "auth", "args": [api_key, expires_ms, hex(HMAC-SHA256(secret, "GET/realtime" + expires))]}
  (the private stream's signature) -> {"retCode": 0, "retMsg": "OK", "op": "auth", "connId"}; 20001 repeat
  auth, 10004 invalid sign, 10001 param error.
* request: {"reqId", "header": {"X-BAPI-TIMESTAMP", "X-BAPI-RECV-WINDOW"}, "op", "args": [one order]};
  the order is the REST /v5/order/create body (perpbot.venues.bybit.orders): category linear, symbol,
  side Buy/Sell, orderType Limit, qty and price as plain decimal strings, timeInForce IOC/GTC, orderLinkId,
  reduceOnly true when asked. The docs' example header also has "Referer" (a broker's rebate id): never sent.
* answer: {"reqId", "retCode", "retMsg", "op", "data": {"orderId", "orderLinkId"}, "retExtInfo",
  "header": {"X-Bapi-Limit", "X-Bapi-Limit-Status", "X-Bapi-Limit-Reset-Timestamp", "Traceid", "Timenow"},
  "connId"}. An acknowledgement carries ids only: fills come from the private stream (or a query).
  An error answer (retCode != 0) was never recorded nor shown in the docs: its shape is the success
  envelope with the REST retCode/retMsg (the docs: "data ... keep the same as `result` on rest api").
* ping: {"op": "ping"} -> {"retCode": 0, "retMsg": "OK", "op": "pong", "data": [now_ms], "connId"}.

The rate-limit figures of the last answer's header are kept in `last_limits`; `usage_headers()` gives
them under the REST response's header names (what perpbot.execution.rate_budget's `observe` reads).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from perpbot.core import errors
from perpbot.core.events import ParseError
from perpbot.core.numbers import plain
from perpbot.core.order_entry import LinkMessage, LoginAnswer, OrderAnswer, Pong
from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings
from perpbot.venues._private import secret
from perpbot.venues._wire import ErrorCodes, json_object
from perpbot.venues.bybit import private

VENUE = "bybit"
RECV_WINDOW_MS = 5000  # the venue's default, sent explicitly
AUTH_VALID_MS = 10_000  # the auth signature's expiry, ahead of now
ORDER_OPS = frozenset(("order.create", "order.cancel"))

# retCode families (docs/v5/error.mdx: the UTA table and "WS OE General code"; shared/fixtures/venue_errors.json).
RATE_LIMIT_CODES = frozenset((10006, 10429, 20003))  # per-UID limit, system protection, per-session limit
# Refused before it reached the book: server error or restarting, request outside the time window,
# a reqId seen before on this connection.
TEMPORARY_CODES = frozenset((10016, 10019, 10002, 20006))
FUNDS_CODES = frozenset((110004, 110006, 110007, 110012, 110044, 110045))
NOT_OPEN_CODES = frozenset((110001, 110008, 110010, 170213))  # does not exist / completed / cancelled


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """The rate-limit header of one answer: the op's limit, what remains of it, when it resets (ms)."""

    limit: int | None
    remaining: int | None
    reset_ms: int | None
    server_ms: int | None


def usage_headers(limits: LimitStatus | None) -> dict[str, str]:
    """The answer's figures under the REST response's header names (the rate budget reads those)."""
    if limits is None:
        return {}
    named = (("X-Bapi-Limit", limits.limit), ("X-Bapi-Limit-Status", limits.remaining),
             ("X-Bapi-Limit-Reset-Timestamp", limits.reset_ms))
    return {name: str(value) for name, value in named if value is not None}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def limit_status(header: Any) -> LimitStatus | None:
    if not isinstance(header, dict):
        return None
    return LimitStatus(_int(header.get("X-Bapi-Limit")), _int(header.get("X-Bapi-Limit-Status")),
                       _int(header.get("X-Bapi-Limit-Reset-Timestamp")), _int(header.get("Timenow")))


def order_args(request: OrderRequest) -> dict[str, Any]:
    """The `order.create` argument for one approved order: the REST /v5/order/create body's fields."""
    arg: dict[str, Any] = {
        "category": "linear", "symbol": request.symbol, "side": "Buy" if request.side == "buy" else "Sell",
        "orderType": "Limit", "qty": plain(request.qty), "price": plain(request.price),
        "timeInForce": request.time_in_force, "orderLinkId": request.client_order_id,
    }
    if request.reduce_only:
        arg["reduceOnly"] = True
    return arg


CODES = ErrorCodes(rate_limited=RATE_LIMIT_CODES, temporary=TEMPORARY_CODES, funds=FUNDS_CODES,
                   not_open=NOT_OPEN_CODES)


def error_of(code: int, message: str, limits: LimitStatus | None = None) -> errors.VenueErrorBase:
    retry_after_s = None  # a rate limit lasts until the venue's reset timestamp (10006)
    if limits is not None and limits.reset_ms is not None and limits.server_ms is not None \
            and limits.reset_ms > limits.server_ms:
        retry_after_s = (limits.reset_ms - limits.server_ms) / 1000
    return CODES.error(VENUE, code, f"{code} {message}".strip(), retry_after_s)


def parse_answer(message: dict[str, Any], limits: LimitStatus | None) -> OrderAnswer:
    request_id = str(message.get("reqId", ""))
    code = _int(message.get("retCode"))
    if code is None:
        raise ParseError(VENUE, f"order socket: answer without a retCode: {str(message)[:200]}")
    if code != 0:
        return OrderAnswer(request_id, error=error_of(code, str(message.get("retMsg", "")), limits))
    data = message.get("data")
    order_id = data.get("orderId") if isinstance(data, dict) else None
    return OrderAnswer(request_id, venue_order_id=str(order_id) if order_id else None)


class BybitOrderLink:
    venue = VENUE
    ping_frame: str | None = private.PING_FRAME
    ping_interval_s: float = 20.0  # Bybit recommends a ping every 20 s

    def __init__(self, url: str, cfg: VenueSettings, clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._key, self._secret = secret(cfg, "api_key"), secret(cfg, "api_secret")
        self._clock = clock
        self.last_limits: LimitStatus | None = None

    def url(self) -> str:
        return self._url

    def usage_headers(self) -> dict[str, str]:
        """The last answer's X-Bapi-Limit figures as REST headers (empty before the first answer)."""
        return usage_headers(self.last_limits)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def login_frames(self) -> list[str]:
        return [private.auth_frame(self._key, self._secret, self._now_ms() + AUTH_VALID_MS)]

    def _request(self, request_id: str, op: str, arg: dict[str, Any]) -> str:
        header = {"X-BAPI-TIMESTAMP": str(self._now_ms()), "X-BAPI-RECV-WINDOW": str(RECV_WINDOW_MS)}
        return orjson.dumps({"reqId": request_id, "header": header, "op": op, "args": [arg]}).decode()

    def place_frame(self, request_id: str, order: OrderRequest) -> str:
        return self._request(request_id, "order.create", order_args(order))

    def cancel_frame(self, request_id: str, symbol: str, client_order_id: str) -> str:
        return self._request(request_id, "order.cancel",
                             {"category": "linear", "symbol": symbol, "orderLinkId": client_order_id})

    def parse(self, frame: str | bytes) -> LinkMessage | None:
        message = json_object(VENUE, frame)
        op = message.get("op")
        if op == "pong":
            return Pong()
        if op == "auth":
            code = _int(message.get("retCode"))
            return LoginAnswer(code == 0, f"{message.get('retCode')} {message.get('retMsg', '')}".strip())
        if op in ORDER_OPS and "reqId" in message:
            limits = limit_status(message.get("header"))
            if limits is not None:
                self.last_limits = limits
            return parse_answer(message, limits)
        return None
