"""Hyperliquid feed adapter: one connection, l2Book + activeAssetCtx per coin, JSON ping every 50 s."""

from __future__ import annotations

from perpbot.core.events import Event
from perpbot.core.venue import ConnectionSpec
from perpbot.settings import FeedSettings
from perpbot.venues._streams import WebSocketSnapshots, json_frame, resubscribe
from perpbot.venues.hyperliquid import parse as hyperliquid_parse


class HyperliquidFeedAdapter(WebSocketSnapshots):
    venue = "hyperliquid"
    keep_raw = False
    ping_interval_s = 50.0  # the server closes after 60 s without traffic; the SDK pings every 50 s
    ping_text = '{"method":"ping"}'
    snapshot_reason = "pushes full l2Book snapshots"

    def __init__(self, settings: FeedSettings) -> None:
        self.rules = hyperliquid_parse.Rules()

    def connections(self, ws_url: str, symbols: list[str]) -> list[ConnectionSpec]:
        frames = [
            json_frame({"method": "subscribe", "subscription": {"type": kind, "coin": coin}})
            for coin in symbols
            for kind in ("l2Book", "activeAssetCtx")
        ]
        return [ConnectionSpec("hyperliquid", ws_url, frames, list(symbols))]

    def parse(self, frame: str | bytes, recv_ts: float) -> list[Event]:
        return hyperliquid_parse.parse(frame, recv_ts)

    # The supervisor's fast path for l2Book snapshots of books already synced (None: use parse).
    apply_books_frame = staticmethod(hyperliquid_parse.apply_books_frame)

    def resync_frames(self, symbol: str) -> list[str]:
        return resubscribe("method", subscription={"type": "l2Book", "coin": symbol})
