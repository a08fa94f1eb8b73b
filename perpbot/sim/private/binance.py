"""Simulated Binance USD-M user data stream: REST listenKey + WS /ws/<listenKey> (and /private/ws/<listenKey>).

REST (header X-MBX-APIKEY required): POST /fapi/v1/listenKey -> {"listenKey"} (the account's active
key again, extended, if one exists), PUT -> {"listenKey"} extends it by the TTL (60 min, like the
venue; `listen_key_ttl_s` shortens it: attribute, or the admin API POST /admin/private), DELETE
-> {}. An unknown or expired key answers -1125 "This listenKey does not exist." (the text of
Binance's user-data-stream docs); a missing header -2014, a wrong key -2015.

WS: the base-URL split put user data on wss://fstream.binance.com/private (shared/VENUES.md §2),
so both /ws/<key> and /private/ws/<key> are served. "A listenKey is a stream" (Binance's user-data-stream
docs: /ws/<listenKey> or /stream?streams=<listenKey>), so the combined endpoint /private/stream
(?streams=<key>, or bare) and a bare /private/ws take it by live {"method":"SUBSCRIBE","params":[key]}
too, as Binance's official SDK (binance-sdk-derivatives-trading-usds-futures) subscribes on
<stream_url>/private/stream; on /stream paths every frame is wrapped {"stream":<key>,"data":<event>}
(the docs: "the event payload is wrapped in a stream/data envelope"). A SUBSCRIBE naming anything but
the live key is refused like an unknown stream ({"error":{"code":2,...}}) and the socket gets no data.

Frames: ORDER_TRADE_UPDATE and TRADE_LITE as the recorded/docs-derived frames in
shared/fixtures/binance/private_ws_frames.json; ACCOUNT_UPDATE with m=ORDER as that file; m=FUNDING_FEE has no recorded frame: per the docs' prose, a cross
position's funding pushes only the balance B (bc = the balance change), no P. listenKeyExpired
(no recorded frame) follows the docs example {"e":"listenKeyExpired","E":"<ms>","listenKey"}.
A handshake on an unknown key is refused with HTTP 400 and the -1125 body (inferred: the venue
closes such sockets without data).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
from dataclasses import dataclass
from decimal import Decimal

import orjson
from aiohttp import web

from perpbot.sim.private.common import SIM_API_KEY, Frame, PrivateFeed, PrivateStream, num, shutdown_hook
from perpbot.sim.trading.accounts import SimFill, SimOrder
from perpbot.sim.trading.exchange import SimEvent, SimExchange
from perpbot.sim.trading.gate import json_response
from perpbot.sim.trading.margin_wire import binance_margin_fields
from perpbot.sim.ws_common import Session, SimStats, dumps

LISTEN_KEY_TTL_S = 3600.0
KEY_ALPHABET = string.ascii_letters + string.digits
STATUS = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED", "canceled": "CANCELED"}
UNKNOWN_KEY = {"code": -1125, "msg": "This listenKey does not exist."}


@dataclass
class ListenKey:
    key: str
    expires_at: float  # loop time


class BinancePrivate(PrivateStream):
    venue = "binance"

    def __init__(self, sim: SimExchange, stats: SimStats) -> None:
        super().__init__(sim)
        self.feed = PrivateFeed("binance", stats, self, idle_timeout_s=None)
        self.feed.heartbeat_s = 180.0  # Binance pings its clients every 3 minutes (protocol ping frames)
        self.listen_key_ttl_s = LISTEN_KEY_TTL_S
        self.active: ListenKey | None = None  # one account, so at most one live key (as the venue)
        self._watchdog: asyncio.Task | None = None

    def sessions(self) -> list[Session]:
        return self.feed.sessions

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- listen keys ---------------------------------------------------------------------------
    def live_key(self) -> ListenKey | None:
        """The active key, after expiring it if its time (or a listenkey_expire fault) has come."""
        if self.active is None:
            return None
        if self._now() >= self.active.expires_at:
            self.expire("ttl")
        elif self.faults.take("binance", "listenkey_expire") is not None:
            self.expire("fault")
        return self.active

    def expire(self, why: str) -> None:
        """Expire the active key now: push listenKeyExpired on its sockets, then forget it."""
        key, self.active = self.active, None
        if key is None:
            return
        frame = dumps({"e": "listenKeyExpired", "E": str(self.sim.now_ms()), "listenKey": key.key})
        for session in self.sessions():
            if session.state.get("listen_key") == key.key and not session.closing:
                session.enqueue(self.wrap(session, frame))
                session.state["private"] = False  # no more user data on this socket

    async def watch(self) -> None:
        """Expire keys on time even when nobody asks (the venue pushes listenKeyExpired by itself)."""
        while True:
            await asyncio.sleep(max(0.02, min(0.1, self.listen_key_ttl_s / 20)))
            self.live_key()

    def check_api_key(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            return json_response({"code": -2014, "msg": "API-key format invalid."}, status=401)
        if key != SIM_API_KEY:
            return json_response({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
                                 status=401)
        return None

    async def rest_listen_key(self, request: web.Request) -> web.Response:
        refusal = self.check_api_key(request)
        if refusal is not None:
            return refusal
        live = self.live_key()
        if request.method == "POST":
            if live is None:
                live = self.active = ListenKey("".join(secrets.choice(KEY_ALPHABET) for _ in range(64)), 0.0)
            live.expires_at = self._now() + self.listen_key_ttl_s
            return json_response({"listenKey": live.key})
        if live is None:
            return json_response(UNKNOWN_KEY, status=400)
        if request.method == "PUT":
            live.expires_at = self._now() + self.listen_key_ttl_s
            return json_response({"listenKey": live.key})
        self.active = None  # DELETE: the stream is closed, the key invalid
        for session in self.sessions():
            if session.state.get("listen_key") == live.key:
                session.close()
        return json_response({})

    # -- sockets ---------------------------------------------------------------------------------
    @staticmethod
    def path_key(request: web.Request) -> str | None:
        """The listen key the handshake names (/ws/<key>, /private/ws/<key>, /private/stream?streams=<key>)."""
        key = request.match_info.get("listenKey")
        if key is None and request.path.endswith("/stream"):
            key = request.query.get("streams") or None
        return key

    def check_path(self, request: web.Request) -> web.StreamResponse | None:
        key = self.path_key(request)
        if key is None:
            return None  # a bare /private/ws or /private/stream: the key comes by SUBSCRIBE
        live = self.live_key()
        if live is None or key != live.key:
            return web.Response(status=400, text=dumps(UNKNOWN_KEY), content_type="application/json")
        return None

    def on_open(self, session: Session) -> None:
        session.state["wrap"] = session.request.path.endswith("/stream")
        key = self.path_key(session.request)
        if key is not None:
            self.attach(session, key)

    @staticmethod
    def attach(session: Session, key: str) -> None:
        session.state["listen_key"] = key
        session.state["private"] = True
        session.subs.add("user")

    @staticmethod
    def wrap(session: Session, text: str) -> str:
        if not session.state.get("wrap"):
            return text
        return '{"stream":' + dumps(session.state.get("listen_key", "")) + ',"data":' + text + "}"

    def emit(self, targets: list[Session], frames: list[Frame], delay: float = 0.0) -> None:
        for session in targets:
            first = True
            for frame in frames:
                if self.wants(session, frame.key):
                    session.enqueue(self.wrap(session, frame.text), delay if first else 0.0)
                    first = False

    def on_text(self, session: Session, text: str) -> None:
        """Live SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS of the listen key (a listenKey is a stream)."""
        try:
            request = orjson.loads(text)
            method, req_id = request["method"], request.get("id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.feed.send(session, {"error": {"code": 3, "msg": "Invalid JSON: expected a request object"},
                                     "id": None})
            return
        params = request.get("params") or []
        key = session.state.get("listen_key")
        if method == "LIST_SUBSCRIPTIONS":
            self.feed.send(session, {"result": [key] if key and session.state.get("private") else [], "id": req_id})
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            self.feed.send(session, {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                                     "id": req_id})
            return
        live = self.live_key()
        if method == "SUBSCRIBE":
            bad = [p for p in params if live is None or p != live.key]
            if bad or not params:
                self.feed.send(session, {"error": {"code": 2, "msg": f"Invalid request: unknown stream "
                                                                     f"{(bad or [None])[0]!r}"}, "id": req_id})
                return
            self.attach(session, params[0])
        elif key in params:
            session.state["private"] = False
            session.subs.discard("user")
        self.feed.send(session, {"result": None, "id": req_id})

    # -- rendering -------------------------------------------------------------------------------
    def render(self, event: SimEvent) -> list[Frame]:
        if self.live_key() is None:
            return []
        order, now = event.order, self.sim.now_ms()
        if event.kind == "order" and order is not None:
            execution = "NEW" if order.status == "new" else "CANCELED"
            return [Frame("user", self.order_update(order, None, execution, now), "state")]
        if event.kind == "fill" and order is not None and event.fill is not None:
            fill = event.fill
            lite = {"e": "TRADE_LITE", "E": now, "T": fill.ts_ms, "s": fill.symbol, "q": num(order.qty),
                    "p": num(order.price) if order.price is not None else "0", "m": fill.liquidity == "maker",
                    "c": self.client_id(order), "S": fill.side.upper(), "L": num(fill.price), "l": num(fill.qty),
                    "t": int(fill.trade_id), "i": int(order.order_id)}
            return [Frame("user", dumps(lite), "fill"),
                    Frame("user", self.order_update(order, fill, "TRADE", now), "state")]
        if event.kind == "account" and event.symbol is not None:
            return [Frame("user", self.account_update(event, now), "account")]
        if event.kind == "account":  # a balance change without a position (an internal transfer)
            return [Frame("user", self.transfer_update(event, now), "account")]
        if event.kind == "margin_call" and event.symbol is not None:
            return [Frame("user", self.margin_call(event.symbol, now), "account")]
        return []

    @staticmethod
    def client_id(order: SimOrder) -> str:
        # The venue's own closes: "autoclose-..." (liquidation) and "adl_autoclose" (ADL), as the docs say.
        if order.origin == "liquidation":
            return f"autoclose-{order.order_id}"
        if order.origin == "adl":
            return "adl_autoclose"
        return order.client_id or f"sim{order.order_id}"  # as REST's clientOrderId

    def margin_call(self, symbol: str, now: int) -> str:
        """MARGIN_CALL: {"e","E","cw","p":[{"s","ps","pa","mt","iw","mp","up","mm"}]} for the nearest leg."""
        pos = self.sim.account.position(symbol)
        mark = Decimal(self.sim.market.mark("binance", symbol))
        fields = binance_margin_fields(self.sim, symbol)
        entry = {"s": symbol, "ps": "BOTH", "pa": num(pos.size), "mt": fields["marginType"].upper(), "iw": "0",
                 "mp": num(mark), "up": num(pos.unrealized(mark)), "mm": fields["maintMargin"]}
        return dumps({"e": "MARGIN_CALL", "E": now, "cw": num(self.sim.account.wallet), "p": [entry]})

    def order_update(self, order: SimOrder, fill: SimFill | None, execution: str, now: int) -> str:
        status = STATUS[order.status]
        if order.status == "canceled" and order.time_in_force in ("IOC", "FOK"):
            status = execution = "EXPIRED"  # as REST: Binance expires an IOC/FOK's unfilled rest
        tif = {"POST_ONLY": "GTX"}.get(order.time_in_force, order.time_in_force)
        kind = order.type.upper()
        body = {
            "s": order.symbol, "c": self.client_id(order), "S": order.side.upper(), "o": kind, "f": tif,
            "q": num(order.qty), "p": num(order.price) if order.price is not None else "0",
            "ap": num(order.average_price), "sp": "0", "x": execution, "X": status, "i": int(order.order_id),
            "l": num(fill.qty) if fill is not None else "0", "z": num(order.filled),
            "L": num(fill.price) if fill is not None else "0", "N": self.sim.account.currency,
            "n": num(fill.fee) if fill is not None else "0", "T": fill.ts_ms if fill is not None else order.updated_ms,
            "t": int(fill.trade_id) if fill is not None else 0, "b": "0", "a": "0",
            "m": fill is not None and fill.liquidity == "maker", "R": order.reduce_only, "wt": "CONTRACT_PRICE",
            "ot": kind, "ps": "BOTH", "cp": False, "rp": num(fill.realized_pnl) if fill is not None else "0",
            "pP": False, "si": 0, "ss": 0, "V": "NONE", "pm": "NONE", "gtd": 0,
        }
        return dumps({"e": "ORDER_TRADE_UPDATE", "T": body["T"], "E": now, "o": body})

    def transfer_update(self, event: SimEvent, now: int) -> str:
        """ACCOUNT_UPDATE for a transfer in (m=DEPOSIT) or out (m=WITHDRAW) of the futures wallet: the balance
        only, bc = the signed amount, P empty (as a recorded transfer push: {"a":{"B":[{"a","wb","cw",
        "bc"}],"P":[],"m":"DEPOSIT"}})."""
        transfers = self.sim.account.transfers
        done = transfers[-1] if transfers else None
        ccy = done.currency if done is not None else self.sim.account.currency
        change = "0"
        if done is not None:
            change = num(done.amount if event.reason == "DEPOSIT" else -done.amount)
        balance = num(self.sim.account.balances.get(ccy, Decimal(0)))
        balances = [{"a": ccy, "wb": balance, "cw": balance, "bc": change}]
        return dumps({"e": "ACCOUNT_UPDATE", "T": now, "E": now,
                      "a": {"m": event.reason or "DEPOSIT", "B": balances, "P": []}})

    def account_update(self, event: SimEvent, now: int) -> str:
        ccy = self.sim.account.currency
        wallet = num(self.sim.account.wallet)
        symbol = event.symbol or ""
        if event.reason == "FUNDING_FEE":
            payment = self.sim.account.funding[-1] if self.sim.account.funding else None
            change = num(payment.amount) if payment is not None and payment.symbol == symbol else "0"
            balances = [{"a": ccy, "wb": wallet, "cw": wallet, "bc": change}]
            return dumps({"e": "ACCOUNT_UPDATE", "T": now, "E": now, "a": {"m": "FUNDING_FEE", "B": balances}})
        pos = self.sim.account.position(symbol)
        mark = Decimal(self.sim.market.mark("binance", symbol))
        position = {"s": symbol, "pa": num(pos.size), "ep": num(pos.entry), "bep": num(pos.entry),
                    "cr": num(pos.realized_pnl), "up": num(pos.unrealized(mark)),
                    "mt": self.sim.account.margin_mode_of(symbol), "iw": "0",
                    "ps": "BOTH"}
        balances = [{"a": ccy, "wb": wallet, "cw": wallet, "bc": "0"}]
        return dumps({"e": "ACCOUNT_UPDATE", "T": now, "E": now,
                      "a": {"m": event.reason or "ORDER", "B": balances, "P": [position]}})


def mount_binance_private(app: web.Application, sim: SimExchange, stats: SimStats) -> BinancePrivate:
    """listenKey REST routes and the user-data sockets; call before the public /ws/{streams} routes."""
    stream = BinancePrivate(sim, stats)
    for method in ("POST", "PUT", "DELETE"):
        app.router.add_route(method, "/fapi/v1/listenKey", stream.rest_listen_key)
    pattern = "{listenKey:[A-Za-z0-9]{64}}"
    app.router.add_get(f"/ws/{pattern}", stream.feed.handle)
    app.router.add_get(f"/private/ws/{pattern}", stream.feed.handle)
    app.router.add_get("/private/ws", stream.feed.handle)
    app.router.add_get("/private/stream", stream.feed.handle)

    async def _start(_app: web.Application) -> None:
        stream._watchdog = asyncio.get_running_loop().create_task(stream.watch(), name="sim-binance-listenkeys")

    async def _stop(_app: web.Application) -> None:
        if stream._watchdog is not None:
            stream._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream._watchdog

    app.on_startup.append(_start)
    app.on_shutdown.append(shutdown_hook(stream))
    app.on_cleanup.append(_stop)
    return stream
