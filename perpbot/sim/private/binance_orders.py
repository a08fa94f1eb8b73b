"""Simulated Binance USD-M WebSocket API (/ws-fapi/v1): `order.place` and `order.cancel`, signed per request.

Shapes as the USD-M docs' WebSocket API (see perpbot.venues.binance.order_link): a request {"id",
"method", "params"} whose params carry apiKey, timestamp and signature = hex(HMAC-SHA256(secret, the
other params sorted by name as k=v joined by '&', values as they are or percent-encoded as Binance's SDK
sends them)); the answer {"id", "status", "result" | "error",
"rateLimits"}. Checks as the REST API makes them: no apiKey -2014 (401), an unknown key -2015 (401),
a bad signature -1022, a timestamp outside recvWindow (default 5000 ms; 1000 ms ahead allowed) -1021,
an unknown method -1102 (inferred: no recorded refusal). `result` is the REST order
(perpbot.sim.trading.binance.order_json): with newOrderRespType RESULT the order as it stands after
matching (an IOC: FILLED or EXPIRED), with ACK (the default) as it was accepted (NEW, nothing executed).
Errors carry the REST table's code/msg (status 400, the same answers on both paths); a cancel of an
order that is not open -2011 "Unknown order sent.". Placements run through
perpbot.sim.private.order_faults.ws_order on the venue's SimExchange (the user data stream pushes the
fills): rate_limit answers status 429 (or params.status 418) with code -1003 and error.data
{"serverTime", "retryAfter"} (epoch ms, the docs' ban answer), maintenance status 503. `rateLimits`
report this endpoint's ORDERS counts per 10 s and per minute and its REQUEST_WEIGHT per minute (one per
request). Every request read is kept in `requests` (tests check what clients send).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from perpbot.sim.private.common import SIM_API_KEY, SIM_SECRET, PrivateFeed
from perpbot.sim.private.order_faults import ws_order
from perpbot.sim.trading.accounts import SimOrder
from perpbot.sim.trading.binance import ERROR_CODES, TIF_IN, BinanceApi
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.matching import SimReject
from perpbot.sim.ws_common import Session, SimStats, dumps

METHODS = ("order.place", "order.cancel")
DEFAULT_RECV_WINDOW_MS = 5000
ORDER_LIMITS = ((10, "SECOND", 300), (1, "MINUTE", 1200))  # (intervalNum, interval, limit): exchangeInfo's
WEIGHT_LIMIT = 2400
KEPT_REQUESTS = 1000
RATE_LIMIT_MSG = {
    429: "Too many requests; current limit of IP is 2400 requests per minute. Please use the websocket for live "
         "updates to avoid polling the API.",
    418: "Way too much request weight used; IP banned until {until}. Please use WebSocket Streams for live "
         "updates to avoid bans.",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def signatures_of(params: dict[str, Any]) -> tuple[str, str]:
    """What the venue computes: HMAC-SHA256 over every param but `signature`, sorted, `k=v` joined by '&' --
    with the values as they are (the docs' example) and percent-encoded (Binance's official SDK signs
    urlencode(params)); the two agree unless a value has a reserved character. Either is taken."""
    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    def digest(payload: str) -> str:
        return hmac.new(SIM_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()

    items = [(k, text(params[k])) for k in sorted(params) if k != "signature"]
    return digest("&".join(f"{k}={v}" for k, v in items)), digest(urlencode(items))


class BinanceWsApi:
    """The /ws-fapi/v1 endpoint of one simulated Binance USD-M account."""

    def __init__(self, sim: SimExchange, stats: SimStats) -> None:
        self.sim = sim
        self.feed = PrivateFeed("binance-wsapi", stats, self, idle_timeout_s=None)
        self.feed.heartbeat_s = 180.0  # Binance pings every 3 minutes (protocol frames)
        self.api = BinanceApi(sim, None)  # type: ignore[arg-type]  # order_json needs the exchange only
        self.requests: deque[dict[str, Any]] = deque(maxlen=KEPT_REQUESTS)
        self._orders: deque[int] = deque()  # placement times (ms) in the last minute
        self._weights: deque[int] = deque()  # request times (ms) in the last minute

    # -- PrivateFeed hooks ---------------------------------------------------------------
    def check_path(self, request: web.Request) -> web.StreamResponse | None:
        return None

    def on_open(self, session: Session) -> None:
        session.state["private"] = False  # no session logon: nothing of the user data stream here

    def on_text(self, session: Session, text: str) -> None:
        try:
            request = orjson.loads(text)
            req_id, method = request.get("id"), request["method"]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            self.send(session, None, 400, error={"code": -1102, "msg": "Malformed request."})
            return
        self.requests.append(request)
        now = _now_ms()
        self._weights.append(now)
        if method not in METHODS:
            self.send(session, req_id, 400, error={"code": -1102, "msg": f"Unknown method '{method}'."})
            return
        params = request.get("params")
        refusal = self.authenticate(params if isinstance(params, dict) else {}, now)
        if refusal is not None:
            self.send(session, req_id, refusal[0], error=refusal[1])
            return
        assert isinstance(params, dict)
        if method == "order.place":
            self._orders.append(now)
            self.place(session, req_id, params)
        else:
            self.cancel(session, req_id, params)

    # -- checks and answers ------------------------------------------------------------------
    @staticmethod
    def authenticate(params: dict[str, Any], now: int) -> tuple[int, dict[str, Any]] | None:
        key = params.get("apiKey")
        if not key:
            return 401, {"code": -2014, "msg": "API-key format invalid."}
        if key != SIM_API_KEY:
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        signature = params.get("signature")
        if not isinstance(signature, str) or not any(
                hmac.compare_digest(signature.lower(), expected) for expected in signatures_of(params)):
            return 400, {"code": -1022, "msg": "Signature for this request is not valid."}
        try:
            stamp = int(params["timestamp"])
            window = int(params.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
        except (KeyError, TypeError, ValueError):
            return 400, {"code": -1102, "msg": "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                                               "malformed."}
        if not now - window <= stamp < now + 1000:
            return 400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
        return None

    def rate_limits(self, now: int) -> list[dict[str, Any]]:
        for times in (self._orders, self._weights):
            while times and times[0] <= now - 60_000:
                times.popleft()
        limits = [{"rateLimitType": "ORDERS", "interval": interval, "intervalNum": num, "limit": limit,
                   "count": sum(1 for t in self._orders if t > now - num * (1000 if interval == "SECOND" else 60_000))}
                  for num, interval, limit in ORDER_LIMITS]
        limits.append({"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                       "limit": WEIGHT_LIMIT, "count": len(self._weights)})
        return limits

    def send(self, session: Session, req_id: Any, status: int, result: Any = None,
             error: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"id": req_id, "status": status}
        if error is not None:
            body["error"] = error
        else:
            body["result"] = result
        body["rateLimits"] = self.rate_limits(_now_ms())
        session.enqueue(dumps(body))

    def reject(self, session: Session, req_id: Any, reject: SimReject) -> None:
        code, msg = ERROR_CODES.get(reject.reason, (-1102, "Illegal parameter."))
        self.send(session, req_id, 400, error={"code": code, "msg": msg})

    # -- methods ---------------------------------------------------------------------------
    def _place(self, params: dict[str, Any], ratio: Decimal | None) -> SimOrder:
        """The REST new order's placement (perpbot.sim.trading.binance) for one `order.place`."""
        type_ = str(params.get("type", "LIMIT")).upper()
        if type_ not in ("LIMIT", "MARKET"):
            raise SimReject("bad_request", f"order type {type_} not supported by the simulator")
        try:
            qty = Decimal(str(params["quantity"]))
            price = Decimal(str(params["price"])) if type_ == "LIMIT" and params.get("price") else None
        except (KeyError, InvalidOperation):
            raise SimReject("bad_request", "quantity or price malformed") from None
        cap = None
        if ratio is not None:
            lot = self.sim.rules(str(params.get("symbol"))).lot
            cap = (qty * ratio // lot) * lot
        return self.sim.place_order(
            str(params.get("symbol")), str(params.get("side", "")).lower(), type_.lower(), qty, price,
            TIF_IN.get(str(params.get("timeInForce", "GTC")).upper(), "GTC"),
            reduce_only=str(params.get("reduceOnly", "false")).lower() == "true",
            client_id=params.get("newClientOrderId") or None, fill_cap=cap,
        )

    def acknowledged(self, order: SimOrder) -> dict[str, Any]:
        """ACK: the order as it was accepted (NEW, nothing executed yet)."""
        answer = self.api.order_json(order)
        answer.update({"status": "NEW", "executedQty": "0", "cumQty": "0", "cumQuote": "0", "avgPrice": "0.00",
                       "updateTime": order.created_ms})
        return answer

    def place(self, session: Session, req_id: Any, params: dict[str, Any]) -> None:
        outcome = ws_order(self.sim, params.get("symbol"), lambda ratio: self._place(params, ratio))
        now = _now_ms()
        if outcome.action == "drop":
            session.close(abort=True)
        elif outcome.action == "silent":
            return
        elif outcome.action == "rate_limited":
            until = now + outcome.retry_after_s * 1000
            status = 418 if outcome.status == 418 else 429
            self.send(session, req_id, status, error={
                "code": -1003, "msg": RATE_LIMIT_MSG[status].format(until=until),
                "data": {"serverTime": now, "retryAfter": until}})
        elif outcome.action == "maintenance":
            self.send(session, req_id, 503, error={"code": -1008, "msg": "Server is currently overloaded with "
                                                   "other requests. Please try again in a few minutes."})
        elif outcome.error is not None:
            self.reject(session, req_id, outcome.error)
        else:
            order: SimOrder = outcome.answer
            result = self.api.order_json(order) if params.get("newOrderRespType") == "RESULT" \
                else self.acknowledged(order)
            self.send(session, req_id, 200, result)

    def cancel(self, session: Session, req_id: Any, params: dict[str, Any]) -> None:
        try:
            order = self.sim.cancel_order(params.get("symbol"), params.get("orderId") or None,
                                          params.get("origClientOrderId") or None)
        except SimReject as reject:
            if reject.reason == "unknown_order":
                self.send(session, req_id, 400, error={"code": -2011, "msg": "Unknown order sent."})
            else:
                self.reject(session, req_id, reject)
            return
        self.send(session, req_id, 200, self.api.order_json(order))

    def close_all(self) -> None:
        for session in list(self.feed.sessions):
            session.close()


def mount_binance_orders(app: web.Application, sim: SimExchange, stats: SimStats) -> BinanceWsApi:
    """Serve /ws-fapi/v1 on the Binance app, on the same SimExchange as its REST API and user data stream."""
    api = BinanceWsApi(sim, stats)
    app.router.add_get("/ws-fapi/v1", api.feed.handle)

    async def _close(_app: web.Application) -> None:
        api.close_all()

    app.on_shutdown.append(_close)
    return api
