"""Simulated Hyperliquid WebSocket: `l2Book` full snapshots with `time`, `activeAssetCtx`, subscriptionResponse acks
(and `post` requests, when perpbot.sim.private.hyperliquid_orders is mounted).

Shapes per https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/websocket/subscriptions
and the recorded frames in shared/fixtures/hyperliquid: every l2Book push is a whole book of
20 levels a side (5 with `fast`), levels {px, sz, n}; there is no sequence number, so the
`gap` fault does not apply here. Keepalive: {"method":"ping"} -> {"channel":"pong"}; a
connection with no traffic for 60 s is closed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

import orjson
from aiohttp import web

from perpbot.sim.ws_common import Grid, Session, VenueFeed, dumps


def _orders(price: int, lots: int) -> int:
    return 1 + (price * 17 + lots) % 12


class HyperliquidFeed(VenueFeed):
    venue = "hyperliquid"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_timeout_s = float(getattr(self.sim, "hyperliquid_idle_timeout_s", 60.0))
        self.grids: dict[str, tuple[Grid, Grid]] = {}
        self.views: dict[tuple[str, int], tuple[list, list]] = {}
        self.ctx: dict[str, str] = {}
        # User subscriptions (orderUpdates, userFills, ...) go to perpbot.sim.private.hyperliquid when mounted.
        self.private: Any = None
        # `post` requests (signed actions: order entry) go to perpbot.sim.private.hyperliquid_orders when mounted.
        self.posts: Any = None
        for coin in self.market.symbols("hyperliquid"):
            inst = self.market.instrument("hyperliquid", coin)
            self.grids[coin] = (Grid(inst.tick), Grid(inst.lot))
            for depth in (5, 20):
                self.views[(coin, depth)] = self.market.book("hyperliquid", coin).top(depth)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self.handle)

    # -- client messages ---------------------------------------------------------------
    def on_text(self, session: Session, text: str) -> None:
        try:
            request = orjson.loads(text)
            method = request["method"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.reply(session, {"channel": "error",
                                 "data": f"Error parsing JSON into valid websocket request: {text}"})
            return
        if method == "ping":
            self.reply(session, {"channel": "pong"})
            return
        if method == "post" and self.posts is not None:
            self.posts.on_post(session, request)
            return
        subscription = request.get("subscription")
        if method not in ("subscribe", "unsubscribe") or not isinstance(subscription, dict):
            self.reply(session, {"channel": "error",
                                 "data": f"Error parsing JSON into valid websocket request: {text}"})
            return
        if self.private is not None and self.private.handles(subscription):
            self.private.on_subscription(session, method, subscription)
            return
        kind, coin = subscription.get("type"), subscription.get("coin")
        if kind not in ("l2Book", "activeAssetCtx") or not self.market.has("hyperliquid", str(coin)):
            self.reply(session, {"channel": "error", "data": f"Invalid subscription {dumps(subscription)}"})
            return
        coin = cast(str, coin)  # a listed coin (market.has above)
        if kind == "l2Book":
            fast = bool(subscription.get("fast", False))
            echo = {"type": "l2Book", "coin": coin, "nSigFigs": subscription.get("nSigFigs"),
                    "mantissa": subscription.get("mantissa"), "fast": fast}
            key: tuple = ("l2Book", coin, 5 if fast else 20)
        else:
            echo = {"type": "activeAssetCtx", "coin": coin}
            key = ("activeAssetCtx", coin)
        self.reply(session, {"channel": "subscriptionResponse", "data": {"method": method, "subscription": echo}})
        if method == "unsubscribe":
            session.subs.discard(key)
            return
        session.subs.add(key)
        if kind == "l2Book":
            self.push(session, self._book_frame(coin, key[2]), coin)
        else:
            self.push(session, self._ctx_frame(coin, self._ctx(coin)), coin)

    # -- frames --------------------------------------------------------------------------
    def _book_frame(self, coin: str, depth: int) -> str:
        price_grid, size_grid = self.grids[coin]
        bids, asks = self.views[(coin, depth)]
        levels = [
            [{"px": price_grid.one_decimal(p), "sz": size_grid.one_decimal(q), "n": _orders(p, q)} for p, q in side]
            for side in (bids, asks)
        ]
        return dumps({"channel": "l2Book", "data": {"coin": coin, "time": self.now_ms(), "levels": levels}})

    def _ctx(self, coin: str) -> dict[str, Any]:
        inst = self.market.instrument("hyperliquid", coin)
        price_grid, _ = self.grids[coin]
        rate, _, _ = self.market.funding("hyperliquid", coin)
        mark = self.market.mark("hyperliquid", coin)
        oracle = Decimal(repr(self.market.index(inst.base))).quantize(inst.tick)
        bids, asks = self.views[(coin, 20)]
        mid2 = bids[0][0] + asks[0][0]  # twice the mid, in ticks
        mid = (inst.tick * mid2) / 2
        premium = (mark - oracle) / oracle if oracle else Decimal(0)
        return {
            "funding": format(rate, "f"), "openInterest": "1000.0", "prevDayPx": format(oracle, "f"),
            "dayNtlVlm": "0.0", "premium": format(premium.quantize(Decimal("1e-10")), "f"),
            "oraclePx": format(oracle, "f"), "markPx": format(mark, "f"),
            "midPx": format(mid.normalize(), "f"),
            "impactPxs": [price_grid.one_decimal(bids[0][0]), price_grid.one_decimal(asks[0][0])],
            "dayBaseVlm": "0.0",
        }

    def _ctx_frame(self, coin: str, ctx: dict[str, Any]) -> str:
        return dumps({"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx}})

    # -- market ticks ----------------------------------------------------------------------
    def on_tick(self) -> None:
        for (coin, depth), old in list(self.views.items()):
            new = self.market.book("hyperliquid", coin).top(depth)
            if new == old:
                continue
            self.views[(coin, depth)] = new
            sessions = self.subscribers(("l2Book", coin, depth))
            if sessions:
                frame = self._book_frame(coin, depth)
                for session in sessions:
                    self.push(session, frame, coin)
        for coin in self.market.symbols("hyperliquid"):
            sessions = self.subscribers(("activeAssetCtx", coin))
            if not sessions:
                continue
            ctx = self._ctx(coin)
            text = self._ctx_frame(coin, ctx)
            if self.ctx.get(coin) == text:
                continue
            self.ctx[coin] = text
            for session in sessions:
                self.push(session, text, coin)
