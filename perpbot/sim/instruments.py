"""The simulated venues' instruments (`perpbot.sim.market` trades them): the default symbols per venue, base
prices, each venue's fees, funding interval and leverage, the tick/lot/contract grids of the well-known
contracts (others derived from the price), and `make_instrument`, native symbol -> SimInstrument."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from decimal import Decimal

DEFAULT_SYMBOLS: dict[str, list[str]] = {
    "okx": ["BTC-USDT-SWAP", "ETH-USDT-SWAP"],
    "binance": ["BTCUSDT", "ETHUSDT"],
    "bybit": ["BTCUSDT", "ETHUSDT"],
    "hyperliquid": ["BTC", "ETH"],
}

BASE_PRICES = {"BTC": 60000.0, "ETH": 3000.0, "SOL": 150.0, "XRP": 0.6, "DOGE": 0.15, "BNB": 600.0}

# Fees (taker, maker), funding interval hours, max leverage: public base-tier values (VENUES.md).
VENUE_TERMS = {
    "okx": (Decimal("0.0005"), Decimal("0.0002"), 8, 100),
    "binance": (Decimal("0.0005"), Decimal("0.0002"), 8, 125),
    "bybit": (Decimal("0.00055"), Decimal("0.0002"), 8, 100),
    "hyperliquid": (Decimal("0.00045"), Decimal("0.00015"), 1, 40),
}

# (tick, lot, contract_size) for the well-known contracts; others are derived from the price.
KNOWN_GRIDS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("okx", "BTC"): ("0.1", "0.01", "0.01"),
    ("okx", "ETH"): ("0.01", "0.01", "0.1"),
    ("binance", "BTC"): ("0.10", "0.001", "1"),
    ("binance", "ETH"): ("0.01", "0.001", "1"),
    ("bybit", "BTC"): ("0.10", "0.001", "1"),
    ("bybit", "ETH"): ("0.01", "0.01", "1"),
    ("hyperliquid", "BTC"): ("1", "0.00001", "1"),
    ("hyperliquid", "ETH"): ("0.1", "0.0001", "1"),
}

MIN_NOTIONAL = {"okx": Decimal("0"), "binance": Decimal("5"), "bybit": Decimal("5"), "hyperliquid": Decimal("10")}

# Funding-rate cap (+/-) per interval, one value for every wire that states it: OKX maxFundingRate /
# minFundingRate (REST funding-rate and the WS funding-rate channel, documented 0.00375), Bybit
# upperFundingRate / lowerFundingRate of the instrument row (documented BTCUSDT example, 0.00375) and
# the ticker's fundingCap.
FUNDING_CAPS = {"okx": Decimal("0.00375"), "bybit": Decimal("0.00375")}


@dataclass(frozen=True, slots=True)
class SimInstrument:
    venue: str
    symbol: str
    base: str
    quote: str
    tick: Decimal
    lot: Decimal
    min_qty: Decimal
    min_notional: Decimal
    contract_size: Decimal
    taker_fee: Decimal
    maker_fee: Decimal
    funding_interval_h: int
    max_leverage: int


def split_symbol(venue: str, symbol: str) -> tuple[str, str]:
    """Native symbol -> (base, quote)."""
    if venue == "okx":
        parts = symbol.split("-")
        return parts[0], parts[1] if len(parts) > 1 else "USDT"
    if venue == "hyperliquid":
        return symbol, "USDC"
    for quote in ("USDT", "USDC"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, "USDT"


def _pow10(exponent: int) -> Decimal:
    return Decimal(1).scaleb(exponent)


def base_price(base: str) -> float:
    if base in BASE_PRICES:
        return BASE_PRICES[base]
    # Unknown assets get a stable price between 1 and 500 from their name.
    return float(1 + zlib.crc32(base.encode()) % 500)


def make_instrument(venue: str, symbol: str) -> SimInstrument:
    base, quote = split_symbol(venue, symbol)
    price = base_price(base)
    if (venue, base) in KNOWN_GRIDS:
        tick, lot, contract = (Decimal(x) for x in KNOWN_GRIDS[(venue, base)])
    else:
        magnitude = math.floor(math.log10(price))
        tick = _pow10(magnitude - 4)  # five significant figures
        if venue == "okx":
            contract = _pow10(math.floor(math.log10(300 / price)))  # ~300 USDT per contract
            lot = Decimal("0.01")
        else:
            contract = Decimal(1)
            lot = _pow10(math.floor(math.log10(10 / price)) - 1)
    taker, maker, interval, leverage = VENUE_TERMS[venue]
    if venue == "hyperliquid" and base != "BTC":
        leverage = 25
    return SimInstrument(
        venue=venue, symbol=symbol, base=base, quote=quote, tick=tick, lot=lot, min_qty=lot,
        min_notional=MIN_NOTIONAL[venue], contract_size=contract, taker_fee=taker, maker_fee=maker,
        funding_interval_h=interval, max_leverage=leverage,
    )
