"""Simulated Hyperliquid REST API (POST /info and POST /exchange, as ccxt.hyperliquid calls them) over SimExchange.

Shapes mirror https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api : per-order failures come back
inside a "status":"ok" envelope as {"error": "..."} entries (the texts of the venue's error-responses page, which
ccxt.hyperliquid's broad exception table maps to InsufficientFunds / InvalidOrder / OrderNotFound), request-level
failures as {"status":"err","response":"..."}, an unknown order id in orderStatus as {"status":"unknownOid"}.
Signatures are not verified: any key signs, every user address maps to the one simulated account.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, cast

from aiohttp import web

from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate
from perpbot.sim.trading.hyperliquid_info import HyperliquidInfo
from perpbot.sim.trading.hyperliquid_wire import (
    BUILDER_NOT_APPROVED,
    CLOID_RE,
    DESERIALIZE_ERROR,
    OID_BASE,
    ORDER_ERRORS,
    TIF_IN,
    HyperliquidWire,
    _BadBody,
    hl_num,
    sz_decimals,
    valid_price,
)
from perpbot.sim.trading.matching import SimReject
from perpbot.sim.trading.transfers import gated, hyperliquid_usd_class_transfer

# The wire formats live in perpbot.sim.trading.hyperliquid_wire and the account view and POST /info in
# perpbot.sim.trading.hyperliquid_info; this module adds POST /exchange and mounts the routes.


class HyperliquidApi(HyperliquidInfo):
    """POST /exchange (order, cancel, cancelByCloid, updateLeverage, ...) over HyperliquidInfo's state and /info."""

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
        if kind == "usdClassTransfer":  # spot <-> perp USDC (perpbot.sim.trading.transfers)
            return await gated(self.gate, lambda: hyperliquid_usd_class_transfer(self.sim, body))
        if kind == "approveBuilderFee":
            return await self.gate.run("private", None, lambda _r: self.approve_builder(action))
        if kind in ("setReferrer", "scheduleCancel"):
            return await self.gate.run("private", None, lambda _r: self.ok({"status": "ok",
                                                                             "response": {"type": "default"}}))
        return self.err(f"Unsupported action type {kind}")

    def order_error(self, reason: str, asset: Any, bbo: str = "") -> dict[str, str]:
        text = ORDER_ERRORS.get(reason, ORDER_ERRORS["reject"]).format(bbo=bbo)
        return {"error": f"{text} asset={asset}"}

    def approve_builder(self, action: dict[str, Any]) -> web.Response:
        builder, rate = action.get("builder"), action.get("maxFeeRate")
        if not isinstance(builder, str) or not isinstance(rate, str):
            return web.Response(status=422, text=DESERIALIZE_ERROR)
        self.approved_builders[builder.lower()] = rate
        return self.ok({"status": "ok", "response": {"type": "default"}})

    async def place(self, action: dict[str, Any]) -> web.Response:
        builder = action.get("builder")
        if builder is not None:
            # The live venue refuses an order naming a builder the account never approved, even at
            # fee 0 (venue_errors.json, "Builder fee has not been approved."): so does the simulator.
            address = builder.get("b") if isinstance(builder, dict) else None
            if not isinstance(address, str) or address.lower() not in self.approved_builders:
                return self.err(BUILDER_NOT_APPROVED)
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
            self.sim.set_margin_mode(coin, "cross" if action.get("isCross", True) else "isolated")
        except SimReject:
            return self.err("Cannot switch leverage type with open position.")
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
