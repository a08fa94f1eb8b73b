"""Collateral across venues (pure): each venue's equity against what its legs need, and the one transfer that
would restore the balance.

A hedged pair dies one leg at a time: the venue whose legs lose runs out of margin while the other venue's
collateral sits idle. Each venue needs margin in proportion to the notional it carries (its open legs at the
mark, over the configured leverage) plus an equal share of room for intended trades (one order of the
largest strategy size per venue). The target of a venue is the total equity split in proportion to those
needs; the imbalance is equity minus target. The suggested transfer moves the smaller of the largest surplus
and the largest deficit from one venue to the other, when it is at least `min_transfer`. Nothing is moved
across venues: that transfer is shown (metric, alert) for the operator. Where the user switched internal
transfers on, `top_ups` says how much a venue short of its target takes from its own funding or spot wallet
(perpbot.execution.transfers sends it).

Hyperliquid's collateral is USDC, the others' USDT: the caller (perpbot.execution.desk.collateral) hands
every equity and notional in USDT, a USDC venue's at the USDC/USDT rate (Portfolio.to_usdt), so the plan,
its imbalances and the transfer are in USDT (a transfer out of Hyperliquid is amount / rate USDC).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

ZERO = Decimal(0)
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Transfer:
    source: str
    target: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class CollateralPlan:
    equity: dict[str, Decimal]
    need: dict[str, Decimal]
    target: dict[str, Decimal]
    imbalance: dict[str, Decimal] = field(default_factory=dict)  # equity - target (+ surplus, - deficit)
    transfer: Transfer | None = None


def collateral_plan(equity: dict[str, Decimal], leg_notional: dict[str, Decimal], leverage: Decimal,
                    intended_usdt: Decimal, min_transfer: Decimal) -> CollateralPlan:
    """The plan for `equity` per venue, its legs' gross notional per venue, the leverage margin is taken at, the
    size of an intended trade's leg and the smallest transfer worth suggesting."""
    venues = sorted(equity)
    need = {v: leg_notional.get(v, ZERO) / leverage + intended_usdt / leverage for v in venues}
    total_need = sum(need.values(), ZERO)
    total_equity = sum(equity.values(), ZERO)
    if not venues or total_need <= 0:
        return CollateralPlan(dict(equity), need, dict(equity))
    target = {v: (total_equity * need[v] / total_need).quantize(CENT, rounding=ROUND_FLOOR) for v in venues}
    imbalance = {v: equity[v] - target[v] for v in venues}
    richest = max(venues, key=lambda v: (imbalance[v], v))
    poorest = min(venues, key=lambda v: (imbalance[v], v))
    amount = min(imbalance[richest], -imbalance[poorest]).quantize(CENT, rounding=ROUND_FLOOR)
    transfer = Transfer(richest, poorest, amount) if richest != poorest and amount >= min_transfer else None
    return CollateralPlan(dict(equity), need, target, imbalance, transfer)


@dataclass(frozen=True, slots=True)
class TopUp:
    venue: str
    amount_usdt: Decimal


def top_ups(plan: CollateralPlan, venues: Collection[str], min_transfer: Decimal,
            max_transfer: Decimal) -> list[TopUp]:
    """For each of `venues` short of its target by at least `min_transfer`: the shortfall, at most
    `max_transfer`, in whole cents (USDT), to move from that venue's own funding wallet into its trading one."""
    out = []
    for venue in sorted(venues):
        short = -plan.imbalance.get(venue, ZERO)
        if short >= min_transfer:
            out.append(TopUp(venue, min(short, max_transfer).quantize(CENT, rounding=ROUND_FLOOR)))
    return out


__all__ = ["CollateralPlan", "TopUp", "Transfer", "collateral_plan", "top_ups"]
