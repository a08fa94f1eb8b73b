"""The only list of venues: venue name -> feed adapter class, symbol mapping, instrument builder and
trading spec (what perpbot.execution.ccxt_client needs to trade the venue)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from decimal import Decimal

from perpbot.core.instruments import Instrument
from perpbot.core.ports import OrderLink, PrivateLink
from perpbot.core.transfers import TransferLink
from perpbot.core.venue import FeedAdapter
from perpbot.settings import FeedSettings, Settings, VenueSettings
from perpbot.venues import _trading
from perpbot.venues.binance import orders as binance_orders
from perpbot.venues.binance import symbols as binance_symbols
from perpbot.venues.binance.feed import BinanceFeedAdapter
from perpbot.venues.bybit import orders as bybit_orders
from perpbot.venues.bybit import symbols as bybit_symbols
from perpbot.venues.bybit.feed import BybitFeedAdapter
from perpbot.venues.hyperliquid import orders as hyperliquid_orders
from perpbot.venues.hyperliquid import symbols as hyperliquid_symbols
from perpbot.venues.hyperliquid.feed import HyperliquidFeedAdapter
from perpbot.venues.okx import orders as okx_orders
from perpbot.venues.okx import symbols as okx_symbols
from perpbot.venues.okx.feed import OkxFeedAdapter
from perpbot.venues.binance.private_link import BinancePrivateLink
from perpbot.venues.bybit.private_link import BybitPrivateLink
from perpbot.venues.hyperliquid.private_link import HyperliquidPrivateLink
from perpbot.venues.hyperliquid.order_link import HyperliquidOrderLink, asset_indices
from perpbot.venues.binance.order_link import BinanceOrderLink
from perpbot.venues.bybit.order_link import BybitOrderLink
from perpbot.venues.okx.order_link import OkxOrderLink
from perpbot.venues.okx.private_link import OkxPrivateLink
from perpbot.venues.okx.transfers import OkxTransfers
from perpbot.venues.binance.transfers import BinanceTransfers
from perpbot.venues.bybit.transfers import BybitTransfers
from perpbot.venues.hyperliquid.transfers import HyperliquidTransfers


@dataclass(frozen=True)
class Venue:
    feed: Callable[[FeedSettings], Any]  # the feed adapter class (a FeedAdapter)
    symbols: ModuleType  # to_ccxt_symbol, from_ccxt_symbol, instrument_from_ccxt_market
    trading: _trading.TradingSpec


VENUES: dict[str, Venue] = {
    "okx": Venue(OkxFeedAdapter, okx_symbols, okx_orders.SPEC),
    "hyperliquid": Venue(HyperliquidFeedAdapter, hyperliquid_symbols, hyperliquid_orders.SPEC),
    "binance": Venue(BinanceFeedAdapter, binance_symbols, binance_orders.SPEC),
    "bybit": Venue(BybitFeedAdapter, bybit_symbols, bybit_orders.SPEC),
}
FEED_ADAPTERS: dict[str, Callable[[FeedSettings], Any]] = {name: venue.feed for name, venue in VENUES.items()}


def _venue(name: str) -> Venue:
    try:
        return VENUES[name]
    except KeyError:
        raise ValueError(f"unknown venue {name!r}; known: {', '.join(VENUES)}") from None


def feed_adapter(venue: str, feed_settings: FeedSettings) -> FeedAdapter:
    """A fresh adapter (adapters hold per-connection state such as Bybit ticker fields)."""
    adapter: FeedAdapter = _venue(venue).feed(feed_settings)
    return adapter


def trading_spec(venue: str) -> _trading.TradingSpec:
    """The venue's trading specifics for the ccxt client (perpbot.venues._trading.TradingSpec)."""
    return _venue(venue).trading


def to_ccxt_symbol(venue: str, native: str) -> str:
    text: str = _venue(venue).symbols.to_ccxt_symbol(native)
    return text


def from_ccxt_symbol(venue: str, ccxt_symbol: str) -> str:
    text: str = _venue(venue).symbols.from_ccxt_symbol(ccxt_symbol)
    return text


def instrument_from_ccxt_market(venue: str, market: dict[str, Any]) -> Instrument:
    instrument: Instrument = _venue(venue).symbols.instrument_from_ccxt_market(market)
    return instrument


def order_link(venue: str, settings: Settings, cfg: VenueSettings,
               instruments: dict[str, Instrument], markets: Any = None) -> OrderLink | None:
    """The venue's order-entry WebSocket link, or None where perpbot has none (orders then go over REST).
    `instruments`: the venue's instruments by native symbol. `markets`: the REST client's ccxt markets
    (Hyperliquid's asset indexes are their baseIds; without them its orders go over REST)."""
    url = settings.order_ws_url(venue)
    if venue == "okx":
        return OkxOrderLink(url, cfg)
    if venue == "bybit":
        return BybitOrderLink(url, cfg)
    if venue == "binance":
        return BinanceOrderLink(url, cfg)
    if venue == "hyperliquid":
        assets = asset_indices(markets or {})
        if not assets or not all(symbol in assets for symbol in instruments):
            return None
        return HyperliquidOrderLink(url, cfg, assets)
    return None


def transfer_link(venue: str, cfg: VenueSettings) -> TransferLink | None:
    """The venue's internal transfer (its funding or spot wallet into its futures trading wallet), or None
    where perpbot has none. Every venue here offers one; the user switches them on (risk.internal_transfers)."""
    if venue == "okx":
        return OkxTransfers()
    if venue == "binance":
        return BinanceTransfers()
    if venue == "bybit":
        return BybitTransfers()
    if venue == "hyperliquid":
        return HyperliquidTransfers(cfg)
    return None


def private_link(venue: str, settings: Settings, cfg: VenueSettings, symbols: list[str],
                 contract_sizes: dict[str, Decimal]) -> PrivateLink:
    """The venue's private-stream link (`cfg` carries the credentials, read only by the link)."""
    url = settings.private_ws_url(venue)
    if venue == "okx":
        return OkxPrivateLink(url, cfg, symbols, contract_sizes)
    if venue == "binance":
        return BinancePrivateLink(url, settings.rest_url(venue), cfg, contract_sizes)
    if venue == "bybit":
        return BybitPrivateLink(url, cfg, contract_sizes)
    if venue == "hyperliquid":
        return HyperliquidPrivateLink(url, cfg, contract_sizes)
    raise ValueError(f"unknown venue {venue!r}; known: {', '.join(VENUES)}")
