"""Simulated Bybit v5 public linear WebSocket: `orderbook.{1,50,200}.{symbol}` and `tickers.{symbol}`.

Shapes per https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook and .../ticker and the
recorded frames in shared/fixtures/bybit: a snapshot after subscribing, then deltas whose `u`
is consecutive per stream, `seq` a cross sequence per symbol; level-1 is snapshots only,
re-pushed with the same `u` after 3 s without change. Ticker deltas carry changed fields only.
Keepalive: {"op":"ping"} -> the linear pong JSON; connections idle 10 min are closed.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from perpbot.sim.instruments import FUNDING_CAPS
from perpbot.sim.market import diff_views
from perpbot.sim.ws_common import Grid, Session, VenueFeed, dumps

DEPTHS = (1, 50, 200, 1000)
LEVEL1_REPUSH_S = 3.0


class _Stream:
    def __init__(self, rng: random.Random, depth: int, symbol: str) -> None:
        self.depth, self.symbol = depth, symbol
        self.topic = f"orderbook.{depth}.{symbol}"
        self.update_id = rng.randrange(10**7, 10**8)
        self.bids: list[tuple[int, int]] = []
        self.asks: list[tuple[int, int]] = []
        self.idle_ticks = 0


class BybitFeed(VenueFeed):
    venue = "bybit"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_timeout_s = float(getattr(self.sim, "bybit_idle_timeout_s", 600.0))
        self.repush_ticks = max(1, round(LEVEL1_REPUSH_S / self.market.tick_interval_s))
        self.grids: dict[str, tuple[Grid, Grid]] = {}
        self.streams: dict[str, _Stream] = {}
        self.cross_seq: dict[str, int] = {}
        self.tickers: dict[str, dict[str, str]] = {}
        self.ticker_seq: dict[str, int] = {}
        for symbol in self.market.symbols("bybit"):
            rng = random.Random(f"{self.market.seed}:bybit:{symbol}")
            inst = self.market.instrument("bybit", symbol)
            self.grids[symbol] = (Grid(inst.tick), Grid(inst.lot))
            self.cross_seq[symbol] = rng.randrange(10**11, 10**12)
            self.ticker_seq[symbol] = rng.randrange(10**11, 10**12)
            for depth in DEPTHS:
                stream = _Stream(rng, depth, symbol)
                stream.bids, stream.asks = self.market.book("bybit", symbol).top(depth)
                self.streams[stream.topic] = stream
            self.tickers[symbol] = self._ticker_fields(symbol)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v5/public/linear", self.handle)

    # -- client messages -------------------------------------------------------------
    def _answer(self, session: Session, op: str, req_id: Any, success: bool, ret_msg: str) -> None:
        self.reply(session, {"success": success, "ret_msg": ret_msg, "conn_id": session.conn_id,
                             "req_id": req_id if req_id is not None else "", "op": op})

    def on_text(self, session: Session, text: str) -> None:
        try:
            request = orjson.loads(text)
            op = request["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._answer(session, "", None, False, "error:invalid op")
            return
        req_id = request.get("req_id")
        if op == "ping":
            self._answer(session, "ping", req_id, True, "pong")
            return
        args = request.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            self._answer(session, str(op), req_id, False, f"error:unsupported op {op}")
            return
        for topic in args:
            if not self._valid_topic(topic):
                self._answer(session, op, req_id, False, f"error:handler not found,topic:{topic}")
                return
            if op == "subscribe" and topic in session.subs:
                self._answer(session, op, req_id, False, f"error:already subscribed,topic:{topic}")
                return
        self._answer(session, op, req_id, True, "")
        for topic in args:
            if op == "unsubscribe":
                session.subs.discard(topic)
                continue
            session.subs.add(topic)
            if topic.startswith("tickers."):
                symbol = topic.split(".", 1)[1]
                self.push(session, self._ticker_frame(symbol, self.tickers[symbol], True), symbol)
            else:
                stream = self.streams[topic]
                self.push(session, self._book_frame(stream, stream.bids, stream.asks, True), stream.symbol)

    def _valid_topic(self, topic: Any) -> bool:
        if not isinstance(topic, str):
            return False
        if topic.startswith("tickers."):
            return self.market.has("bybit", topic[len("tickers."):])
        return topic in self.streams

    # -- frames ----------------------------------------------------------------------
    def _levels(self, symbol: str, levels: list[tuple[int, int]]) -> list[list[str]]:
        price_grid, size_grid = self.grids[symbol]
        return [[price_grid.fixed(p), size_grid.fixed(q) if q else "0"] for p, q in levels]

    def _book_frame(self, stream: _Stream, bids: list, asks: list, snapshot: bool) -> str:
        now = self.now_ms()
        data = {"s": stream.symbol, "b": self._levels(stream.symbol, bids), "a": self._levels(stream.symbol, asks),
                "u": stream.update_id, "seq": self.cross_seq[stream.symbol]}
        kind = "snapshot" if snapshot else "delta"
        if stream.depth == 1:  # level 1 puts ts before type, and has no cts
            return dumps({"topic": stream.topic, "ts": now, "type": kind, "data": data, "cts": now - 2})
        return dumps({"topic": stream.topic, "type": kind, "ts": now, "data": data, "cts": now - 2})

    def _ticker_fields(self, symbol: str) -> dict[str, str]:
        inst = self.market.instrument("bybit", symbol)
        book = self.market.book("bybit", symbol)
        (bids, asks) = book.top(1)
        price_grid, size_grid = self.grids[symbol]
        rate, interval_h, next_ms = self.market.funding("bybit", symbol)
        mark = self.market.mark("bybit", symbol)
        index = Decimal(repr(self.market.index(inst.base))).quantize(Decimal("0.01"))
        return {
            "symbol": symbol, "lastPrice": format(mark, "f"), "markPrice": format(mark, "f"),
            "indexPrice": format(index, "f"), "fundingIntervalHour": str(interval_h),
            "fundingCap": format(FUNDING_CAPS["bybit"], "f"),
            "nextFundingTime": str(next_ms), "fundingRate": format(rate.quantize(Decimal("1e-7")), "f"),
            "bid1Price": price_grid.fixed(bids[0][0]), "bid1Size": size_grid.fixed(bids[0][1]),
            "ask1Price": price_grid.fixed(asks[0][0]), "ask1Size": size_grid.fixed(asks[0][1]),
        }

    def _ticker_frame(self, symbol: str, fields: dict[str, str], snapshot: bool) -> str:
        return dumps({"topic": f"tickers.{symbol}", "type": "snapshot" if snapshot else "delta",
                      "data": fields, "cs": self.ticker_seq[symbol], "ts": self.now_ms()})

    # -- market ticks ------------------------------------------------------------------
    def on_tick(self) -> None:
        changed_symbols: set[str] = set()
        for topic, stream in self.streams.items():
            symbol = stream.symbol
            new_bids, new_asks = self.market.book("bybit", symbol).top(stream.depth)
            bid_changes = diff_views(stream.bids, new_bids, True)
            ask_changes = diff_views(stream.asks, new_asks, False)
            stream.bids, stream.asks = new_bids, new_asks
            if stream.depth == 1:
                if bid_changes or ask_changes:
                    stream.update_id += 1
                    stream.idle_ticks = 0
                else:
                    stream.idle_ticks += 1
                    if stream.idle_ticks < self.repush_ticks:
                        continue
                    stream.idle_ticks = 0  # unchanged for 3 s: same snapshot, same u
                frame = None
                for session in self.subscribers(topic):
                    frame = frame or self._book_frame(stream, new_bids, new_asks, True)
                    self.push(session, frame, symbol)
                continue
            if not (bid_changes or ask_changes):
                continue
            stream.update_id += 1
            if symbol not in changed_symbols:
                changed_symbols.add(symbol)
                self.cross_seq[symbol] += stream.update_id % 97 + 1
            frame = None
            for session in self.subscribers(topic):
                frame = frame or self._book_frame(stream, bid_changes, ask_changes, False)
                self.push(session, frame, symbol, book_delta=True)
        for symbol in self.tickers:
            fields = self._ticker_fields(symbol)
            delta = {k: v for k, v in fields.items() if self.tickers[symbol].get(k) != v}
            self.tickers[symbol] = fields
            if not delta:
                continue
            self.ticker_seq[symbol] += 1
            sessions = self.subscribers(f"tickers.{symbol}")
            if sessions:
                frame = self._ticker_frame(symbol, {"symbol": symbol, **delta}, False)
                for session in sessions:
                    self.push(session, frame, symbol)
