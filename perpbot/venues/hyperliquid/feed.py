"""Hyperliquid feed adapter: one connection, l2Book + activeAssetCtx per coin, JSON ping every 50 s."""

from __future__ import annotations

import orjson

from perpbot.core.events import BookUpdate, Event, ParseError
from perpbot.core.venue import ConnectionSpec
from perpbot.settings import FeedSettings
from perpbot.venues.hyperliquid import parse as hyperliquid_parse


class HyperliquidFeedAdapter:
    venue = "hyperliquid"
    keep_raw = False
    ping_interval_s = 50.0  # the server closes after 60 s without traffic; the SDK pings every 50 s
    rest_snapshot = False

    def __init__(self, settings: FeedSettings) -> None:
        self.rules = hyperliquid_parse.Rules()

    @staticmethod
    def _frame(method: str, subscription: dict) -> str:
        return orjson.dumps({"method": method, "subscription": subscription}).decode()

    def connections(self, ws_url: str, symbols: list[str]) -> list[ConnectionSpec]:
        frames = []
        for coin in symbols:
            frames.append(self._frame("subscribe", {"type": "l2Book", "coin": coin}))
            frames.append(self._frame("subscribe", {"type": "activeAssetCtx", "coin": coin}))
        return [ConnectionSpec("hyperliquid", ws_url, frames, list(symbols))]

    def ping_frame(self) -> str | None:
        return '{"method":"ping"}'

    def parse(self, frame: str | bytes, recv_ts: float) -> list[Event]:
        return hyperliquid_parse.parse(frame, recv_ts)

    # The supervisor's fast path for l2Book snapshots of books already synced (None: use parse).
    apply_books_frame = staticmethod(hyperliquid_parse.apply_books_frame)

    def resync_frames(self, symbol: str) -> list[str]:
        subscription = {"type": "l2Book", "coin": symbol}
        return [self._frame("unsubscribe", subscription), self._frame("subscribe", subscription)]

    def snapshot_url(self, rest_url: str, symbol: str) -> str:
        raise ValueError("hyperliquid pushes full l2Book snapshots; there is no REST snapshot step")

    def parse_snapshot(self, body: bytes, symbol: str, recv_ts: float) -> BookUpdate:
        raise ParseError(self.venue, "hyperliquid pushes full l2Book snapshots", symbol)
