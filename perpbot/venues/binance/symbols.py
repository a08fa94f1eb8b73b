"""Binance USD-M symbols: BTCUSDT <-> BTC/USDT:USDT, and ccxt market -> Instrument."""

from __future__ import annotations

from decimal import Decimal

from perpbot.core.instruments import Instrument
from perpbot.venues._wire import venue_decimal

VENUE = "binance"
# Regular-user USD-M fees, VENUES.md §2 (third-party sources).
TAKER_FEE = Decimal("0.0005")
MAKER_FEE = Decimal("0.0002")
FUNDING_INTERVAL_HOURS = 8
QUOTES = ("USDT", "USDC", "FDUSD", "BUSD")


def to_ccxt_symbol(native: str) -> str:
    """BTCUSDT -> BTC/USDT:USDT (USD-M linear perpetuals settle in their quote)."""
    for quote in QUOTES:
        if native.endswith(quote) and len(native) > len(quote):
            base = native[: -len(quote)]
            return f"{base}/{quote}:{quote}"
    raise ValueError(f"not a Binance USD-M perpetual symbol: {native!r}")


def from_ccxt_symbol(ccxt_symbol: str) -> str:
    """BTC/USDT:USDT -> BTCUSDT."""
    pair, sep, settle = ccxt_symbol.partition(":")
    base, slash, quote = pair.partition("/")
    if not sep or not slash or not base or not quote or settle != quote:
        raise ValueError(f"not a ccxt USD-M perpetual symbol: {ccxt_symbol!r}")
    return f"{base}{quote}"


def _filters(info: dict) -> dict[str, dict]:
    return {f.get("filterType"): f for f in info.get("filters") or [] if isinstance(f, dict)}


def instrument_from_ccxt_market(market: dict) -> Instrument:
    """Exact Instrument from a ccxt binanceusdm market (exchangeInfo filters preferred over floats)."""
    info = market.get("info") or {}
    filters = _filters(info)
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    tick = venue_decimal((filters.get("PRICE_FILTER") or {}).get("tickSize"), precision.get("price"))
    lot_filter = filters.get("LOT_SIZE") or {}
    lot = venue_decimal(lot_filter.get("stepSize"), precision.get("amount"))
    min_qty = venue_decimal(lot_filter.get("minQty"), (limits.get("amount") or {}).get("min")) or lot
    min_notional = venue_decimal(
        (filters.get("MIN_NOTIONAL") or {}).get("notional"), (limits.get("cost") or {}).get("min")
    ) or Decimal(0)
    if tick is None or lot is None:
        raise ValueError(f"binance market {market.get('id')!r} lacks tick or lot size")
    return Instrument(
        venue=VENUE,
        symbol=market.get("id") or from_ccxt_symbol(market["symbol"]),
        base=market["base"],
        quote=market["quote"],
        ccxt_symbol=market["symbol"],
        tick_size=tick,
        lot_size=lot,
        min_qty=min_qty,
        min_notional=min_notional,
        contract_size=Decimal(1),
        taker_fee=TAKER_FEE,
        maker_fee=MAKER_FEE,
        funding_interval_hours=FUNDING_INTERVAL_HOURS,
    )

