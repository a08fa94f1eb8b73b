"""OKX market-data feed adapter: one public connection per 15 symbols, text ping, resubscribe on resync."""

from __future__ import annotations

import orjson

from perpbot.core.events import BookUpdate, Event, ParseError
from perpbot.core.venue import ConnectionSpec
from perpbot.settings import FeedSettings
from perpbot.venues.okx import parse as okx_parse

# OKX asks for fewer than 30 channels per connection on 400-level books: each symbol
# takes two (book + funding-rate).
SYMBOLS_PER_CONNECTION = 15


class OkxFeedAdapter:
    venue = "okx"
    ping_interval_s = 20.0  # OKX drops a connection silent for 30 s
    rest_snapshot = False

    def __init__(self, settings: FeedSettings) -> None:
        self.book_channel = settings.okx_book_channel
        # Checksums (when OKX sends them) are computed over the level strings as received.
        self.keep_raw = self.book_channel == "books"
        self.rules = okx_parse.Rules()

    def _args(self, symbol: str) -> list[dict]:
        return [
            {"channel": self.book_channel, "instId": symbol},
            {"channel": okx_parse.FUNDING_CHANNEL, "instId": symbol},
        ]

    def connections(self, ws_url: str, symbols: list[str]) -> list[ConnectionSpec]:
        specs = []
        for start in range(0, len(symbols), SYMBOLS_PER_CONNECTION):
            group = symbols[start : start + SYMBOLS_PER_CONNECTION]
            args = [arg for symbol in group for arg in self._args(symbol)]
            name = "okx" if start == 0 else f"okx-{start // SYMBOLS_PER_CONNECTION + 1}"
            frame = orjson.dumps({"op": "subscribe", "args": args}).decode()
            specs.append(ConnectionSpec(name, ws_url, [frame], list(group)))
        return specs

    def ping_frame(self) -> str | None:
        return "ping"

    def parse(self, frame: str | bytes, recv_ts: float) -> list[Event]:
        return okx_parse.parse(frame, recv_ts)

    # The supervisor's fast path for `books` updates of synced books (None: use parse).
    apply_books_frame = staticmethod(okx_parse.apply_books_frame)

    def resync_frames(self, symbol: str) -> list[str]:
        arg = [{"channel": self.book_channel, "instId": symbol}]
        return [
            orjson.dumps({"op": "unsubscribe", "args": arg}).decode(),
            orjson.dumps({"op": "subscribe", "args": arg}).decode(),
        ]

    def snapshot_url(self, rest_url: str, symbol: str) -> str:
        raise ValueError("okx books start from the WebSocket snapshot; there is no REST snapshot step")

    def parse_snapshot(self, body: bytes, symbol: str, recv_ts: float) -> BookUpdate:
        raise ParseError(self.venue, "okx books start from the WebSocket snapshot", symbol)
