"""Hyperliquid symbols: coin (BTC) <-> ccxt symbol (BTC/USDC:USDC), price rules, ccxt market -> Instrument."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from perpbot.core.instruments import Instrument
from perpbot.venues._markets import Fees, make_instrument, split_ccxt_symbol

VENUE = "hyperliquid"
# Perps base tier (14-day volume <= $5M), VENUES.md §4.
FEES = Fees(taker=Decimal("0.00045"), maker=Decimal("0.00015"), funding_interval_hours=1)
MIN_NOTIONAL = Decimal(10)  # "Order must have minimum value of $10."
MAX_PERP_DECIMALS = 6
MAX_SIGNIFICANT_FIGURES = 5


def to_ccxt_symbol(native: str) -> str:
    """BTC -> BTC/USDC:USDC (all Hyperliquid perps settle in USDC)."""
    if not native or "/" in native or ":" in native:
        raise ValueError(f"not a Hyperliquid perp coin: {native!r}")
    return f"{native}/USDC:USDC"


def from_ccxt_symbol(ccxt_symbol: str) -> str:
    """BTC/USDC:USDC -> BTC."""
    parts = split_ccxt_symbol(ccxt_symbol)
    if parts is None or parts[1:] != ("USDC", "USDC"):
        raise ValueError(f"not a ccxt Hyperliquid perp symbol: {ccxt_symbol!r}")
    return parts[0]


def tick_for(sz_decimals: int) -> Decimal:
    """The finest price step a perp allows: 10**-(6 - szDecimals)."""
    return Decimal(1).scaleb(-(MAX_PERP_DECIMALS - sz_decimals))


def hyperliquid_price_ok(price: Decimal, sz_decimals: int) -> bool:
    """Hyperliquid perp price rule: at most 5 significant figures AND at most (6 - szDecimals)
    decimal places; integer prices are always allowed whatever their number of digits.

    So tick_size = 10**-(6-szDecimals) is only the finest grid: above 10**(5 - decimals) the
    5-significant-figure rule makes the effective step coarser (BTC at 64,000 moves in 1s).
    """
    if not price.is_finite() or price <= 0:
        return False
    if price == price.to_integral_value():
        return True
    normal = price.normalize()
    exponent = normal.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if decimals > MAX_PERP_DECIMALS - sz_decimals:
        return False
    significant = len(normal.as_tuple().digits)
    return significant <= MAX_SIGNIFICANT_FIGURES


def instrument_from_ccxt_market(market: dict[str, Any]) -> Instrument:
    """Exact Instrument from a ccxt hyperliquid swap market; tick from szDecimals (see tick_for)."""
    info = market.get("info") or {}
    sz_text = info.get("szDecimals")
    if sz_text is None:
        raise ValueError(f"hyperliquid market {market.get('symbol')!r} has no szDecimals")
    sz_decimals = int(sz_text)
    lot = Decimal(1).scaleb(-sz_decimals)
    coin = market.get("baseName") or info.get("name") or from_ccxt_symbol(market["symbol"])
    return make_instrument(VENUE, market, FEES, symbol=coin, tick=tick_for(sz_decimals), lot=lot, min_qty=lot,
                           min_notional=MIN_NOTIONAL)
