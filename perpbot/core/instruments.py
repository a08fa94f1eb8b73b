"""Instrument vocabulary: what each venue's contract is, in exact units."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal

VENUES = ("okx", "hyperliquid", "binance", "bybit")


@dataclass(frozen=True, slots=True)
class Instrument:
    """One perpetual contract on one venue.

    `contract_size` converts the venue's book/order unit into base-asset quantity
    (OKX swaps quote sizes in contracts; the others in base units, contract_size 1).
    Funding rates are per `funding_interval_hours`.
    """

    venue: str
    symbol: str  # native: BTC-USDT-SWAP, BTCUSDT, BTC
    base: str  # BTC
    quote: str  # USDT / USDC
    ccxt_symbol: str  # BTC/USDT:USDT
    tick_size: Decimal
    lot_size: Decimal  # step of the order amount in venue units (contracts for OKX)
    min_qty: Decimal  # venue units
    min_notional: Decimal  # quote currency
    contract_size: Decimal = Decimal(1)
    taker_fee: Decimal = Decimal("0.0005")
    maker_fee: Decimal = Decimal("0.0002")
    funding_interval_hours: int = 8

    @property
    def key(self) -> tuple[str, str]:
        return (self.venue, self.symbol)

    def round_price(self, price: Decimal, side: str) -> Decimal:
        """Round a limit price onto the tick grid, never in the taker's favour of slippage:
        buys round down, sells round up (the price stays inside the intended band)."""
        steps = price / self.tick_size
        mode = ROUND_DOWN if side == "buy" else ROUND_UP
        return steps.to_integral_value(rounding=mode) * self.tick_size

    def base_to_venue_qty(self, base_qty: Decimal) -> Decimal:
        """Base-asset quantity -> venue order units, rounded DOWN to the lot step."""
        units = base_qty / self.contract_size
        return (units / self.lot_size).to_integral_value(rounding=ROUND_DOWN) * self.lot_size

    def venue_to_base_qty(self, venue_qty: Decimal) -> Decimal:
        return venue_qty * self.contract_size

    def on_tick(self, price: Decimal) -> bool:
        return (price / self.tick_size) == (price / self.tick_size).to_integral_value()

    def on_lot(self, venue_qty: Decimal) -> bool:
        return (venue_qty / self.lot_size) == (venue_qty / self.lot_size).to_integral_value()
