"""Bybit v5 linear feed adapter: one connection, orderbook + tickers topics, JSON ping every 20 s."""

from __future__ import annotations

from perpbot.core.events import Event
from perpbot.core.venue import ConnectionSpec
from perpbot.settings import FeedSettings
from perpbot.venues._streams import WebSocketSnapshots, json_frame, resubscribe
from perpbot.venues.bybit import parse as bybit_parse

# Bybit caps a public connection's args array at 21,000 characters; chunk subscribe requests.
ARGS_PER_REQUEST = 100


class BybitFeedAdapter(WebSocketSnapshots):
    venue = "bybit"
    keep_raw = False
    ping_interval_s = 20.0  # Bybit's recommendation
    ping_text = '{"op":"ping"}'

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
            json_frame({"op": "subscribe", "args": args[i : i + ARGS_PER_REQUEST]})
            for i in range(0, len(args), ARGS_PER_REQUEST)
        ]
        return [ConnectionSpec("bybit", ws_url, frames, list(symbols))]

    def parse(self, frame: str | bytes, recv_ts: float) -> list[Event]:
        return bybit_parse.parse(frame, recv_ts, self.tickers)

    # The supervisor's fast path for book deltas of synced books (None: use parse).
    apply_books_frame = staticmethod(bybit_parse.apply_books_frame)

    def resync_frames(self, symbol: str) -> list[str]:
        return resubscribe("op", args=[self._book_topic(symbol)])
