"""The trading venues' clients and instruments, for the composition (perpbot.wiring).

At start, each venue's instruments come from the journal's instrument cache (no venue call; with
the cached market list, the ccxt client needs no market load either), the rest from the venue,
with retries, and are cached. Once start-up recovery is done the cached ones are refreshed from
the venues in the background (`refresh_instruments`). A venue whose books were built with another
contract size than its instrument says is left out of trading (`books_disagree`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from perpbot.book.store import BookStore
from perpbot.core.instruments import Instrument
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.order_routing import rest_of
from perpbot.execution.engine import Engine
from perpbot.execution.paper import PaperClient
from perpbot.journal.sqlite import Journal, JournalError
from perpbot.settings import Settings, VenueSettings
from perpbot.sim.private.common import SIM_API_KEY, SIM_PASSPHRASE, SIM_SECRET
from perpbot.sim.trading.clients import SIM_PRIVATE_KEY, SIM_WALLET

log = logging.getLogger("perpbot.wiring")

INSTRUMENT_ATTEMPTS = 5
REFRESH_AFTER_START_MAX_S = 60.0  # the cached instruments are refreshed once start-up recovery is done

# The simulator's own stand-in credentials (its REST accepts any signature; its private streams
# check the login signature against these, as a venue checks the account's key). Used in `sim`
# mode when no key is configured, never otherwise.
SIM_CREDENTIALS = {
    "api_key": SIM_API_KEY,
    "api_secret": SIM_SECRET,
    "passphrase": SIM_PASSPHRASE,
    "wallet_address": SIM_WALLET,
    "private_key": SIM_PRIVATE_KEY,
}

Key = tuple[str, str]


def venue_credentials(settings: Settings, venue: str) -> VenueSettings:
    """The venue's settings; in sim mode, missing credentials are filled with simulator stand-ins."""
    cfg: VenueSettings = getattr(settings.venues, venue)
    if settings.mode != "sim":
        return cfg
    missing = {k: v for k, v in SIM_CREDENTIALS.items() if getattr(cfg, k) is None}
    return cfg.model_copy(update={k: (v if k == "wallet_address" else SecretStr(v)) for k, v in missing.items()})


def _ccxt_client(settings: Settings, venue: str, instruments: dict[str, Instrument] | None = None) -> CcxtClient:
    return CcxtClient(venue, venue_credentials(settings, venue), settings.rest_url(venue), instruments=instruments,
                      timeout_s=settings.execution.order_timeout_s)


def _failure(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:300]


async def load_instruments(client: Any, symbols: list[str]) -> dict[str, Instrument]:
    delay = 0.5
    for attempt in range(1, INSTRUMENT_ATTEMPTS + 1):
        try:
            result: dict[str, Instrument] = await client.load_instruments(symbols)
            return result
        except Exception as exc:  # venue down at start: retry a few times, then trade without it
            log.warning("Instruments of %s not loaded (attempt %d/%d): %s", client.venue, attempt,
                        INSTRUMENT_ATTEMPTS, _failure(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return {}


def books_disagree(store: BookStore, instruments: dict[Key, Instrument]) -> list[str]:
    """Venues whose books were built with a different contract size than the instrument says.

    Trading on such a book would size orders wrongly by the contract factor; those venues
    are left out of trading (market data keeps running) and the reason is logged."""
    bad = set()
    for (venue, symbol), instrument in instruments.items():
        book = store.get(venue, symbol)
        if book is None:
            continue
        scaled = int(instrument.contract_size.scaleb(9))
        built = book._contract if book._contract is not None else 10**9  # noqa: SLF001 - composition check
        if built != scaled:
            log.error("Book %s %s uses contract size %s but the instrument says %s: not trading %s",
                      venue, symbol, Decimal(built).scaleb(-9), instrument.contract_size, venue)
            bad.add(venue)
    return sorted(bad)


def market_list(client: Any) -> tuple[list[Any], Any] | None:
    """A ccxt client's loaded market list as set_markets takes it: the markets as the venue's parser
    produced them (markets_by_id, before ccxt's defaults) and, where the venue lists currencies, those."""
    exchange = getattr(client, "exchange", None)
    if exchange is None or not exchange.markets or not exchange.markets_by_id:
        return None
    raw = [market for markets in exchange.markets_by_id.values()
           for market in (markets if isinstance(markets, list) else [markets])]
    currencies = exchange.currencies if exchange.has.get("fetchCurrencies") is True else None
    return raw, currencies


async def cache_market_list(journal: Journal, venue: str, client: Any) -> None:
    markets = market_list(client)
    if markets is None:
        return
    try:
        await journal.save_venue_markets(venue, *markets)
    except Exception as exc:  # the cache is an optimisation: trading goes on without it
        log.warning("Market list of %s not cached: %s", venue, exc)


async def cache_instruments(journal: Journal, venue: str, instruments: Iterable[Instrument]) -> None:
    try:
        await journal.save_instruments(instruments)
    except Exception as exc:  # the cache is an optimisation (and the journal may be closed by a stop)
        log.warning("Instruments of %s not cached: %s", venue, exc)


def restore_market_list(client: Any, markets: tuple[Any, Any] | None, instruments: dict[str, Instrument]) -> bool:
    """Give a fresh ccxt client the cached market list, so its first call needs no market load; only
    when the list holds every instrument's market. False (client untouched) otherwise."""
    exchange = getattr(client, "exchange", None)
    if exchange is None or markets is None:
        return False
    listed, currencies = markets
    symbols = {market.get("symbol") for market in listed if isinstance(market, dict)}
    if not instruments or any(i.ccxt_symbol not in symbols for i in instruments.values()):
        return False
    try:
        exchange.set_markets(listed, currencies or None)
    except Exception as exc:  # an unusable cached list: the client loads its markets as before
        log.warning("Cached market list of %s not usable (%s): loading it from the venue", client.venue, exc)
        exchange.markets = None
        return False
    return True


async def venue_instruments(settings: Settings, store: BookStore, venue: str, symbols: list[str],
                            cache: dict[Key, Instrument], markets: dict[str, Any],
                            journal: Journal) -> tuple[Any, dict[str, Instrument], list[str]]:
    """One venue's client and instruments: the journal's cached ones (no venue call; with the cached
    market list, the client needs no market load either), the rest loaded from the venue as before,
    with retries, and cached. Returns (client or None when the venue is left out, instruments by
    symbol, the symbols taken from the cache)."""
    cached = {symbol: cache[(venue, symbol)] for symbol in symbols if (venue, symbol) in cache}
    loader = _ccxt_client(settings, venue, cached)
    loaded = dict(cached)
    missing = [symbol for symbol in symbols if symbol not in cached]
    if missing:
        fresh = await load_instruments(loader, missing)
        if fresh:
            await cache_instruments(journal, venue, fresh.values())
            await cache_market_list(journal, venue, loader)
        elif cached:
            log.error("Instruments of %s not loaded: %s; trading its cached ones only", venue, ", ".join(missing))
        loaded.update(fresh)
    elif settings.mode != "paper":
        restore_market_list(loader, markets.get(venue), cached)
    if not loaded:
        log.error("Venue %s left out of trading: its instruments could not be loaded", venue)
        await loader.close()
        return None, {}, []
    if settings.mode == "paper":
        await loader.close()
        client: Any = PaperClient(venue, store, loaded, latency_ms=settings.execution.paper_latency_ms,
                                  leverage=settings.risk.max_leverage)
        return client, loaded, sorted(cached)
    return loader, loaded, sorted(cached)


@dataclass
class TradingVenues:
    """What start-up loaded: the venues' clients, their instruments, and per venue the symbols taken
    from the journal's cache (refreshed in the background)."""

    clients: dict[str, Any] = field(default_factory=dict)
    instruments: dict[Key, Instrument] = field(default_factory=dict)
    from_cache: dict[str, list[str]] = field(default_factory=dict)

    def add(self, venue: str, client: Any, loaded: dict[str, Instrument], cached: list[str]) -> None:
        if client is None:
            return
        self.clients[venue] = client
        self.instruments.update({(venue, symbol): instrument for symbol, instrument in loaded.items()})
        if cached:
            self.from_cache[venue] = cached

    async def drop(self, venue: str) -> None:
        client = self.clients.pop(venue, None)
        if client is not None:
            await client.close()
        self.from_cache.pop(venue, None)
        self.instruments = {k: v for k, v in self.instruments.items() if k[0] != venue}


async def load_trading_venues(settings: Settings, store: BookStore, journal: Journal) -> TradingVenues:
    """Every enabled venue's client and instruments, all venues at once, from the journal's cache where
    it has them; a venue whose books disagree with its instruments is left out."""
    try:
        cache = await journal.cached_instruments()
        markets = await journal.cached_venue_markets()
    except Exception as exc:  # an unreadable cache is a cache miss
        log.warning("Instrument cache not read (%s): loading instruments from the venues", exc)
        cache, markets = {}, {}
    enabled = settings.venues.enabled()
    built = await asyncio.gather(*(venue_instruments(settings, store, venue, list(cfg.symbols), cache, markets,
                                                     journal) for venue, cfg in enabled))
    venues = TradingVenues()
    for (venue, _), (client, loaded, cached) in zip(enabled, built):
        venues.add(venue, client, loaded, cached)
    for venue in books_disagree(store, venues.instruments):
        await venues.drop(venue)
    return venues


# -- background refresh ---------------------------------------------------------------------------
def differences(old: Instrument, new: Instrument) -> list[str]:
    """'field old -> new' for every field that differs (Decimals compared by value)."""
    return [f"{name} {getattr(old, name)} -> {getattr(new, name)}" for name in Instrument.__dataclass_fields__
            if getattr(old, name) != getattr(new, name)]


async def reload(client: CcxtClient, symbols: list[str]) -> dict[str, Instrument]:
    """The venue's instrument list loaded again, retried as at start; a client that runs on a cached
    market list reloads it from the venue first (it is then the client's own, fresh list)."""
    if not client.exchange.markets:
        return await load_instruments(client, symbols)
    delay = 0.5
    for attempt in range(1, INSTRUMENT_ATTEMPTS + 1):
        try:
            await client.exchange.load_markets(True)
            result: dict[str, Instrument] = await client.load_instruments(symbols)
            return result
        except Exception as exc:  # venue unreachable: the cached list stays in use meanwhile
            log.warning("Instruments of %s not refreshed (attempt %d/%d): %s", client.venue, attempt,
                        INSTRUMENT_ATTEMPTS, _failure(exc))
            if attempt < INSTRUMENT_ATTEMPTS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
    return {}


async def _refresh_load(settings: Settings, engine: Engine, venue: str,
                        symbols: list[str]) -> tuple[dict[str, Instrument], Any]:
    """A venue's instruments loaded again (live/sim: by the trading client itself) and the client that did."""
    client = rest_of(engine.clients.get(venue))  # a routed client reloads through its REST client
    if isinstance(client, CcxtClient):
        return await reload(client, symbols), client
    loader = _ccxt_client(settings, venue)
    try:
        return await load_instruments(loader, symbols), loader
    finally:
        with contextlib.suppress(Exception):
            await loader.close()


async def _after_startup(engine: Engine, journal: Journal) -> bool:
    """Wait (bounded) for start-up recovery to be done: the refresh's market loads would queue the
    recovery's venue calls behind them (ccxt's per-client rate limiter) and take the CPU they need.
    False when the service was closed meanwhile (a start that failed): nothing to refresh."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REFRESH_AFTER_START_MAX_S
    while getattr(engine, "startup_funding", None) is None and loop.time() < deadline:
        try:
            journal.db  # noqa: B018 - raises once the service is closed
        except JournalError:
            return False
        await asyncio.sleep(0.05)
    return True


def _changed(store: BookStore, instruments: dict[Key, Instrument], venue: str,
             fresh: dict[str, Instrument]) -> tuple[list[str], bool]:
    """('symbol: field old -> new' for every changed instrument, whether a changed contract size
    leaves the venue out: its books use the cached one)."""
    changes: list[str] = []
    left_out = False
    for symbol, new in fresh.items():
        key = (venue, symbol)
        old = instruments.get(key)
        if old is None or old == new:
            continue
        found = differences(old, new)
        changes += [f"{symbol}: {d}" for d in found]
        log.warning("Instrument %s %s changed at the venue since it was cached: %s", venue, symbol, "; ".join(found))
        if old.contract_size != new.contract_size and (store.get(venue, symbol) is None
                                                       or books_disagree(store, {key: new})):
            left_out = True
    return changes, left_out


def _retire(engine: Engine, venue: str, paper_clients: dict[str, Any]) -> Any:
    log.error("Venue %s left out of trading: a contract size changed and its books use the cached "
              "one; restart to trade it again", venue)
    retired = engine.clients.pop(venue, None)
    paper_clients.pop(venue, None)
    engine.reconciled.pop(venue, None)
    engine.venue_connected.pop(venue, None)
    for key in [k for k in engine.instruments if k[0] == venue]:
        del engine.instruments[key]
    return retired


def _replace(engine: Engine, venue: str, fresh: dict[str, Instrument]) -> None:
    """The changed instruments replace the cached ones in place (the engine's, the scanner's and a
    paper client's dicts are the same objects)."""
    instruments = engine.instruments
    target = engine.clients.get(venue)
    for symbol, new in fresh.items():
        if (venue, symbol) in instruments and instruments[(venue, symbol)] != new:
            instruments[(venue, symbol)] = new
            if isinstance(target, PaperClient):
                target.instruments[symbol] = new


async def _apply_refresh(engine: Engine, store: BookStore, venue: str, fresh: dict[str, Instrument],
                         paper_clients: dict[str, Any]) -> tuple[list[str] | None, Any]:
    """Under the trade lock (no trade sees two versions of an instrument): (what changed, or None when
    the venue is no longer traded; a client retired because its contract size changed)."""
    async with engine._trade_lock:  # noqa: SLF001 - composition root: no trade between two versions
        if venue not in engine.clients:
            return None, None
        changes, left_out = _changed(store, engine.instruments, venue, fresh)
        if left_out:
            return changes, _retire(engine, venue, paper_clients)
        _replace(engine, venue, fresh)
        return changes, None


async def refresh_instruments(settings: Settings, engine: Engine, store: BookStore, journal: Journal,
                              venues: dict[str, list[str]], paper_clients: dict[str, Any]) -> dict[str, list[str]]:
    """Background refresh of the instruments (and market lists) taken from the journal's cache: each
    venue's list is loaded again (live/sim: by the trading client itself), the cache is updated, and
    an instrument that differs replaces the cached one in the shared instruments dict, in place,
    under the trade lock (no trade sees two versions of it). A changed contract size means the
    feeds' books use the cached one: that venue is left out of trading, as `books_disagree` does at
    start. Returns per venue what changed ('symbol: field old -> new')."""
    if not await _after_startup(engine, journal):
        return {}
    names = list(venues)
    loaded = await asyncio.gather(*(_refresh_load(settings, engine, venue, venues[venue]) for venue in names),
                                  return_exceptions=True)
    report: dict[str, list[str]] = {}
    for venue, outcome in zip(names, loaded):
        fresh, source = outcome if not isinstance(outcome, BaseException) else ({}, None)
        if not fresh:
            log.warning("Instruments of %s not refreshed from the venue: trading on the journal's cached ones", venue)
            continue
        changes, retired = await _apply_refresh(engine, store, venue, fresh, paper_clients)
        if changes is None:
            continue
        await cache_instruments(journal, venue, fresh.values())
        if isinstance(source, CcxtClient):
            await cache_market_list(journal, venue, source)
        if retired is not None:
            with contextlib.suppress(Exception):
                await retired.close()
        report[venue] = changes
    return report
