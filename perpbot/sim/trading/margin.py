"""Simulated venues' margin engine: maintenance-margin tiers, each position's liquidation price, ADL rank.

Pure functions over a `SimAccount` and the marks; `SimExchange` (exchange.py) uses them to liquidate
and deleverage, and the venue wires (REST and private pushes) print the same figures, so what the
bot reads is exactly what the simulator decided on.

The model, per venue, shaped like the venues' published rules (values are the simulator's, not a
copy of any live table):

* Maintenance margin = notional x tier rate - tier deduction, the tier chosen by the position's
  notional at the mark (OKX, Binance and Bybit publish notional tiers; the deduction makes the
  margin continuous across tier bounds). Hyperliquid has one rate per asset: half the initial
  margin at the asset's maximum leverage.
* Cross margin (the default): the account's equity (wallet + unrealised PnL of every cross
  position, less isolated margin) backs every cross position. A position's liquidation price is
  the mark at which that equity falls to the total maintenance margin, the other positions held
  at their marks. Isolated: the position's own margin (entry notional / leverage) backs it.
* The liquidation price is rounded to 8 decimals toward the mark (a long's up, a short's down): the
  printed figure is never beyond the price at which the venue acts.
* ADL rank 1-5 by return on margin (positions in profit rank 2-5, others 1; 0 when flat), as the
  venues' five-light indicators.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from perpbot.core.margin import liquidation_distance_pct
from perpbot.sim.trading.accounts import ZERO, SimAccount, SimPosition

_CONTEXT = decimal.Context(prec=40)
PRICE_QUANTUM = Decimal("1e-8")
CROSS, ISOLATED = "cross", "isolated"
MARGIN_MODES = (CROSS, ISOLATED)
ONE_WAY, HEDGE = "one_way", "hedge"
POSITION_MODES = (ONE_WAY, HEDGE)


@dataclass(frozen=True, slots=True)
class MarginTier:
    """Notional up to `limit` (None: no bound) keeps `rate` x notional - `deduction` as maintenance margin."""

    limit: Decimal | None
    rate: Decimal
    deduction: Decimal


def build_tiers(brackets: list[tuple[str | None, str]]) -> tuple[MarginTier, ...]:
    """(upper notional bound, rate) brackets -> tiers with the deductions that keep the margin continuous."""
    tiers: list[MarginTier] = []
    deduction = ZERO
    previous_rate = ZERO
    previous_limit = ZERO
    for limit, rate in brackets:
        rate_d = Decimal(rate)
        deduction += previous_limit * (rate_d - previous_rate)
        tiers.append(MarginTier(Decimal(limit) if limit is not None else None, rate_d, deduction))
        previous_rate = rate_d
        previous_limit = Decimal(limit) if limit is not None else previous_limit
    return tuple(tiers)


VENUE_TIERS: dict[str, tuple[MarginTier, ...]] = {
    "okx": build_tiers([("500000", "0.004"), ("1000000", "0.006"), ("3000000", "0.01"), (None, "0.02")]),
    "binance": build_tiers([("300000", "0.004"), ("800000", "0.005"), ("3000000", "0.0065"), (None, "0.01")]),
    "bybit": build_tiers([("2000000", "0.005"), ("6000000", "0.01"), (None, "0.02")]),
}


def tier_for(venue: str, max_leverage: Decimal | int, notional: Decimal) -> MarginTier:
    """The maintenance tier of a position of `notional` (quote) on `venue`."""
    tiers = VENUE_TIERS.get(venue)
    if tiers is None:  # Hyperliquid: one rate, half the initial margin at maximum leverage
        return MarginTier(None, _CONTEXT.divide(Decimal(1), Decimal(2) * Decimal(max_leverage)), ZERO)
    for tier in tiers:
        if tier.limit is None or notional <= tier.limit:
            return tier
    return tiers[-1]


@dataclass(frozen=True, slots=True)
class SimLegRisk:
    """One position's margin figures at one moment, as the venue's wires print them."""

    symbol: str
    size: Decimal  # signed base units
    entry: Decimal
    mark: Decimal
    notional: Decimal  # |size| x mark
    leverage: Decimal
    margin_mode: str
    initial_margin: Decimal
    maintenance_rate: Decimal
    maintenance_margin: Decimal
    unrealized_pnl: Decimal
    liquidation_price: Decimal | None
    adl_rank: int

    @property
    def distance_pct(self) -> Decimal | None:
        return liquidation_distance_pct(self.size, self.mark, self.liquidation_price)

    def crossed(self) -> bool:
        """The mark is at or beyond the liquidation price."""
        if self.liquidation_price is None:
            return False
        return self.mark <= self.liquidation_price if self.size > 0 else self.mark >= self.liquidation_price


@dataclass(frozen=True, slots=True)
class SimAccountRisk:
    """The account's margin state: cross equity and maintenance, and every open position's figures."""

    equity: Decimal  # wallet + unrealised PnL of every position
    maintenance_margin: Decimal  # total over every position
    legs: dict[str, SimLegRisk]

    @property
    def margin_ratio(self) -> Decimal:
        """Maintenance margin over equity (Binance's and Bybit's convention: 1 = liquidation)."""
        if self.equity <= 0:
            return Decimal(1) if self.maintenance_margin > 0 else ZERO
        return (self.maintenance_margin / self.equity).quantize(Decimal("1e-8"), rounding=ROUND_CEILING)

    @property
    def equity_over_maintenance(self) -> Decimal | None:
        """OKX's mgnRatio (equity over maintenance margin: 1 = liquidation); None with no position."""
        if self.maintenance_margin <= 0:
            return None
        return (self.equity / self.maintenance_margin).quantize(Decimal("1e-8"), rounding=ROUND_FLOOR)


def adl_rank(upl: Decimal, initial_margin: Decimal) -> int:
    """1 for a position not in profit; 2-5 by return on margin (< 10 %, < 25 %, < 50 %, more)."""
    if upl <= 0 or initial_margin <= 0:
        return 1
    roe = upl / initial_margin
    for rank, bound in ((2, Decimal("0.10")), (3, Decimal("0.25")), (4, Decimal("0.50"))):
        if roe < bound:
            return rank
    return 5


def _round_toward_mark(price: Decimal, long: bool) -> Decimal:
    return price.quantize(PRICE_QUANTUM, rounding=ROUND_CEILING if long else ROUND_FLOOR)


def account_risk(venue: str, account: SimAccount, marks: dict[str, Decimal],
                 max_leverage: dict[str, Decimal]) -> SimAccountRisk:
    """Every open position's margin figures at `marks` (native symbol -> mark)."""
    open_positions = [p for p in account.positions.values() if p.size]
    parts: dict[str, tuple[SimPosition, Decimal, MarginTier, Decimal, Decimal, str, Decimal]] = {}
    cross_upl = ZERO
    cross_mm = ZERO
    isolated_margin = ZERO
    total_upl = ZERO
    total_mm = ZERO
    for pos in open_positions:
        mark = marks[pos.symbol]
        notional = abs(pos.size) * mark
        tier = tier_for(venue, max_leverage[pos.symbol], notional)
        maintenance = max(ZERO, notional * tier.rate - tier.deduction)
        upl = pos.unrealized(mark)
        mode = account.margin_mode_of(pos.symbol)
        leverage = account.leverage_of(pos.symbol)
        if mode == ISOLATED:
            isolated_margin += _CONTEXT.divide(abs(pos.size) * pos.entry, leverage)
        else:
            cross_upl += upl
            cross_mm += maintenance
        total_upl += upl
        total_mm += maintenance
        parts[pos.symbol] = (pos, mark, tier, maintenance, upl, mode, leverage)
    cross_equity = account.wallet - isolated_margin + cross_upl
    legs: dict[str, SimLegRisk] = {}
    for symbol, (pos, mark, tier, maintenance, upl, mode, leverage) in parts.items():
        initial = _CONTEXT.divide(abs(pos.size) * pos.entry, leverage)
        if mode == ISOLATED:
            backing = initial
        else:
            # The collateral left for this leg with the others held at their marks.
            backing = cross_equity - upl - (cross_mm - maintenance)
        liquidation = liquidation_price(pos.size, pos.entry, backing, tier)
        legs[symbol] = SimLegRisk(
            symbol=symbol, size=pos.size, entry=pos.entry, mark=mark, notional=abs(pos.size) * mark,
            leverage=leverage, margin_mode=mode, initial_margin=initial, maintenance_rate=tier.rate,
            maintenance_margin=maintenance, unrealized_pnl=upl, liquidation_price=liquidation,
            adl_rank=adl_rank(upl, initial),
        )
    return SimAccountRisk(account.wallet + total_upl, total_mm, legs)


def liquidation_price(size: Decimal, entry: Decimal, backing: Decimal, tier: MarginTier) -> Decimal | None:
    """The mark P at which backing + size x (P - entry) = |size| x P x rate - deduction; None when P <= 0.

    backing: the collateral standing behind the position besides its own PnL."""
    if not size:
        return None
    quantity = abs(size)
    numerator = size * entry - backing - tier.deduction
    denominator = size - quantity * tier.rate
    price = _CONTEXT.divide(numerator, denominator)
    if price <= 0:
        return None
    return _round_toward_mark(price, size > 0)


def liquidation_order(risk: SimAccountRisk) -> list[SimLegRisk]:
    """The legs whose mark crossed their liquidation price, the largest loss first."""
    return sorted((leg for leg in risk.legs.values() if leg.crossed()), key=lambda leg: leg.unrealized_pnl)


def leg_json(leg: SimLegRisk | None) -> dict[str, Any]:
    """A leg's figures as decimal strings (the admin API and tests)."""
    if leg is None:
        return {}
    return {
        "liquidation_price": format(leg.liquidation_price, "f") if leg.liquidation_price is not None else None,
        "maintenance_margin": format(leg.maintenance_margin, "f"),
        "maintenance_rate": format(leg.maintenance_rate, "f"),
        "initial_margin": format(leg.initial_margin, "f"), "margin_mode": leg.margin_mode, "adl_rank": leg.adl_rank,
        "distance_pct": format(leg.distance_pct, "f") if leg.distance_pct is not None else None,
        "mark": format(leg.mark, "f"),
    }


__all__ = [
    "CROSS", "HEDGE", "ISOLATED", "MARGIN_MODES", "ONE_WAY", "POSITION_MODES", "VENUE_TIERS", "MarginTier",
    "SimAccountRisk", "SimLegRisk", "account_risk", "adl_rank", "build_tiers", "leg_json", "liquidation_order",
    "liquidation_price", "tier_for",
]
