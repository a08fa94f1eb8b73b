"""Pure order matching for the simulator: validation against instrument rules and sweeps of L2 levels."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

Level = tuple[Decimal, Decimal]


class SimReject(Exception):
    """An order or request the simulated venue refuses; `reason` is venue-agnostic, venues map it to wire codes.

    Reasons: insufficient_margin, reduce_only, unknown_order, duplicate_client_id, bad_tick, bad_lot,
    min_qty, min_notional, unknown_symbol, post_only_cross, bad_leverage, bad_request, reject.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class SimInstrumentRules:
    """The subset of an instrument the matcher needs (quantities in venue units)."""

    tick: Decimal
    lot: Decimal
    min_qty: Decimal
    min_notional: Decimal
    contract_size: Decimal


def on_grid(value: Decimal, step: Decimal) -> bool:
    return step > 0 and (value % step) == 0


def validate_order(rules: SimInstrumentRules, qty: Decimal, price: Decimal | None,
                   reference_price: Decimal, reduce_only: bool) -> None:
    """Raise SimReject when the order breaks tick, lot, minimum size or minimum notional rules."""
    if qty <= 0:
        raise SimReject("bad_lot", f"order quantity {qty} must be positive")
    if price is not None:
        if price <= 0:
            raise SimReject("bad_tick", f"price {price} must be positive")
        if not on_grid(price, rules.tick):
            raise SimReject("bad_tick", f"price {price} is not a multiple of tick size {rules.tick}")
    if not on_grid(qty, rules.lot):
        raise SimReject("bad_lot", f"quantity {qty} is not a multiple of lot size {rules.lot}")
    if qty < rules.min_qty:
        raise SimReject("min_qty", f"quantity {qty} is below the minimum {rules.min_qty}")
    # Venues waive the minimum notional for reduce-only closes so dust positions can be flattened.
    notional = qty * rules.contract_size * (price if price is not None else reference_price)
    if not reduce_only and rules.min_notional > 0 and notional < rules.min_notional:
        raise SimReject("min_notional", f"order value {notional} is below the minimum {rules.min_notional}")


def crosses(side: str, limit: Decimal | None, level_price: Decimal) -> bool:
    """True when a level is marketable for an order on `side` with `limit` (None = market)."""
    if limit is None:
        return True
    return level_price <= limit if side == "buy" else level_price >= limit


def sweep(side: str, qty: Decimal, limit: Decimal | None, bids: Sequence[Level], asks: Sequence[Level]
          ) -> list[Level]:
    """Take liquidity for a taker order: (price, qty) fills in book order until qty or marketable depth ends."""
    levels = asks if side == "buy" else bids
    fills: list[Level] = []
    remaining = qty
    for price, size in levels:
        if remaining <= 0 or not crosses(side, limit, price):
            break
        take = min(remaining, size)
        if take > 0:
            fills.append((price, take))
            remaining -= take
    return fills


def resting_fill_qty(side: str, price: Decimal, remaining: Decimal, bids: Sequence[Level],
                     asks: Sequence[Level]) -> Decimal:
    """How much of a resting limit order the market now trades through (depth at or better than its price)."""
    levels = asks if side == "buy" else bids
    available = Decimal(0)
    for level_price, size in levels:
        if not crosses(side, price, level_price):
            break
        available += size
    return min(remaining, available)


def round_down_to_lot(qty: Decimal, lot: Decimal) -> Decimal:
    return (qty // lot) * lot
