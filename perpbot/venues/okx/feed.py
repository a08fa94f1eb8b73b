"""OKX market-data feed adapter: one public connection per 15 symbols, text ping, resubscribe on resync."""

from __future__ import annotations

from typing import Any

from perpbot.core.events import Event
from perpbot.core.venue import ConnectionSpec
from perpbot.settings import FeedSettings
from perpbot.venues._streams import WebSocketSnapshots, connection_groups, json_frame, resubscribe
from perpbot.venues.okx import parse as okx_parse

# OKX asks for fewer than 30 channels per connection on 400-level books: each symbol
# takes two (book + funding-rate).
SYMBOLS_PER_CONNECTION = 15


class OkxFeedAdapter(WebSocketSnapshots):
    venue = "okx"
    ping_interval_s = 20.0  # OKX drops a connection silent for 30 s
    ping_text = "ping"

    def __init__(self, settings: FeedSettings) -> None:
        self.book_channel = settings.okx_book_channel
        # Checksums (when OKX sends them) are computed over the level strings as received.
        self.keep_raw = self.book_channel == "books"
        self.rules = okx_parse.Rules()

    def _args(self, symbol: str) -> list[dict[str, Any]]:
        return [
            {"channel": self.book_channel, "instId": symbol},
            {"channel": okx_parse.FUNDING_CHANNEL, "instId": symbol},
        ]

    def connections(self, ws_url: str, symbols: list[str]) -> list[ConnectionSpec]:
        specs = []
        for suffix, group in connection_groups(symbols, SYMBOLS_PER_CONNECTION):
            args = [arg for symbol in group for arg in self._args(symbol)]
            frame = json_frame({"op": "subscribe", "args": args})
            specs.append(ConnectionSpec(f"okx{suffix}", ws_url, [frame], list(group)))
        return specs

    def parse(self, frame: str | bytes, recv_ts: float) -> list[Event]:
        return okx_parse.parse(frame, recv_ts)

    # The supervisor's fast path for `books` updates of synced books (None: use parse).
    apply_books_frame = staticmethod(okx_parse.apply_books_frame)

    def resync_frames(self, symbol: str) -> list[str]:
        return resubscribe("op", args=[{"channel": self.book_channel, "instId": symbol}])
