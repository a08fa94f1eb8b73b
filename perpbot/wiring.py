"""Trading wiring: venue clients, instruments, journal, portfolio, risk gate, scanner and engine as one service.

The composition root (perpbot.app) calls `build_engine`; the result implements
perpbot.core.ports.EngineCommands (delegated to the Engine) and runs recovery first, then
the scanner and the engine's periodic reconciliation in one TaskGroup. Modes differ only in
which ExchangeClient is built: `live` and `sim` use the ccxt client (the simulator is just
another URL), `paper` the paper client over the live books.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

from perpbot.book.store import BookStore
from perpbot.core.decisions import Leg
from perpbot.core.instruments import Instrument
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.engine import Engine
from perpbot.execution.paper import PaperClient, PaperFunding
from perpbot.journal.redis_state import RedisState
from perpbot.journal.sqlite import Journal, JournalError
from perpbot.portfolio.book import Portfolio
from perpbot.risk.gate import RiskGate
from perpbot.scanner.protocol import OpenTrade
from perpbot.scanner.scanner import Scanner
from pydantic import SecretStr

from perpbot.settings import Settings, VenueSettings
from perpbot.telemetry.metrics import Metrics
from strategies import build_strategies

log = logging.getLogger("perpbot.wiring")

INSTRUMENT_ATTEMPTS = 5
REFRESH_AFTER_START_MAX_S = 60.0  # the cached instruments are refreshed once start-up recovery is done

# The built-in simulator accepts any signed request; these stand-in credentials only let the
# real ccxt classes sign. They are used in `sim` mode when no key is configured, never otherwise.
SIM_CREDENTIALS = {
    "api_key": "perpbot-sim-key",
    "api_secret": "perpbot-sim-secret",
    "passphrase": "perpbot-sim-passphrase",
    "wallet_address": "0x" + "5e" * 20,
    "private_key": "0x" + "1d" * 32,
}


def venue_credentials(settings: Settings, venue: str) -> VenueSettings:
    """The venue's settings; in sim mode, missing credentials are filled with simulator stand-ins."""
    cfg: VenueSettings = getattr(settings.venues, venue)
    if settings.mode != "sim":
        return cfg
    missing = {k: v for k, v in SIM_CREDENTIALS.items() if getattr(cfg, k) is None}
    return cfg.model_copy(update={k: (v if k == "wallet_address" else SecretStr(v)) for k, v in missing.items()})


async def _load_instruments(client: Any, symbols: list[str]) -> dict[str, Instrument]:
    delay = 0.5
    for attempt in range(1, INSTRUMENT_ATTEMPTS + 1):
        try:
            return await client.load_instruments(symbols)
        except Exception as exc:  # venue down at start: retry a few times, then trade without it
            log.warning("Instruments of %s not loaded (attempt %d/%d): %s", client.venue, attempt,
                        INSTRUMENT_ATTEMPTS, f"{exc.__class__.__name__}: {exc}"[:300])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return {}


def _books_agree(store: BookStore, instruments: dict[tuple[str, str], Instrument]) -> list[str]:
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


class TradingService:
    """Engine + scanner, run together; EngineCommands are answered by the engine."""

    def __init__(self, engine: Engine, scanner: Scanner, clients: dict[str, Any], journal: Journal,
                 redis_state: RedisState | None, paper_funding: PaperFunding | None = None) -> None:
        self.engine = engine
        self.paper_funding = paper_funding  # paper mode: settles funding the live venues settle themselves
        self.scanner = scanner
        self.clients = clients
        self.journal = journal
        self.redis_state = redis_state
        self._stop = asyncio.Event()
        self._trades: tuple[OpenTrade, ...] = ()
        self._trades_version: tuple[int, int] | None = None

    def __getattr__(self, name: str) -> Any:
        # EngineCommands (pause, resume, close_all, sync_positions, positions, ...) go to the engine.
        return getattr(self.engine, name)

    def open_trades(self) -> tuple[OpenTrade, ...]:
        """The engine's open trades as the scanner sees them: one tuple per version of the engine's
        dict, so every scan between two changes gets the same objects (the strategies' per-trade
        caches hold, and nothing is parsed again on the hot path)."""
        source = self.engine.open_trades
        counted = getattr(source, "version", None)  # a plain dict (tests may set one): rebuilt every time
        version = None if counted is None else (id(source), counted)
        if version is None or version != self._trades_version:
            self._trades = self._build_open_trades(source)
            self._trades_version = version
        return self._trades

    @staticmethod
    def _build_open_trades(source) -> tuple[OpenTrade, ...]:
        trades = []
        for trade in source.values():
            legs = tuple(
                Leg(leg["venue"], leg["symbol"], leg["side"], Decimal(leg["base_qty"]),
                    Decimal(leg.get("ref_price") or "0"))
                for leg in trade["legs"]
            )
            if len(legs) != 2:
                continue
            trades.append(OpenTrade(trade["trade_id"], trade["strategy"], trade["base"], legs,
                                    float(trade.get("opened_ts") or 0.0),
                                    Decimal(str(trade.get("entry_edge_bps") or trade["legs"][0].get("entry_edge_bps") or "0"))))
        return tuple(trades)

    async def run(self) -> None:
        try:
            report = await self.engine.start()
            log.info("Start-up reconciliation: %d change(s); state %s", len(report["changed"]), self.engine.state)
            async with asyncio.TaskGroup() as tg:
                engine_task = tg.create_task(self.engine.run(), name="engine-periodic")
                scan_task = tg.create_task(self.scanner.run(self.engine.on_decisions, self.open_trades),
                                           name="scanner")
                if self.paper_funding is not None:
                    tg.create_task(self.paper_funding.run(self._stop), name="paper-funding")
                await self._stop.wait()
                # Graceful stop (SIGTERM from `docker stop`, SIGINT): no new decision; the execution
                # in flight finishes both legs and their repair, bounded by shutdown_grace_s (below
                # Docker's stop timeout). Only then is the scanner cancelled: it is idle, or waiting
                # for the trade lock, and never holds a journal transaction or half a pair of sends.
                grace = float(self.engine.settings.execution.shutdown_grace_s)
                drained = await self.engine.drain(grace)
                self.engine.stop()
                scan_task.cancel()
                await asyncio.gather(scan_task, return_exceptions=True)
                await engine_task
                log.info("Trading stopped %s", "with nothing in flight" if drained
                         else "past its grace: start-up recovery will finish the execution in flight")
        finally:
            await self.close()

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        if self.redis_state is not None:
            with contextlib.suppress(Exception):
                await self.redis_state.close()
        with contextlib.suppress(Exception):
            await self.journal.close()


def _market_list(client: Any) -> tuple[list[Any], Any] | None:
    """A ccxt client's loaded market list as set_markets takes it: the markets as the venue's parser
    produced them (markets_by_id, before ccxt's defaults) and, where the venue lists currencies, those."""
    exchange = getattr(client, "exchange", None)
    if exchange is None or not exchange.markets or not exchange.markets_by_id:
        return None
    raw = [market for markets in exchange.markets_by_id.values()
           for market in (markets if isinstance(markets, list) else [markets])]
    currencies = exchange.currencies if exchange.has.get("fetchCurrencies") is True else None
    return raw, currencies


async def _cache_market_list(journal: Journal, venue: str, client: Any) -> None:
    market_list = _market_list(client)
    if market_list is None:
        return
    try:
        await journal.save_venue_markets(venue, *market_list)
    except Exception as exc:  # the cache is an optimisation: trading goes on without it
        log.warning("Market list of %s not cached: %s", venue, exc)


def _restore_market_list(client: Any, market_list: tuple[Any, Any] | None, instruments: dict[str, Instrument]) -> bool:
    """Give a fresh ccxt client the cached market list, so its first call needs no market load; only
    when the list holds every instrument's market. False (client untouched) otherwise."""
    exchange = getattr(client, "exchange", None)
    if exchange is None or market_list is None:
        return False
    markets, currencies = market_list
    symbols = {market.get("symbol") for market in markets if isinstance(market, dict)}
    if not instruments or any(i.ccxt_symbol not in symbols for i in instruments.values()):
        return False
    try:
        exchange.set_markets(markets, currencies or None)
    except Exception as exc:  # an unusable cached list: the client loads its markets as before
        log.warning("Cached market list of %s not usable (%s): loading it from the venue", client.venue, exc)
        exchange.markets = None
        return False
    return True


async def _venue_instruments(settings: Settings, store: BookStore, venue: str, symbols: list[str],
                             cache: dict[tuple[str, str], Instrument], markets: dict[str, Any],
                             journal: Journal) -> tuple[Any, dict[str, Instrument], list[str]]:
    """One venue's client and instruments: the journal's cached ones (no venue call; with the cached
    market list, the client needs no market load either), the rest loaded from the venue as before,
    with retries, and cached. Returns (client or None when the venue is left out, instruments by
    symbol, the symbols taken from the cache)."""
    cached = {symbol: cache[(venue, symbol)] for symbol in symbols if (venue, symbol) in cache}
    loader = CcxtClient(venue, venue_credentials(settings, venue), settings.rest_url(venue), instruments=cached,
                        timeout_s=settings.execution.order_timeout_s)
    loaded = dict(cached)
    missing = [symbol for symbol in symbols if symbol not in cached]
    if missing:
        fresh = await _load_instruments(loader, missing)
        if fresh:
            try:
                await journal.save_instruments(fresh.values())
            except Exception as exc:  # the cache is an optimisation: trading goes on without it
                log.warning("Instruments of %s not cached: %s", venue, exc)
            await _cache_market_list(journal, venue, loader)
        elif cached:
            log.error("Instruments of %s not loaded: %s; trading its cached ones only", venue, ", ".join(missing))
        loaded.update(fresh)
    elif settings.mode != "paper":
        _restore_market_list(loader, markets.get(venue), cached)
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


def _differences(old: Instrument, new: Instrument) -> list[str]:
    """'field old -> new' for every field that differs (Decimals compared by value)."""
    return [f"{name} {getattr(old, name)} -> {getattr(new, name)}" for name in Instrument.__dataclass_fields__
            if getattr(old, name) != getattr(new, name)]


async def _reload(client: CcxtClient, symbols: list[str]) -> dict[str, Instrument]:
    """The venue's instrument list loaded again, retried as at start; a client that runs on a cached
    market list reloads it from the venue first (it is then the client's own, fresh list)."""
    if not client.exchange.markets:
        return await _load_instruments(client, symbols)
    delay = 0.5
    for attempt in range(1, INSTRUMENT_ATTEMPTS + 1):
        try:
            await client.exchange.load_markets(True)
            return await client.load_instruments(symbols)
        except Exception as exc:  # venue unreachable: the cached list stays in use meanwhile
            log.warning("Instruments of %s not refreshed (attempt %d/%d): %s", client.venue, attempt,
                        INSTRUMENT_ATTEMPTS, f"{exc.__class__.__name__}: {exc}"[:300])
            if attempt < INSTRUMENT_ATTEMPTS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
    return {}


async def _refresh_instruments(settings: Settings, engine: Engine, store: BookStore, journal: Journal,
                               venues: dict[str, list[str]], paper_clients: dict[str, Any]) -> dict[str, list[str]]:
    """Background refresh of the instruments (and market lists) taken from the journal's cache: each
    venue's list is loaded again (live/sim: by the trading client itself), the cache is updated, and
    an instrument that differs replaces the cached one in the shared instruments dict, in place,
    under the trade lock (no trade sees two versions of it). A changed contract size means the
    feeds' books use the cached one: that venue is left out of trading, as `_books_agree` does at
    start. Returns per venue what changed ('symbol: field old -> new')."""

    async def load(venue: str, symbols: list[str]) -> tuple[dict[str, Instrument], Any]:
        client = engine.clients.get(venue)
        if isinstance(client, CcxtClient):
            return await _reload(client, symbols), client
        loader = CcxtClient(venue, venue_credentials(settings, venue), settings.rest_url(venue),
                            timeout_s=settings.execution.order_timeout_s)
        try:
            return await _load_instruments(loader, symbols), loader
        finally:
            with contextlib.suppress(Exception):
                await loader.close()

    # Not before start-up recovery is done: the refresh's market loads would queue the recovery's
    # venue calls behind them (ccxt's per-client rate limiter) and take the CPU they need.
    deadline = asyncio.get_running_loop().time() + REFRESH_AFTER_START_MAX_S
    while getattr(engine, "startup_funding", None) is None and asyncio.get_running_loop().time() < deadline:
        try:
            journal.db  # noqa: B018 - raises once the service is closed (a start that failed): nothing to refresh
        except JournalError:
            return {}
        await asyncio.sleep(0.05)
    names = list(venues)
    loaded = await asyncio.gather(*(load(venue, venues[venue]) for venue in names), return_exceptions=True)
    report: dict[str, list[str]] = {}
    instruments = engine.instruments
    for venue, outcome in zip(names, loaded):
        fresh, source = outcome if not isinstance(outcome, BaseException) else ({}, None)
        if not fresh:
            log.warning("Instruments of %s not refreshed from the venue: trading on the journal's cached ones", venue)
            continue
        changes: list[str] = []
        retired = None
        async with engine._trade_lock:  # noqa: SLF001 - composition root: no trade between two versions
            if venue not in engine.clients:
                continue
            left_out = False
            for symbol, new in fresh.items():
                key = (venue, symbol)
                old = instruments.get(key)
                if old is None or old == new:
                    continue
                differences = _differences(old, new)
                changes += [f"{symbol}: {d}" for d in differences]
                log.warning("Instrument %s %s changed at the venue since it was cached: %s", venue, symbol,
                            "; ".join(differences))
                if old.contract_size != new.contract_size:
                    book = store.get(venue, symbol)
                    if book is None or _books_agree(store, {key: new}):
                        left_out = True
            if left_out:
                log.error("Venue %s left out of trading: a contract size changed and its books use the cached "
                          "one; restart to trade it again", venue)
                retired = engine.clients.pop(venue, None)
                paper_clients.pop(venue, None)
                engine.reconciled.pop(venue, None)
                engine.venue_connected.pop(venue, None)
                for key in [k for k in instruments if k[0] == venue]:
                    del instruments[key]
            else:
                target = engine.clients.get(venue)
                for symbol, new in fresh.items():
                    if (venue, symbol) in instruments and instruments[(venue, symbol)] != new:
                        instruments[(venue, symbol)] = new
                        if isinstance(target, PaperClient):
                            target.instruments[symbol] = new
        try:
            await journal.save_instruments(fresh.values())
        except Exception as exc:  # the journal may be closed already (a stop during the refresh)
            log.warning("Instruments of %s not cached: %s", venue, exc)
        if isinstance(source, CcxtClient):
            await _cache_market_list(journal, venue, source)
        if retired is not None:
            with contextlib.suppress(Exception):
                await retired.close()
        report[venue] = changes
    return report


async def build_engine(settings: Settings, *, metrics: Metrics, store: BookStore, funding: Any) -> TradingService:
    """Build the trading side for the configured mode over the feeds' books and funding.

    Nothing here waits on a venue when the journal's instrument cache holds every configured symbol:
    start-up recovery (the repair of a leg a crash left naked) comes first; the cached instruments
    are refreshed from the venues in the background (`_refresh_instruments`). Venues (or symbols)
    not in the cache are loaded from the venue as before, all venues at once."""
    Path(settings.journal.path).parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(settings.journal.path)
    try:
        await journal.open()
        try:
            cache = await journal.cached_instruments()
            markets = await journal.cached_venue_markets()
        except Exception as exc:  # an unreadable cache is a cache miss
            log.warning("Instrument cache not read (%s): loading instruments from the venues", exc)
            cache, markets = {}, {}
        enabled = settings.venues.enabled()
        built = await asyncio.gather(*(_venue_instruments(settings, store, venue, list(cfg.symbols), cache, markets,
                                                          journal) for venue, cfg in enabled))
    except BaseException:  # a cancel (stop while building) included: no journal thread left behind
        with contextlib.suppress(Exception):
            await journal.close()
        raise
    clients: dict[str, Any] = {}
    instruments: dict[tuple[str, str], Instrument] = {}
    from_cache: dict[str, list[str]] = {}
    for (venue, _), (client, loaded, cached) in zip(enabled, built):
        if client is None:
            continue
        clients[venue] = client
        for symbol, instrument in loaded.items():
            instruments[(venue, symbol)] = instrument
        if cached:
            from_cache[venue] = cached
    for venue in _books_agree(store, instruments):
        client = clients.pop(venue, None)
        if client is not None:
            await client.close()
        from_cache.pop(venue, None)
        instruments = {k: v for k, v in instruments.items() if k[0] != venue}

    redis_state = RedisState.from_settings(settings.redis)
    funding_map = funding.latest if hasattr(funding, "latest") else funding
    engine = Engine(settings, clients, RiskGate(settings.risk, settings.execution, metrics), store, instruments,
                    funding_map, journal, Portfolio(), metrics, redis_state)
    scanner = Scanner(store, build_strategies(settings.strategies), metrics, instruments, funding_map)
    paper = {venue: client for venue, client in clients.items() if isinstance(client, PaperClient)}
    paper_funding = PaperFunding(paper, funding_map if funding_map is not None else {}) if paper else None
    log.info("Trading wired: mode=%s venues=%s instruments=%d (cached: %s)", settings.mode, sorted(clients),
             len(instruments), ", ".join(f"{v} {len(s)}" for v, s in sorted(from_cache.items())) or "none")
    service = TradingService(engine, scanner, clients, journal, redis_state, paper_funding)
    # Started now; it waits for start-up recovery, then refreshes. Kept on the service (a bare task may be collected).
    service.instrument_refresh = asyncio.create_task(  # type: ignore[attr-defined]
        _refresh_instruments(settings, engine, store, journal, from_cache, paper), name="instrument-refresh",
    ) if from_cache else None
    return service
