"""Shared wire helpers for the venue parsers: strict JSON decoding and typed field access.

Every helper raises perpbot.core.events.ParseError, so a parser never lets a KeyError,
TypeError or float sneak out of a malformed frame. What the venue packages share besides the
parsers' helpers: _trading (orders), _markets (symbols, instruments), _streams (feed adapters).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson

from perpbot.core import errors
from perpbot.core.events import ParseError


def decode(venue: str, frame: str | bytes) -> Any:
    """orjson-decode a frame; anything that is not JSON becomes a ParseError."""
    try:
        return orjson.loads(frame)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise ParseError(venue, f"not JSON: {exc}") from None


def json_object(venue: str, frame: str | bytes, what: str = "order socket") -> dict[str, Any]:
    """A frame that must be one JSON object (an order socket's answers); anything else is a ParseError."""
    try:
        message = orjson.loads(frame)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise ParseError(venue, f"{what}: not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise ParseError(venue, f"{what}: not a JSON object")
    return message


@dataclass(frozen=True)
class ErrorCodes:
    """A venue's order error codes by what they mean for the order (its order link's table)."""

    rate_limited: frozenset[Any] = frozenset()
    unknown: frozenset[Any] = frozenset()  # the venue does not know whether it took the order
    temporary: frozenset[Any] = frozenset()  # certainly not taken: busy, unavailable, bad timestamp
    funds: frozenset[Any] = frozenset()
    not_open: frozenset[Any] = frozenset()  # a cancel of an order that is not (or no longer) open

    def error(self, venue: str, code: Any, text: str, retry_after_s: float | None = None) -> errors.VenueErrorBase:
        if code in self.rate_limited:
            return errors.RateLimited(venue, text, retry_after_s=retry_after_s)
        if code in self.unknown:
            return errors.UnknownOutcome(venue, text)
        if code in self.temporary:
            return errors.TemporaryError(venue, text)
        if code in self.funds:
            return errors.InsufficientFunds(venue, text)
        if code in self.not_open:
            return errors.OrderNotFound(venue, text)
        return errors.OrderRejected(venue, text)


def field(venue: str, obj: Any, key: str, kind: type | tuple[type, ...], symbol: str | None = None) -> Any:
    """obj[key], required, of the given type (bool is never accepted as an int)."""
    if not isinstance(obj, dict):
        raise ParseError(venue, f"expected an object holding {key!r}", symbol)
    try:
        value = obj[key]
    except KeyError:
        raise ParseError(venue, f"missing field {key!r}", symbol) from None
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ParseError(venue, f"field {key!r} has type {type(value).__name__}", symbol)
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def int_field(venue: str, obj: Any, key: str, symbol: str | None = None) -> int:
    """An integer sent as a JSON number or as a decimal-digit string (OKX sends ts as "1597026383085")."""
    value = field(venue, obj, key, (int, str), symbol)
    if not isinstance(value, int):
        # int() would also take " 5", "+5", "1_0" and non-ASCII digits: accept only [-]digits.
        digits = value[1:] if value.startswith("-") else value
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
            raise ParseError(venue, f"field {key!r} is not an integer: {value[:40]!r}", symbol)
        value = int(value)
    # Every venue integer (timestamps, sequence ids, intervals) fits 64 bits. A bigger one is a
    # corrupt frame, and would later overflow float() or a C integer (found by the long fuzz run:
    # a 400-digit fundingIntervalHour raised OverflowError).
    if not -_INT_LIMIT < value < _INT_LIMIT:
        raise ParseError(venue, f"field {key!r} is out of the 64-bit range: {str(value)[:40]}", symbol)
    return value


_INT_LIMIT = 1 << 64


def decimal_field(venue: str, obj: Any, key: str, symbol: str | None = None) -> Decimal:
    """An exact Decimal from a string field (never via float)."""
    value = field(venue, obj, key, str, symbol)
    return to_decimal(venue, value, key, symbol)


def to_decimal(venue: str, value: str, key: str, symbol: str | None = None) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ParseError(venue, f"field {key!r} is not a decimal: {value!r}", symbol) from None
    if not number.is_finite():
        raise ParseError(venue, f"field {key!r} is not finite: {value!r}", symbol)
    return number


def optional_decimal(venue: str, obj: Any, key: str, symbol: str | None = None) -> Decimal | None:
    """A number the venue may leave out: absent or "" (OKX, Bybit) -> None, else an exact Decimal."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise ParseError(venue, f"field {key!r} is not a string", symbol)
    return to_decimal(venue, value, key, symbol)


def side_field(venue: str, obj: Any, key: str, buy: str, sell: str, symbol: str | None = None) -> Literal["buy", "sell"]:
    """The order side the venue writes its own way ("Buy"/"Sell", "BUY"/"SELL", "B"/"A", ...)."""
    side = field(venue, obj, key, str, symbol)
    if side == buy:
        return "buy"
    if side == sell:
        return "sell"
    raise ParseError(venue, f"unknown side {side!r}", symbol)


def check_levels(venue: str, levels: Any, symbol: str | None) -> list:
    """A side of a book: a list of [price_str, size_str, ...]. Returned as received (no copy)."""
    if type(levels) is not list:
        raise ParseError(venue, "book side is not a list", symbol)
    for level in levels:
        # type() checks, not isinstance: this loop runs for every level of every update.
        if type(level) is not list or len(level) < 2 or type(level[0]) is not str or type(level[1]) is not str:
            raise ParseError(venue, f"bad book level {level!r}", symbol)
    return levels
