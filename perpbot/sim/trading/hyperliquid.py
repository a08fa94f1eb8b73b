"""Simulated Hyperliquid REST API (POST /info and POST /exchange, as ccxt.hyperliquid calls them) over SimExchange.

Shapes mirror https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api : per-order failures come back
inside a "status":"ok" envelope as {"error": "..."} entries (the texts of the venue's error-responses page, which
ccxt.hyperliquid's broad exception table maps to InsufficientFunds / InvalidOrder / OrderNotFound), request-level
failures as {"status":"err","response":"..."}, an unknown order id in orderStatus as {"status":"unknownOid"}.
Signatures are not verified: any key signs, every user address maps to the one simulated account.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, cast

import orjson
from aiohttp import web

from perpbot.sim.trading.accounts import SimFill, SimOrder
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate, json_response
from perpbot.sim.trading.matching import SimReject

# Per-order rejection texts, as Hyperliquid sends them (the " asset=N" suffix is appended like the venue does).
ORDER_ERRORS = {
    "insufficient_margin": "Insufficient margin to place order.",
    "reduce_only": "Reduce only order would increase position.",
    "min_notional": "Order must have minimum value of $10.",
    "bad_tick": "Price must be divisible by tick size.",
    "bad_price": "Order has invalid price.",
    "bad_lot": "Order has invalid size.",
    "min_qty": "Order has invalid size.",
    "zero_size": "Order has zero size.",
    "post_only_cross": "Post only order would have immediately matched, bbo was {bbo}.",
    "ioc_cancel": "Order could not immediately match against any resting orders.",
    "unknown_order": "Order was never placed, already canceled, or filled.",
    # Hyperliquid has no fixed text for this one; it is not in ccxt's table (-> ExchangeError).
    "duplicate_client_id": "Order has duplicate cloid.",
    "reject": "Order rejected by the venue.",
}
# What Hyperliquid's HTTP layer answers (status 422) to a body it cannot parse into an action or info request.
DESERIALIZE_ERROR = "Failed to deserialize the JSON body into the target type"
CLOID_RE = re.compile(r"^0x[0-9a-fA-F]{32}$")
TIF_IN = {"Gtc": "GTC", "Ioc": "IOC", "Alo": "POST_ONLY", "FrontendMarket": "IOC"}
TIF_OUT = {"GTC": "Gtc", "IOC": "Ioc", "POST_ONLY": "Alo", "FOK": "Ioc"}
# Hyperliquid order ids are large integers; the simulator's counter is shifted into that range.
OID_BASE = 90_000_000_000
MAX_FUNDING_HISTORY = 500


def hl_num(value: Decimal | None) -> str:
    """Hyperliquid's decimal strings: plain notation, integral values with one decimal ("59936.0")."""
    if value is None:
        return "0.0"
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"{value.quantize(Decimal(1))}.0"
    return format(value.normalize(), "f")


def sz_decimals(lot: Decimal) -> int:
    return max(0, -cast(int, Decimal(lot).normalize().as_tuple().exponent))


def valid_price(price: Decimal, size_decimals: int) -> bool:
    """Hyperliquid's perp price rule: integers always; otherwise at most 5 significant figures and at most
    6 - szDecimals decimals."""
    if price <= 0:
        return False
    if price == price.to_integral_value():
        return True
    normalized = price.normalize()
    decimals = -cast(int, normalized.as_tuple().exponent)
    significant = len(normalized.as_tuple().digits)
    return significant <= 5 and decimals <= 6 - size_decimals


class _BadBody(Exception):
    """The request body does not parse into a Hyperliquid action or info request (HTTP 422)."""


class HyperliquidWire:
    """How Hyperliquid's errors look on the wire; used by the fault gate for faults on order placement."""

    def __init__(self) -> None:
        # Asset index of the order action being gated (set just before the gate runs; the gate decides
        # reject/insufficient_margin faults before its first await, so concurrent requests cannot interleave).
        self.asset: Any = 0

    def error(self, reason: str, message: str) -> web.Response:
        text = ORDER_ERRORS.get(reason, ORDER_ERRORS["reject"]).format(bbo="")
        return json_response({"status": "ok", "response": {"type": "order", "data": {
            "statuses": [{"error": f"{text} asset={self.asset}"}]}}})

    def maintenance(self) -> web.Response:
        # Hyperliquid has no maintenance code: its gateway answers 503 with a plain body while the API is down.
        return web.Response(status=503, text="Service Unavailable", content_type="text/html")

    def rate_limited(self, retry_after_s: int) -> web.Response:
        # Hyperliquid answers HTTP 429 with a JSON null body; ccxt maps the status to RateLimitExceeded.
        return json_response(None, status=429)


class HyperliquidApi:
    def __init__(self, sim: SimExchange, gate: FaultGate) -> None:
        self.sim = sim
        self.gate = gate
        # Addresses seen in info requests and signed actions (any address is accepted).
        self.users_seen: set[str] = set()
        self.leverage_mode: dict[str, bool] = {}  # coin -> isCross, as last set by updateLeverage

    # ------------------------------------------------------------ helpers
    def coins(self) -> list[str]:
        return self.sim.symbols()

    def coin_of(self, asset: Any) -> str:
        """The coin for an asset index (the position in meta's universe)."""
        coins = self.coins()
        if isinstance(asset, bool) or not isinstance(asset, int) or not 0 <= asset < len(coins):
            raise SimReject("unknown_symbol", f"asset {asset!r} does not exist")
        return coins[asset]

    def asset_of(self, coin: str) -> int:
        return self.coins().index(coin)

    def ok(self, payload: Any) -> web.Response:
        return json_response(payload)

    @staticmethod
    def err(text: str) -> web.Response:
        return json_response({"status": "err", "response": text})

    async def body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as exc:
            raise _BadBody(str(exc)) from exc
        if not isinstance(data, dict):
            raise _BadBody("body is not a JSON object")
        return data

    def universe(self) -> list[dict[str, Any]]:
        out = []
        for coin in self.coins():
            inst = self.sim.instrument(coin)
            out.append({"szDecimals": sz_decimals(inst.lot), "name": coin, "maxLeverage": int(inst.max_leverage),
                        "marginTableId": int(inst.max_leverage), "onlyIsolated": False})
        return out

    def asset_ctxs(self) -> list[dict[str, Any]]:
        out = []
        for coin in self.coins():
            rate, _interval_h, _next_ms = self.sim.market.funding("hyperliquid", coin)
            bids, asks = self.sim.market.levels("hyperliquid", coin)
            mark = Decimal(self.sim.market.mark("hyperliquid", coin))
            mid = (bids[0][0] + asks[0][0]) / 2 if bids and asks else mark
            out.append({
                "funding": hl_num(Decimal(rate)), "openInterest": "0.0", "prevDayPx": hl_num(mark),
                "dayNtlVlm": "0.0", "premium": "0.0", "oraclePx": hl_num(mark), "markPx": hl_num(mark),
                "midPx": hl_num(mid), "dayBaseVlm": "0.0",
                "impactPxs": [hl_num(bids[0][0] if bids else mark), hl_num(asks[0][0] if asks else mark)],
            })
        return out

    def order_wire(self, order: SimOrder) -> dict[str, Any]:
        """The frontendOpenOrders / orderStatus view of an order; `sz` is what is left (0 once filled)."""
        left = order.remaining if order.status != "filled" else Decimal(0)
        return {
            "coin": order.symbol, "side": "B" if order.side == "buy" else "A", "limitPx": hl_num(order.price),
            "sz": hl_num(left), "oid": int(order.order_id), "timestamp": order.created_ms,
            "triggerCondition": "N/A", "isTrigger": False, "triggerPx": "0.0", "children": [],
            "isPositionTpsl": False, "reduceOnly": order.reduce_only, "orderType": "Limit",
            "origSz": hl_num(order.qty), "tif": TIF_OUT.get(order.time_in_force, "Gtc"), "cloid": order.client_id,
        }

    def fill_wire(self, fill: SimFill) -> dict[str, Any]:
        signed = fill.base_qty if fill.side == "buy" else -fill.base_qty
        after = self.sim.account.position(fill.symbol)
        # startPosition is the size before this fill: replay the later fills of the same coin backwards.
        start = after.size
        for later in reversed(self.sim.account.fills):
            if later is fill:
                break
            if later.symbol == fill.symbol:
                start -= later.base_qty if later.side == "buy" else -later.base_qty
        start -= signed
        if start == 0 or (start > 0) == (signed > 0):
            direction = "Open Long" if signed > 0 else "Open Short"
        else:
            direction = "Close Short" if signed > 0 else "Close Long"
        return {
            "coin": fill.symbol, "px": hl_num(fill.price), "sz": hl_num(fill.qty),
            "side": "B" if fill.side == "buy" else "A", "time": fill.ts_ms, "startPosition": hl_num(start),
            "dir": direction, "closedPnl": hl_num(fill.realized_pnl),
            "hash": "0x" + f"{int(fill.trade_id):064x}", "oid": int(fill.order_id),
            "crossed": fill.liquidity == "taker", "fee": hl_num(fill.fee), "tid": int(fill.trade_id),
            "cloid": fill.client_id, "feeToken": "USDC",
        }

    def clearinghouse(self) -> dict[str, Any]:
        margin = self.sim.margin()
        positions = []
        total_ntl = Decimal(0)
        for coin, pos in self.sim.account.positions.items():
            if not pos.size:
                continue
            mark = Decimal(self.sim.market.mark("hyperliquid", coin))
            lever = self.sim.account.leverage_of(coin)
            value = abs(pos.size) * mark
            total_ntl += value
            used = value / lever
            upl = pos.unrealized(mark)
            positions.append({"type": "oneWay", "position": {
                "coin": coin, "szi": hl_num(pos.size),
                "leverage": {"type": "cross" if self.leverage_mode.get(coin, True) else "isolated",
                             "value": int(lever)},
                "entryPx": hl_num(pos.entry), "positionValue": hl_num(value), "unrealizedPnl": hl_num(upl),
                "returnOnEquity": hl_num(upl / used) if used else "0.0", "liquidationPx": None,
                "marginUsed": hl_num(used), "maxLeverage": int(self.sim.max_leverage(coin)),
                "cumFunding": {"allTime": "0.0", "sinceOpen": "0.0", "sinceChange": "0.0"},
            }})
        summary = {"accountValue": hl_num(margin["equity"]), "totalNtlPos": hl_num(total_ntl),
                   "totalRawUsd": hl_num(margin["wallet"]), "totalMarginUsed": hl_num(margin["used"])}
        return {"marginSummary": summary, "crossMarginSummary": dict(summary),
                "crossMaintenanceMarginUsed": "0.0", "withdrawable": hl_num(max(Decimal(0), margin["available"])),
                "assetPositions": positions, "time": self.sim.now_ms()}

    # ------------------------------------------------------------ POST /info
    async def info(self, request: web.Request) -> web.Response:
        try:
            body = await self.body(request)
            kind = body.get("type")
            if not isinstance(kind, str):
                raise _BadBody("missing type")
        except _BadBody:
            return web.Response(status=422, text=DESERIALIZE_ERROR)
        if isinstance(body.get("user"), str):
            self.users_seen.add(body["user"].lower())
        public: dict[str, Callable[[dict[str, Any]], Any]] = {
            "meta": lambda b: {"universe": self.universe(), "marginTables": []},
            "metaAndAssetCtxs": lambda b: [{"universe": self.universe(), "marginTables": []}, self.asset_ctxs()],
            "spotMeta": lambda b: {"universe": [], "tokens": []},
            "spotMetaAndAssetCtxs": lambda b: [{"universe": [], "tokens": []}, []],
            "perpDexs": lambda b: [None],
            "allMids": self.all_mids,
            "l2Book": self.l2_book,
            "fundingHistory": self.funding_history,
            "exchangeStatus": lambda b: {"specialStatuses": None, "time": self.sim.now_ms()},
            # "default" = no unified/portfolio margin: ccxt then reads clearinghouseState for balances.
            "userAbstraction": lambda b: "default",
        }
        private: dict[str, Callable[[dict[str, Any]], Any]] = {
            "clearinghouseState": lambda b: self.clearinghouse(),
            "spotClearinghouseState": lambda b: {"balances": []},
            "openOrders": self.open_orders,
            "frontendOpenOrders": self.open_orders,
            "orderStatus": self.order_status,
            "userFills": self.user_fills,
            "userFillsByTime": self.user_fills,
            "userFunding": self.user_funding,
            "userFees": self.user_fees,
        }
        handler = public.get(kind) or private.get(kind)
        if handler is None:
            return web.Response(status=422, text=DESERIALIZE_ERROR)

        def act(_ratio):
            try:
                return self.ok(handler(body))
            except _BadBody:
                return web.Response(status=422, text=DESERIALIZE_ERROR)
        return await self.gate.run("public" if kind in public else "private", body.get("coin"), act)

    def all_mids(self, _body: dict[str, Any]) -> dict[str, str]:
        out = {}
        for coin in self.coins():
            bids, asks = self.sim.market.levels("hyperliquid", coin)
            if bids and asks:
                out[coin] = hl_num((bids[0][0] + asks[0][0]) / 2)
        return out

    def l2_book(self, body: dict[str, Any]) -> Any:
        coin = body.get("coin")
        if coin not in self.coins():
            return None  # Hyperliquid answers null for an unknown coin
        bids, asks = self.sim.market.levels("hyperliquid", coin)

        def side(levels):
            return [{"px": hl_num(p), "sz": hl_num(q), "n": 1} for p, q in levels[:20]]
        return {"coin": coin, "time": self.sim.now_ms(), "levels": [side(bids), side(asks)]}

    def funding_history(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Hourly funding at the settlement marks in [startTime, endTime], at the market's current rate (the
        simulated market keeps no rate history)."""
        coin = body.get("coin")
        if coin not in self.coins():
            return []
        rate, interval_h, next_ms = self.sim.market.funding("hyperliquid", coin)
        step = int(interval_h) * 3_600_000
        now = self.sim.now_ms()
        end = min(int(body.get("endTime") or now), now)
        start = int(body.get("startTime") or end - step * 24)
        first = next_ms - step * ((next_ms - start) // step)
        out: list[dict[str, Any]] = []
        stamp = first
        while stamp <= end and len(out) < MAX_FUNDING_HISTORY:
            if stamp >= start:
                out.append({"coin": coin, "fundingRate": hl_num(Decimal(rate)), "premium": "0.0", "time": stamp})
            stamp += step
        return out

    def open_orders(self, _body: dict[str, Any]) -> list[dict[str, Any]]:
        # Newest first, like the venue.
        return [self.order_wire(o) for o in reversed(self.sim.open_orders())]

    def order_status(self, body: dict[str, Any]) -> dict[str, Any]:
        oid = body.get("oid")
        try:
            if isinstance(oid, str) and oid.startswith("0x"):
                order = self.sim.get_order(None, client_id=oid.lower())
            elif isinstance(oid, int) and not isinstance(oid, bool):
                order = self.sim.get_order(None, order_id=str(oid))
            else:
                raise _BadBody("oid must be an integer or a cloid")
        except SimReject:
            return {"status": "unknownOid"}
        status = {"new": "open", "partially_filled": "open"}.get(order.status, order.status)
        return {"status": "order", "order": {"order": self.order_wire(order), "status": status,
                                             "statusTimestamp": order.updated_ms}}

    def user_fills(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        start = body.get("startTime")
        end = body.get("endTime")
        fills = [f for f in self.sim.fills()
                 if (start is None or f.ts_ms >= int(start)) and (end is None or f.ts_ms <= int(end))]
        return [self.fill_wire(f) for f in reversed(fills)][:2000]

    def user_funding(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        self.sim.settle_funding()
        start = int(body.get("startTime") or 0)
        end = body.get("endTime")
        out = []
        for payment in self.sim.account.funding:
            if payment.ts_ms < start or (end is not None and payment.ts_ms > int(end)):
                continue
            out.append({"delta": {"coin": payment.symbol, "fundingRate": hl_num(payment.rate),
                                  "szi": hl_num(payment.size), "type": "funding", "usdc": hl_num(payment.amount)},
                        "hash": "0x" + "0" * 64, "time": payment.ts_ms})
        return out

    def user_fees(self, _body: dict[str, Any]) -> dict[str, Any]:
        inst = self.sim.instrument(self.coins()[0])
        return {"dailyUserVlm": [], "feeSchedule": {"cross": hl_num(inst.taker_fee), "add": hl_num(inst.maker_fee)},
                "userCrossRate": hl_num(inst.taker_fee), "userAddRate": hl_num(inst.maker_fee),
                "activeReferralDiscount": "0.0"}

    # ------------------------------------------------------------ POST /exchange
    async def exchange(self, request: web.Request) -> web.Response:
        try:
            body = await self.body(request)
            action = body.get("action")
            if not isinstance(action, dict) or not isinstance(action.get("type"), str) \
                    or "nonce" not in body or "signature" not in body:
                raise _BadBody("not a signed action")
        except _BadBody:
            return web.Response(status=422, text=DESERIALIZE_ERROR)
        kind = action["type"]
        if kind == "order":
            return await self.place(action)
        if kind in ("cancel", "cancelByCloid"):
            return await self.gate.run("private", None, lambda _r: self.cancel(action))
        if kind == "updateLeverage":
            return await self.gate.run("private", None, lambda _r: self.update_leverage(action))
        if kind in ("approveBuilderFee", "setReferrer", "scheduleCancel"):
            return await self.gate.run("private", None, lambda _r: self.ok({"status": "ok",
                                                                             "response": {"type": "default"}}))
        return self.err(f"Unsupported action type {kind}")

    def order_error(self, reason: str, asset: Any, bbo: str = "") -> dict[str, str]:
        text = ORDER_ERRORS.get(reason, ORDER_ERRORS["reject"]).format(bbo=bbo)
        return {"error": f"{text} asset={asset}"}

    async def place(self, action: dict[str, Any]) -> web.Response:
        orders = action.get("orders")
        if not isinstance(orders, list) or not orders or not all(isinstance(o, dict) for o in orders):
            return web.Response(status=422, text=DESERIALIZE_ERROR)
        try:
            first_coin = self.coin_of(orders[0].get("a"))
        except SimReject:
            first_coin = None

        def act(ratio: Decimal | None) -> web.Response:
            try:
                statuses = [self.place_one(o, ratio) for o in orders]
            except _BadBody:
                return web.Response(status=422, text=DESERIALIZE_ERROR)
            return self.ok({"status": "ok", "response": {"type": "order", "data": {"statuses": statuses}}})
        if isinstance(self.gate.wire, HyperliquidWire):
            self.gate.wire.asset = orders[0].get("a")
        return await self.gate.run("order", first_coin, act)

    def place_one(self, wire: dict[str, Any], ratio: Decimal | None) -> dict[str, Any]:
        """One entry of an order action -> its status entry (filled / resting / error)."""
        asset = wire.get("a")
        try:
            price = Decimal(str(wire["p"]))
            size = Decimal(str(wire["s"]))
            is_buy = wire["b"]
            order_type = wire["t"]
        except (KeyError, InvalidOperation) as exc:
            raise _BadBody(str(exc)) from exc
        if not isinstance(is_buy, bool) or not isinstance(order_type, dict):
            raise _BadBody("b must be a bool and t an object")
        cloid = wire.get("c")
        if cloid is not None and (not isinstance(cloid, str) or not CLOID_RE.match(cloid)):
            raise _BadBody("cloid must be 0x + 32 hex digits")
        if "trigger" in order_type:
            return {"error": f"Trigger orders are not supported by the simulator. asset={asset}"}
        tif = (order_type.get("limit") or {}).get("tif")
        if tif not in TIF_IN:
            raise _BadBody(f"unknown tif {tif!r}")
        try:
            coin = self.coin_of(asset)
        except SimReject:
            return {"error": f"Asset {asset} does not exist."}
        inst = self.sim.instrument(coin)
        if size == 0:
            return self.order_error("zero_size", asset)
        if size < 0 or -cast(int, size.normalize().as_tuple().exponent) > sz_decimals(inst.lot):
            return self.order_error("bad_lot", asset)
        if not valid_price(price, sz_decimals(inst.lot)):
            return self.order_error("bad_price", asset)
        cap = None
        if ratio is not None:
            cap = (size * ratio // inst.lot) * inst.lot
        try:
            order = self.sim.place_order(coin, "buy" if is_buy else "sell", "limit", size, price, TIF_IN[tif],
                                         reduce_only=bool(wire.get("r", False)),
                                         client_id=cloid.lower() if cloid else None, fill_cap=cap)
        except SimReject as reject:
            bbo = ""
            if reject.reason == "post_only_cross":
                bids, asks = self.sim.market.levels("hyperliquid", coin)
                bbo = f"{hl_num(bids[0][0]) if bids else ''}@{hl_num(asks[0][0]) if asks else ''}"
            return self.order_error(reject.reason, asset, bbo)
        extra = {"cloid": order.client_id} if order.client_id else {}
        if order.status == "filled" or (order.status == "canceled" and order.filled > 0):
            return {"filled": {"totalSz": hl_num(order.filled), "avgPx": hl_num(order.average_price),
                               "oid": int(order.order_id), **extra}}
        if order.is_open:
            return {"resting": {"oid": int(order.order_id), **extra}}
        # An IOC that found nothing to trade against.
        return self.order_error("ioc_cancel", asset)

    def cancel(self, action: dict[str, Any]) -> web.Response:
        cancels = action.get("cancels")
        if not isinstance(cancels, list) or not all(isinstance(c, dict) for c in cancels):
            return web.Response(status=422, text=DESERIALIZE_ERROR)
        statuses: list[Any] = []
        for entry in cancels:
            asset = entry.get("asset", entry.get("a"))
            try:
                coin = self.coin_of(asset)
                if action["type"] == "cancelByCloid":
                    cloid = entry.get("cloid")
                    if not isinstance(cloid, str) or not CLOID_RE.match(cloid):
                        return web.Response(status=422, text=DESERIALIZE_ERROR)
                    self.sim.cancel_order(coin, client_id=cloid.lower())
                else:
                    oid = entry.get("o")
                    if isinstance(oid, bool) or not isinstance(oid, int):
                        return web.Response(status=422, text=DESERIALIZE_ERROR)
                    self.sim.cancel_order(coin, order_id=str(oid))
                statuses.append("success")
            except SimReject:
                statuses.append(self.order_error("unknown_order", asset))
        return self.ok({"status": "ok", "response": {"type": "cancel", "data": {"statuses": statuses}}})

    def update_leverage(self, action: dict[str, Any]) -> web.Response:
        leverage = action.get("leverage")
        try:
            coin = self.coin_of(action.get("asset"))
        except SimReject:
            return self.err(f"Asset {action.get('asset')} does not exist.")
        if isinstance(leverage, bool) or not isinstance(leverage, int):
            return web.Response(status=422, text=DESERIALIZE_ERROR)
        try:
            self.sim.set_leverage(coin, Decimal(leverage))
        except SimReject:
            return self.err("Invalid leverage value")
        self.leverage_mode[coin] = bool(action.get("isCross", True))
        return self.ok({"status": "ok", "response": {"type": "default"}})


API_KEY: web.AppKey[HyperliquidApi] = web.AppKey("perpbot_sim_hyperliquid_api", HyperliquidApi)


def add_hyperliquid_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> HyperliquidApi:
    """Mount POST /info and POST /exchange for `sim` (venue "hyperliquid") on `app`."""
    api = HyperliquidApi(sim, gate)
    app[API_KEY] = api
    sim.id_format = lambda n: str(OID_BASE + n)
    app.router.add_post("/info", api.info)
    app.router.add_post("/exchange", api.exchange)
    return api


__all__ = ["API_KEY", "HyperliquidApi", "HyperliquidWire", "add_hyperliquid_routes", "hl_num", "valid_price"]
