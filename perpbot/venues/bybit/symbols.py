"""Bybit v5 linear symbols: BTCUSDT <-> BTC/USDT:USDT, and ccxt market -> Instrument."""

from __future__ import annotations

from decimal import Decimal

from perpbot.core.instruments import Instrument
from perpbot.venues._wire import venue_decimal

VENUE = "bybit"
# VIP0 perpetual fees, VENUES.md §3 (help-centre mirror; may vary by region).
TAKER_FEE = Decimal("0.00055")
MAKER_FEE = Decimal("0.0002")
FUNDING_INTERVAL_HOURS = 8
QUOTES = ("USDT", "USDC")


def to_ccxt_symbol(native: str) -> str:
    """BTCUSDT -> BTC/USDT:USDT. Bybit names USDC perpetuals BTCPERP: -> BTC/USDC:USDC."""
    if native.endswith("PERP") and len(native) > 4:
        return f"{native[:-4]}/USDC:USDC"
    for quote in QUOTES:
        if native.endswith(quote) and len(native) > len(quote):
            return f"{native[: -len(quote)]}/{quote}:{quote}"
    raise ValueError(f"not a Bybit linear perpetual symbol: {native!r}")


def from_ccxt_symbol(ccxt_symbol: str) -> str:
    """BTC/USDT:USDT -> BTCUSDT; BTC/USDC:USDC -> BTCPERP."""
    pair, sep, settle = ccxt_symbol.partition(":")
    base, slash, quote = pair.partition("/")
    if not sep or not slash or not base or not quote or settle != quote:
        raise ValueError(f"not a ccxt linear perpetual symbol: {ccxt_symbol!r}")
    if quote == "USDC":
        return f"{base}PERP"
    return f"{base}{quote}"


def instrument_from_ccxt_market(market: dict) -> Instrument:
    """Exact Instrument from a ccxt bybit linear market (instruments-info strings preferred)."""
    info = market.get("info") or {}
    price_filter = info.get("priceFilter") or {}
    lot_filter = info.get("lotSizeFilter") or {}
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    tick = venue_decimal(price_filter.get("tickSize"), precision.get("price"))
    lot = venue_decimal(lot_filter.get("qtyStep"), precision.get("amount"))
    min_qty = venue_decimal(lot_filter.get("minOrderQty"), (limits.get("amount") or {}).get("min")) or lot
    min_notional = venue_decimal(
        lot_filter.get("minNotionalValue"), (limits.get("cost") or {}).get("min")
    ) or Decimal(0)
    if tick is None or lot is None:
        raise ValueError(f"bybit market {market.get('id')!r} lacks tick or lot size")
    hours = FUNDING_INTERVAL_HOURS
    minutes = info.get("fundingInterval")
    # instruments-info gives the interval in minutes (480 = 8 h); keep whole hours only.
    if isinstance(minutes, int) and minutes > 0 and minutes % 60 == 0:
        hours = minutes // 60
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
        funding_interval_hours=hours,
    )

