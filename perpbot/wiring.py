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
from perpbot.journal.sqlite import Journal
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


async def build_engine(settings: Settings, *, metrics: Metrics, store: BookStore, funding: Any) -> TradingService:
    """Build the trading side for the configured mode over the feeds' books and funding."""
    clients: dict[str, Any] = {}
    instruments: dict[tuple[str, str], Instrument] = {}
    for venue, cfg in settings.venues.enabled():
        loader = CcxtClient(venue, venue_credentials(settings, venue), settings.rest_url(venue), timeout_s=settings.execution.order_timeout_s)
        loaded = await _load_instruments(loader, list(cfg.symbols))
        if not loaded:
            log.error("Venue %s left out of trading: its instruments could not be loaded", venue)
            await loader.close()
            continue
        if settings.mode == "paper":
            await loader.close()
            clients[venue] = PaperClient(venue, store, loaded, latency_ms=settings.execution.paper_latency_ms,
                                         leverage=settings.risk.max_leverage)
        else:
            clients[venue] = loader
        for symbol, instrument in loaded.items():
            instruments[(venue, symbol)] = instrument
    for venue in _books_agree(store, instruments):
        client = clients.pop(venue, None)
        if client is not None:
            await client.close()
        instruments = {k: v for k, v in instruments.items() if k[0] != venue}

    Path(settings.journal.path).parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(settings.journal.path)
    await journal.open()
    redis_state = RedisState.from_settings(settings.redis)
    funding_map = funding.latest if hasattr(funding, "latest") else funding
    engine = Engine(settings, clients, RiskGate(settings.risk, settings.execution, metrics), store, instruments,
                    funding_map, journal, Portfolio(), metrics, redis_state)
    scanner = Scanner(store, build_strategies(settings.strategies), metrics, instruments, funding_map)
    paper = {venue: client for venue, client in clients.items() if isinstance(client, PaperClient)}
    paper_funding = PaperFunding(paper, funding_map if funding_map is not None else {}) if paper else None
    log.info("Trading wired: mode=%s venues=%s instruments=%d", settings.mode, sorted(clients), len(instruments))
    return TradingService(engine, scanner, clients, journal, redis_state, paper_funding)
