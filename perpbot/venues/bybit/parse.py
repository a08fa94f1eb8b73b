"""Bybit v5 linear public frames -> events (pure), and the orderbook `u` continuity rules.

Wire reference: https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook and
.../public/ticker, connect page .../v5/ws/connect; notes in VENUES.md §3.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, cast

import msgspec

from perpbot.book.l2 import L2Book
from perpbot.book.sync import APPLY, DROP, apply_checked_delta
from perpbot.core.events import BookUpdate, Event, FundingUpdate, ParseError, Pong, SubscribeAck, VenueError
from perpbot.venues._wire import check_levels, decode, field, int_field, to_decimal

VENUE = "bybit"
DEFAULT_FUNDING_HOURS = 8.0
_MAX_FUNDING_HOURS = 168  # Bybit uses 1, 2, 4 or 8; anything beyond a week is a corrupt frame


@dataclass(slots=True)
class TickerState:
    """Last known ticker fields of one symbol: Bybit deltas omit unchanged fields."""

    rate: Decimal | None = None
    interval_hours: float = DEFAULT_FUNDING_HOURS
    next_funding_ms: int | None = None
    mark_price: Decimal | None = None


def parse(frame: str | bytes, recv_ts: float, tickers: dict[str, TickerState] | None = None) -> list[Event]:
    """One Bybit public frame -> events.

    `tickers` carries the per-symbol ticker state between frames; it belongs to the caller
    (the feed adapter object). Without it, ticker deltas lacking fundingRate produce nothing.
    """
    message = decode(VENUE, frame)
    if type(message) is not dict:
        raise ParseError(VENUE, "frame is not a JSON object")
    topic = message.get("topic")
    if topic is None:
        return _parse_op(message, recv_ts)
    if type(topic) is not str:
        raise ParseError(VENUE, "topic is not a string")
    if topic.startswith("orderbook."):
        return [_book(message, recv_ts)]
    if topic.startswith("tickers."):
        return _ticker(message, recv_ts, {} if tickers is None else tickers)
    return []


# Typed decode of orderbook frames for the supervisor's fast path (apply_books_frame). Any frame
# that does not fit (tickers, ops, odd types...) goes to parse(), which owns every error.
_Level = Annotated[list[str], msgspec.Meta(min_length=2)]
# orjson (parse()'s decoder) turns integers beyond 64 bits into floats, which parse() refuses;
# msgspec keeps them as ints, so the fast path declines them to stay identical.
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


class _BookData(msgspec.Struct, gc=False):
    s: str
    b: list[_Level]
    a: list[_Level]
    u: int


class _BookFrame(msgspec.Struct, gc=False):
    topic: str
    type: str
    ts: int
    data: _BookData


_decode_book = msgspec.json.Decoder(_BookFrame).decode


def apply_books_frame(frame: str | bytes, recv_ts: float, books) -> tuple[L2Book, int, str | None] | None:
    """Fast path for an orderbook delta of a synced book whose u follows the last (see okx's
    apply_books_frame for the contract): (book, ts ms, reason or None), or None to hand the
    untouched frame to parse() + apply_update (snapshots, u == 1, repeats, gaps, anything odd)."""
    try:
        typed = _decode_book(frame)
    except Exception:  # whatever the typed decode refuses belongs to parse()
        return None
    data = typed.data
    u = data.u
    ts = typed.ts
    if typed.type != "delta" or not typed.topic.startswith("orderbook.") or u == 1:
        return None
    book = books.get((VENUE, data.s))
    if book is None:
        return None
    last = book.seq
    if last is None or u != last + 1 or book.awaiting_first_delta or not (_INT_MIN <= ts <= _INT_MAX and u <= _INT_MAX):
        return None
    return book, ts, apply_checked_delta(book, data.b, data.a, u, ts, recv_ts)


def _parse_op(message: dict, recv_ts: float) -> list[Event]:
    op = message.get("op")
    if op == "pong" or (op == "ping" and message.get("ret_msg") == "pong"):
        return [Pong(VENUE, recv_ts)]
    if op in ("subscribe", "unsubscribe"):
        if message.get("success") is True:
            return [SubscribeAck(VENUE, f"{op} {message.get('req_id', '')}".strip())]
        return [VenueError(VENUE, str(op), str(message.get("ret_msg", "")))]
    if message.get("success") is False:
        return [VenueError(VENUE, str(op), str(message.get("ret_msg", "")))]
    if op is None:
        raise ParseError(VENUE, "frame has neither topic nor op")
    return []


def _book(message: dict, recv_ts: float) -> BookUpdate:
    data = field(VENUE, message, "data", dict)
    symbol = field(VENUE, data, "s", str)
    kind = field(VENUE, message, "type", str, symbol)
    u = data.get("u")
    if type(u) is not int:
        raise ParseError(VENUE, "orderbook u is missing or not an integer", symbol)
    if kind == "snapshot":
        snapshot = True
    elif kind == "delta":
        # u == 1 is "snapshot data due to the restart of the service": overwrite the book.
        snapshot = u == 1
    else:
        raise ParseError(VENUE, f"unknown orderbook type {kind!r}", symbol)
    ts = message.get("ts")
    if type(ts) is not int:
        raise ParseError(VENUE, "ts is missing or not an integer", symbol)
    return BookUpdate(
        VENUE,
        symbol,
        snapshot,
        check_levels(VENUE, data.get("b"), symbol),
        check_levels(VENUE, data.get("a"), symbol),
        u,
        None,
        None,
        None,
        ts,
        recv_ts,
    )


def _ticker(message: dict, recv_ts: float, tickers: dict[str, TickerState]) -> list[Event]:
    data = field(VENUE, message, "data", dict)
    symbol = field(VENUE, data, "symbol", str)
    ts = int_field(VENUE, message, "ts", symbol)
    state = tickers.get(symbol)
    if state is None:
        state = tickers[symbol] = TickerState()
    if "fundingIntervalHour" in data:
        hours = int_field(VENUE, data, "fundingIntervalHour", symbol)
        if hours > _MAX_FUNDING_HOURS:
            raise ParseError(VENUE, f"fundingIntervalHour {hours} is beyond a week", symbol)
        if hours > 0:
            state.interval_hours = float(hours)
    if data.get("nextFundingTime") not in (None, ""):
        state.next_funding_ms = int_field(VENUE, data, "nextFundingTime", symbol)
    if data.get("markPrice") not in (None, ""):
        state.mark_price = to_decimal(VENUE, field(VENUE, data, "markPrice", str, symbol), "markPrice", symbol)
    if data.get("fundingRate") in (None, ""):
        return []
    state.rate = to_decimal(VENUE, field(VENUE, data, "fundingRate", str, symbol), "fundingRate", symbol)
    return [
        FundingUpdate(
            VENUE, symbol, state.rate, state.interval_hours, state.next_funding_ms, state.mark_price, ts, recv_ts
        )
    ]


class Rules:
    """Bybit: each delta's u is the previous u + 1; a snapshot (or u == 1) overwrites the book."""

    def check_sequence(self, book: L2Book, update: BookUpdate) -> str:
        last = cast(int, book.seq)  # apply_update asks only once a snapshot has set it
        seq = cast(int, update.seq)  # every Bybit book frame carries u
        if seq == last + 1:
            return APPLY
        if seq <= last:
            return DROP  # already applied (level-1 re-pushes the same u)
        return f"bybit u gap: {seq} after {last}"

    def verify_checksum(self, book: L2Book, checksum: int) -> bool:
        return True  # Bybit sends no checksum
