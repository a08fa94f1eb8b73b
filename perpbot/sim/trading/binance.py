"""Simulated Binance USD-M futures REST trading API (/fapi endpoints ccxt.binanceusdm calls) on SimExchange.

Shapes mirror https://developers.binance.com/docs/derivatives/usds-margined-futures ; error codes are the ones
ccxt.binanceusdm maps for fapi URLs (-2019 InsufficientFunds, -2022 InvalidOrder, -2013/-2011 OrderNotFound,
-1003 with HTTP 429 RateLimitExceeded/DDoSProtection, ...).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from aiohttp import web

from perpbot.sim.trading.accounts import SimOrder, dec_str
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate, json_response
from perpbot.sim.trading.margin_wire import binance_margin_fields
from perpbot.sim.trading.matching import SimReject

ERROR_CODES = {
    "insufficient_margin": (-2019, "Margin is insufficient."),
    "reduce_only": (-2022, "ReduceOnly Order is rejected."),
    "unknown_order": (-2013, "Order does not exist."),
    "duplicate_client_id": (-4116, "clientOrderId is duplicated"),
    "bad_tick": (-4014, "Price not increased by tick size."),
    "bad_lot": (-1111, "Precision is over the maximum defined for this asset."),
    "min_qty": (-4004, "Quantity less than min quantity."),
    "min_notional": (-4164, "Order's notional must be no smaller than 5.0 (unless you choose reduce only)"),
    "unknown_symbol": (-1121, "Invalid symbol."),
    "post_only_cross": (-5022, "Due to the order could not be executed as maker, the Post Only order will be "
                               "rejected."),
    "bad_leverage": (-4028, "Leverage is not valid"),
    "bad_request": (-1102, "Mandatory parameter was not sent, was empty/null, or malformed."),
    "reject": (-2010, "NEW_ORDER_REJECTED"),
    # The PERCENT_PRICE filter every symbol carries (exchangeInfo): a limit price beyond mark x multiplier.
    "price_above_cap": (-4016, "Price is higher than mark price multiplier cap."),
    "price_below_floor": (-4024, "Price is lower than mark price multiplier floor."),
}
MULTIPLIER_UP, MULTIPLIER_DOWN = Decimal("1.0500"), Decimal("0.9500")
EIGHT = Decimal("0.00000001")
STATUS = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED", "canceled": "CANCELED"}
TIF_IN = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "GTX": "POST_ONLY", "GTD": "GTC"}


class BinanceWire:
    def error(self, reason: str, message: str) -> web.Response:
        code, msg = ERROR_CODES.get(reason, (-1102, "Illegal parameter."))
        return json_response({"code": code, "msg": msg}, status=400)

    def maintenance(self) -> web.Response:
        return json_response({"code": 1, "msg": "System is under maintenance."}, status=503)

    def rate_limited(self, retry_after_s: int) -> web.Response:
        return json_response({"code": -1003, "msg": "Too many requests; current limit of IP is 2400 requests "
                                                    "per minute. Please use the websocket for live updates."},
                             status=429)


class BinanceApi:
    def __init__(self, sim: SimExchange, gate: FaultGate) -> None:
        self.sim = sim
        self.gate = gate

    @staticmethod
    async def params(request: web.Request) -> dict[str, str]:
        """Signed Binance requests carry parameters in the query string and/or a urlencoded body."""
        merged = dict(request.query)
        if request.can_read_body:
            merged.update({k: str(v) for k, v in (await request.post()).items()})
        return merged

    def symbol_json(self, symbol: str) -> dict[str, Any]:
        inst = self.sim.instrument(symbol)
        tick, lot = Decimal(inst.tick), Decimal(inst.lot)
        return {
            "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": inst.base, "quoteAsset": inst.quote,
            "marginAsset": inst.quote, "pricePrecision": max(0, -cast(int, tick.normalize().as_tuple().exponent)),
            "quantityPrecision": max(0, -cast(int, lot.normalize().as_tuple().exponent)), "baseAssetPrecision": 8,
            "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0,
            "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": dec_str(tick), "maxPrice": "4529764",
                 "tickSize": dec_str(tick)},
                {"filterType": "LOT_SIZE", "minQty": dec_str(Decimal(inst.min_qty)), "maxQty": "1000",
                 "stepSize": dec_str(lot)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": dec_str(Decimal(inst.min_qty)), "maxQty": "120",
                 "stepSize": dec_str(lot)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": dec_str(Decimal(inst.min_notional))},
                {"filterType": "PERCENT_PRICE", "multiplierUp": str(MULTIPLIER_UP),
                 "multiplierDown": str(MULTIPLIER_DOWN),
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    def order_json(self, order: SimOrder) -> dict[str, Any]:
        status = STATUS[order.status]
        if order.status == "canceled" and order.time_in_force in ("IOC", "FOK"):
            status = "EXPIRED"  # Binance expires the unfilled rest of IOC/FOK orders
        tif = {"POST_ONLY": "GTX"}.get(order.time_in_force, order.time_in_force)
        return {
            "orderId": int(order.order_id), "symbol": order.symbol, "status": status,
            "clientOrderId": order.client_id or f"sim{order.order_id}",
            "price": dec_str(order.price) if order.price is not None else "0",
            "avgPrice": dec_str(order.average_price), "origQty": dec_str(order.qty),
            "executedQty": dec_str(order.filled), "cumQty": dec_str(order.filled),
            "cumQuote": dec_str(order.notional_filled), "timeInForce": tif, "type": order.type.upper(),
            "reduceOnly": order.reduce_only, "closePosition": False, "side": order.side.upper(),
            "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False,
            "origType": order.type.upper(), "priceMatch": "NONE", "selfTradePreventionMode": "NONE",
            "goodTillDate": 0, "time": order.created_ms, "updateTime": order.updated_ms,
        }

    # ------------------------------------------------------------ public
    async def exchange_info(self, request: web.Request) -> web.Response:
        def act(_):
            return json_response({"timezone": "UTC", "serverTime": self.sim.now_ms(), "futuresType": "U_MARGINED",
                                  "rateLimits": [], "exchangeFilters": [], "assets": [],
                                  "symbols": [self.symbol_json(s) for s in self.sim.symbols()]})
        return await self.gate.run("public", None, act)

    async def premium_index(self, request: web.Request) -> web.Response:
        def one(symbol: str) -> dict[str, Any]:
            self.sim.instrument(symbol)
            # Every number in the venue's fixed 8-decimal form, the values the markPriceUpdate stream sends.
            inst = self.sim.instrument(symbol)
            rate, _interval, next_ms = self.sim.market.funding("binance", symbol)
            mark = format(Decimal(self.sim.market.mark("binance", symbol)).quantize(EIGHT), "f")
            index = format(Decimal(repr(self.sim.market.index(inst.base))).quantize(EIGHT), "f")
            return {"symbol": symbol, "markPrice": mark, "indexPrice": index, "estimatedSettlePrice": mark,
                    "lastFundingRate": format(Decimal(rate).quantize(EIGHT), "f"), "interestRate": "0.00010000",
                    "nextFundingTime": int(next_ms), "time": self.sim.now_ms()}

        def act(_):
            symbol = request.query.get("symbol")
            return json_response(one(symbol) if symbol else [one(s) for s in self.sim.symbols()])
        return await self.gate.run("public", None, act)

    async def funding_info(self, request: web.Request) -> web.Response:
        def act(_):
            data = []
            for symbol in self.sim.symbols():
                _rate, interval_h, _next = self.sim.market.funding("binance", symbol)
                data.append({"symbol": symbol, "adjustedFundingRateCap": "0.03", "adjustedFundingRateFloor": "-0.03",
                             "fundingIntervalHours": int(interval_h), "disclaimer": False})
            return json_response(data)
        return await self.gate.run("public", None, act)

    async def server_time(self, request: web.Request) -> web.Response:
        return json_response({"serverTime": self.sim.now_ms()})

    # ------------------------------------------------------------ private reads
    async def account(self, request: web.Request) -> web.Response:
        def act(_):
            m = self.sim.margin()
            ccy = self.sim.account.currency
            now = self.sim.now_ms()
            asset = {
                "asset": ccy, "walletBalance": dec_str(m["wallet"]), "unrealizedProfit": dec_str(m["unrealized_pnl"]),
                "marginBalance": dec_str(m["equity"]), "maintMargin": "0", "initialMargin": dec_str(m["used"]),
                "positionInitialMargin": dec_str(m["position_margin"]),
                "openOrderInitialMargin": dec_str(m["order_margin"]), "crossWalletBalance": dec_str(m["wallet"]),
                "crossUnPnl": dec_str(m["unrealized_pnl"]), "availableBalance": dec_str(m["available"]),
                "maxWithdrawAmount": dec_str(m["available"]), "updateTime": now,
            }
            return json_response({
                "totalInitialMargin": dec_str(m["used"]), "totalMaintMargin": "0",
                "totalWalletBalance": dec_str(m["wallet"]), "totalUnrealizedProfit": dec_str(m["unrealized_pnl"]),
                "totalMarginBalance": dec_str(m["equity"]),
                "totalPositionInitialMargin": dec_str(m["position_margin"]),
                "totalOpenOrderInitialMargin": dec_str(m["order_margin"]),
                "totalCrossWalletBalance": dec_str(m["wallet"]), "totalCrossUnPnl": dec_str(m["unrealized_pnl"]),
                "availableBalance": dec_str(m["available"]), "maxWithdrawAmount": dec_str(m["available"]),
                "assets": [asset], "positions": self._positions(None),
            })
        return await self.gate.run("private", None, act)

    def _positions(self, wanted: str | None) -> list[dict[str, Any]]:
        data = []
        for symbol, pos in self.sim.account.positions.items():
            if not pos.size or wanted not in (None, symbol):
                continue
            mark = Decimal(self.sim.market.mark("binance", symbol))
            lever = self.sim.account.leverage_of(symbol)
            notional = pos.size * mark
            data.append({
                "symbol": symbol, "positionSide": "BOTH", "positionAmt": dec_str(pos.size),
                "entryPrice": dec_str(pos.entry), "breakEvenPrice": dec_str(pos.entry), "markPrice": dec_str(mark),
                "unRealizedProfit": dec_str(pos.unrealized(mark)),
                "isolatedMargin": "0", "notional": dec_str(notional), "marginAsset": self.sim.account.currency,
                "isolatedWallet": "0", "initialMargin": dec_str(abs(notional) / lever),
                "positionInitialMargin": dec_str(abs(notional) / lever), "openOrderInitialMargin": "0",
                "adl": 0, "bidNotional": "0", "askNotional": "0", "leverage": dec_str(lever),
                "isolated": False, "updateTime": pos.updated_ms, **binance_margin_fields(self.sim, symbol),
            })
        return data

    async def position_risk(self, request: web.Request) -> web.Response:
        return await self.gate.run("private", None,
                                   lambda _: json_response(self._positions(request.query.get("symbol"))))

    async def leverage_bracket(self, request: web.Request) -> web.Response:
        def act(_):
            data = []
            for symbol in self.sim.symbols():
                data.append({"symbol": symbol, "notionalCoef": 1.0, "brackets": [
                    {"bracket": 1, "initialLeverage": int(self.sim.max_leverage(symbol)), "notionalCap": 1_000_000_000,
                     "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}]})
            wanted = request.query.get("symbol")
            return json_response([d for d in data if wanted in (None, d["symbol"])])
        return await self.gate.run("private", None, act)

    async def get_order(self, request: web.Request) -> web.Response:
        p = await self.params(request)

        def act(_):
            return json_response(self.order_json(
                self.sim.get_order(p.get("symbol"), p.get("orderId"), p.get("origClientOrderId"))))
        return await self.gate.run("private", p.get("symbol"), act)

    async def open_orders(self, request: web.Request) -> web.Response:
        return await self.gate.run("private", None, lambda _: json_response(
            [self.order_json(o) for o in self.sim.open_orders(request.query.get("symbol"))]))

    async def user_trades(self, request: web.Request) -> web.Response:
        def act(_):
            data = []
            for fill in self.sim.fills(request.query.get("symbol")):
                data.append({
                    "buyer": fill.side == "buy", "commission": dec_str(fill.fee), "commissionAsset": fill.fee_currency,
                    "id": int(fill.trade_id), "maker": fill.liquidity == "maker", "orderId": int(fill.order_id),
                    "price": dec_str(fill.price), "qty": dec_str(fill.qty), "quoteQty": dec_str(fill.qty * fill.price),
                    "realizedPnl": dec_str(fill.realized_pnl), "side": fill.side.upper(), "positionSide": "BOTH",
                    "symbol": fill.symbol, "time": fill.ts_ms, "marginAsset": self.sim.account.currency,
                })
            return json_response(data)
        return await self.gate.run("private", None, act)

    async def income(self, request: web.Request) -> web.Response:
        """GET /fapi/v1/income: funding fees (the only income type the simulator books), oldest first."""
        def act(_):
            self.sim.settle_funding()
            q = request.query
            if q.get("incomeType", "FUNDING_FEE") != "FUNDING_FEE":
                return json_response([])
            start, end = int(q.get("startTime") or 0), q.get("endTime")
            data = [
                {"symbol": p.symbol, "incomeType": "FUNDING_FEE", "income": dec_str(p.amount),
                 "asset": self.sim.account.currency, "time": p.ts_ms, "info": "FUNDING_FEE",
                 "tranId": f"{p.ts_ms}{n:04d}", "tradeId": ""}
                for n, p in enumerate(self.sim.account.funding)
                if q.get("symbol") in (None, p.symbol) and p.ts_ms >= start and (end is None or p.ts_ms <= int(end))
            ]
            return json_response(data[: int(q.get("limit") or 100)])
        return await self.gate.run("private", None, act)

    # ------------------------------------------------------------ private writes
    async def leverage(self, request: web.Request) -> web.Response:
        p = await self.params(request)

        def act(_):
            lever = self.sim.set_leverage(p["symbol"], Decimal(p["leverage"]))
            return json_response({"leverage": int(lever), "maxNotionalValue": "1000000000", "symbol": p["symbol"]})
        return await self.gate.run("private", p.get("symbol"), act)

    def percent_price(self, symbol: str, side: str, price: Decimal) -> None:
        """The PERCENT_PRICE filter: a buy at most mark x multiplierUp, a sell at least mark x multiplierDown."""
        mark = Decimal(self.sim.market.mark("binance", self.sim.instrument(symbol).symbol))
        if side == "BUY" and price > mark * MULTIPLIER_UP:
            raise SimReject("price_above_cap", f"buy price {price} above {mark * MULTIPLIER_UP}")
        if side == "SELL" and price < mark * MULTIPLIER_DOWN:
            raise SimReject("price_below_floor", f"sell price {price} below {mark * MULTIPLIER_DOWN}")

    async def new_order(self, request: web.Request) -> web.Response:
        p = await self.params(request)

        def act(ratio):
            type_ = p.get("type", "LIMIT").upper()
            if type_ not in ("LIMIT", "MARKET"):
                raise SimReject("bad_request", f"order type {type_} not supported by the simulator")
            tif = TIF_IN.get(p.get("timeInForce", "GTC").upper(), "GTC")
            qty = Decimal(p["quantity"])
            cap = None
            if ratio is not None:
                lot = self.sim.rules(p["symbol"]).lot
                cap = (qty * ratio // lot) * lot
            price = Decimal(p["price"]) if type_ == "LIMIT" and p.get("price") else None
            if price is not None:
                self.percent_price(p["symbol"], p.get("side", "").upper(), price)
            order = self.sim.place_order(
                p["symbol"], p.get("side", "").lower(), type_.lower(), qty, price, tif,
                reduce_only=str(p.get("reduceOnly", "false")).lower() == "true",
                client_id=p.get("newClientOrderId") or None, fill_cap=cap,
            )
            return json_response(self.order_json(order))
        return await self.gate.run("order", p.get("symbol"), act)

    async def cancel_order(self, request: web.Request) -> web.Response:
        p = await self.params(request)

        def act(_):
            try:
                order = self.sim.cancel_order(p.get("symbol"), p.get("orderId"), p.get("origClientOrderId"))
            except SimReject as reject:
                if reject.reason == "unknown_order":
                    return json_response({"code": -2011, "msg": "Unknown order sent."}, status=400)
                raise
            return json_response(self.order_json(order))
        return await self.gate.run("private", p.get("symbol"), act)


def add_binance_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    api = BinanceApi(sim, gate)
    sim.id_format = lambda n: str(4_000_000_000 + n)
    r = app.router
    r.add_get("/fapi/v1/exchangeInfo", api.exchange_info)
    r.add_get("/fapi/v1/premiumIndex", api.premium_index)
    r.add_get("/fapi/v1/fundingInfo", api.funding_info)
    r.add_get("/fapi/v1/time", api.server_time)
    for version in ("v2", "v3"):
        r.add_get(f"/fapi/{version}/account", api.account)
        r.add_get(f"/fapi/{version}/positionRisk", api.position_risk)
    r.add_get("/fapi/v1/leverageBracket", api.leverage_bracket)
    r.add_post("/fapi/v1/leverage", api.leverage)
    r.add_post("/fapi/v1/order", api.new_order)
    r.add_get("/fapi/v1/order", api.get_order)
    r.add_delete("/fapi/v1/order", api.cancel_order)
    r.add_get("/fapi/v1/openOrders", api.open_orders)
    r.add_get("/fapi/v1/userTrades", api.user_trades)
    r.add_get("/fapi/v1/income", api.income)

