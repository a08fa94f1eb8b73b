"""Simulated OKX v5 public WebSocket: `books` (snapshot + updates, seqId/prevSeqId, CRC32), `books5`, `funding-rate`.

Wire shapes follow OKX's docs and the recorded frames in shared/fixtures/okx: levels are
[price, size, "0", numOrders] strings, sizes in contracts, `ts` a string of ms, checksum the
signed CRC32 over the first 25 bids/asks of the strings actually sent
(https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel).
`sim.okx_checksum_zero` sends 0 instead, as OKX itself has done since 2026.
Keepalive: text "ping" -> "pong"; a connection with no traffic for 30 s is closed.
"""

from __future__ import annotations

import random
import zlib
from typing import Any, cast

import orjson
from aiohttp import web

from perpbot.sim.instruments import FUNDING_CAPS
from perpbot.sim.market import diff_views
from perpbot.sim.ws_common import Grid, Session, VenueFeed, dumps

CHANNELS = ("books", "books5", "funding-rate")
BOOKS_DEPTH = 400
KEEPALIVE_S = 60.0  # OKX re-sends an empty update after ~60 s without a depth change


def okx_checksum(bids: list[list[str]], asks: list[list[str]]) -> int:
    """Signed CRC32 of 'bid1px:bid1sz:ask1px:ask1sz:...' over the first 25 levels per side."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def _orders(price: int, lots: int) -> str:
    """Deterministic order count of a level (same level -> same count in snapshot and update)."""
    return str(1 + (price * 31 + lots) % 9) if lots else "0"


class _BookStream:
    """Shared state of one `books`/`books5` stream: last view and sequence ids."""

    def __init__(self, seed: int, channel: str, symbol: str, depth: int) -> None:
        self.channel, self.symbol, self.depth = channel, symbol, depth
        self.rng = random.Random(f"{seed}:okx:{channel}:{symbol}")
        self.seq = self.rng.randrange(10**11, 10**12)
        self.prev_seq = -1
        self.bids: list[tuple[int, int]] = []
        self.asks: list[tuple[int, int]] = []
        self.changes: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])
        self.idle_ticks = 0
        self.pushed = False  # something to send this tick


class OkxFeed(VenueFeed):
    venue = "okx"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_timeout_s = float(getattr(self.sim, "okx_idle_timeout_s", 30.0))
        self.checksum_zero = bool(getattr(self.sim, "okx_checksum_zero", False))
        tick_s = self.market.tick_interval_s
        self.keepalive_ticks = max(1, round(KEEPALIVE_S / tick_s))
        self.funding_ticks = max(1, round(1.0 / tick_s))
        self.streams: dict[tuple[str, str], _BookStream] = {}
        self.grids: dict[str, tuple[Grid, Grid]] = {}
        for symbol in self.market.symbols("okx"):
            inst = self.market.instrument("okx", symbol)
            self.grids[symbol] = (Grid(inst.tick), Grid(inst.lot))
            for channel, depth in (("books", BOOKS_DEPTH), ("books5", 5)):
                stream = _BookStream(self.market.seed, channel, symbol, depth)
                stream.bids, stream.asks = self.market.book("okx", symbol).top(depth)
                self.streams[(channel, symbol)] = stream

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/v5/public", self.handle)

    # -- rendering ---------------------------------------------------------------------
    def _levels(self, symbol: str, levels: list[tuple[int, int]]) -> list[list[str]]:
        price_grid, size_grid = self.grids[symbol]
        return [[price_grid.trimmed(p), size_grid.trimmed(q), "0", _orders(p, q)] for p, q in levels]

    def _books_frame(self, stream: _BookStream, snapshot: bool, checksum_delta: int = 0) -> str:
        symbol = stream.symbol
        if snapshot:
            bids, asks = self._levels(symbol, stream.bids), self._levels(symbol, stream.asks)
        else:
            bids, asks = self._levels(symbol, stream.changes[0]), self._levels(symbol, stream.changes[1])
        if self.checksum_zero and not checksum_delta:
            checksum = 0
        else:
            checksum = okx_checksum(
                self._levels(symbol, stream.bids[:25]), self._levels(symbol, stream.asks[:25])
            )
            if checksum_delta:
                checksum = ((checksum + checksum_delta + (1 << 31)) % (1 << 32)) - (1 << 31)
        data = {
            "asks": asks, "bids": bids, "ts": str(self.now_ms()), "checksum": checksum,
            "prevSeqId": -1 if snapshot else stream.prev_seq, "seqId": stream.seq,
        }
        return dumps({"arg": {"channel": "books", "instId": symbol},
                      "action": "snapshot" if snapshot else "update", "data": [data]})

    def _books5_frame(self, stream: _BookStream) -> str:
        symbol = stream.symbol
        data = {"asks": self._levels(symbol, stream.asks), "bids": self._levels(symbol, stream.bids),
                "instId": symbol, "ts": str(self.now_ms()), "seqId": stream.seq}
        return dumps({"arg": {"channel": "books5", "instId": symbol}, "data": [data]})

    def _funding_frame(self, symbol: str) -> str:
        rate, interval_h, next_ms = self.market.funding("okx", symbol)
        mark = self.market.mark("okx", symbol)
        premium = (float(mark) / self.market.index(self.market.instrument("okx", symbol).base)) - 1
        data = {
            "fundingRate": format(rate, "f"), "fundingTime": str(next_ms), "impactValue": "",
            "instId": symbol, "instType": "SWAP", "interestRate": "0.0001",
            "maxFundingRate": format(FUNDING_CAPS["okx"], "f"), "method": "current_period",
            "minFundingRate": format(-FUNDING_CAPS["okx"], "f"), "nextFundingRate": "",
            "nextFundingTime": str(next_ms + interval_h * 3_600_000), "premium": f"{premium:.10f}",
            "settFundingRate": format(rate, "f"), "settState": "settled", "ts": str(self.now_ms()),
        }
        return dumps({"arg": {"channel": "funding-rate", "instId": symbol}, "data": [data]})

    # -- client messages ---------------------------------------------------------------
    def on_text(self, session: Session, text: str) -> None:
        if text == "ping":
            self.reply(session, "pong")
            return
        try:
            request = orjson.loads(text)
            op = request["op"]
            args = request["args"]
            if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
                raise ValueError(op)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.reply(session, self._error(None, "60012", f"Invalid request: {text}", session))
            return
        req_id = request.get("id")
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            symbol = arg.get("instId") if isinstance(arg, dict) else None
            if channel not in CHANNELS or not self.market.has("okx", str(symbol)):
                msg = (f"Wrong URL or channel:{channel},instId:{symbol} doesn't exist. "
                       "Please use the correct URL, channel and parameters referring to API document.")
                self.reply(session, self._error(req_id, "60018", msg, session))
                continue
            symbol = cast(str, symbol)  # a listed instrument id (market.has above)
            key = (channel, symbol)
            ack: dict[str, Any] = {} if req_id is None else {"id": req_id}
            ack.update({"event": op, "arg": {"channel": channel, "instId": symbol}, "connId": session.conn_id})
            self.reply(session, ack)
            if op == "unsubscribe":
                session.subs.discard(key)
                continue
            session.subs.add(key)
            if channel == "books":
                self.push(session, self._books_frame(self.streams[key], True), symbol)
            elif channel == "books5":
                self.push(session, self._books5_frame(self.streams[key]), symbol)
            else:
                self.push(session, self._funding_frame(symbol), symbol)

    @staticmethod
    def _error(req_id: Any, code: str, msg: str, session: Session) -> dict[str, Any]:
        frame: dict[str, Any] = {} if req_id is None else {"id": req_id}
        frame.update({"event": "error", "code": code, "msg": msg, "connId": session.conn_id})
        return frame

    # -- market ticks --------------------------------------------------------------------
    def on_tick(self) -> None:
        for (channel, symbol), stream in self.streams.items():
            new_bids, new_asks = self.market.book("okx", symbol).top(stream.depth)
            bid_changes = diff_views(stream.bids, new_bids, True)
            ask_changes = diff_views(stream.asks, new_asks, False)
            stream.bids, stream.asks = new_bids, new_asks
            stream.pushed = False
            if bid_changes or ask_changes:
                stream.prev_seq = stream.seq
                stream.seq += stream.rng.randint(1, 20)
                stream.changes = (bid_changes, ask_changes)
                stream.idle_ticks = 0
                stream.pushed = True
            else:
                stream.idle_ticks += 1
                if stream.idle_ticks >= self.keepalive_ticks:
                    # No depth change for a while: an empty update with prevSeqId == seqId.
                    stream.prev_seq = stream.seq
                    stream.changes = ([], [])
                    stream.idle_ticks = 0
                    stream.pushed = True
            if not stream.pushed:
                continue
            sessions = self.subscribers((channel, symbol))
            if not sessions:
                continue
            if channel == "books":
                frame = self._books_frame(stream, False)
                bad = lambda stream=stream: self._books_frame(stream, False, checksum_delta=7919)  # noqa: E731
                for session in sessions:
                    self.push(session, frame, symbol, book_delta=True, bad_checksum=bad)
            else:
                frame = self._books5_frame(stream)
                for session in sessions:
                    self.push(session, frame, symbol)
        if self.market.tick % self.funding_ticks == 0:
            for symbol in self.market.symbols("okx"):
                sessions = self.subscribers(("funding-rate", symbol))
                if sessions:
                    frame = self._funding_frame(symbol)
                    for session in sessions:
                        self.push(session, frame, symbol)
