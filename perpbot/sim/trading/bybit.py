"""Simulated Bybit v5 (linear) REST trading API, the endpoints ccxt.bybit calls, on top of SimExchange.

Shapes mirror https://bybit-exchange.github.io/docs/v5/order/create-order ; retCodes are the ones ccxt.bybit maps
(110007 InsufficientFunds, 110017 reduce-only InvalidOrder, 110001 OrderNotFound, 10006 RateLimitExceeded, ...).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from perpbot.sim.instruments import FUNDING_CAPS
from perpbot.sim.trading.accounts import ZERO, SimOrder, dec_str
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate, json_response
from perpbot.sim.trading.margin_wire import bybit_margin_fields, bybit_wallet_fields
from perpbot.sim.trading.matching import SimReject
from perpbot.sim.ws_common import Grid

ERROR_CODES = {
    # Texts from the docs' code table (venue_errors.json) where it has the code; 110017's is the one the v5
    # API was seen answering for a reduce-only order it refuses (ccxt issue 19588; legacy docs text).
    "insufficient_margin": (110007, "Available balance is insufficient"),
    "reduce_only": (110017, "Reduce-only rule not satisfied"),
    "unknown_order": (110001, "Order does not exist"),
    "duplicate_client_id": (110072, "OrderLinkedID is duplicate"),
    "bad_tick": (10001, "The number of contracts exceeds maximum limit allowed: price invalid"),
    "bad_lot": (10001, "Qty invalid"),
    "min_qty": (170136, "Order quantity lower than the minimum."),
    "min_notional": (110094, "Order notional value below the lower limit"),
    "unknown_symbol": (10001, "params error: symbol invalid"),
    "post_only_cross": (110003, "Order price is out of permissible range"),
    "bad_leverage": (10001, "leverage invalid"),
    "leverage_unchanged": (110043, "Set leverage has not been modified."),
    "bad_request": (10001, "params error"),
    "reject": (110009, "The number of stop orders exceeds the maximum allowable limit"),
}
CAP = FUNDING_CAPS["bybit"]
STATUS = {"new": "New", "partially_filled": "PartiallyFilled", "filled": "Filled", "canceled": "Cancelled"}
TIF_IN = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "POSTONLY": "POST_ONLY"}


def _steps(value: Decimal, step: Decimal) -> int:
    """How many whole `step`s fit in `value` (grid rendering of a quantity)."""
    return int(Decimal(value) // Decimal(step))


def envelope(result: Any, code: int = 0, msg: str = "OK", now_ms: int = 0) -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}


class BybitWire:
    def error(self, reason: str, message: str) -> web.Response:
        code, msg = ERROR_CODES.get(reason, (10001, "params error"))
        return json_response(envelope({}, code, msg))

    def maintenance(self) -> web.Response:
        # During maintenance Bybit's gateway answers 503 without a JSON body.
        return web.Response(status=503, text="Service Unavailable", content_type="text/html")

    def rate_limited(self, retry_after_s: int) -> web.Response:
        return json_response(envelope({}, 10006, "Too many visits!"), status=429)


class BybitApi:
    def __init__(self, sim: SimExchange, gate: FaultGate) -> None:
        self.sim = sim
        self.gate = gate

    def ok(self, result: Any) -> web.Response:
        return json_response(envelope(result, now_ms=self.sim.now_ms()))

    def instrument_json(self, symbol: str) -> dict[str, Any]:
        """The instruments-info row, keys and string forms as the documented BTCUSDT example
        (shared/fixtures/bybit/doc_instruments_info_linear_BTCUSDT.json): prices with the tick's own
        decimals (tick 0.10 -> "0.10", priceScale "2"), quantities with the qty step's."""
        inst = self.sim.instrument(symbol)
        price, qty = Grid(Decimal(inst.tick)), Grid(Decimal(inst.lot))
        _rate, interval_h, _next = self.sim.market.funding("bybit", symbol)
        return {
            "symbol": symbol, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": inst.base,
            "quoteCoin": inst.quote, "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
            "priceScale": str(price.decimals),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": f"{inst.max_leverage}.00", "leverageStep": "0.01"},
            # maxPrice: 19,999,998 ticks, as BTCUSDT (1999999.80 at 0.10) and ETHUSDT (199999.98 at 0.01).
            "priceFilter": {"minPrice": price.fixed(1), "maxPrice": price.fixed(19_999_998),
                            "tickSize": price.fixed(1)},
            "lotSizeFilter": {"maxOrderQty": qty.fixed(_steps(Decimal(1190), inst.lot)),
                              "minOrderQty": qty.fixed(_steps(inst.min_qty, inst.lot)), "qtyStep": qty.fixed(1),
                              "postOnlyMaxOrderQty": qty.fixed(_steps(Decimal(1190), inst.lot)),
                              "maxMktOrderQty": qty.fixed(_steps(Decimal(500), inst.lot)),
                              "minNotionalValue": dec_str(Decimal(inst.min_notional))},
            "unifiedMarginTrade": True, "fundingInterval": int(interval_h) * 60, "settleCoin": inst.quote,
            "copyTrading": "both", "upperFundingRate": format(CAP, "f"), "lowerFundingRate": format(-CAP, "f"),
            "isPreListing": False, "preListingInfo": None,
            "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"}, "symbolType": "",
        }

    def price_str(self, symbol: str, value: Decimal) -> str:
        """A price with the tick's decimals, as Bybit writes them ("68641.30")."""
        return format(value.quantize(Decimal(self.sim.instrument(symbol).tick)), "f")

    def size_str(self, symbol: str, value: Decimal) -> str:
        return format(value.quantize(Decimal(self.sim.instrument(symbol).lot)), "f")

    def order_json(self, order: SimOrder) -> dict[str, Any]:
        status = STATUS[order.status]
        if order.status == "canceled" and order.filled > 0:
            status = "PartiallyFilledCanceled"
        tif = {"POST_ONLY": "PostOnly"}.get(order.time_in_force, order.time_in_force)
        return {
            "orderId": order.order_id, "orderLinkId": order.client_id or "", "blockTradeId": "",
            "symbol": order.symbol,
            "price": self.price_str(order.symbol, order.price) if order.price is not None else "0",
            "qty": dec_str(order.qty), "side": order.side.capitalize(), "isLeverage": "", "positionIdx": 0,
            "orderStatus": status, "cancelType": "UNKNOWN", "rejectReason": "EC_NoError",
            "avgPrice": dec_str(order.average_price) if order.filled else "",
            "leavesQty": dec_str(order.remaining if order.is_open else Decimal(0)),
            "leavesValue": "0", "cumExecQty": dec_str(order.filled), "cumExecValue": dec_str(order.notional_filled),
            "cumExecFee": dec_str(order.fee), "timeInForce": tif, "orderType": order.type.capitalize(),
            "stopOrderType": "", "orderIv": "", "triggerPrice": "", "takeProfit": "", "stopLoss": "",
            "tpTriggerBy": "", "slTriggerBy": "", "triggerDirection": 0, "triggerBy": "", "lastPriceOnCreated": "",
            "reduceOnly": order.reduce_only, "closeOnTrigger": False, "smpType": "None", "smpGroup": 0,
            "smpOrderId": "", "tpslMode": "", "tpLimitPrice": "", "slLimitPrice": "", "placeType": "",
            "createdTime": str(order.created_ms), "updatedTime": str(order.updated_ms),
            # The rest of the recorded /v5/order/realtime row.
            "createType": "CreateByUser", "marketUnit": "", "slippageTolerance": "0",
            "slippageToleranceType": "UNKNOWN", "extraFees": "",
            "cumFeeDetail": {self.sim.account.currency: dec_str(order.fee)} if order.fee else {},
        }

    async def body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        return orjson.loads(raw) if raw else {}

    # ------------------------------------------------------------ public
    async def instruments(self, request: web.Request) -> web.Response:
        def act(_):
            if request.query.get("category", "linear") != "linear":
                return self.ok({"category": request.query.get("category"), "list": [], "nextPageCursor": ""})
            wanted = request.query.get("symbol")
            return self.ok({"category": "linear", "nextPageCursor": "",
                            "list": [self.instrument_json(s) for s in self.sim.symbols() if wanted in (None, s)]})
        return await self.gate.run("public", None, act)

    async def tickers(self, request: web.Request) -> web.Response:
        def act(_):
            wanted = request.query.get("symbol")
            data = []
            for symbol in self.sim.symbols():
                if wanted not in (None, symbol):
                    continue
                rate, interval_h, next_ms = self.sim.market.funding("bybit", symbol)
                bids, asks = self.sim.market.levels("bybit", symbol)
                mark = self.price_str(symbol, Decimal(self.sim.market.mark("bybit", symbol)))
                data.append({
                    "symbol": symbol, "lastPrice": mark, "indexPrice": mark, "markPrice": mark,
                    "prevPrice24h": mark, "price24hPcnt": "0", "highPrice24h": mark, "lowPrice24h": mark,
                    "prevPrice1h": mark,
                    "openInterest": "0", "openInterestValue": "0", "turnover24h": "0", "volume24h": "0",
                    "fundingRate": dec_str(Decimal(rate)), "nextFundingTime": str(next_ms),
                    "fundingIntervalHour": str(interval_h), "fundingCap": format(CAP, "f"),
                    "bid1Price": self.price_str(symbol, bids[0][0]) if bids else "",
                    "bid1Size": self.size_str(symbol, bids[0][1]) if bids else "",
                    "ask1Price": self.price_str(symbol, asks[0][0]) if asks else "",
                    "ask1Size": self.size_str(symbol, asks[0][1]) if asks else "",
                    # The rest of the recorded linear row (delivery and pre-listing fields, empty on a perpetual).
                    "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
                    "basis": "", "preOpenPrice": "", "preQty": "", "curPreListingPhase": "",
                })
            return self.ok({"category": "linear", "list": data})
        return await self.gate.run("public", None, act)

    async def server_time(self, request: web.Request) -> web.Response:
        now = self.sim.now_ms()
        return self.ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})

    # ------------------------------------------------------------ private reads
    async def coin_info(self, request: web.Request) -> web.Response:
        return await self.gate.run("private", None, lambda _: self.ok({"rows": []}))

    async def wallet_balance(self, request: web.Request) -> web.Response:
        def act(_):
            m = self.sim.margin()
            coin = {
                "coin": self.sim.account.currency, "equity": dec_str(m["equity"]), "usdValue": dec_str(m["equity"]),
                "walletBalance": dec_str(m["wallet"]), "availableToWithdraw": dec_str(m["available"]),
                "free": "", "locked": "0", "borrowAmount": "0", "accruedInterest": "0",
                "totalOrderIM": dec_str(m["order_margin"]), "totalPositionIM": dec_str(m["position_margin"]),
                "totalPositionMM": "0", "unrealisedPnl": dec_str(m["unrealized_pnl"]), "cumRealisedPnl": "0",
                "bonus": "0", "marginCollateral": True, "collateralSwitch": True,
            }
            return self.ok({"list": [{
                "accountType": "UNIFIED", "totalEquity": dec_str(m["equity"]),
                "totalWalletBalance": dec_str(m["wallet"]), "totalMarginBalance": dec_str(m["equity"]),
                "totalAvailableBalance": dec_str(m["available"]), "totalPerpUPL": dec_str(m["unrealized_pnl"]),
                "totalInitialMargin": dec_str(m["used"]), "totalMaintenanceMargin": "0",
                "accountIMRate": "0", "accountMMRate": "0", "accountLTV": "0", "coin": [coin],
                **bybit_wallet_fields(self.sim),
            }]})
        return await self.gate.run("private", None, act)

    async def positions(self, request: web.Request) -> web.Response:
        def act(_):
            wanted = request.query.get("symbol")
            data = []
            for symbol, pos in self.sim.account.positions.items():
                if not pos.size or wanted not in (None, symbol):
                    continue
                mark = Decimal(self.sim.market.mark("bybit", symbol))
                lever = self.sim.account.leverage_of(symbol)
                value = abs(pos.size) * pos.entry
                data.append({
                    "positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": symbol,
                    "side": "Buy" if pos.size > 0 else "Sell", "size": dec_str(abs(pos.size)),
                    "avgPrice": dec_str(pos.entry), "positionValue": dec_str(value), "tradeMode": 0,
                    "positionStatus": "Normal", "autoAddMargin": 0, "adlRankIndicator": 2,
                    "leverage": dec_str(lever), "positionBalance": dec_str(value / lever),
                    "markPrice": dec_str(mark), "liqPrice": "", "bustPrice": "",
                    "positionMM": dec_str(value * Decimal("0.005")), "positionIM": dec_str(value / lever),
                    "tpslMode": "Full", "takeProfit": "0", "stopLoss": "0", "trailingStop": "0",
                    "unrealisedPnl": dec_str(pos.unrealized(mark)), "curRealisedPnl": dec_str(pos.realized_pnl),
                    "cumRealisedPnl": dec_str(pos.realized_pnl), "seq": 1, "isReduceOnly": False,
                    "createdTime": str(pos.opened_ms), "updatedTime": str(pos.updated_ms),
                    **bybit_margin_fields(self.sim, symbol),
                })
            return self.ok({"category": "linear", "list": data, "nextPageCursor": ""})
        return await self.gate.run("private", None, act)

    async def realtime_orders(self, request: web.Request) -> web.Response:
        q = request.query

        def act(_):
            # ccxt sends orderId=None (the string) when only orderLinkId is given.
            order_id = q.get("orderId") if q.get("orderId") not in (None, "", "None") else None
            link_id = q.get("orderLinkId") or None
            if order_id or link_id:
                try:
                    orders = [self.sim.get_order(q.get("symbol"), order_id, link_id)]
                except SimReject:
                    orders = []  # Bybit answers an empty list for an unknown id
            else:
                orders = list(reversed(self.sim.open_orders(q.get("symbol"))))
            return self.ok({"category": "linear", "nextPageCursor": "", "list": [self.order_json(o) for o in orders]})
        return await self.gate.run("private", q.get("symbol"), act)

    async def executions(self, request: web.Request) -> web.Response:
        def act(_):
            if request.query.get("execType") == "Funding":
                return self.ok({"category": "linear", "nextPageCursor": "", "list": self.funding_executions(request)})
            data = []
            for fill in reversed(self.sim.fills(request.query.get("symbol"))):
                order = self.sim.account.orders.get(fill.order_id)
                if order is None:  # forgotten by the bounded order history: the fill alone describes it
                    order_price, order_qty, leaves, order_type = fill.price, fill.qty, ZERO, "Limit"
                else:
                    order_price, order_qty = order.price or fill.price, order.qty
                    leaves, order_type = order.remaining, order.type.capitalize()
                data.append({
                    "symbol": fill.symbol, "orderId": fill.order_id, "orderLinkId": fill.client_id or "",
                    "side": fill.side.capitalize(), "orderPrice": dec_str(order_price),
                    "orderQty": dec_str(order_qty), "leavesQty": dec_str(leaves), "createType": "",
                    "orderType": order_type, "stopOrderType": "", "execFee": dec_str(fill.fee),
                    "execId": fill.trade_id, "execPrice": dec_str(fill.price), "execQty": dec_str(fill.qty),
                    "execType": "Trade", "execValue": dec_str(fill.qty * fill.price), "execTime": str(fill.ts_ms),
                    "feeCurrency": fill.fee_currency, "isMaker": fill.liquidity == "maker",
                    "feeRate": dec_str(fill.fee / (fill.base_qty * fill.price)), "tradeIv": "", "markIv": "",
                    "markPrice": dec_str(fill.price), "indexPrice": "", "underlyingPrice": "", "blockTradeId": "",
                    "closedSize": "0", "seq": int(fill.trade_id), "marketUnit": "",
                })
            return self.ok({"category": "linear", "nextPageCursor": "", "list": data})
        return await self.gate.run("private", None, act)

    def funding_executions(self, request: web.Request) -> list[dict[str, Any]]:
        """Funding settlements as /v5/execution/list rows (execType Funding; execFee > 0 = paid), newest first."""
        self.sim.settle_funding()
        start = int(request.query.get("startTime") or 0)
        rows = []
        for n, p in enumerate(self.sim.account.funding):
            if request.query.get("symbol") not in (None, p.symbol) or p.ts_ms < start:
                continue
            rows.append({
                "symbol": p.symbol, "orderId": "", "orderLinkId": "", "side": "Buy" if p.size > 0 else "Sell",
                "orderPrice": "0", "orderQty": "0", "leavesQty": "0", "createType": "", "orderType": "UNKNOWN",
                "stopOrderType": "UNKNOWN", "execFee": dec_str(-p.amount), "execId": f"funding-{p.ts_ms}-{n}",
                "execPrice": dec_str(p.mark), "execQty": dec_str(abs(p.size)), "execType": "Funding",
                "execValue": dec_str(abs(p.size) * p.mark), "execTime": str(p.ts_ms), "feeCurrency": "",
                "isMaker": False, "feeRate": dec_str(p.rate), "tradeIv": "", "markIv": "", "markPrice": dec_str(p.mark),
                "indexPrice": "", "underlyingPrice": "", "blockTradeId": "", "closedSize": "0", "seq": n,
            })
        return list(reversed(rows))

    # ------------------------------------------------------------ private writes
    async def set_leverage(self, request: web.Request) -> web.Response:
        body = await self.body(request)

        def act(_):
            symbol, leverage = body["symbol"], Decimal(str(body.get("buyLeverage", "1")))
            self.sim.instrument(symbol)
            if self.sim.account.leverage_of(symbol) == leverage:  # Bybit refuses a no-op change
                raise SimReject("leverage_unchanged", f"leverage of {symbol} is already {leverage}")
            self.sim.set_leverage(symbol, leverage)
            return self.ok({})
        return await self.gate.run("private", body.get("symbol"), act)

    async def create(self, request: web.Request) -> web.Response:
        body = await self.body(request)

        def act(ratio):
            type_ = str(body.get("orderType", "Limit")).lower()
            if type_ not in ("limit", "market"):
                raise SimReject("bad_request", f"orderType {type_} not supported")
            qty = Decimal(str(body["qty"]))
            cap = None
            if ratio is not None:
                lot = self.sim.rules(body["symbol"]).lot
                cap = (qty * ratio // lot) * lot
            order = self.sim.place_order(
                body["symbol"], str(body.get("side", "")).lower(), type_, qty,
                Decimal(str(body["price"])) if type_ == "limit" and body.get("price") else None,
                TIF_IN.get(str(body.get("timeInForce", "GTC")).upper(), "GTC"),
                reduce_only=body.get("reduceOnly") in (True, "true"),
                client_id=body.get("orderLinkId") or None, fill_cap=cap,
            )
            return self.ok({"orderId": order.order_id, "orderLinkId": order.client_id or ""})
        return await self.gate.run("order", body.get("symbol"), act)

    async def cancel(self, request: web.Request) -> web.Response:
        body = await self.body(request)

        def act(_):
            order = self.sim.cancel_order(body.get("symbol"), body.get("orderId"), body.get("orderLinkId"))
            return self.ok({"orderId": order.order_id, "orderLinkId": order.client_id or ""})
        return await self.gate.run("private", body.get("symbol"), act)


def add_bybit_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    api = BybitApi(sim, gate)
    # Bybit order ids are UUIDs; a counter in UUID layout keeps them unique and readable.
    sim.id_format = lambda n: f"5a1b0000-0000-4000-8000-{n:012d}"
    r = app.router
    r.add_get("/v5/market/instruments-info", api.instruments)
    r.add_get("/v5/market/tickers", api.tickers)
    r.add_get("/v5/market/time", api.server_time)
    r.add_get("/v5/asset/coin/query-info", api.coin_info)
    r.add_get("/v5/account/wallet-balance", api.wallet_balance)
    r.add_get("/v5/position/list", api.positions)
    r.add_post("/v5/position/set-leverage", api.set_leverage)
    r.add_post("/v5/order/create", api.create)
    r.add_post("/v5/order/cancel", api.cancel)
    r.add_get("/v5/order/realtime", api.realtime_orders)
    r.add_get("/v5/execution/list", api.executions)
