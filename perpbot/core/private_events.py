"""What a venue's private stream says, as typed events (pure: no I/O, standard library only).

The venue parsers (`perpbot/venues/<venue>/private.py`) turn one private frame plus its receive
time into a list of these; the private-stream service hands them to execution (orders, fills),
the portfolio (positions, balances, funding) and the risk gate (margin, stream health).

Conventions, the same on every venue:
- `symbol` is the venue's native symbol (BTC-USDT-SWAP, BTCUSDT, BTC).
- Order and fill quantities are in *venue units* (contracts on OKX), like `OrderResult`.
- Position sizes are signed *base* units (+ long, - short), like `VenuePosition`; a parser that
  reads contracts converts with the contract size it is given.
- `fee` is what we paid, in `fee_currency`: positive a cost, negative a rebate. Venues that
  print fees negative-as-cost (OKX, Hyperliquid's `closedPnl`-style fields) are flipped by the parser.
- Funding `amount` is + received, - paid, in the quote currency (as `FundingPayment`).
- Numbers are `Decimal` built from the venue's own strings, never from floats.
- `ts_ms` is the venue's event time (epoch ms); `recv_ts` our receive time (epoch s).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from perpbot.core.margin import LegMargin
from perpbot.core.orders import Side

PrivateOrderStatus = Literal["open", "partially_filled", "filled", "canceled", "rejected", "expired"]
# "partially_filled" here means: partly filled and still working. An IOC that filled in part and
# had its rest canceled arrives as "canceled" with filled_qty > 0 (the execution layer maps it).


@dataclass(frozen=True, slots=True)
class PrivateContext:
    """What a parser may need beyond the frame: contract sizes per native symbol (OKX positions
    are in contracts) and the account's quote currency."""

    venue: str
    contract_sizes: dict[str, Decimal]
    quote: str = "USDT"

    def contract_size(self, symbol: str) -> Decimal:
        return self.contract_sizes.get(symbol, Decimal(1))


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order's state as pushed: cumulative filled quantity, average price and fee so far."""

    venue: str
    symbol: str
    client_order_id: str | None  # None when the order was not placed with one (manual orders)
    venue_order_id: str
    status: PrivateOrderStatus
    side: Side
    qty: Decimal
    filled_qty: Decimal
    avg_price: Decimal | None
    fee: Decimal | None  # cumulative, None when the frame carries none (Hyperliquid orderUpdates)
    fee_currency: str | None
    reason: str | None
    ts_ms: int
    recv_ts: float

    @property
    def final(self) -> bool:
        return self.status in ("filled", "canceled", "rejected", "expired")


@dataclass(frozen=True, slots=True)
class VenueFill:
    """One execution, identified by the venue's trade id (unique per venue and symbol)."""

    venue: str
    symbol: str
    trade_id: str
    client_order_id: str | None
    venue_order_id: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: Literal["maker", "taker"] | None
    ts_ms: int
    recv_ts: float
    snapshot: bool = False  # replayed history (Hyperliquid's userFills snapshot on subscribe)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.venue, self.symbol, self.trade_id)


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    venue: str
    symbol: str
    size: Decimal  # signed base units
    entry_price: Decimal | None
    ts_ms: int
    recv_ts: float
    margin: LegMargin | None = None  # when the push carries liquidation price / maintenance margin / ADL


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    venue: str
    currency: str
    equity: Decimal | None  # wallet balance plus unrealised PnL, when the venue sends it
    available: Decimal | None
    wallet: Decimal | None  # cash balance without unrealised PnL
    ts_ms: int
    recv_ts: float


@dataclass(frozen=True, slots=True)
class FundingEvent:
    """One funding settlement on one position; `payment_id` unique per venue."""

    venue: str
    symbol: str
    payment_id: str
    amount: Decimal
    ts_ms: int
    recv_ts: float


@dataclass(frozen=True, slots=True)
class MarginEvent:
    """A margin warning or liquidation the venue pushed (Binance MARGIN_CALL, a liquidation fill...)."""

    venue: str
    symbol: str | None
    kind: Literal["margin_call", "liquidation", "adl"]
    detail: str
    ts_ms: int
    recv_ts: float


@dataclass(frozen=True, slots=True)
class StreamControl:
    """A non-data frame: login/auth answers, subscription acks, errors, pongs, key expiry.

    `kind`: "login_ok", "login_failed", "subscribed", "subscribe_failed", "pong", "error",
    "key_expired" (Binance listenKeyExpired, or the venue says the key is unknown)."""

    venue: str
    kind: Literal["login_ok", "login_failed", "subscribed", "subscribe_failed", "pong", "error", "key_expired"]
    detail: str
    recv_ts: float


PrivateEvent = OrderUpdate | VenueFill | PositionUpdate | BalanceUpdate | FundingEvent | MarginEvent | StreamControl
