"""The only list of venues: venue name -> feed adapter class, symbol mapping and instrument builder."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from perpbot.core.instruments import Instrument
from perpbot.core.venue import FeedAdapter
from perpbot.settings import FeedSettings
from perpbot.venues.binance import symbols as binance_symbols
from perpbot.venues.binance.feed import BinanceFeedAdapter
from perpbot.venues.bybit import symbols as bybit_symbols
from perpbot.venues.bybit.feed import BybitFeedAdapter
from perpbot.venues.hyperliquid import symbols as hyperliquid_symbols
from perpbot.venues.hyperliquid.feed import HyperliquidFeedAdapter
from perpbot.venues.okx import symbols as okx_symbols
from perpbot.venues.okx.feed import OkxFeedAdapter

FEED_ADAPTERS: dict[str, type] = {
    "okx": OkxFeedAdapter,
    "hyperliquid": HyperliquidFeedAdapter,
    "binance": BinanceFeedAdapter,
    "bybit": BybitFeedAdapter,
}

_SYMBOLS: dict[str, ModuleType] = {
    "okx": okx_symbols,
    "hyperliquid": hyperliquid_symbols,
    "binance": binance_symbols,
    "bybit": bybit_symbols,
}


def _symbols(venue: str) -> ModuleType:
    try:
        return _SYMBOLS[venue]
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}; known: {', '.join(_SYMBOLS)}") from None


def feed_adapter(venue: str, feed_settings: FeedSettings) -> FeedAdapter:
    """A fresh adapter (adapters hold per-connection state such as Bybit ticker fields)."""
    try:
        cls: Callable[[FeedSettings], FeedAdapter] = FEED_ADAPTERS[venue]
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}; known: {', '.join(FEED_ADAPTERS)}") from None
    return cls(feed_settings)


def to_ccxt_symbol(venue: str, native: str) -> str:
    return _symbols(venue).to_ccxt_symbol(native)


def from_ccxt_symbol(venue: str, ccxt_symbol: str) -> str:
    return _symbols(venue).from_ccxt_symbol(ccxt_symbol)


def instrument_from_ccxt_market(venue: str, market: dict) -> Instrument:
    return _symbols(venue).instrument_from_ccxt_market(market)
