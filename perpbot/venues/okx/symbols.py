"""OKX symbols: native instId (BTC-USDT-SWAP) <-> ccxt symbol (BTC/USDT:USDT), and ccxt market -> Instrument."""

from __future__ import annotations

from decimal import Decimal

from perpbot.core.instruments import Instrument
from perpbot.venues._wire import exact_decimal, venue_decimal

VENUE = "okx"
# Regular-user (Lv1) USDT-margined perpetual fees, VENUES.md §1 (third-party sources only).
TAKER_FEE = Decimal("0.0005")
MAKER_FEE = Decimal("0.0002")
FUNDING_INTERVAL_HOURS = 8


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
    pair, sep, settle = ccxt_symbol.partition(":")
    base, slash, quote = pair.partition("/")
    if not sep or not slash or not base or not quote or not settle or "-" in settle:
        raise ValueError(f"not a ccxt perpetual symbol: {ccxt_symbol!r}")
    return f"{base}-{quote}-SWAP"


def instrument_from_ccxt_market(market: dict) -> Instrument:
    """Exact Instrument from a ccxt okx market. Sizes are in contracts; contract_size = ctVal.

    The venue's own strings in `info` (tickSz, lotSz, minSz, ctVal) are preferred over
    ccxt's floats; the floats are converted with Decimal(str(x)) when info lacks them.
    """
    info = market.get("info") or {}
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    tick = venue_decimal(info.get("tickSz"), precision.get("price"))
    lot = venue_decimal(info.get("lotSz"), precision.get("amount"))
    min_qty = venue_decimal(info.get("minSz"), (limits.get("amount") or {}).get("min")) or lot
    contract = venue_decimal(info.get("ctVal"), market.get("contractSize")) or Decimal(1)
    min_notional = exact_decimal((limits.get("cost") or {}).get("min")) or Decimal(0)
    if tick is None or lot is None:
        raise ValueError(f"okx market {market.get('id')!r} lacks tick or lot size")
    native = market.get("id") or from_ccxt_symbol(market["symbol"])
    return Instrument(
        venue=VENUE,
        symbol=native,
        base=market["base"],
        quote=market["quote"],
        ccxt_symbol=market["symbol"],
        tick_size=tick,
        lot_size=lot,
        min_qty=min_qty,
        min_notional=min_notional,
        contract_size=contract,
        taker_fee=TAKER_FEE,
        maker_fee=MAKER_FEE,
        funding_interval_hours=FUNDING_INTERVAL_HOURS,
    )

