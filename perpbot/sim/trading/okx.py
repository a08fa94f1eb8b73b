"""Simulated OKX v5 REST trading API (the endpoints ccxt.okx calls) on top of SimExchange.

Wire shapes mirror https://www.okx.com/docs-v5/en/#order-book-trading-trade ; error codes are the ones
ccxt.okx maps in its `exceptions` table (51008 InsufficientFunds, 51603 OrderNotFound, 50011 RateLimitExceeded,
50001 OnMaintenance, ...).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from perpbot.sim.instruments import FUNDING_CAPS
from perpbot.sim.trading.accounts import SimOrder, dec_str
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate, json_response
from perpbot.sim.trading.margin_wire import okx_margin_fields
from perpbot.sim.trading.matching import SimReject

PREFIX = "/api/v5"
ERROR_CODES = {
    "insufficient_margin": ("51008", "Order failed. Insufficient USDT margin in account"),
    # Reduce-only refusals by the position they meet (venue_errors.json, OKX docs texts): none -> 51169,
    # same direction -> 51170; larger than the position -> 51205 (which code the venue uses there is not known).
    "reduce_only": ("51169", "Order failed because you don't have any positions in this direction for this "
                             "contract to reduce or close."),
    "reduce_only_same_side": ("51170", "Failed to place order. A reduce-only order can\u2019t be the same trading "
                                       "direction as your existing positions."),
    "reduce_only_exceeds": ("51205", "Reduce Only is not available."),
    "unknown_order": ("51603", "Order does not exist"),
    "duplicate_client_id": ("51016", "Duplicated clOrdId"),
    "bad_tick": ("51000", "Parameter px error"),
    "bad_lot": ("51121", "Order quantity must be a multiple of the lot size."),
    "min_qty": ("51020", "Your order should meet or exceed the minimum order amount"),
    "min_notional": ("51020", "Your order should meet or exceed the minimum order amount"),
    "unknown_symbol": ("51001", "Instrument ID does not exist"),
    "post_only_cross": ("51006", "Order price is not within the price limit"),
    "bad_leverage": ("51000", "Parameter lever error"),
    "bad_request": ("51000", "Parameter error"),
    "reject": ("51006", "Order rejected"),
}
ORDER_REASONS = {"insufficient_margin", "reduce_only", "reduce_only_same_side", "reduce_only_exceeds",
                 "duplicate_client_id", "bad_tick", "bad_lot", "min_qty", "min_notional", "post_only_cross", "reject"}
# Codes whose sMsg is the venue's text as is (venue_errors.json); the others carry the simulator's detail.
EXACT_TEXT = {"reduce_only", "reduce_only_same_side", "reduce_only_exceeds", "bad_lot"}
ORD_TYPES = {
    "limit": ("limit", "GTC"), "ioc": ("limit", "IOC"), "fok": ("limit", "FOK"),
    "post_only": ("limit", "POST_ONLY"), "market": ("market", "IOC"), "optimal_limit_ioc": ("market", "IOC"),
}
CAP = FUNDING_CAPS["okx"]
STATES = {"new": "live", "partially_filled": "partially_filled", "filled": "filled", "canceled": "canceled"}


class OkxWire:
    """OKX error envelopes: order failures carry sCode/sMsg inside data, others a top-level code."""

    def error(self, reason: str, message: str) -> web.Response:
        code, msg = ERROR_CODES.get(reason, ("51000", "Parameter error"))
        if reason in ORDER_REASONS:
            return json_response({"code": "1", "msg": "All operations failed",
                                  "data": [{"ordId": "", "clOrdId": "", "tag": "", "sCode": code,
                                            "sMsg": msg if reason in EXACT_TEXT else f"{msg} ({message})"}]})
        return json_response({"code": code, "msg": msg, "data": []})

    def maintenance(self) -> web.Response:
        return json_response({"code": "50001", "msg": "Service temporarily unavailable, please try again later.",
                              "data": []}, status=503)

    def rate_limited(self, retry_after_s: int) -> web.Response:
        return json_response({"code": "50011", "msg": "Too Many Requests", "data": []}, status=429)


def ok(data: list[Any]) -> web.Response:
    return json_response({"code": "0", "msg": "", "data": data})


class OkxApi:
    def __init__(self, sim: SimExchange, gate: FaultGate) -> None:
        self.sim = sim
        self.gate = gate

    # ------------------------------------------------------------ rendering
    def inst_type_ok(self, request: web.Request) -> bool:
        return request.query.get("instType", "SWAP").upper() == "SWAP"

    def instrument_json(self, symbol: str) -> dict[str, Any]:
        inst = self.sim.instrument(symbol)
        return {
            "instType": "SWAP", "instId": symbol, "uly": f"{inst.base}-{inst.quote}",
            "instFamily": f"{inst.base}-{inst.quote}", "baseCcy": "", "quoteCcy": "", "settleCcy": inst.quote,
            "ctValCcy": inst.base, "ctVal": dec_str(Decimal(inst.contract_size)), "ctMult": "1",
            "ctType": "linear", "tickSz": dec_str(Decimal(inst.tick)), "lotSz": dec_str(Decimal(inst.lot)),
            "minSz": dec_str(Decimal(inst.min_qty)), "lever": str(inst.max_leverage), "state": "live",
            "listTime": "1606468572000", "expTime": "", "alias": "", "category": "1", "optType": "", "stk": "",
            "maxLmtSz": "100000000", "maxMktSz": "100000000", "ruleType": "normal",
        }

    def order_json(self, order: SimOrder) -> dict[str, Any]:
        ord_type = {"GTC": "limit", "IOC": "ioc", "FOK": "fok", "POST_ONLY": "post_only"}[order.time_in_force]
        if order.type == "market":
            ord_type = "market"
        last = next((f for f in reversed(self.sim.visible_fills()) if f.order_id == order.order_id), None)
        return {
            "instType": "SWAP", "instId": order.symbol, "ordId": order.order_id, "clOrdId": order.client_id or "",
            "tag": "", "px": dec_str(order.price) if order.price is not None else "", "sz": dec_str(order.qty),
            "ordType": ord_type, "side": order.side, "posSide": "net", "tdMode": "cross",
            "accFillSz": dec_str(order.filled), "fillPx": dec_str(last.price) if last else "",
            "fillSz": dec_str(last.qty) if last else "0", "fillTime": str(last.ts_ms) if last else "",
            "avgPx": dec_str(order.average_price) if order.filled else "", "state": STATES[order.status],
            "lever": dec_str(order.leverage), "fee": dec_str(-order.fee), "feeCcy": self.sim.account.currency,
            "rebate": "0", "rebateCcy": self.sim.account.currency, "pnl": "0", "category": "normal",
            "reduceOnly": "true" if order.reduce_only else "false", "cTime": str(order.created_ms),
            "uTime": str(order.updated_ms), "tgtCcy": "",
            # The rest of the recorded /trade/order row: algo, TP/SL, self-trade and quick-margin fields unused.
            "tradeId": last.trade_id if last else "", "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "",
            "attachAlgoOrds": [], "cancelSource": "", "cancelSourceReason": "", "ccy": "", "isTpLimit": "false",
            "linkedAlgoOrd": {"algoId": ""}, "pxType": "", "pxUsd": "", "pxVol": "", "quickMgnType": "",
            "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "source": "", "stpId": "",
            "stpMode": "cancel_maker", "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "",
        }

    # ------------------------------------------------------------ public
    async def instruments(self, request: web.Request) -> web.Response:
        def act(_):
            if not self.inst_type_ok(request):
                return ok([])
            wanted = request.query.get("instId")
            return ok([self.instrument_json(s) for s in self.sim.symbols() if wanted in (None, s)])
        return await self.gate.run("public", None, act)

    async def funding_rate(self, request: web.Request) -> web.Response:
        def act(_):
            inst_id = request.query.get("instId", "ANY")
            symbols = self.sim.symbols() if inst_id == "ANY" else [inst_id]
            data = []
            for symbol in symbols:
                self.sim.instrument(symbol)
                rate, interval_h, next_ms = self.sim.market.funding("okx", symbol)
                data.append({
                    "instType": "SWAP", "instId": symbol, "fundingRate": dec_str(Decimal(rate)),
                    "nextFundingRate": "", "fundingTime": str(next_ms),
                    "nextFundingTime": str(int(next_ms) + int(interval_h) * 3_600_000),
                    "method": "current_period", "formulaType": "withRate", "premium": "0",
                    "settFundingRate": dec_str(Decimal(rate)), "settState": "settled",
                    "impactValue": "", "interestRate": "0", "maxFundingRate": format(CAP, "f"),
                    "minFundingRate": format(-CAP, "f"), "ts": str(self.sim.now_ms()),
                })
            return ok(data)
        return await self.gate.run("public", None, act)

    # ------------------------------------------------------------ private reads
    async def currencies(self, request: web.Request) -> web.Response:
        return await self.gate.run("private", None, lambda _: ok([]))

    async def balance(self, request: web.Request) -> web.Response:
        def act(_):
            m = self.sim.margin()
            ccy = self.sim.account.currency
            now = str(self.sim.now_ms())
            detail = {
                "ccy": ccy, "eq": dec_str(m["equity"]), "cashBal": dec_str(m["wallet"]),
                "availBal": dec_str(m["available"]), "availEq": dec_str(m["available"]),
                "frozenBal": dec_str(m["used"]), "ordFrozen": dec_str(m["order_margin"]),
                "imr": dec_str(m["position_margin"]), "upl": dec_str(m["unrealized_pnl"]),
                "eqUsd": dec_str(m["equity"]), "uTime": now,
            }
            return ok([{"totalEq": dec_str(m["equity"]), "adjEq": dec_str(m["equity"]),
                        "imr": dec_str(m["used"]), "uTime": now, "details": [detail]}])
        return await self.gate.run("private", None, act)

    async def positions(self, request: web.Request) -> web.Response:
        def act(_):
            wanted = set(filter(None, request.query.get("instId", "").split(",")))
            data = []
            for symbol, pos in self.sim.account.positions.items():
                if not pos.size or (wanted and symbol not in wanted):
                    continue
                inst = self.sim.instrument(symbol)
                mark = Decimal(self.sim.market.mark("okx", symbol))
                lever = self.sim.account.leverage_of(symbol)
                contracts = pos.size / Decimal(inst.contract_size)
                notional = abs(pos.size) * mark
                data.append({
                    "instType": "SWAP", "instId": symbol, "posId": f"{symbol}-net", "posSide": "net",
                    "pos": dec_str(contracts), "posCcy": "", "avgPx": dec_str(pos.entry),
                    "markPx": dec_str(mark), "upl": dec_str(pos.unrealized(mark)), "lever": dec_str(lever),
                    "imr": dec_str(notional / lever), **okx_margin_fields(self.sim, symbol),
                    "notionalUsd": dec_str(notional), "realizedPnl": dec_str(pos.realized_pnl),
                    "ccy": self.sim.account.currency, "cTime": str(pos.opened_ms), "uTime": str(pos.updated_ms),
                    "margin": "", "uplRatio": "0",
                })
            return ok(data)
        return await self.gate.run("private", None, act)

    async def get_order(self, request: web.Request) -> web.Response:
        q = request.query

        def act(_):
            # python-okx sends every parameter, the unused id as "": an empty id is an absent one.
            order = self.sim.get_order(q.get("instId"), q.get("ordId") or None, q.get("clOrdId") or None)
            return ok([self.order_json(order)])
        return await self.gate.run("private", q.get("instId"), act)

    async def orders_pending(self, request: web.Request) -> web.Response:
        def act(_):
            return ok([self.order_json(o) for o in reversed(self.sim.open_orders(request.query.get("instId")))])
        return await self.gate.run("private", None, act)

    async def fills(self, request: web.Request) -> web.Response:
        def act(_):
            data = []
            for fill in reversed(self.sim.fills(request.query.get("instId"))):
                data.append({
                    "instType": "SWAP", "instId": fill.symbol, "tradeId": fill.trade_id, "ordId": fill.order_id,
                    "clOrdId": fill.client_id or "", "billId": fill.trade_id, "tag": "",
                    "fillPx": dec_str(fill.price), "fillSz": dec_str(fill.qty), "side": fill.side,
                    "posSide": "net", "execType": "T" if fill.liquidity == "taker" else "M",
                    "feeCcy": fill.fee_currency, "fee": dec_str(-fill.fee), "fillPnl": dec_str(fill.realized_pnl),
                    "ts": str(fill.ts_ms), "fillTime": str(fill.ts_ms),
                    "feeRate": dec_str(-fill.fee / (fill.base_qty * fill.price)),  # negative = charged, as the fee
                    "fillPxVol": "", "fillPxUsd": "", "fillMarkVol": "", "fillFwdPx": "", "fillMarkPx": "",
                    "fillIdxPx": "",
                })
            return ok(data)
        return await self.gate.run("private", None, act)

    async def bills(self, request: web.Request) -> web.Response:
        """GET /account/bills(-archive): funding-fee bills (type 8), newest first like the venue."""
        def act(_):
            self.sim.settle_funding()
            if request.query.get("type", "8") != "8":
                return ok([])
            data = [
                {"bal": "", "balChg": dec_str(p.amount), "billId": f"{p.ts_ms}{n:04d}", "ccy": self.sim.account.currency,
                 "execType": "", "fee": "0", "instId": p.symbol, "instType": "SWAP", "mgnMode": "cross",
                 "ordId": "", "pnl": dec_str(p.amount), "posBal": "0", "posBalChg": "0", "sz": dec_str(abs(p.size)),
                 "px": dec_str(p.mark), "subType": "174" if p.amount > 0 else "173", "ts": str(p.ts_ms), "type": "8"}
                for n, p in enumerate(self.sim.account.funding)
                if request.query.get("instId") in (None, p.symbol)
            ]
            return ok(list(reversed(data))[: int(request.query.get("limit") or 100)])
        return await self.gate.run("private", None, act)

    # ------------------------------------------------------------ private writes
    async def set_leverage(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"{}")

        def act(_):
            symbol = body.get("instId")
            self.sim.set_margin_mode(symbol, body.get("mgnMode", "cross"))  # refused with a position open
            self.sim.set_leverage(symbol, Decimal(str(body.get("lever"))))
            return ok([{"instId": symbol, "lever": str(body.get("lever")), "mgnMode": body.get("mgnMode", "cross"),
                        "posSide": "net"}])
        return await self.gate.run("private", body.get("instId"), act)

    def _place(self, item: dict[str, Any], ratio: Decimal | None) -> dict[str, Any]:
        ord_type = item.get("ordType", "limit")
        if ord_type not in ORD_TYPES:
            raise SimReject("bad_request", f"ordType {ord_type} not supported")
        type_, tif = ORD_TYPES[ord_type]
        qty = Decimal(str(item["sz"]))
        price = Decimal(str(item["px"])) if item.get("px") not in (None, "") and type_ == "limit" else None
        cap = None
        if ratio is not None:
            rules = self.sim.rules(item["instId"])
            cap = (qty * ratio // rules.lot) * rules.lot
        try:
            order = self.sim.place_order(
                item["instId"], item["side"], type_, qty, price, tif,
                reduce_only=str(item.get("reduceOnly", "false")).lower() == "true",
                client_id=item.get("clOrdId") or None, fill_cap=cap,
            )
        except SimReject as reject:
            if reject.reason == "reduce_only":
                raise SimReject(self.reduce_only_reason(item["instId"], item["side"]), reject.message) from None
            raise
        return {"ordId": order.order_id, "clOrdId": order.client_id or "", "tag": item.get("tag", ""),
                "ts": str(order.created_ms), "sCode": "0", "sMsg": "Order placed"}

    def reduce_only_reason(self, symbol: str, side: str) -> str:
        """Which OKX refusal a reduce-only order gets: no position (51169), one on the order's side (51170),
        or one smaller than the order (51205)."""
        size = self.sim.account.position(symbol).size
        if size == 0:
            return "reduce_only"
        return "reduce_only_same_side" if (size > 0) == (side == "buy") else "reduce_only_exceeds"

    async def place(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"{}")
        items = body if isinstance(body, list) else [body]
        symbol = items[0].get("instId") if items else None

        def act(ratio):
            return ok([self._place(item, ratio) for item in items])
        return await self.gate.run("order", symbol, act)

    async def cancel(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"{}")
        items = body if isinstance(body, list) else [body]

        def act(_):
            data = []
            for item in items:
                try:
                    order = self.sim.cancel_order(item.get("instId"), item.get("ordId") or None,
                                                  item.get("clOrdId") or None)
                except SimReject:
                    if isinstance(body, list) and len(items) > 1:
                        data.append({"ordId": item.get("ordId", ""), "clOrdId": item.get("clOrdId", ""),
                                     "sCode": "51400", "sMsg": "Cancellation failed as the order does not exist."})
                        continue
                    return json_response({"code": "1", "msg": "All operations failed", "data": [
                        {"ordId": item.get("ordId", ""), "clOrdId": item.get("clOrdId", ""), "sCode": "51400",
                         "sMsg": "Cancellation failed as the order has been filled, canceled or does not exist."}]})
                data.append({"ordId": order.order_id, "clOrdId": order.client_id or "", "sCode": "0", "sMsg": "",
                             "ts": str(order.updated_ms)})
            return ok(data)
        return await self.gate.run("private", items[0].get("instId") if items else None, act)


def add_okx_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    api = OkxApi(sim, gate)
    sim.id_format = lambda n: str(600_000_000_000_000_000 + n)  # OKX order ids are 18+ digit numbers
    r = app.router
    r.add_get(PREFIX + "/public/instruments", api.instruments)
    r.add_get(PREFIX + "/public/funding-rate", api.funding_rate)
    r.add_get(PREFIX + "/asset/currencies", api.currencies)
    r.add_get(PREFIX + "/account/balance", api.balance)
    r.add_get(PREFIX + "/account/positions", api.positions)
    r.add_post(PREFIX + "/account/set-leverage", api.set_leverage)
    r.add_post(PREFIX + "/trade/order", api.place)
    r.add_post(PREFIX + "/trade/batch-orders", api.place)
    r.add_post(PREFIX + "/trade/cancel-order", api.cancel)
    r.add_post(PREFIX + "/trade/cancel-batch-orders", api.cancel)
    r.add_get(PREFIX + "/trade/order", api.get_order)
    r.add_get(PREFIX + "/trade/orders-pending", api.orders_pending)
    r.add_get(PREFIX + "/trade/fills", api.fills)
    r.add_get(PREFIX + "/trade/fills-history", api.fills)
    r.add_get(PREFIX + "/account/bills", api.bills)
    r.add_get(PREFIX + "/account/bills-archive", api.bills)
