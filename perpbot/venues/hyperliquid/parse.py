"""Hyperliquid WebSocket frames -> events (pure): l2Book full snapshots, activeAssetCtx funding, acks, pongs.

Wire reference: https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/websocket/subscriptions
(WsBook, activeAssetCtx) and .../websocket/timeouts-and-heartbeats; notes in VENUES.md §4.
"""

from __future__ import annotations

from perpbot.book.l2 import L2Book
from perpbot.book.sync import APPLY, DROP
from perpbot.core.events import BookUpdate, Event, FundingUpdate, ParseError, Pong, SubscribeAck, VenueError
from perpbot.venues._wire import decimal_field, decode, field

VENUE = "hyperliquid"
GREETING = "Websocket connection established."
FUNDING_HOURS = 1.0  # ctx.funding is the hourly rate, paid every hour
_MS_PER_HOUR = 3_600_000


def parse(frame: str | bytes, recv_ts: float) -> list[Event]:
    """One Hyperliquid frame -> events. Raises ParseError on anything malformed."""
    if frame == GREETING or frame == GREETING.encode():
        return []  # plain-text greeting some servers send on connect
    message = decode(VENUE, frame)
    if type(message) is not dict:
        raise ParseError(VENUE, "frame is not a JSON object")
    channel = field(VENUE, message, "channel", str)
    if channel == "l2Book":
        return [_book(field(VENUE, message, "data", dict), recv_ts)]
    if channel == "activeAssetCtx":
        return [_funding(field(VENUE, message, "data", dict), recv_ts)]
    if channel == "pong":
        return [Pong(VENUE, recv_ts)]
    if channel == "subscriptionResponse":
        data = message.get("data")
        subscription = data.get("subscription") if type(data) is dict else None
        detail = (
            f"{data.get('method')} {subscription.get('type')}:{subscription.get('coin')}"
            if type(subscription) is dict
            else "subscriptionResponse"
        )
        return [SubscribeAck(VENUE, detail)]
    if channel == "error":
        return [VenueError(VENUE, "error", str(message.get("data", "")))]
    return []


def _side(venue_levels: object, symbol: str) -> list:
    if type(venue_levels) is not list:
        raise ParseError(VENUE, "l2Book side is not a list", symbol)
    out = []
    for level in venue_levels:
        if type(level) is not dict:
            raise ParseError(VENUE, f"bad l2Book level {level!r}", symbol)
        px = level.get("px")
        sz = level.get("sz")
        if type(px) is not str or type(sz) is not str:
            raise ParseError(VENUE, f"bad l2Book level {level!r}", symbol)
        out.append([px, sz])
    return out


def _book(data: dict, recv_ts: float) -> BookUpdate:
    symbol = field(VENUE, data, "coin", str)
    levels = field(VENUE, data, "levels", list, symbol)
    if len(levels) != 2:
        raise ParseError(VENUE, "l2Book levels must be [bids, asks]", symbol)
    time_ms = field(VENUE, data, "time", int, symbol)
    # No sequence numbers: every push is a full snapshot, positioned by its block time.
    return BookUpdate(
        VENUE, symbol, True, _side(levels[0], symbol), _side(levels[1], symbol), time_ms, None, None, None, time_ms, recv_ts
    )


def _funding(data: dict, recv_ts: float) -> FundingUpdate:
    symbol = field(VENUE, data, "coin", str)
    ctx = field(VENUE, data, "ctx", dict, symbol)
    rate = decimal_field(VENUE, ctx, "funding", symbol)
    mark = decimal_field(VENUE, ctx, "markPx", symbol)
    # The frame has no timestamp; funding settles on every whole hour after receipt.
    now_ms = int(recv_ts * 1000)
    next_ms = (now_ms // _MS_PER_HOUR + 1) * _MS_PER_HOUR
    return FundingUpdate(VENUE, symbol, rate, FUNDING_HOURS, next_ms, mark, now_ms, recv_ts)


class Rules:
    """Hyperliquid pushes only full snapshots; a delta can never arrive, so none is ever applied."""

    def check_sequence(self, book: L2Book, update: BookUpdate) -> str:
        if update.seq is not None and book.seq is not None and update.seq < book.seq:
            return DROP
        return APPLY

    def verify_checksum(self, book: L2Book, checksum: int) -> bool:
        return True  # Hyperliquid sends no checksum
