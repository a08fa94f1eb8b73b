"""Bybit v5 linear symbols: BTCUSDT <-> BTC/USDT:USDT, and ccxt market -> Instrument."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from perpbot.core.instruments import Instrument
from perpbot.venues._markets import Fees, InstrumentFields, JoinedSymbols

VENUE = "bybit"
# VIP0 perpetual fees, VENUES.md §3 (help-centre mirror; may vary by region).
FEES = Fees(taker=Decimal("0.00055"), maker=Decimal("0.0002"), funding_interval_hours=8)
# Bybit names USDC perpetuals BTCPERP: BTCPERP <-> BTC/USDC:USDC.
SYMBOLS = JoinedSymbols(("USDT", "USDC"), "Bybit linear perpetual", "ccxt linear perpetual", {"PERP": "USDC"})
# instruments-info strings.
FIELDS = InstrumentFields(VENUE, FEES, tick="priceFilter.tickSize", lot="lotSizeFilter.qtyStep",
                          min_qty="lotSizeFilter.minOrderQty", min_notional="lotSizeFilter.minNotionalValue")
to_ccxt_symbol = SYMBOLS.to_ccxt  # BTCUSDT -> BTC/USDT:USDT
from_ccxt_symbol = SYMBOLS.from_ccxt  # BTC/USDT:USDT -> BTCUSDT


def instrument_from_ccxt_market(market: dict[str, Any]) -> Instrument:
    """Exact Instrument from a ccxt bybit linear market (instruments-info strings preferred)."""
    minutes = (market.get("info") or {}).get("fundingInterval")
    # instruments-info gives the interval in minutes (480 = 8 h); keep whole hours only.
    hours = minutes // 60 if isinstance(minutes, int) and minutes > 0 and minutes % 60 == 0 else None
    return FIELDS.build(market, from_ccxt_symbol, funding_hours=hours)
