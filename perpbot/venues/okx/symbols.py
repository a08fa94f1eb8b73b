"""OKX symbols: native instId (BTC-USDT-SWAP) <-> ccxt symbol (BTC/USDT:USDT), and ccxt market -> Instrument."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from perpbot.core.instruments import Instrument
from perpbot.venues._markets import Fees, InstrumentFields, split_ccxt_symbol

VENUE = "okx"
# Regular-user (Lv1) USDT-margined perpetual fees, VENUES.md §1 (third-party sources only).
FEES = Fees(taker=Decimal("0.0005"), maker=Decimal("0.0002"), funding_interval_hours=8)
# Sizes are in contracts; contract_size = ctVal. OKX lists no minimum notional (ccxt's limit, if any).
FIELDS = InstrumentFields(VENUE, FEES, tick="tickSz", lot="lotSz", min_qty="minSz", contract="ctVal")


def to_ccxt_symbol(native: str) -> str:
    """BTC-USDT-SWAP -> BTC/USDT:USDT (linear) ; BTC-USD-SWAP -> BTC/USD:BTC (inverse)."""
    parts = native.split("-")
    if len(parts) != 3 or parts[2] != "SWAP" or not parts[0] or not parts[1]:
        raise ValueError(f"not an OKX perpetual swap instId: {native!r}")
    base, quote = parts[0], parts[1]
    settle = base if quote == "USD" else quote
    return f"{base}/{quote}:{settle}"


def from_ccxt_symbol(ccxt_symbol: str) -> str:
    """BTC/USDT:USDT -> BTC-USDT-SWAP."""
    parts = split_ccxt_symbol(ccxt_symbol)
    if parts is None or not parts[2] or "-" in parts[2]:
        raise ValueError(f"not a ccxt perpetual symbol: {ccxt_symbol!r}")
    return f"{parts[0]}-{parts[1]}-SWAP"


def instrument_from_ccxt_market(market: dict[str, Any]) -> Instrument:
    """Exact Instrument from a ccxt okx market (tickSz, lotSz, minSz, ctVal preferred over ccxt's floats)."""
    return FIELDS.build(market, from_ccxt_symbol)
