"""The USDC/USDT rate the bot compares USDC-settled (Hyperliquid) and USDT-settled contracts with (pure).

Never silently 1:1: the rate is a configured value with the time it was taken (risk.usdc_usdt_rate,
risk.usdc_usdt_rate_as_of) and a maximum age (risk.usdc_usdt_max_age_s). A stale rate is no rate: an entry
that pairs a USDC leg with a USDT leg is then refused (rule `quote_rate`). With a fresh rate, a USDC price
or amount is worth `rate` USDT: the strategies price a USDC leg at it (`usdt_per`, perpbot.scanner.edges), the
risk gate takes the decision's edge again with it (a buy in USDC costs price x rate USDT) and counts USDC
notionals at the rate in the size limits, and the portfolio's sums across venues (PnL, equity, collateral)
count a USDC venue's amounts at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

USDT = "USDT"
USDC = "USDC"
BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class QuoteRate:
    """USDT per USDC, taken at `as_of` (epoch s), good for `max_age_s`."""

    usdc_usdt: Decimal
    as_of: float
    max_age_s: float

    def fresh(self, now: float) -> bool:
        """No older than max_age_s (a rate stamped ahead of `now`, by another clock, is fresh)."""
        return now - self.as_of <= self.max_age_s

    def to_usdt(self, amount: Decimal, currency: str) -> Decimal:
        """`amount` of `currency` in USDT (USDT as it is)."""
        return amount * self.usdc_usdt if currency == USDC else amount

    def edge_correction_bps(self, buy_quote: str, sell_quote: str) -> Decimal:
        """What a 1:1 edge must be corrected by (bps, added) when the legs settle in different currencies:
        buying in USDC costs `rate` USDT per USDC (the edge shrinks when USDC is dear), selling in USDC
        earns it."""
        if buy_quote == sell_quote:
            return Decimal(0)
        move = (self.usdc_usdt - 1) * BPS
        return -move if buy_quote == USDC else move


def usdt_per(quote: str, usdc_usdt: Decimal) -> Decimal | None:
    """USDT per unit of `quote` as the strategies' edge arithmetic takes it (perpbot.scanner.edges): None
    where no conversion is needed (a USDT leg, or a rate of exactly 1), else the rate."""
    return usdc_usdt if quote == USDC and usdc_usdt != 1 else None


__all__ = ["USDC", "USDT", "QuoteRate", "usdt_per"]
