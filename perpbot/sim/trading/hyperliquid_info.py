"""The simulated Hyperliquid API's account view and POST /info answers (HyperliquidInfo): meta and asset contexts,
mids, the L2 book, funding history, and the user's clearinghouse state, open orders, order status, fills, funding
and fees, in Hyperliquid's shapes. HyperliquidApi (`perpbot.sim.trading.hyperliquid`) adds POST /exchange."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

import orjson
from aiohttp import web

from perpbot.sim.trading.accounts import SimFill, SimOrder
from perpbot.sim.trading.clients import SIM_WALLET
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate, json_response
from perpbot.sim.trading.hyperliquid_wire import (
    DESERIALIZE_ERROR,
    MAX_FUNDING_HISTORY,
    TIF_OUT,
    _BadBody,
    hl_num,
    sz_decimals,
)
from perpbot.sim.trading.margin_wire import hyperliquid_margin_fields
from perpbot.sim.trading.matching import SimReject


class HyperliquidInfo:
    """The simulated account's state, the helpers both endpoints use, and POST /info."""

    def __init__(self, sim: SimExchange, gate: FaultGate) -> None:
        self.sim = sim
        self.gate = gate
        # Addresses seen in info requests and signed actions (any address is accepted).
        self.users_seen: set[str] = set()
        self.leverage_mode: dict[str, bool] = {}  # coin -> isCross, as last set by updateLeverage
        # Builders this account approved (approveBuilderFee), lower-cased address -> max fee rate text.
        self.approved_builders: dict[str, str] = {}

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
        order = self.sim.account.orders.get(fill.order_id)
        origin = order.origin if order is not None else None
        wire: dict[str, Any] = {
            "coin": fill.symbol, "px": hl_num(fill.price), "sz": hl_num(fill.qty),
            "side": "B" if fill.side == "buy" else "A", "time": fill.ts_ms, "startPosition": hl_num(start),
            "dir": "Auto-Deleveraging" if origin == "adl" else direction, "closedPnl": hl_num(fill.realized_pnl),
            "hash": "0x" + f"{int(fill.trade_id):064x}", "oid": int(fill.order_id),
            "crossed": fill.liquidity == "taker", "fee": hl_num(fill.fee), "tid": int(fill.trade_id),
            "cloid": fill.client_id, "feeToken": "USDC",
        }
        if origin == "liquidation":
            # Our own position liquidated: we are the liquidated user (the fixture's shape).
            wire["liquidation"] = {"liquidatedUser": SIM_WALLET, "markPx": hl_num(fill.price), "method": "market"}
        return wire

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
                "returnOnEquity": hl_num(upl / used) if used else "0.0",
                "liquidationPx": hyperliquid_margin_fields(self.sim, coin)["liquidationPx"],
                "marginUsed": hl_num(used), "maxLeverage": int(self.sim.max_leverage(coin)),
                "cumFunding": {"allTime": "0.0", "sinceOpen": "0.0", "sinceChange": "0.0"},
            }})
        summary = {"accountValue": hl_num(margin["equity"]), "totalNtlPos": hl_num(total_ntl),
                   "totalRawUsd": hl_num(margin["wallet"]), "totalMarginUsed": hl_num(margin["used"])}
        return {"marginSummary": summary, "crossMarginSummary": dict(summary),
                "crossMaintenanceMarginUsed": hl_num(self.sim.risk().maintenance_margin), "withdrawable": hl_num(max(Decimal(0), margin["available"])),
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
