"""Hyperliquid WebSocket frames -> events (pure): l2Book full snapshots, activeAssetCtx funding, acks, pongs.

Wire reference: https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/websocket/subscriptions
(WsBook, activeAssetCtx) and .../websocket/timeouts-and-heartbeats; notes in VENUES.md §4.
"""

from __future__ import annotations

import msgspec

from perpbot.book.l2 import L2Book
from perpbot.book.sync import APPLY, DROP, apply_update
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
            if type(subscription) is dict and type(data) is dict
            else "subscriptionResponse"
        )
        return [SubscribeAck(VENUE, detail)]
    if channel == "error":
        return [VenueError(VENUE, "error", str(message.get("data", "")))]
    return []


# Typed decode of l2Book frames for the supervisor's fast path. Any frame that does not fit goes
# to parse(), which owns every error. orjson (parse()'s decoder) turns integers beyond 64 bits into
# floats, which parse() refuses; msgspec keeps them, so the fast path declines them.
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


class _Level(msgspec.Struct, gc=False):
    px: str
    sz: str


class _BookData(msgspec.Struct, gc=False):
    coin: str
    time: int
    levels: tuple[list[_Level], list[_Level]]


class _BookFrame(msgspec.Struct, gc=False):
    channel: str
    data: _BookData


_decode_book = msgspec.json.Decoder(_BookFrame).decode


def apply_books_frame(frame: str | bytes, recv_ts: float, books) -> tuple[L2Book, int, str | None] | None:
    """Fast path for an l2Book snapshot of a book that already had one (see okx's apply_books_frame
    for the contract): decoded by msgspec, applied by apply_update without the per-level Python
    checks of parse(). None hands the untouched frame to parse() + apply_update."""
    try:
        typed = _decode_book(frame)
    except Exception:  # whatever the typed decode refuses belongs to parse()
        return None
    data = typed.data
    if typed.channel != "l2Book":
        return None
    book = books.get((VENUE, data.coin))
    time_ms = data.time
    if book is None or book.seq is None or book.awaiting_first_delta or not _INT_MIN <= time_ms <= _INT_MAX:
        return None
    bids, asks = data.levels
    update = BookUpdate(VENUE, data.coin, True, [[level.px, level.sz] for level in bids],
                        [[level.px, level.sz] for level in asks], time_ms, None, None, None, time_ms, recv_ts)
    return book, time_ms, apply_update(book, update, _RULES)


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


_RULES = Rules()
