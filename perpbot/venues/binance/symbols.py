"""Binance USD-M symbols: BTCUSDT <-> BTC/USDT:USDT, and ccxt market -> Instrument."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from perpbot.core.instruments import Instrument
from perpbot.venues._markets import Fees, InstrumentFields, JoinedSymbols

VENUE = "binance"
# Regular-user USD-M fees, VENUES.md §2 (third-party sources).
FEES = Fees(taker=Decimal("0.0005"), maker=Decimal("0.0002"), funding_interval_hours=8)
# USD-M linear perpetuals settle in their quote.
SYMBOLS = JoinedSymbols(("USDT", "USDC", "FDUSD", "BUSD"), "Binance USD-M perpetual", "ccxt USD-M perpetual")
# exchangeInfo filters, keyed by filterType (see _filters).
FIELDS = InstrumentFields(VENUE, FEES, tick="PRICE_FILTER.tickSize", lot="LOT_SIZE.stepSize",
                          min_qty="LOT_SIZE.minQty", min_notional="MIN_NOTIONAL.notional")
to_ccxt_symbol = SYMBOLS.to_ccxt  # BTCUSDT -> BTC/USDT:USDT
from_ccxt_symbol = SYMBOLS.from_ccxt  # BTC/USDT:USDT -> BTCUSDT


def _filters(info: dict[str, Any]) -> dict[str, Any]:
    return {str(f.get("filterType")): f for f in info.get("filters") or [] if isinstance(f, dict)}


def instrument_from_ccxt_market(market: dict[str, Any]) -> Instrument:
    """Exact Instrument from a ccxt binanceusdm market (exchangeInfo filters preferred over floats)."""
    return FIELDS.build(market, from_ccxt_symbol, info=_filters(market.get("info") or {}))
