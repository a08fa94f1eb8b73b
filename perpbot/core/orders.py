"""Order vocabulary shared by risk, execution, the venue clients and the control plane."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from perpbot.core.margin import LegMargin

Side = Literal["buy", "sell"]
ResultStatus = Literal["filled", "partially_filled", "canceled", "rejected", "open", "expired"]


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One IOC limit order in *venue units* (contracts on OKX), price on the tick grid."""

    venue: str
    symbol: str  # native
    side: Side
    qty: Decimal
    price: Decimal
    client_order_id: str
    reduce_only: bool = False
    time_in_force: Literal["IOC", "GTC"] = "IOC"


@dataclass(slots=True)
class OrderResult:
    """What the venue says of an order. filled_qty in venue units; fee in quote currency."""

    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str | None
    status: ResultStatus
    side: Side
    qty: Decimal
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    fee: Decimal = Decimal(0)
    reason: str | None = None
    # False when the answer is the venue's acknowledgement alone (fills, average or fee missing)
    # and the client left them to the private stream instead of asking over REST.
    details_complete: bool = True


@dataclass(slots=True)
class VenuePosition:
    """A position as the venue reports it; size signed in *base* units (+ long, - short)."""

    venue: str
    symbol: str
    size: Decimal
    entry_price: Decimal
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal = Decimal(0)
    leverage: Decimal | None = None
    margin: LegMargin | None = None  # liquidation price, maintenance margin, ADL rank, where the venue says


@dataclass(slots=True)
class VenueBalance:
    venue: str
    equity: Decimal
    available: Decimal
    used_margin: Decimal
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One funding settlement as the venue booked it: amount in quote currency, + received, - paid.
    `payment_id` is unique per venue (the venue's id where it has one, else symbol and time)."""

    venue: str
    symbol: str
    payment_id: str
    amount: Decimal
    ts_ms: int
