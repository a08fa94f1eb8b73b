"""Simulated Bybit v5 private WebSocket (/v5/private): auth, topics `order`, `execution`, `position`, `wallet`.

Auth: {"op":"auth","args":[api_key, expires_ms, signature]} with signature =
hex(HMAC-SHA256(secret, "GET/realtime" + expires)); success reply as the docs' example
{"success":true,"ret_msg":"","op":"auth","conn_id"}. Failures: no recorded frame exists;
live clients report {"success":false,"ret_msg":"Params Error",...} for an expiry in the past
(pybit issues) and "Request not authorized" for a bad key or signature (nautilus_trader #2101),
so those texts are used. Subscribing before auth gets "Request not authorized" (inferred).
Topic names `order`, `execution`, `position`, `wallet` (and their `.linear` forms) push frames
with the docs' envelope {"id","topic","creationTime","data":[...]} and the field sets of the
docs' stream examples in shared/fixtures/bybit/private_ws_frames.json; a funding settlement is an
`execution` with execType "Funding" (the row REST /v5/execution/list reports, same execId). Keepalive:
{"op":"ping"} -> {"req_id","op":"pong","args":[now_ms],"conn_id"} (the private-stream pong of
the Connect page).
"""

from __future__ import annotations

import itertools
import time
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from perpbot.sim.private.common import (
    SIM_API_KEY, SIM_SECRET, Frame, PrivateFeed, PrivateStream, bybit_sign, num, shutdown_hook,
)
from perpbot.sim.trading.accounts import FundingPayment, SimFill, SimOrder
from perpbot.sim.trading.exchange import SimEvent, SimExchange
from perpbot.sim.trading.margin_wire import (
    BYBIT_CREATE_TYPES, BYBIT_EXEC_TYPES, bybit_margin_fields, bybit_wallet_fields,
)
from perpbot.sim.ws_common import Session, SimStats, dumps

TOPICS = ("order", "execution", "position", "wallet")
STATUS = {"new": "New", "partially_filled": "PartiallyFilled", "filled": "Filled", "canceled": "Cancelled"}


class BybitPrivate(PrivateStream):
    venue = "bybit"

    def __init__(self, sim: SimExchange, stats: SimStats) -> None:
        super().__init__(sim)
        self.feed = PrivateFeed("bybit", stats, self, idle_timeout_s=None)
        self._seq = itertools.count(1)

    def sessions(self) -> list[Session]:
        return self.feed.sessions

    # -- client messages -------------------------------------------------------------------
    def check_path(self, request: web.Request) -> web.StreamResponse | None:
        return None

    def on_open(self, session: Session) -> None:
        session.state["private"] = False

    def reply(self, session: Session, op: str, ok: bool, msg: str, req_id: Any) -> None:
        body: dict[str, Any] = {"success": ok, "ret_msg": msg, "op": op, "conn_id": session.conn_id}
        if req_id is not None:
            body["req_id"] = req_id
        self.feed.send(session, body)

    def on_text(self, session: Session, text: str) -> None:
        try:
            request = orjson.loads(text)
            op = request["op"]
            args = request.get("args") or []
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.feed.send(session, {"success": False, "ret_msg": "error:request not json", "conn_id": session.conn_id})
            return
        req_id = request.get("req_id")
        if op == "ping":
            pong: dict[str, Any] = {"req_id": req_id or "", "op": "pong", "args": [str(int(time.time() * 1000))],
                                    "conn_id": session.conn_id}
            self.feed.send(session, pong)
        elif op == "auth":
            self.auth(session, args, req_id)
        elif op in ("subscribe", "unsubscribe"):
            self.subscribe(session, op, args, req_id)
        else:
            self.reply(session, op, False, f"error:invalid op {op}", req_id)

    def auth(self, session: Session, args: Any, req_id: Any) -> None:
        if not isinstance(args, list) or len(args) != 3:
            self.reply(session, "auth", False, "Params Error", req_id)
            return
        key, expires, signature = args
        try:
            expires_ms = int(expires)
        except (TypeError, ValueError):
            self.reply(session, "auth", False, "Params Error", req_id)
            return
        if expires_ms <= int(time.time() * 1000):
            self.reply(session, "auth", False, "Params Error", req_id)
        elif key != SIM_API_KEY or signature != bybit_sign(SIM_SECRET, expires):
            self.reply(session, "auth", False, "Request not authorized", req_id)
        else:
            session.state["private"] = True
            self.reply(session, "auth", True, "", req_id)

    def subscribe(self, session: Session, op: str, args: Any, req_id: Any) -> None:
        if not session.state.get("private"):
            self.reply(session, op, False, "Request not authorized", req_id)
            return
        topics = [str(a) for a in args] if isinstance(args, list) else []
        bad = [t for t in topics if t.removesuffix(".linear") not in TOPICS and t.removesuffix(".all") not in TOPICS]
        if bad or not topics:
            self.reply(session, op, False, f"error:handler not found,topic:{bad[0] if bad else ''}", req_id)
            return
        for topic in topics:
            base = topic.split(".")[0]
            if op == "subscribe":
                session.subs.add(base)
                session.state[("topic", base)] = topic  # the name pushes carry
            else:
                session.subs.discard(base)
        self.reply(session, op, True, "", req_id)

    def emit(self, targets: list[Session], frames: list[Frame], delay: float = 0.0) -> None:
        for session in targets:
            first = True
            for frame in frames:
                if frame.key not in session.subs:
                    continue
                topic = session.state.get(("topic", frame.key), frame.key)
                text = frame.text.replace('"topic":"' + frame.key + '"', '"topic":' + dumps(topic), 1)
                session.enqueue(text, delay if first else 0.0)
                first = False

    # -- rendering ---------------------------------------------------------------------------
    def envelope(self, topic: str, data: list[dict[str, Any]]) -> str:
        now = self.sim.now_ms()
        return dumps({"id": f"{now}{next(self._seq):06d}", "topic": topic, "creationTime": now, "data": data})

    def render(self, event: SimEvent) -> list[Frame]:
        order = event.order
        if event.kind == "order" and order is not None:
            return [Frame("order", self.envelope("order", [self.order_json(order)]), "state")]
        if event.kind == "fill" and order is not None and event.fill is not None:
            return [Frame("execution", self.envelope("execution", [self.execution_json(order, event.fill)]), "fill"),
                    Frame("order", self.envelope("order", [self.order_json(order)]), "state")]
        if event.kind == "funding" and event.funding is not None:
            return [Frame("execution", self.envelope("execution", [self.funding_json(event.funding)]), "account")]
        if event.kind == "account" and event.symbol is not None:
            return [Frame("position", self.envelope("position", [self.position_json(event.symbol)]), "account"),
                    Frame("wallet", self.envelope("wallet", [self.wallet_json()]), "account")]
        if event.kind == "account":  # a balance change without a position (an internal transfer)
            return [Frame("wallet", self.envelope("wallet", [self.wallet_json()]), "account")]
        return []

    def order_json(self, order: SimOrder) -> dict[str, Any]:
        status = STATUS[order.status]
        if order.status == "canceled" and order.filled > 0:
            status = "PartiallyFilledCanceled"
        tif = {"POST_ONLY": "PostOnly"}.get(order.time_in_force, order.time_in_force)
        cancel = "UNKNOWN"
        if order.status == "canceled":
            cancel = "CancelByUser" if order.time_in_force not in ("IOC", "FOK") else "UNKNOWN"
        return {
            "category": "linear", "symbol": order.symbol, "orderId": order.order_id,
            "orderLinkId": order.client_id or "", "side": order.side.capitalize(),
            "orderType": order.type.capitalize(), "cancelType": cancel,
            "price": num(order.price) if order.price is not None else "0", "qty": num(order.qty),
            "orderIv": "", "timeInForce": tif, "orderStatus": status, "lastPriceOnCreated": "",
            "reduceOnly": order.reduce_only, "leavesQty": num(order.remaining if order.is_open else Decimal(0)),
            "leavesValue": "0", "cumExecQty": num(order.filled), "cumExecValue": num(order.notional_filled),
            "avgPrice": num(order.average_price) if order.filled else "", "blockTradeId": "", "positionIdx": 0,
            "cumExecFee": num(order.fee), "closedPnl": "0", "createdTime": str(order.created_ms),
            "updatedTime": str(order.updated_ms), "rejectReason": "EC_NoError", "stopOrderType": "",
            "tpslMode": "", "triggerPrice": "", "takeProfit": "", "stopLoss": "", "tpTriggerBy": "",
            "slTriggerBy": "", "tpLimitPrice": "", "slLimitPrice": "", "triggerDirection": 0, "triggerBy": "",
            "closeOnTrigger": False, "placeType": "", "smpType": "None", "smpGroup": 0, "smpOrderId": "",
            "feeCurrency": self.sim.account.currency,
        }

    def execution_json(self, order: SimOrder, fill: SimFill) -> dict[str, Any]:
        """Same ids and numbers as REST /v5/execution/list (execId = the simulator's trade id)."""
        return {
            "category": "linear", "symbol": fill.symbol, "closedSize": "0", "execFee": num(fill.fee),
            "execId": fill.trade_id, "execPrice": num(fill.price), "execQty": num(fill.qty),
            "execType": BYBIT_EXEC_TYPES.get(order.origin or "", "Trade"),
            "execValue": num(fill.qty * fill.price), "feeRate": num(fill.fee / (fill.base_qty * fill.price)),
            "tradeIv": "", "markIv": "", "blockTradeId": "", "markPrice": num(fill.price), "indexPrice": "",
            "underlyingPrice": "", "leavesQty": num(order.remaining if order.is_open else Decimal(0)),
            "orderId": fill.order_id, "orderLinkId": fill.client_id or "",
            "orderPrice": num(order.price if order.price is not None else fill.price), "orderQty": num(order.qty),
            "orderType": order.type.capitalize(), "stopOrderType": "UNKNOWN", "side": fill.side.capitalize(),
            "execTime": str(fill.ts_ms), "isLeverage": "0", "isMaker": fill.liquidity == "maker",
            "seq": int(fill.trade_id), "marketUnit": "", "execPnl": num(fill.realized_pnl),
            "createType": BYBIT_CREATE_TYPES.get(order.origin or "", "CreateByUser"), "extraFees": [],
            "feeCurrency": fill.fee_currency,
        }

    def funding_json(self, payment: FundingPayment) -> dict[str, Any]:
        """A settlement as an execution with execType Funding (execFee > 0 = paid), the row REST
        /v5/execution/list?execType=Funding reports for it (same execId)."""
        n = next(i for i in range(len(self.sim.account.funding) - 1, -1, -1) if self.sim.account.funding[i] is payment)
        return {
            "category": "linear", "symbol": payment.symbol, "closedSize": "0", "execFee": num(-payment.amount),
            "execId": f"funding-{payment.ts_ms}-{n}", "execPrice": num(payment.mark), "execQty": num(abs(payment.size)),
            "execType": "Funding", "execValue": num(abs(payment.size) * payment.mark), "feeRate": num(payment.rate),
            "tradeIv": "", "markIv": "", "blockTradeId": "", "markPrice": num(payment.mark), "indexPrice": "",
            "underlyingPrice": "", "leavesQty": "0", "orderId": "", "orderLinkId": "", "orderPrice": "0",
            "orderQty": "0", "orderType": "UNKNOWN", "stopOrderType": "UNKNOWN",
            "side": "Buy" if payment.size > 0 else "Sell", "execTime": str(payment.ts_ms), "isLeverage": "0",
            "isMaker": False, "seq": n, "marketUnit": "", "execPnl": "0", "createType": "", "extraFees": [],
            "feeCurrency": self.sim.account.currency,
        }

    def position_json(self, symbol: str) -> dict[str, Any]:
        pos = self.sim.account.position(symbol)
        mark = Decimal(self.sim.market.mark("bybit", symbol))
        lever = self.sim.account.leverage_of(symbol)
        value = abs(pos.size) * pos.entry
        side = "" if not pos.size else ("Buy" if pos.size > 0 else "Sell")
        return {
            "positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": symbol,
            "side": side, "size": num(abs(pos.size)), "entryPrice": num(pos.entry), "sessionAvgPrice": "",
            "leverage": num(lever), "positionValue": num(value), "positionBalance": num(value / lever),
            "markPrice": num(mark), "positionIM": num(value / lever), "positionIMByMp": num(value / lever),
            "takeProfit": "0", "stopLoss": "0", "trailingStop": "0", "unrealisedPnl": num(pos.unrealized(mark)),
            "cumRealisedPnl": num(pos.realized_pnl), "curRealisedPnl": num(pos.realized_pnl),
            "createdTime": str(pos.opened_ms), "updatedTime": str(pos.updated_ms), "tpslMode": "Full",
            "bustPrice": "", "category": "linear", "positionStatus": "Normal",
            "autoAddMargin": 0, "leverageSysUpdatedTime": "",
            "mmrSysUpdatedTime": "", "seq": next(self._seq), "isReduceOnly": False,
            **bybit_margin_fields(self.sim, symbol),
        }

    def wallet_json(self) -> dict[str, Any]:
        m = self.sim.margin()
        coin = {
            "coin": self.sim.account.currency, "equity": num(m["equity"]), "usdValue": num(m["equity"]),
            "walletBalance": num(m["wallet"]), "availableToWithdraw": num(m["available"]),
            "availableToBorrow": "", "borrowAmount": "0", "accruedInterest": "0",
            "totalOrderIM": num(m["order_margin"]), "totalPositionIM": num(m["position_margin"]),
            "totalPositionMM": "0", "unrealisedPnl": num(m["unrealized_pnl"]), "cumRealisedPnl": "0", "bonus": "0",
            "collateralSwitch": True, "marginCollateral": True, "locked": "0", "spotHedgingQty": "0",
            "spotBorrow": "0",
        }
        return {
            "accountIMRate": "0", "accountIMRateByMp": "0", "accountMMRate": "0", "accountMMRateByMp": "0",
            "totalEquity": num(m["equity"]), "totalWalletBalance": num(m["wallet"]),
            "totalMarginBalance": num(m["equity"]), "totalAvailableBalance": num(m["available"]),
            "totalPerpUPL": num(m["unrealized_pnl"]), "totalInitialMargin": num(m["used"]),
            "totalInitialMarginByMp": num(m["used"]), "totalMaintenanceMargin": "0",
            "totalMaintenanceMarginByMp": "0", "coin": [coin], "accountLTV": "0", "accountType": "UNIFIED",
            **bybit_wallet_fields(self.sim),
        }


def mount_bybit_private(app: web.Application, sim: SimExchange, stats: SimStats) -> BybitPrivate:
    stream = BybitPrivate(sim, stats)
    app.router.add_get("/v5/private", stream.feed.handle)
    app.on_shutdown.append(shutdown_hook(stream))
    return stream
