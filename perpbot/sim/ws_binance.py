"""Simulated Binance USD-M market streams (`depthUpdate` with U/u/pu, `markPriceUpdate`) and REST depth.

Paths as the venue serves them: combined `/public/stream?streams=`, `/market/stream?streams=`,
legacy `/stream?streams=` (events wrapped as {"stream","data"}), raw `/ws/<stream>[/<stream>..]`
under the same prefixes, and live `{"method":"SUBSCRIBE"}` -> `{"result":null,"id":..}`
(https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams).
Every stream is served on every path (the simulator does not withhold mis-routed streams).
`GET /fapi/v1/depth` answers with `lastUpdateId` = last pushed `u` + 1, so the first event
after the snapshot satisfies the documented `U <= lastUpdateId <= u` bridge rule.
Keepalive: the server sends protocol pings (sim.binance_ping_interval_s, 180 s by default).
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from perpbot.sim.market import diff_views
from perpbot.sim.ws_common import Grid, Session, VenueFeed, dumps

DEPTH_SUFFIXES = ("@depth", "@depth@100ms", "@depth@250ms", "@depth@500ms")
MARK_SUFFIXES = {"@markPrice": 3.0, "@markPrice@1s": 1.0}
REST_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
EIGHT = Decimal("0.00000001")


class _DepthStream:
    def __init__(self, seed: int, symbol: str) -> None:
        self.rng = random.Random(f"{seed}:binance:depth:{symbol}")
        self.final_id = self.rng.randrange(10**11, 10**12)
        self.bids: list[tuple[int, int]] = []
        self.asks: list[tuple[int, int]] = []


class BinanceFeed(VenueFeed):
    venue = "binance"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_s = float(getattr(self.sim, "binance_ping_interval_s", 180.0))
        self.by_lower = {s.lower(): s for s in self.market.symbols("binance")}
        self.grids: dict[str, tuple[Grid, Grid]] = {}
        self.depth: dict[str, _DepthStream] = {}
        for symbol in self.market.symbols("binance"):
            inst = self.market.instrument("binance", symbol)
            self.grids[symbol] = (Grid(inst.tick), Grid(inst.lot))
            stream = _DepthStream(self.market.seed, symbol)
            stream.bids, stream.asks = self.market.book("binance", symbol).top()
            self.depth[symbol] = stream
        self.mark_ticks = {s: max(1, round(p / self.market.tick_interval_s)) for s, p in MARK_SUFFIXES.items()}

    def routes(self, app: web.Application) -> None:
        for prefix in ("", "/public", "/market"):
            app.router.add_get(f"{prefix}/ws", self.handle)
            app.router.add_get(prefix + "/ws/{streams:.+}", self.handle)
            app.router.add_get(f"{prefix}/stream", self.handle)
        add_market_rest_routes(app, self)

    # -- stream names ----------------------------------------------------------------------
    def parse_stream(self, name: str) -> tuple[str, str] | None:
        """'btcusdt@depth@100ms' -> ('depth', 'BTCUSDT'); None when not a stream we serve."""
        lower, _, suffix = name.partition("@")
        symbol = self.by_lower.get(lower)
        if symbol is None or name != name.lower().replace("@markprice", "@markPrice"):
            return None
        suffix = "@" + suffix
        if suffix in DEPTH_SUFFIXES:
            return "depth", symbol
        if suffix in MARK_SUFFIXES:
            return suffix, symbol
        return None

    def check_path(self, request: web.Request) -> web.StreamResponse | None:
        names = self._path_streams(request)
        bad = [n for n in names if self.parse_stream(n) is None]
        if bad:
            body = dumps({"code": -1100, "msg": f"Invalid stream name: {bad[0]}"})
            return web.Response(status=400, text=body, content_type="application/json")
        return None

    @staticmethod
    def _path_streams(request: web.Request) -> list[str]:
        if request.path.endswith("/stream"):
            raw = request.query.get("streams", "")
        else:
            raw = request.match_info.get("streams", "")
        return [n for n in raw.split("/") if n]

    def on_open(self, session: Session) -> None:
        session.state["wrap"] = session.request.path.endswith("/stream")
        for name in self._path_streams(session.request):
            session.subs.add(name)

    # -- client messages ---------------------------------------------------------------
    def on_text(self, session: Session, text: str) -> None:
        try:
            request = orjson.loads(text)
            method = request["method"]
            req_id = request.get("id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.reply(session, {"error": {"code": 3, "msg": "Invalid JSON: expected a request object"}, "id": None})
            return
        params = request.get("params") or []
        if method == "LIST_SUBSCRIPTIONS":
            self.reply(session, {"result": sorted(session.subs), "id": req_id})
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            self.reply(session, {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                                 "id": req_id})
            return
        bad = [p for p in params if not isinstance(p, str) or self.parse_stream(p) is None]
        if bad:
            self.reply(session, {"error": {"code": 2, "msg": f"Invalid request: unknown stream {bad[0]!r}"},
                                 "id": req_id})
            return
        for name in params:
            if method == "SUBSCRIBE":
                session.subs.add(name)
            else:
                session.subs.discard(name)
        self.reply(session, {"result": None, "id": req_id})

    # -- frames --------------------------------------------------------------------------
    def _levels(self, symbol: str, levels: list[tuple[int, int]]) -> list[list[str]]:
        price_grid, size_grid = self.grids[symbol]
        return [[price_grid.fixed(p), size_grid.fixed(q) if q else "0"] for p, q in levels]

    def _mark_payload(self, symbol: str) -> bytes:
        now = self.now_ms()
        rate, _, next_ms = self.market.funding("binance", symbol)
        mark = self.market.mark("binance", symbol)
        index = Decimal(repr(self.market.index(self.market.instrument("binance", symbol).base))).quantize(EIGHT)
        return orjson.dumps({
            "e": "markPriceUpdate", "E": now, "s": symbol, "p": format(mark.quantize(EIGHT), "f"),
            "i": format(index, "f"), "P": format(mark.quantize(EIGHT), "f"),
            "r": format(rate.quantize(EIGHT), "f"), "T": next_ms,
        })

    def _send(self, session: Session, name: str, payload: bytes, symbol: str, book_delta: bool) -> None:
        if session.state.get("wrap"):
            text = '{"stream":"%s","data":%s}' % (name, payload.decode())
        else:
            text = payload.decode()
        self.push(session, text, symbol, book_delta=book_delta)

    def on_tick(self) -> None:
        now = self.now_ms()
        for symbol, stream in self.depth.items():
            new_bids, new_asks = self.market.book("binance", symbol).top()
            bid_changes = diff_views(stream.bids, new_bids, True)
            ask_changes = diff_views(stream.asks, new_asks, False)
            stream.bids, stream.asks = new_bids, new_asks
            if not (bid_changes or ask_changes):
                continue
            previous = stream.final_id
            first = previous + 1
            # Several matching-engine updates are folded into one 100 ms event.
            stream.final_id = previous + len(bid_changes) + len(ask_changes) + stream.rng.randint(0, 40)
            payload: bytes | None = None
            for session in list(self.sessions):
                for name in session.subs:
                    parsed = self.parse_stream(name)
                    if parsed != ("depth", symbol) or session.closing:
                        continue
                    if payload is None:
                        payload = orjson.dumps({
                            "e": "depthUpdate", "E": now, "T": now - 2, "s": symbol, "U": first,
                            "u": stream.final_id, "pu": previous,
                            "b": self._levels(symbol, bid_changes), "a": self._levels(symbol, ask_changes),
                        })
                    self._send(session, name, payload, symbol, True)
        for suffix, every in self.mark_ticks.items():
            if self.market.tick % every:
                continue
            for symbol in self.depth:
                name = f"{symbol.lower()}{suffix}"
                sessions = self.subscribers(name)
                if sessions:
                    payload = self._mark_payload(symbol)
                    for session in sessions:
                        self._send(session, name, payload, symbol, False)

    # -- REST depth snapshot ------------------------------------------------------------------
    async def rest_depth(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        if symbol not in self.depth:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        try:
            limit = int(request.query.get("limit", "500"))
        except ValueError:
            limit = -1
        if limit not in REST_LIMITS:
            return web.json_response(
                {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}, status=400
            )
        stream = self.depth[symbol]
        now = self.now_ms()
        body = {
            "lastUpdateId": stream.final_id + 1, "E": now, "T": now - 2,
            "bids": self._levels(symbol, stream.bids[:limit]), "asks": self._levels(symbol, stream.asks[:limit]),
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_market_rest_routes(app: web.Application, feed: BinanceFeed) -> None:
    """Market-data REST routes of the simulated Binance (GET /fapi/v1/depth)."""
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        if route.method == "GET" and info.get("path") == "/fapi/v1/depth":
            return  # already served (e.g. by the trading side)
    app.router.add_get("/fapi/v1/depth", feed.rest_depth)
