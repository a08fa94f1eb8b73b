"""Binance USD-M market frames -> events (pure), and the snapshot + U/u/pu book integrity rules.

Wire reference: https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Diff-Book-Depth-Streams
and .../How-to-manage-a-local-order-book-correctly; notes in VENUES.md §2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, cast

import msgspec

from perpbot.book.l2 import L2Book
from perpbot.book.sync import APPLY, DROP, apply_checked_delta
from perpbot.core.events import BookUpdate, Event, FundingUpdate, ParseError, SubscribeAck, VenueError
from perpbot.venues._wire import check_levels, decimal_field, decode, field, int_field

VENUE = "binance"
DEFAULT_FUNDING_HOURS = 8.0


def parse(
    frame: str | bytes, recv_ts: float, funding_hours: Mapping[str, float] | None = None
) -> list[Event]:
    """One combined-stream (`{"stream":..,"data":..}`) or raw frame -> events.

    `funding_hours` maps symbols with a non-default funding interval (GET /fapi/v1/fundingInfo).
    """
    message = decode(VENUE, frame)
    if type(message) is not dict:
        raise ParseError(VENUE, "frame is not a JSON object")
    if "stream" in message:
        message = field(VENUE, message, "data", dict)
    kind = message.get("e")
    if kind == "depthUpdate":
        symbol = field(VENUE, message, "s", str)
        return [
            BookUpdate(
                VENUE,
                symbol,
                False,
                check_levels(VENUE, message.get("b"), symbol),
                check_levels(VENUE, message.get("a"), symbol),
                _int(message, "u", symbol),
                _int(message, "pu", symbol),
                _int(message, "U", symbol),
                None,
                _int(message, "E", symbol),
                recv_ts,
            )
        ]
    if kind == "markPriceUpdate":
        symbol = field(VENUE, message, "s", str)
        hours = DEFAULT_FUNDING_HOURS
        if funding_hours is not None:
            hours = float(funding_hours.get(symbol, DEFAULT_FUNDING_HOURS))
        return [
            FundingUpdate(
                VENUE,
                symbol,
                decimal_field(VENUE, message, "r", symbol),
                hours,
                _int(message, "T", symbol),
                decimal_field(VENUE, message, "p", symbol),
                _int(message, "E", symbol),
                recv_ts,
            )
        ]
    if kind is None:
        if "result" in message and "id" in message:
            return [SubscribeAck(VENUE, f"id {message['id']}")]
        if "error" in message:
            error = message["error"]
            if type(error) is dict:
                return [VenueError(VENUE, str(error.get("code", "")), str(error.get("msg", "")))]
            return [VenueError(VENUE, "", str(error))]
        if "code" in message and "msg" in message:
            return [VenueError(VENUE, str(message["code"]), str(message["msg"]))]
        raise ParseError(VENUE, "frame has no event type")
    if type(kind) is not str:
        raise ParseError(VENUE, "event type is not a string")
    return []  # other streams (bookTicker, aggTrade, ...) are not ours


# Typed decode of combined-stream depthUpdate frames for the supervisor's fast path. Any frame that
# does not fit (raw streams, markPrice, acks, odd types...) goes to parse(), which owns every error.
_Level = Annotated[list[str], msgspec.Meta(min_length=2)]
# orjson (parse()'s decoder) turns integers beyond 64 bits into floats, which parse() refuses;
# msgspec keeps them as ints, so the fast path declines them to stay identical.
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


class _Depth(msgspec.Struct, gc=False):
    e: str
    E: int
    s: str
    U: int
    u: int
    pu: int
    b: list[_Level]
    a: list[_Level]


class _DepthFrame(msgspec.Struct, gc=False):
    stream: object
    data: _Depth


_decode_depth = msgspec.json.Decoder(_DepthFrame).decode


def apply_books_frame(frame: str | bytes, recv_ts: float, books) -> tuple[L2Book, int, str | None] | None:
    """Fast path for a depthUpdate of a synced book whose pu is the last u (see okx's
    apply_books_frame for the contract): (book, E ms, reason or None), or None to hand the
    untouched frame to parse() + apply_update (the snapshot bridge, repeats, gaps, anything odd)."""
    try:
        typed = _decode_depth(frame)
    except Exception:  # whatever the typed decode refuses belongs to parse()
        return None
    data = typed.data
    if data.e != "depthUpdate":
        return None
    book = books.get((VENUE, data.s))
    if book is None:
        return None
    last = book.seq
    u = data.u
    ts = data.E
    if (last is None or data.pu != last or book.awaiting_first_delta
            or not (_INT_MIN <= ts <= _INT_MAX and _INT_MIN <= u <= _INT_MAX and _INT_MIN <= data.U <= _INT_MAX)):
        return None
    return book, ts, apply_checked_delta(book, data.b, data.a, u, ts, recv_ts)


def _int(message: dict, key: str, symbol: str) -> int:
    value = message.get(key)
    if type(value) is int:
        return value
    return int_field(VENUE, message, key, symbol)


def parse_snapshot(body: bytes | str, symbol: str, recv_ts: float) -> BookUpdate:
    """GET /fapi/v1/depth response -> BookUpdate(snapshot=True, seq=lastUpdateId)."""
    message = decode(VENUE, body)
    if type(message) is not dict:
        raise ParseError(VENUE, "depth snapshot is not a JSON object", symbol)
    if "code" in message and "lastUpdateId" not in message:
        raise ParseError(VENUE, f"depth snapshot error {message.get('code')}: {message.get('msg')}", symbol)
    last = field(VENUE, message, "lastUpdateId", int, symbol)
    ts = message.get("E", message.get("T", int(recv_ts * 1000)))
    if type(ts) is not int:
        raise ParseError(VENUE, "depth snapshot E is not an integer", symbol)
    return BookUpdate(
        VENUE,
        symbol,
        True,
        check_levels(VENUE, message.get("bids"), symbol),
        check_levels(VENUE, message.get("asks"), symbol),
        last,
        None,
        None,
        None,
        ts,
        recv_ts,
    )


class Rules:
    """Binance USD-M: the first delta after a REST snapshot must bridge it (U <= lastUpdateId <= u);
    afterwards every delta's pu equals the previous delta's u.

    The supervisor sets `book.awaiting_first_delta = True` before applying the REST snapshot,
    so the book stays invalid until the bridge is found; this class clears the flag.
    """

    def check_sequence(self, book: L2Book, update: BookUpdate) -> str:
        last = cast(int, book.seq)  # apply_update asks only once a snapshot has set it
        seq = cast(int, update.seq)  # every Binance depth frame carries U, u and pu
        if book.awaiting_first_delta:
            if seq < last:
                return DROP  # older than the snapshot
            if cast(int, update.first_seq) <= last:
                book.awaiting_first_delta = False
                return APPLY
            return "binance first delta does not bridge snapshot"
        if update.prev_seq == last:
            return APPLY
        if seq <= last:
            return DROP  # a repeat of something already applied
        return f"binance pu {update.prev_seq} != last u {last}"

    def verify_checksum(self, book: L2Book, checksum: int) -> bool:
        return True  # Binance sends no checksum
