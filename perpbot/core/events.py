"""Events produced by the venue parsers (pure: frame bytes + receive time in, events out)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


class ParseError(ValueError):
    """A frame that cannot be understood. The caller counts it and resyncs what it may have hit."""

    def __init__(self, venue: str, reason: str, symbol: str | None = None) -> None:
        super().__init__(f"{venue}: {reason}")
        self.venue = venue
        self.reason = reason
        self.symbol = symbol


@dataclass(slots=True)
class BookUpdate:
    """A snapshot or delta of one L2 book, levels as received ([price_str, size_str, ...]).

    Sizes are in venue units; the book converts with the instrument's contract size.
    seq / prev_seq / first_seq carry each venue's sequence fields:
      OKX seqId/prevSeqId; Binance u/pu/U; Bybit u; Hyperliquid time.
    checksum is None when the venue sent none or sent 0 (OKX's current behaviour).
    """

    venue: str
    symbol: str
    snapshot: bool
    bids: list[Any]
    asks: list[Any]
    seq: int | None
    prev_seq: int | None
    first_seq: int | None
    checksum: int | None
    exchange_ts_ms: int
    recv_ts: float


@dataclass(slots=True)
class FundingUpdate:
    """Funding rate per the venue's interval; `hourly_rate` normalises across venues."""

    venue: str
    symbol: str
    rate: Decimal
    interval_hours: float
    next_funding_ms: int | None
    mark_price: Decimal | None
    exchange_ts_ms: int
    recv_ts: float

    @property
    def hourly_rate(self) -> Decimal:
        return self.rate / Decimal(str(self.interval_hours))


@dataclass(slots=True)
class SubscribeAck:
    venue: str
    detail: str


@dataclass(slots=True)
class Pong:
    venue: str
    recv_ts: float


@dataclass(slots=True)
class VenueError:
    """An error frame from the venue (bad subscribe, rate limit...)."""

    venue: str
    code: str
    message: str


Event = BookUpdate | FundingUpdate | SubscribeAck | Pong | VenueError
