"""Simulated Hyperliquid user subscriptions on the public /ws: orderUpdates, userFills, userFundings, userEvents.

Hyperliquid has no login: a user subscription names the address ({"type":"userFills","user":
"0x..."}) and the socket is the public one (ws_hyperliquid routes these subscription types
here). The simulated account is the sim wallet of perpbot.sim.trading.clients; any other address
gets its acks and empty snapshots but never data. Shapes (no recorded frames exist except the
userEvents fills push in shared/fixtures/hyperliquid/private_ws_frames.json), per Hyperliquid's
websocket subscriptions docs:

* orderUpdates -> {"channel":"orderUpdates","data":[WsOrder]} with WsOrder = {"order":{coin, side,
  limitPx, sz (left), oid, timestamp, origSz, cloid?}, "status", "statusTimestamp"}; statuses open,
  filled, canceled, and iocCancelRejected for an IOC that found nothing (as the recorded
  historicalOrders answers);
* userFills -> {"channel":"userFills","data":{"isSnapshot":true,"user","fills":[...]}} first (the
  recent fills, newest first like /info userFills), then {"user","fills":[fill]} per fill; fill
  objects are exactly REST's (same tid, hash, fee: positive = paid);
* userFundings -> snapshot then {"user","fundings":[{time, coin, usdc, szi, fundingRate}]};
* userEvents -> {"channel":"user","data":{"fills":[...]}} or {"data":{"funding":{...}}};
* clearinghouseState -> {"channel":"clearinghouseState","data":{"dex":"","user","clearinghouseState":
  <the /info clearinghouseState object>}} on subscribe and after every position or balance change.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from perpbot.sim.private.common import Frame, PrivateStream
from perpbot.sim.private.hyperliquid_orders import mount_hyperliquid_orders
from perpbot.sim.trading.accounts import FundingPayment, SimOrder
from perpbot.sim.trading.clients import SIM_WALLET
from perpbot.sim.trading.exchange import SimEvent, SimExchange
from perpbot.sim.trading.hyperliquid import HyperliquidApi, hl_num
from perpbot.sim.ws_common import Session, dumps

USER_TYPES = ("orderUpdates", "userFills", "userFundings", "userEvents", "clearinghouseState")
SNAPSHOT_FILLS = 2000


class HyperliquidPrivate(PrivateStream):
    venue = "hyperliquid"

    def __init__(self, sim: SimExchange, api: HyperliquidApi, feed: Any) -> None:
        super().__init__(sim)
        self.api = api
        self.feed = feed  # the public HyperliquidFeed: its sessions carry the user subscriptions too
        self.user = SIM_WALLET.lower()

    def sessions(self) -> list[Session]:
        return list(self.feed.sessions)

    @staticmethod
    def handles(subscription: dict[str, Any]) -> bool:
        return subscription.get("type") in USER_TYPES

    # -- subscriptions ---------------------------------------------------------------------
    def on_subscription(self, session: Session, method: str, subscription: dict[str, Any]) -> None:
        kind, user = subscription.get("type"), subscription.get("user")
        if not isinstance(user, str) or not user.startswith("0x") or len(user) != 42:
            self.feed.reply(session, {"channel": "error", "data": f"Invalid subscription {dumps(subscription)}"})
            return
        user = user.lower()
        echo = {"type": kind, "user": user}
        if kind == "userFills" and "aggregateByTime" in subscription:
            echo["aggregateByTime"] = bool(subscription["aggregateByTime"])
        if kind == "clearinghouseState" and "dex" in subscription:
            echo["dex"] = subscription["dex"]
        self.feed.reply(session, {"channel": "subscriptionResponse", "data": {"method": method, "subscription": echo}})
        key = (kind, user)
        if method == "unsubscribe":
            session.subs.discard(key)
            session.state["private"] = any(k[0] in USER_TYPES for k in session.subs if isinstance(k, tuple))
            return
        session.subs.add(key)
        session.state["private"] = True
        mine = user == self.user
        if kind == "userFills":
            fills = [self.api.fill_wire(f) for f in reversed(self.sim.account.fills)][:SNAPSHOT_FILLS] if mine else []
            session.enqueue(dumps({"channel": "userFills", "data": {"isSnapshot": True, "user": user, "fills": fills}}))
        elif kind == "userFundings":
            fundings = [self.funding_wire(p) for p in self.sim.account.funding] if mine else []
            session.enqueue(dumps({"channel": "userFundings",
                                   "data": {"isSnapshot": True, "user": user, "fundings": fundings}}))
        elif kind == "clearinghouseState" and mine:
            session.enqueue(self.clearinghouse_frame())

    # -- rendering ---------------------------------------------------------------------------
    def render(self, event: SimEvent) -> list[Frame]:
        user, order = self.user, event.order
        if event.kind == "order" and order is not None:
            return [Frame(("orderUpdates", user), self.order_updates(order), "state")]
        if event.kind == "fill" and order is not None and event.fill is not None:
            fill = self.api.fill_wire(event.fill)
            pushed = {"channel": "userFills", "data": {"user": user, "fills": [fill]}}
            frames = [Frame(("userFills", user), dumps(pushed), "fill"),
                      Frame(("userEvents", user), dumps({"channel": "user", "data": {"fills": [fill]}}), "fill")]
            # A partial fill leaves the order open with less size: Hyperliquid pushes the order again.
            frames.append(Frame(("orderUpdates", user), self.order_updates(order), "state"))
            return frames
        if event.kind == "account":
            return [Frame(("clearinghouseState", user), self.clearinghouse_frame(), "account")]
        if event.kind == "funding" and event.funding is not None:
            funding = self.funding_wire(event.funding)
            return [Frame(("userFundings", user),
                          dumps({"channel": "userFundings", "data": {"user": user, "fundings": [funding]}}), "account"),
                    Frame(("userEvents", user), dumps({"channel": "user", "data": {"funding": funding}}), "account")]
        return []

    def order_updates(self, order: SimOrder) -> str:
        status = {"new": "open", "partially_filled": "open"}.get(order.status, order.status)
        if order.status == "canceled" and order.filled == 0 and order.time_in_force in ("IOC", "FOK"):
            status = "iocCancelRejected"
        left = order.remaining if status != "filled" else Decimal(0)
        body: dict[str, Any] = {"coin": order.symbol, "side": "B" if order.side == "buy" else "A",
                                "limitPx": hl_num(order.price), "sz": hl_num(left),
                                "oid": int(order.order_id), "timestamp": order.created_ms, "origSz": hl_num(order.qty)}
        if order.client_id:
            body["cloid"] = order.client_id
        return dumps({"channel": "orderUpdates",
                      "data": [{"order": body, "status": status, "statusTimestamp": order.updated_ms}]})

    def clearinghouse_frame(self) -> str:
        return dumps({"channel": "clearinghouseState",
                      "data": {"dex": "", "user": self.user, "clearinghouseState": self.api.clearinghouse()}})

    @staticmethod
    def funding_wire(payment: FundingPayment) -> dict[str, Any]:
        return {"time": payment.ts_ms, "coin": payment.symbol, "usdc": hl_num(payment.amount),
                "szi": hl_num(payment.size), "fundingRate": hl_num(payment.rate)}


def mount_hyperliquid_private(sim: SimExchange, api: HyperliquidApi, feed: Any) -> HyperliquidPrivate:
    """Route the public feed's user subscriptions to a new HyperliquidPrivate, and its `post` requests to
    the simulated order entry (perpbot.sim.private.hyperliquid_orders)."""
    stream = HyperliquidPrivate(sim, api, feed)
    feed.private = stream
    mount_hyperliquid_orders(api, feed)  # order entry: `post` requests on the same /ws
    return stream
