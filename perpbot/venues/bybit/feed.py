"""Bybit v5 linear feed adapter: one connection, orderbook + tickers topics, JSON ping every 20 s."""

from __future__ import annotations

import orjson

from perpbot.core.events import BookUpdate, Event, ParseError
from perpbot.core.venue import ConnectionSpec
from perpbot.settings import FeedSettings
from perpbot.venues.bybit import parse as bybit_parse

# Bybit caps a public connection's args array at 21,000 characters; chunk subscribe requests.
ARGS_PER_REQUEST = 100


class BybitFeedAdapter:
    venue = "bybit"
    keep_raw = False
    ping_interval_s = 20.0  # Bybit's recommendation
    rest_snapshot = False

    def __init__(self, settings: FeedSettings) -> None:
        self.depth = settings.bybit_depth
        self.rules = bybit_parse.Rules()
        # Ticker deltas omit unchanged fields: last known state per symbol, owned by this adapter.
        self.tickers: dict[str, bybit_parse.TickerState] = {}

    def _book_topic(self, symbol: str) -> str:
        return f"orderbook.{self.depth}.{symbol}"

    def connections(self, ws_url: str, symbols: list[str]) -> list[ConnectionSpec]:
        args = [topic for s in symbols for topic in (self._book_topic(s), f"tickers.{s}")]
        frames = [
            orjson.dumps({"op": "subscribe", "args": args[i : i + ARGS_PER_REQUEST]}).decode()
            for i in range(0, len(args), ARGS_PER_REQUEST)
        ]
        return [ConnectionSpec("bybit", ws_url, frames, list(symbols))]

    def ping_frame(self) -> str | None:
        return '{"op":"ping"}'

    def parse(self, frame: str | bytes, recv_ts: float) -> list[Event]:
        return bybit_parse.parse(frame, recv_ts, self.tickers)

    # The supervisor's fast path for book deltas of synced books (None: use parse).
    apply_books_frame = staticmethod(bybit_parse.apply_books_frame)

    def resync_frames(self, symbol: str) -> list[str]:
        args = [self._book_topic(symbol)]
        return [
            orjson.dumps({"op": "unsubscribe", "args": args}).decode(),
            orjson.dumps({"op": "subscribe", "args": args}).decode(),
        ]

    def snapshot_url(self, rest_url: str, symbol: str) -> str:
        raise ValueError("bybit books start from the WebSocket snapshot; there is no REST snapshot step")

    def parse_snapshot(self, body: bytes, symbol: str, recv_ts: float) -> BookUpdate:
        raise ParseError(self.venue, "bybit books start from the WebSocket snapshot", symbol)
