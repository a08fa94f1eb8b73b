"""Binance USD-M order entry over the WebSocket API (/ws-fapi/v1) as an OrderLink: `order.place` /
`order.cancel`, each request signed on its own (no session logon), each answered by its `id`.

Wire (Binance USD-M docs, WebSocket API "New Order (TRADE)" / "Cancel Order (TRADE)" and the WebSocket API
general info; no recorded frame exists in shared/fixtures (its README lists the gap), so the shapes follow
those docs' examples):

* request: {"id", "method": "order.place", "params": {...}}; params are the REST POST /fapi/v1/order
  parameters (perpbot.venues.binance.orders): symbol, side BUY/SELL, type LIMIT, timeInForce IOC/GTC,
  quantity and price as plain decimal strings, newClientOrderId, reduceOnly "true" when asked, plus
  newOrderRespType RESULT (an IOC's answer then carries its final executedQty / avgPrice), apiKey and
  timestamp; `signature` = hex(HMAC-SHA256(secret, the params sorted by name as k=v joined by '&', values
  percent-encoded as the official SDK encodes them)).
  No broker id or client-id prefix: the id is perpbot's own.
* answer: {"id", "status": 200, "result": <the order, as REST>, "rateLimits": [{"rateLimitType",
  "interval", "intervalNum", "limit", "count"}, ...]}; an error {"id", "status": 4xx/5xx, "error":
  {"code", "msg", "data"?}, "rateLimits"}. 429 (too many requests) and 418 (IP banned) carry
  error.data {"serverTime", "retryAfter"} (epoch ms; the shape of Binance's WebSocket API rate-limit
  docs, spot edition: the USD-M page shows none).
* keepalive: the venue pings (protocol frames) every 3 minutes; the client's protocol pings are answered.

The answer of an IOC placed with RESULT is final (FILLED / EXPIRED with executedQty and avgPrice) but
carries no fee: `complete` stays False, the fee comes from the private stream (or a query). The last
answer's `rateLimits` are kept in `last_rate_limits`; `usage_headers()` gives their counts under the REST
response's header names (X-MBX-USED-WEIGHT-1m, X-MBX-ORDER-COUNT-10s/1m: what perpbot.execution.rate_budget's
`observe` reads).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import orjson

from perpbot.core import errors
from perpbot.core.events import ParseError
from perpbot.core.numbers import plain
from perpbot.core.order_entry import LinkMessage, OrderAnswer
from perpbot.core.orders import OrderRequest, ResultStatus
from perpbot.settings import VenueSettings
from perpbot.venues._private import secret
from perpbot.venues._wire import ErrorCodes, json_object

VENUE = "binance"
# Codes (USD-M "Error Codes" page; shared/fixtures/venue_errors.json, perpbot.venues.binance.orders).
RATE_LIMIT_CODES = frozenset((-1003, -1015))  # too many requests / too many new orders
# The backend may have taken it: "Send status unknown; execution status unknown" (-1007), internal
# error (-1001), unexpected response (-1006). Resolved by a query, never re-sent.
UNKNOWN_CODES = frozenset((-1001, -1006, -1007))
TEMPORARY_CODES = frozenset((-1008, -1021))  # server busy; timestamp outside recvWindow (nothing placed)
FUNDS_CODES = frozenset((-2018, -2019))
NOT_OPEN_CODES = frozenset((-2011, -2013))  # unknown order on cancel / no such order
_STATUS: dict[str, ResultStatus] = {
    "NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
    "EXPIRED": "expired", "EXPIRED_IN_MATCH": "expired", "REJECTED": "rejected",
}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One entry of an answer's `rateLimits`: usage `count` of `limit` per `interval_num` `interval`."""

    kind: str  # ORDERS / REQUEST_WEIGHT
    interval: str  # SECOND / MINUTE / DAY
    interval_num: int
    limit: int
    count: int


def rate_limits(raw: Any) -> tuple[RateLimit, ...] | None:
    if not isinstance(raw, list):
        return None
    found = []
    for item in raw:
        try:
            found.append(RateLimit(str(item["rateLimitType"]), str(item["interval"]), int(item["intervalNum"]),
                                   int(item["limit"]), int(item["count"])))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(found)


# rateLimits entry (type, interval, intervalNum) -> the REST response header carrying the same count.
USAGE_HEADERS = {
    ("REQUEST_WEIGHT", "MINUTE", 1): "X-MBX-USED-WEIGHT-1m",
    ("ORDERS", "SECOND", 10): "X-MBX-ORDER-COUNT-10s",
    ("ORDERS", "MINUTE", 1): "X-MBX-ORDER-COUNT-1m",
}


def usage_headers(limits: tuple[RateLimit, ...] | None) -> dict[str, str]:
    """An answer's `rateLimits` counts under the REST response's header names (the rate budget reads those)."""
    found = {}
    for limit in limits or ():
        name = USAGE_HEADERS.get((limit.kind, limit.interval, limit.interval_num))
        if name is not None:
            found[name] = str(limit.count)
    return found


def sign(secret_key: str, params: dict[str, Any]) -> str:
    """hex HMAC-SHA256 of the params sorted by name, `k=v` joined by '&', values percent-encoded as a query
    string (what Binance's official SDK signs, binance_common.utils.websocket_api_signature; the same text
    as the docs' plain `k=v` join for the characters perpbot's orders use)."""
    payload = urlencode([(key, _text(params[key])) for key in sorted(params)])
    return hmac.new(secret_key.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def order_params(request: OrderRequest) -> dict[str, Any]:
    """The `order.place` parameters of one approved order (signature fields aside): REST's, plus RESULT."""
    params: dict[str, Any] = {
        "symbol": request.symbol, "side": request.side.upper(), "type": "LIMIT",
        "timeInForce": request.time_in_force, "quantity": plain(request.qty), "price": plain(request.price),
        "newClientOrderId": request.client_order_id, "newOrderRespType": "RESULT",
    }
    if request.reduce_only:
        params["reduceOnly"] = "true"
    return params


def _decimal(value: Any) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


CODES = ErrorCodes(rate_limited=RATE_LIMIT_CODES, unknown=UNKNOWN_CODES, temporary=TEMPORARY_CODES,
                   funds=FUNDS_CODES, not_open=NOT_OPEN_CODES)


def error_of(status: int, error: Any) -> errors.VenueErrorBase:
    body = error if isinstance(error, dict) else {}
    code = body.get("code")
    text = f"{code} {body.get('msg', '')}".strip() if code is not None else f"HTTP {status}"
    if status in (418, 429) or code in RATE_LIMIT_CODES:
        data = body.get("data")
        retry_after_s = None
        if isinstance(data, dict):
            until, now = data.get("retryAfter"), data.get("serverTime")
            if isinstance(until, int) and isinstance(now, int) and until > now:
                retry_after_s = (until - now) / 1000
        return errors.RateLimited(VENUE, text, retry_after_s=retry_after_s)
    if status >= 500 and code not in UNKNOWN_CODES:
        return errors.TemporaryError(VENUE, text)
    return CODES.error(VENUE, code, text)


def parse_answer(message: dict[str, Any]) -> OrderAnswer:
    request_id = str(message["id"])
    status = message.get("status")
    if not isinstance(status, int):
        raise ParseError(VENUE, f"order socket: answer without a status: {str(message)[:200]}")
    if status != 200:
        return OrderAnswer(request_id, error=error_of(status, message.get("error")))
    result = message.get("result")
    if not isinstance(result, dict):
        raise ParseError(VENUE, "order socket: a 200 answer without a result")
    order_id = result.get("orderId")
    filled = _decimal(result.get("executedQty"))
    average = _decimal(result.get("avgPrice")) or None  # "0.00" before a fill
    state = _STATUS.get(str(result.get("status")), "open")
    if state in ("canceled", "expired") and filled:
        state = "partially_filled"  # an IOC's rest expired after a partial fill (as the REST client reads it)
    return OrderAnswer(request_id, venue_order_id=str(order_id) if order_id is not None else None,
                       status=state, filled_qty=filled, avg_price=average)


class BinanceOrderLink:
    venue = VENUE
    ping_frame: str | None = None  # protocol-level pings
    ping_interval_s: float = 20.0

    def __init__(self, url: str, cfg: VenueSettings, clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._key, self._secret = secret(cfg, "api_key"), secret(cfg, "api_secret")
        self._clock = clock
        self.last_rate_limits: tuple[RateLimit, ...] | None = None

    def url(self) -> str:
        return self._url

    def usage_headers(self) -> dict[str, str]:
        """The last answer's rateLimits counts as REST headers (empty before the first answer)."""
        return usage_headers(self.last_rate_limits)

    def login_frames(self) -> list[str]:
        return []  # every request is signed on its own

    def _request(self, request_id: str, method: str, params: dict[str, Any]) -> str:
        signed = {**params, "apiKey": self._key, "timestamp": int(self._clock() * 1000)}
        signed["signature"] = sign(self._secret, signed)
        return orjson.dumps({"id": request_id, "method": method, "params": signed}).decode()

    def place_frame(self, request_id: str, order: OrderRequest) -> str:
        return self._request(request_id, "order.place", order_params(order))

    def cancel_frame(self, request_id: str, symbol: str, client_order_id: str) -> str:
        return self._request(request_id, "order.cancel", {"symbol": symbol, "origClientOrderId": client_order_id})

    def parse(self, frame: str | bytes) -> LinkMessage | None:
        message = json_object(VENUE, frame)
        if message.get("id") is None or "status" not in message:
            return None  # an answer to nothing of ours (a request the venue could not read has id null)
        limits = rate_limits(message.get("rateLimits"))
        if limits:
            self.last_rate_limits = limits
        return parse_answer(message)
