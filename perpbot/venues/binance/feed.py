"""Binance USD-M feed adapter: depth on /public and markPrice on /market (streams in the URL), REST snapshot."""

from __future__ import annotations

from collections.abc import Mapping

from perpbot.core.events import BookUpdate, Event
from perpbot.core.venue import ConnectionSpec
from perpbot.settings import FeedSettings
from perpbot.venues._streams import VenueFeed, connection_groups
from perpbot.venues.binance import parse as binance_parse

# Binance allows 1024 streams per connection; stay well under it.
STREAMS_PER_CONNECTION = 200
SNAPSHOT_LIMIT = 1000


class BinanceFeedAdapter(VenueFeed):
    venue = "binance"
    keep_raw = False
    ping_interval_s = 60.0  # the server pings every 3 minutes; websockets answers protocol pings (ping_text None)
    rest_snapshot = True

    def __init__(self, settings: FeedSettings, funding_hours: Mapping[str, float] | None = None) -> None:
        self.rules = binance_parse.Rules()
        # Symbols whose funding interval is not 8 h (from GET /fapi/v1/fundingInfo).
        self.funding_hours = dict(funding_hours or {})

    def connections(self, ws_url: str, symbols: list[str]) -> list[ConnectionSpec]:
        base = ws_url.rstrip("/")
        specs = []
        for suffix, group in connection_groups(symbols, STREAMS_PER_CONNECTION):
            depth = "/".join(f"{s.lower()}@depth@100ms" for s in group)
            mark = "/".join(f"{s.lower()}@markPrice@1s" for s in group)
            specs.append(ConnectionSpec(f"binance-public{suffix}", f"{base}/public/stream?streams={depth}", [], list(group)))
            # The market connection feeds no book, only funding.
            specs.append(ConnectionSpec(f"binance-market{suffix}", f"{base}/market/stream?streams={mark}", [], []))
        return specs

    def parse(self, frame: str | bytes, recv_ts: float) -> list[Event]:
        return binance_parse.parse(frame, recv_ts, self.funding_hours)

    # The supervisor's fast path for book deltas of synced books (None: use parse).
    apply_books_frame = staticmethod(binance_parse.apply_books_frame)

    def resync_frames(self, symbol: str) -> list[str]:
        # The stream keeps flowing; a resync is a fresh REST snapshot (snapshot_url), nothing to send.
        return []

    def snapshot_url(self, rest_url: str, symbol: str) -> str:
        return f"{rest_url.rstrip('/')}/fapi/v1/depth?symbol={symbol.upper()}&limit={SNAPSHOT_LIMIT}"

    def parse_snapshot(self, body: bytes, symbol: str, recv_ts: float) -> BookUpdate:
        return binance_parse.parse_snapshot(body, symbol, recv_ts)
