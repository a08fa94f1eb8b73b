"""Simulated Bybit v5 WebSocket trade endpoint (/v5/trade): `auth`, `order.create`, `order.cancel`, `ping`.

Shapes as the docs' "Websocket Trade Guideline" (see perpbot.venues.bybit.order_link): auth with the
private stream's signature (HMAC-SHA256 of "GET/realtime" + expires) -> {"retCode": 0, "retMsg": "OK",
"op": "auth", "connId"}; refusals with the documented codes 10001 (param error; also an expiry in the
past), 10003 (API key is invalid), 10004 (invalid sign), 20001 (repeat auth). Each order op needs the
header X-BAPI-TIMESTAMP inside the documented window (server time - recv window <= ts < server time +
1000, else 10002) and a reqId not seen before on the connection (else 20006); an op before auth is refused
with 10001 "Request not authorized" (inferred: no recorded refusal). The answer is the docs' envelope
{"reqId", "retCode", "retMsg", "op", "data", "retExtInfo", "header", "connId"}; an error carries the REST
table's retCode/retMsg (perpbot.sim.trading.bybit, the same answers on both paths) and data {}.
Placements run through perpbot.sim.private.order_faults.ws_order on the venue's SimExchange, so the
private stream pushes the fills: rate_limit answers 10006 with X-Bapi-Limit-Status 0 and
X-Bapi-Limit-Reset-Timestamp = now + retry_after_s; maintenance answers 10019 (the trade service is
restarting). Every request the endpoint read is kept in `requests` (tests check what clients send,
e.g. that no broker "Referer" rides in the header).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from perpbot.sim.private.common import SIM_API_KEY, SIM_SECRET, PrivateFeed, bybit_sign
from perpbot.sim.private.order_faults import ws_order
from perpbot.sim.trading.bybit import ERROR_CODES, TIF_IN
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.matching import SimReject
from perpbot.sim.ws_common import Session, SimStats, dumps

OPS = ("order.create", "order.cancel")
OP_LIMIT = 10  # requests per second per op, the docs' example header
DEFAULT_RECV_WINDOW_MS = 5000
RATE_LIMIT_MSG = "Too many visits. Exceeded the API Rate Limit."
RESTARTING_MSG = ("ws trade service is restarting, do not accept new request, but the request in the process is "
                  "not affected. You can build new connection to be routed to normal service")
KEPT_REQUESTS = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


class BybitTrade:
    """The /v5/trade endpoint of one simulated Bybit account."""

    def __init__(self, sim: SimExchange, stats: SimStats) -> None:
        self.sim = sim
        self.feed = PrivateFeed("bybit-trade", stats, self, idle_timeout_s=None)
        self.requests: deque[dict[str, Any]] = deque(maxlen=KEPT_REQUESTS)
        self._trace = itertools.count(1)
        self._recent: dict[str, deque[int]] = {op: deque() for op in OPS}

    # -- PrivateFeed hooks ---------------------------------------------------------------
    def check_path(self, request: web.Request) -> web.StreamResponse | None:
        return None

    def on_open(self, session: Session) -> None:
        session.state["private"] = False
        session.state["req_ids"] = set()

    def on_text(self, session: Session, text: str) -> None:
        try:
            request = orjson.loads(text)
            op = request["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.feed.send(session, {"retCode": 10001, "retMsg": "Param error: request is not valid JSON",
                                     "connId": session.conn_id})
            return
        self.requests.append(request)
        if op == "ping":
            self.feed.send(session, {"retCode": 0, "retMsg": "OK", "op": "pong", "data": [str(_now_ms())],
                                     "connId": session.conn_id})
        elif op == "auth":
            self.auth(session, request.get("args"), request.get("reqId"))
        elif op in OPS:
            self.order_op(session, op, request)
        else:
            self.reply(session, op, request.get("reqId"), 10404, "op type is not found")

    # -- auth ------------------------------------------------------------------------------
    def auth_reply(self, session: Session, code: int, msg: str, req_id: Any) -> None:
        body: dict[str, Any] = {"retCode": code, "retMsg": msg, "op": "auth", "connId": session.conn_id}
        if req_id is not None:
            body = {"reqId": req_id, **body}
        self.feed.send(session, body)

    def auth(self, session: Session, args: Any, req_id: Any) -> None:
        if session.state.get("private"):
            self.auth_reply(session, 20001, "Repeat auth", req_id)
            return
        if not isinstance(args, list) or len(args) != 3:
            self.auth_reply(session, 10001, "Params Error", req_id)
            return
        key, expires, signature = args
        try:
            expires_ms = int(expires)
        except (TypeError, ValueError):
            self.auth_reply(session, 10001, "Params Error", req_id)
            return
        if expires_ms <= _now_ms():
            self.auth_reply(session, 10001, "Params Error", req_id)
        elif key != SIM_API_KEY:
            self.auth_reply(session, 10003, "API key is invalid.", req_id)
        elif signature != bybit_sign(SIM_SECRET, expires):
            self.auth_reply(session, 10004, "Error sign, please check your signature generation algorithm.", req_id)
        else:
            session.state["private"] = True
            self.auth_reply(session, 0, "OK", req_id)

    # -- orders ----------------------------------------------------------------------------
    def header(self, op: str, now: int, retry_after_s: int | None = None) -> dict[str, str]:
        recent = self._recent[op]
        while recent and recent[0] <= now - 1000:
            recent.popleft()
        remaining = 0 if retry_after_s is not None else max(0, OP_LIMIT - len(recent))
        reset = now + retry_after_s * 1000 if retry_after_s is not None else now
        return {"X-Bapi-Limit": str(OP_LIMIT), "X-Bapi-Limit-Status": str(remaining),
                "X-Bapi-Limit-Reset-Timestamp": str(reset), "Traceid": f"{next(self._trace):032x}",
                "Timenow": str(now)}

    def reply(self, session: Session, op: str, req_id: Any, code: int, msg: str, data: Any = None,
              retry_after_s: int | None = None) -> None:
        body: dict[str, Any] = {}
        if req_id is not None:
            body["reqId"] = req_id
        body.update({"retCode": code, "retMsg": msg, "op": op, "data": data if data is not None else {},
                     "retExtInfo": {}, "header": self.header(op, _now_ms(), retry_after_s),
                     "connId": session.conn_id})
        session.enqueue(dumps(body))

    def order_op(self, session: Session, op: str, request: dict[str, Any]) -> None:
        req_id = request.get("reqId")
        if not session.state.get("private"):
            self.reply(session, op, req_id, 10001, "Request not authorized")
            return
        if req_id is not None:
            seen: set[Any] = session.state["req_ids"]
            if req_id in seen:
                self.reply(session, op, req_id, 20006, "reqId is duplicated")
                return
            seen.add(req_id)
        header = request.get("header")
        if not isinstance(header, dict):
            header = {}
        now = _now_ms()
        try:
            stamp = int(header["X-BAPI-TIMESTAMP"])
            window = int(header.get("X-BAPI-RECV-WINDOW", DEFAULT_RECV_WINDOW_MS))
        except (KeyError, TypeError, ValueError):
            self.reply(session, op, req_id, 10001, "Param error: X-BAPI-TIMESTAMP is required")
            return
        if not now - window <= stamp < now + 1000:
            self.reply(session, op, req_id, 10002, "The request time exceeds the time window range.")
            return
        args = request.get("args")
        if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
            self.reply(session, op, req_id, 10001, "Param error: args must hold one order")
            return
        item = args[0]
        if item.get("category") != "linear":
            self.reply(session, op, req_id, 10404, "category is not correct/supported")
            return
        self._recent[op].append(now)
        if op == "order.create":
            self.create(session, req_id, item)
        else:
            self.cancel(session, req_id, item)

    def place(self, item: dict[str, Any], ratio: Decimal | None) -> dict[str, str]:
        """The REST create's placement (perpbot.sim.trading.bybit), for one `order.create` argument."""
        type_ = str(item.get("orderType", "Limit")).lower()
        if type_ not in ("limit", "market"):
            raise SimReject("bad_request", f"orderType {type_} not supported")
        try:
            qty = Decimal(str(item["qty"]))
            price = Decimal(str(item["price"])) if type_ == "limit" and item.get("price") else None
        except (KeyError, ArithmeticError):
            raise SimReject("bad_request", "qty or price invalid") from None
        cap = None
        if ratio is not None:
            lot = self.sim.rules(str(item.get("symbol"))).lot
            cap = (qty * ratio // lot) * lot
        order = self.sim.place_order(
            str(item.get("symbol")), str(item.get("side", "")).lower(), type_, qty, price,
            TIF_IN.get(str(item.get("timeInForce", "GTC")).upper(), "GTC"),
            reduce_only=item.get("reduceOnly") in (True, "true"),
            client_id=item.get("orderLinkId") or None, fill_cap=cap,
        )
        return {"orderId": order.order_id, "orderLinkId": order.client_id or ""}

    def create(self, session: Session, req_id: Any, item: dict[str, Any]) -> None:
        op = "order.create"
        outcome = ws_order(self.sim, item.get("symbol"), lambda ratio: self.place(item, ratio))
        if outcome.action == "drop":
            session.close(abort=True)
        elif outcome.action == "silent":
            return
        elif outcome.action == "rate_limited":
            self.reply(session, op, req_id, 10006, RATE_LIMIT_MSG, retry_after_s=outcome.retry_after_s)
        elif outcome.action == "maintenance":
            self.reply(session, op, req_id, 10019, RESTARTING_MSG)
        elif outcome.error is not None:
            code, msg = ERROR_CODES.get(outcome.error.reason, (10001, "params error"))
            self.reply(session, op, req_id, code, msg)
        else:
            self.reply(session, op, req_id, 0, "OK", outcome.answer)

    def cancel(self, session: Session, req_id: Any, item: dict[str, Any]) -> None:
        try:
            order = self.sim.cancel_order(item.get("symbol"), item.get("orderId") or None,
                                          item.get("orderLinkId") or None)
        except SimReject as reject:
            code, msg = ERROR_CODES.get(reject.reason, (10001, "params error"))
            self.reply(session, "order.cancel", req_id, code, msg)
            return
        self.reply(session, "order.cancel", req_id, 0, "OK",
                   {"orderId": order.order_id, "orderLinkId": order.client_id or ""})

    def close_all(self) -> None:
        for session in list(self.feed.sessions):
            session.close()


def mount_bybit_orders(app: web.Application, sim: SimExchange, stats: SimStats) -> BybitTrade:
    """Serve /v5/trade on the Bybit app, on the same SimExchange as its REST API and private stream."""
    trade = BybitTrade(sim, stats)
    app.router.add_get("/v5/trade", trade.feed.handle)

    async def _close(_app: web.Application) -> None:
        trade.close_all()

    app.on_shutdown.append(_close)
    return trade
