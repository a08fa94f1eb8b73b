"""Quote-currency risk rules (pure): a USDC leg against a USDT leg is compared through the USDC/USDT rate.

`rule_quote_rate` refuses such an entry without a fresh rate (never 1:1 by default); `entry_edge_bps` is
the decision's edge taken again with the rate (the scanner prices both legs 1:1); `to_usdt` counts a USDC
notional at the rate in the size limits.
"""

from __future__ import annotations

from decimal import Decimal

from perpbot.core.decisions import Decision, Refusal
from perpbot.core.instruments import Instrument
from perpbot.core.quote_rate import USDT
from perpbot.risk.context import Key, RiskContext


def _mixed(a: Instrument, b: Instrument) -> bool:
    return a.quote != b.quote


def rule_quote_rate(a: Instrument, b: Instrument, ctx: RiskContext) -> Refusal | None:
    if not _mixed(a, b):
        return None
    rate = ctx.quote_rate
    if rate is None or not rate.fresh(ctx.now):
        age = "none" if rate is None else f"{ctx.now - rate.as_of:.0f}s old > {rate.max_age_s:.0f}s"
        return Refusal("quote_rate", f"{a.quote}/{b.quote} legs need a fresh USDC/USDT rate ({age})")
    return None


def entry_edge_bps(decision: Decision, a: Instrument, b: Instrument, ctx: RiskContext) -> Decimal:
    """The decision's edge with the USDC/USDT rate applied (as it is when both legs share a currency)."""
    if not _mixed(a, b) or ctx.quote_rate is None:
        return decision.edge_bps
    legs = dict(zip((leg.side for leg in decision.legs), (a, b)))
    return decision.edge_bps + ctx.quote_rate.edge_correction_bps(legs["buy"].quote, legs["sell"].quote)


def to_usdt(ctx: RiskContext, key: Key, amount: Decimal) -> Decimal:
    """A notional of `key`'s quote currency in USDT (USDC at the rate; as it is without one)."""
    instrument = ctx.instruments.get(key)
    if instrument is None or instrument.quote == USDT or ctx.quote_rate is None:
        return amount
    return ctx.quote_rate.to_usdt(amount, instrument.quote)


__all__ = ["entry_edge_bps", "rule_quote_rate", "to_usdt"]
