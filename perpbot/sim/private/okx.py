"""Simulated OKX v5 private WebSocket (/ws/v5/private): login, `orders`, `positions`, `account` (SWAP).

Login: {"op":"login","args":[{"apiKey","passphrase","timestamp","sign"}]} with sign =
base64(HMAC-SHA256(secret, timestamp + "GET" + "/users/self/verify")) and the simulator's
credentials (sim-key / sim-secret / sim-pass). Error codes per OKX's WebSocket error table
(60004 invalid timestamp, 60005 invalid apiKey, 60006 timestamp expired (30 s), 60007 invalid
sign, 60011 subscribe before login, 60018 unknown channel, 60024 wrong passphrase). No recorded
login reply exists in shared/fixtures: the reply {"event":"login","code":"0","msg":"","connId"}
and the error event {"event":"error","code","msg","connId"} follow OKX's docs (websocket login).

`orders` pushes follow the recorded frame in shared/fixtures/okx/private_ws_frames.json (the
SWAP market order fill), plus the documented per-fill fields fillFee / fillFeeCcy / fillPnl
(OKX's sign: negative fee = a cost). One push per fill (tradeId, fillPx, fillSz, execType
T/M) and one per state change without a fill (live, canceled). `positions` (no recorded frame)
uses the REST /account/positions object shape, as OKX's docs say; `account` the recorded frame.
Keepalive: text "ping" -> "pong".
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from perpbot.sim.private import okx_orders
from perpbot.sim.private.common import (
    SIM_API_KEY, SIM_PASSPHRASE, SIM_SECRET, Frame, PrivateFeed, PrivateStream, num, okx_sign, shutdown_hook,
)
from perpbot.sim.trading.accounts import SimFill, SimOrder
from perpbot.sim.trading.exchange import SimEvent, SimExchange
from perpbot.sim.trading.margin_wire import OKX_CATEGORIES, okx_margin_fields
from perpbot.sim.ws_common import Session, SimStats, dumps

CHANNELS = ("orders", "positions", "account")
STATES = {"new": "live", "partially_filled": "partially_filled", "filled": "filled", "canceled": "canceled"}
ORD_TYPES = {"GTC": "limit", "IOC": "ioc", "FOK": "fok", "POST_ONLY": "post_only"}
LOGIN_WINDOW_S = 30.0


class OkxPrivate(PrivateStream):
    venue = "okx"

    def __init__(self, sim: SimExchange, stats: SimStats) -> None:
        super().__init__(sim)
        self.feed = PrivateFeed("okx", stats, self, idle_timeout_s=None)

    def sessions(self) -> list[Session]:
        return self.feed.sessions

    # -- client messages -------------------------------------------------------------------
    def check_path(self, request: web.Request) -> web.StreamResponse | None:
        return None

    def on_open(self, session: Session) -> None:
        session.state["private"] = False  # becomes True at a good login

    def error(self, session: Session, code: str, msg: str, req_id: Any = None) -> None:
        reply: dict[str, Any] = {"id": req_id} if req_id is not None else {}
        reply.update({"event": "error", "code": code, "msg": msg, "connId": session.conn_id})
        self.feed.send(session, reply)

    def on_text(self, session: Session, text: str) -> None:
        if text == "ping":
            self.feed.send(session, "pong")
            return
        try:
            request = orjson.loads(text)
            op, args = request["op"], request.get("args") or []
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.error(session, "60012", f"Invalid request: {text}")
            return
        req_id = request.get("id")
        if op == "login":
            self.login(session, args, req_id)
        elif op in ("subscribe", "unsubscribe"):
            for arg in args if isinstance(args, list) else []:
                self.subscribe(session, op, arg, req_id)
        elif op in okx_orders.OPS:
            okx_orders.handle(self, session, op, req_id, args)
        else:
            self.error(session, "60019", f"Invalid op: {op}", req_id)

    def login(self, session: Session, args: Any, req_id: Any) -> None:
        arg = args[0] if isinstance(args, list) and args and isinstance(args[0], dict) else {}
        timestamp = str(arg.get("timestamp", ""))
        try:
            stamp = float(timestamp)
        except ValueError:
            self.error(session, "60004", "Invalid timestamp", req_id)
            return
        if arg.get("apiKey") != SIM_API_KEY:
            self.error(session, "60005", "Invalid apiKey", req_id)
        elif arg.get("passphrase") != SIM_PASSPHRASE:
            self.error(session, "60024", "Wrong passphrase", req_id)
        elif abs(time.time() - stamp) > LOGIN_WINDOW_S:
            self.error(session, "60006", "Timestamp request expired", req_id)
        elif arg.get("sign") != okx_sign(SIM_SECRET, timestamp):
            self.error(session, "60007", "Invalid sign", req_id)
        else:
            session.state["private"] = True
            reply: dict[str, Any] = {"id": req_id} if req_id is not None else {}
            reply.update({"event": "login", "code": "0", "msg": "", "connId": session.conn_id})
            self.feed.send(session, reply)

    def subscribe(self, session: Session, op: str, arg: Any, req_id: Any) -> None:
        if not isinstance(arg, dict):
            self.error(session, "60012", f"Invalid request: {dumps(arg)}", req_id)
            return
        channel = arg.get("channel")
        if not session.state.get("private"):
            self.error(session, "60011", "Please log in", req_id)
            return
        inst_type = str(arg.get("instType", "ANY")).upper()
        if channel not in CHANNELS or (channel != "account" and inst_type not in ("SWAP", "ANY")):
            self.error(session, "60018", f"Wrong URL or channel:{channel},instId:{arg.get('instId', '')} "
                                         "doesn't exist. Please use the correct URL, channel and parameters "
                                         "referring to API document.", req_id)
            return
        key = (channel, arg.get("instId"))
        reply: dict[str, Any] = {"id": req_id} if req_id is not None else {}
        reply.update({"event": op, "arg": arg, "connId": session.conn_id})
        self.feed.send(session, reply)
        if op == "unsubscribe":
            session.subs.discard(key)
            session.state.pop(key, None)
            return
        session.subs.add(key)
        session.state[key] = arg  # pushes echo the subscription's arg
        # OKX pushes positions and account snapshots right after the subscription.
        if channel == "positions":
            symbols = [s for s, p in self.sim.account.positions.items() if p.size]
            data = [self.position_json(s) for s in symbols if arg.get("instId") in (None, s)]
            session.enqueue(dumps({"arg": arg, "data": data}))
        elif channel == "account":
            session.enqueue(dumps({"arg": arg, "data": [self.account_json()]}))

    # -- fan-out: OKX frames are per subscription arg, so the text is built per session ------
    def wants(self, session: Session, key: Any) -> bool:
        channel, symbol = key
        return (channel, None) in session.subs or (channel, symbol) in session.subs

    def emit(self, targets: list[Session], frames: list[Frame], delay: float = 0.0) -> None:
        for session in targets:
            first = True
            for frame in frames:
                channel, symbol = frame.key
                sub = (channel, symbol) if (channel, symbol) in session.subs else (channel, None)
                if sub not in session.subs:
                    continue
                text = '{"arg":' + dumps(session.state.get(sub, {"channel": channel})) + ',"data":' + frame.text + "}"
                session.enqueue(text, delay if first else 0.0)
                first = False

    # -- rendering ---------------------------------------------------------------------------
    def render(self, event: SimEvent) -> list[Frame]:
        if event.kind == "order" and event.order is not None:
            return self.state_frames(event.order)
        if event.kind == "fill" and event.order is not None and event.fill is not None:
            data = dumps([self.order_json(event.order, event.fill)])
            return [Frame(("orders", event.order.symbol), data, "fill")]
        if event.kind == "account" and event.symbol is not None:
            return [Frame(("positions", event.symbol), dumps([self.position_json(event.symbol)]), "account"),
                    Frame(("account", None), dumps([self.account_json()]), "account")]
        if event.kind == "account":  # a balance change without a position (an internal transfer)
            return [Frame(("account", None), dumps([self.account_json()]), "account")]
        return []

    def state_frames(self, order: SimOrder) -> list[Frame]:
        return [Frame(("orders", order.symbol), dumps([self.order_json(order, None)]), "state")]

    def order_json(self, order: SimOrder, fill: SimFill | None) -> dict[str, Any]:
        """The `orders` push object (keys as in the recorded frame; fill fields empty without a fill)."""
        ccy = self.sim.account.currency
        ord_type = "market" if order.type == "market" else ORD_TYPES[order.time_in_force]
        updated = str(fill.ts_ms if fill is not None else order.updated_ms)
        return {
            "accFillSz": num(order.filled), "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "",
            "attachAlgoOrds": [], "avgPx": num(order.average_price) if order.filled else "",
            "cTime": str(order.created_ms), "cancelSource": "", "cancelSourceReason": "",
            "category": OKX_CATEGORIES.get(order.origin or "", "normal"),
            "ccy": "", "clOrdId": order.client_id or "",
            "execType": ("T" if fill.liquidity == "taker" else "M") if fill is not None else "",
            "fee": num(-order.fee), "feeCcy": ccy,
            "fillFee": num(-fill.fee) if fill is not None else "0", "fillFeeCcy": ccy if fill is not None else "",
            "fillPnl": num(fill.realized_pnl) if fill is not None else "0",
            "fillPx": num(fill.price) if fill is not None else "",
            "fillSz": num(fill.qty) if fill is not None else "0",
            "fillTime": str(fill.ts_ms) if fill is not None else "",
            "instId": order.symbol, "instType": "SWAP", "isTpLimit": "false", "lever": num(order.leverage),
            "linkedAlgoOrd": {"algoId": ""}, "ordId": order.order_id, "ordType": ord_type, "pnl": "0",
            "posSide": "net", "px": num(order.price), "pxType": "", "pxUsd": "", "pxVol": "",
            "quickMgnType": "", "rebate": "0", "rebateCcy": ccy,
            "reduceOnly": "true" if order.reduce_only else "false", "side": order.side, "slOrdPx": "",
            "slTriggerPx": "", "slTriggerPxType": "", "source": "", "state": STATES[order.status], "stpId": "",
            "stpMode": "", "sz": num(order.qty), "tag": "", "tdMode": self.sim.account.margin_mode_of(order.symbol),
            "tgtCcy": "", "tpOrdPx": "",
            "tpTriggerPx": "", "tpTriggerPxType": "", "tradeId": fill.trade_id if fill is not None else "",
            "uTime": updated,
        }

    def position_json(self, symbol: str) -> dict[str, Any]:
        """Same fields as the simulator's REST /account/positions (OKX documents one object for both)."""
        pos = self.sim.account.position(symbol)
        inst = self.sim.instrument(symbol)
        mark = Decimal(self.sim.market.mark("okx", symbol))
        lever = self.sim.account.leverage_of(symbol)
        notional = abs(pos.size) * mark
        return {
            "instType": "SWAP", "instId": symbol, "posId": f"{symbol}-net", "posSide": "net",
            "pos": num(pos.size / Decimal(inst.contract_size)), "posCcy": "",
            "avgPx": num(pos.entry) if pos.size else "",
            "markPx": num(mark), "upl": num(pos.unrealized(mark)), "lever": num(lever),
            "imr": num(notional / lever), "notionalUsd": num(notional),
            "realizedPnl": num(pos.realized_pnl), "ccy": self.sim.account.currency,
            "cTime": str(pos.opened_ms), "uTime": str(pos.updated_ms or self.sim.now_ms()), "margin": "",
            "uplRatio": "0", "pTime": str(self.sim.now_ms()), **okx_margin_fields(self.sim, symbol),
        }

    def account_json(self) -> dict[str, Any]:
        m = self.sim.margin()
        now = str(self.sim.now_ms())
        detail = {
            "availBal": num(m["available"]), "availEq": num(m["available"]), "cashBal": num(m["wallet"]),
            "ccy": self.sim.account.currency, "eq": num(m["equity"]), "eqUsd": num(m["equity"]),
            "frozenBal": num(m["used"]), "imr": num(m["position_margin"]), "ordFrozen": num(m["order_margin"]),
            "uTime": now, "upl": num(m["unrealized_pnl"]),
        }
        return {"adjEq": num(m["equity"]), "details": [detail], "imr": num(m["used"]), "totalEq": num(m["equity"]),
                "uTime": now, "upl": num(m["unrealized_pnl"])}


def mount_okx_private(app: web.Application, sim: SimExchange, stats: SimStats) -> OkxPrivate:
    stream = OkxPrivate(sim, stats)
    app.router.add_get("/ws/v5/private", stream.feed.handle)
    app.on_shutdown.append(shutdown_hook(stream))
    return stream
