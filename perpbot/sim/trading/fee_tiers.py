"""Simulated fee tiers: an account's rate falls as its traded notional grows (the venues' VIP tiers), so
the rate a venue charges can differ from the list rate a strategy priced in (attribution's fee drift)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class FeeTier:
    """From `min_notional` (USDT traded by the account so far) on: these taker and maker rates."""

    min_notional: Decimal
    taker: Decimal
    maker: Decimal


@dataclass(slots=True)
class FeeSchedule:
    """One account's tiers, lowest first, and the notional it has traded. Below the first tier the
    instrument's own (list) rates apply."""

    tiers: tuple[FeeTier, ...]
    traded_notional: Decimal = ZERO
    charged: list[Decimal] = field(default_factory=list)  # the rate of every fill, in order

    def rate(self, liquidity: str, list_rate: Decimal, notional: Decimal) -> Decimal:
        """The rate of a fill of `notional` (the tier reached before it), then counts its notional."""
        tier = None
        for candidate in self.tiers:
            if self.traded_notional >= candidate.min_notional:
                tier = candidate
        self.traded_notional += notional
        rate = list_rate if tier is None else (tier.taker if liquidity == "taker" else tier.maker)
        self.charged.append(rate)
        return rate
