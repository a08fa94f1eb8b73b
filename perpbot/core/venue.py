"""The market-data port every venue package implements (perpbot/venues/<venue>/feed.py).

The generic connection layer (perpbot/feeds) knows nothing venue-specific: it asks the
adapter which connections to open, what to send, how to keep them alive and how to turn
frames into events. Parsing is pure: frame + receive time in, events out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from perpbot.book.l2 import L2Book
from perpbot.book.sync import BookRules
from perpbot.core.events import BookUpdate, Event


@dataclass(slots=True)
class ConnectionSpec:
    """One WebSocket connection: where, what to send after connecting, which books it feeds."""

    name: str  # e.g. "okx", "binance-public", "binance-market"
    url: str
    subscribe_frames: list[str]
    symbols: list[str] = field(default_factory=list)  # books fed by this connection


class FeedAdapter(Protocol):
    venue: str
    rules: BookRules
    keep_raw: bool  # books keep level strings (needed for OKX checksums)
    # Seconds of silence after which a keepalive ping is sent; the venue's own rule.
    ping_interval_s: float
    # True when the venue's book needs a REST snapshot to start (Binance USD-M).
    rest_snapshot: bool

    def connections(self, ws_url: str, symbols: list[str]) -> list[ConnectionSpec]: ...

    def ping_frame(self) -> str | None:
        """Text keepalive to send, or None to use WebSocket protocol pings."""
        ...

    def parse(self, frame: str | bytes, recv_ts: float) -> list[Event]:
        """Pure. Raises perpbot.core.events.ParseError on a frame it cannot trust."""
        ...

    def apply_books_frame(
        self, frame: str | bytes, recv_ts: float, books: Mapping[tuple[str, str], L2Book]
    ) -> tuple[L2Book, int, str | None] | None:
        """The book hot path, tried on every frame before `parse` (the supervisor's order): the venue's
        common book frame (an OKX `books` update, a Binance `depthUpdate`... of a synced book) decoded
        straight into its book in `books` (keyed (venue, symbol) like BookStore.books), with the very
        checks and results of parse + apply_update. Returns (book, exchange ts ms, None) when applied,
        (book, exchange ts ms, reason) when the book was invalidated (apply_update's reasons), or None
        when the adapter declines the frame: nothing was touched, and parse + apply_update take it.
        This default declines every frame (an adapter without a fast path subclasses FeedAdapter)."""
        return None

    def resync_frames(self, symbol: str) -> list[str]:
        """Frames that make the venue send a fresh snapshot of `symbol` (unsub + sub)."""
        ...

    def snapshot_url(self, rest_url: str, symbol: str) -> str:
        """REST depth snapshot URL (only when rest_snapshot)."""
        ...

    def parse_snapshot(self, body: bytes, symbol: str, recv_ts: float) -> BookUpdate:
        """REST depth snapshot -> BookUpdate(snapshot=True) (only when rest_snapshot)."""
        ...
