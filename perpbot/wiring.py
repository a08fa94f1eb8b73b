"""Trading wiring: venue clients, instruments, journal, portfolio, risk gate, scanner and engine as one service.

The composition root (perpbot.app) calls `build_engine`; the result implements
perpbot.core.ports.EngineCommands (delegated to the Engine) and runs recovery first, then
the scanner and the engine's periodic reconciliation in one TaskGroup. Modes differ only in
which ExchangeClient is built: `live` and `sim` use the ccxt client (the simulator is just
another URL), `paper` the paper client over the live books. The venues' clients and instruments
(from the journal's cache, refreshed in the background) come from perpbot.venue_instruments.
"""

from __future__ import annotations

import asyncio
import functools
import contextlib
import logging
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from perpbot.book.store import BookStore
from perpbot.core.decisions import Leg
from perpbot.core.instruments import Instrument
from perpbot.core.quote_rate import USDC
from perpbot.core.transfers import TransferLink
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.engine import Engine
from perpbot.execution.margin_guard import MarginGuard
from perpbot.execution.preflight import Preflight
from perpbot.execution.transfers import InternalTransfers
from perpbot.execution.paper import PaperClient, PaperFunding
from perpbot.execution.rate_budget import RateBudget
from perpbot.execution.rate_limits import venue_limits
from perpbot.execution.order_routing import RoutedClient
from perpbot.feeds.order_socket import OrderSocket, OrderSockets
from perpbot.feeds.private_stream import PrivateStream, PrivateStreams
from perpbot.journal.redis_state import RedisState
from perpbot.journal.audit import last_bot_changes, record_bot_change
from perpbot.journal.sqlite import Journal
from perpbot.portfolio.book import Portfolio
from perpbot.risk.gate import RiskGate
from perpbot.scanner.protocol import OpenTrade
from perpbot.scanner.scanner import Scanner
from perpbot.settings import Settings
from perpbot.telemetry.metrics import Metrics
from perpbot.venues.registry import order_link, private_link, transfer_link
from perpbot.venue_instruments import SIM_CREDENTIALS, load_trading_venues, refresh_instruments, venue_credentials
from strategies import build_strategies

log = logging.getLogger("perpbot.wiring")

__all__ = ["SIM_CREDENTIALS", "TradingService", "build_engine", "venue_credentials"]


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
        # The venues' request budget (set by build_engine): every order path charges it (perpbot.execution.rate_budget).
        self.rate_budget: RateBudget | None = None
        self._trades: tuple[OpenTrade, ...] = ()
        self._trades_version: tuple[int, int] | None = None
        self.instrument_refresh: asyncio.Task[dict[str, list[str]]] | None = None  # set by build_engine
        self.private_streams: PrivateStreams | None = None  # set by build_engine (venue clients only)
        self.order_sockets: OrderSockets | None = None  # set by build_engine (execution.order_entry "ws")
        # Reduces both legs of a trade whose leg nears liquidation (issue 16).
        self.margin_guard = MarginGuard(engine.desk, engine.states, engine.on_decisions, engine.commands)
        self.preflight: Preflight | None = None  # set by build_engine (venue clients only)
        self.transfers: InternalTransfers | None = None  # set by build_engine when risk.internal_transfers is on

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
                streams_task = (tg.create_task(self.private_streams.run(), name="private-streams")
                                if self.private_streams is not None else None)
                sockets_task = (tg.create_task(self.order_sockets.run(), name="order-sockets")
                                if self.order_sockets is not None else None)
                scan_task = tg.create_task(self.scanner.run(self.engine.on_decisions, self.open_trades),
                                           name="scanner")
                if self.paper_funding is not None:
                    tg.create_task(self.paper_funding.run(self._stop), name="paper-funding")
                tg.create_task(self.margin_guard.run(), name="margin-watch")  # ends with engine.stop()
                if self.preflight is not None:
                    tg.create_task(self.preflight.run(), name="account-preflight")  # ends with engine.stop()
                if self.transfers is not None:
                    # Each venue's interval counts from its last transfer in the audit trail (a restart included).
                    self.transfers.restore(await last_bot_changes(self.journal, "internal_transfer"))
                    tg.create_task(self.transfers.run(), name="internal-transfers")  # ends with engine.stop()
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
                if self.private_streams is not None and streams_task is not None:
                    await self.private_streams.stop()  # after the drain: the last fills came in on them
                    await streams_task
                if self.order_sockets is not None and sockets_task is not None:
                    await self.order_sockets.stop()
                    await sockets_task
                await self.engine.close()
                log.info("Trading stopped %s", "with nothing in flight" if drained
                         else "past its grace: start-up recovery will finish the execution in flight")
        finally:
            await self.close()

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        if self.private_streams is not None:
            with contextlib.suppress(Exception):
                await self.private_streams.stop()
        if self.order_sockets is not None:
            with contextlib.suppress(Exception):
                await self.order_sockets.stop()
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        if self.redis_state is not None:
            with contextlib.suppress(Exception):
                await self.redis_state.close()
        with contextlib.suppress(Exception):
            await self.journal.close()


async def build_engine(settings: Settings, *, metrics: Metrics, store: BookStore, funding: Any) -> TradingService:
    """Build the trading side for the configured mode over the feeds' books and funding.

    Nothing here waits on a venue when the journal's instrument cache holds every configured symbol:
    start-up recovery (the repair of a leg a crash left naked) comes first; the cached instruments
    are refreshed from the venues in the background (`refresh_instruments`). Venues (or symbols)
    not in the cache are loaded from the venue as before, all venues at once."""
    Path(settings.journal.path).parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(settings.journal.path)
    try:
        await journal.open()
        venues = await load_trading_venues(settings, store, journal)
    except BaseException:  # a cancel (stop while building) included: no journal thread left behind
        with contextlib.suppress(Exception):
            await journal.close()
        raise
    clients, instruments, from_cache = venues.clients, venues.instruments, venues.from_cache
    redis_state = RedisState.from_settings(settings.redis)
    funding_map = funding.latest if hasattr(funding, "latest") else funding
    rate_budget = _rate_budget(settings, clients, metrics)
    engine = Engine(settings, clients, RiskGate(settings.risk, settings.execution, metrics, rate_budget), store,
                    instruments,
                    funding_map, journal, _portfolio(settings, instruments), metrics, redis_state)
    scanner = Scanner(store, build_strategies(settings.strategies, settings.risk.usdc_usdt_rate), metrics,
                      instruments, funding_map)
    paper = {venue: client for venue, client in clients.items() if isinstance(client, PaperClient)}
    paper_funding = PaperFunding(paper, funding_map if funding_map is not None else {}) if paper else None
    log.info("Trading wired: mode=%s venues=%s instruments=%d (cached: %s)", settings.mode, sorted(clients),
             len(instruments), ", ".join(f"{v} {len(s)}" for v, s in sorted(from_cache.items())) or "none")
    service = TradingService(engine, scanner, clients, journal, redis_state, paper_funding)
    service.rate_budget = rate_budget
    rest_clients = {venue: client for venue, client in clients.items() if isinstance(client, CcxtClient)}
    service.private_streams = _private_streams(settings, engine, clients, metrics)
    if rest_clients:
        # Each venue blocked until its account preflight passed; again after every private-stream reconnect.
        # Its fixes go into the control audit trail beside the operators' requests (GET /api/audit).
        preflight = service.preflight = Preflight(engine.desk, rest_clients,
                                                  audit=functools.partial(record_bot_change, journal))
        if service.private_streams is not None:
            for stream in service.private_streams.streams.values():
                stream.on_live = _chain_live(stream.on_live, preflight.on_live)
        if settings.risk.internal_transfers:
            service.transfers = InternalTransfers(engine.desk, rest_clients, _transfer_links(settings, rest_clients),
                                                  audit=functools.partial(record_bot_change, journal))
    service.order_sockets = _order_sockets(settings, engine, clients, metrics)
    if service.order_sockets is not None and rate_budget is not None:
        for socket in service.order_sockets.sockets.values():  # WebSocket orders count in the same budget
            socket.charge = rate_budget.charge
            socket.observe = rate_budget.observe_order
    # Started now; it waits for start-up recovery, then refreshes. Kept on the service (a bare task may be collected).
    service.instrument_refresh = asyncio.create_task(
        refresh_instruments(settings, engine, store, journal, from_cache, paper), name="instrument-refresh",
    ) if from_cache else None
    return service


def _transfer_links(settings: Settings, clients: dict[str, Any]) -> dict[str, TransferLink]:
    """Each venue's internal transfer (risk.internal_transfers on); a venue whose credentials cannot sign one
    (Hyperliquid without its key) takes none, with the reason logged."""
    links = {}
    for venue in clients:
        try:
            link = transfer_link(venue, venue_credentials(settings, venue))
        except ValueError as exc:
            log.error("internal transfers of %s off: %s", venue, exc)
            continue
        if link is not None:
            links[venue] = link
    log.warning("internal transfers on for %s (funding/spot wallet -> trading wallet, at most %s USDT a time)",
                ", ".join(sorted(links)) or "no venue", settings.risk.internal_transfer_max_usdt)
    return links


def _private_streams(settings: Settings, engine: Engine, clients: dict[str, Any],
                     metrics: Metrics) -> PrivateStreams | None:
    """Every venue client's private stream, feeding the engine's confirmations (None when off or
    in paper mode). Each venue starts not live: entries there wait until its stream is up."""
    confirmations = engine.desk.confirmations
    if confirmations is None or not settings.execution.private_streams:
        return None
    streams = []
    for venue, client in clients.items():
        if not isinstance(client, CcxtClient):
            continue
        cfg = venue_credentials(settings, venue)
        symbols = list(cfg.symbols)
        sizes = {symbol: inst.contract_size for (v, symbol), inst in engine.instruments.items() if v == venue}
        try:
            link = private_link(venue, settings, cfg, symbols, sizes)
        except ValueError as exc:  # a missing credential: that venue trades without (entries refused)
            log.error("private stream of %s not started: %s", venue, exc)
            confirmations.set_live(venue, False)
            continue
        confirmations.set_live(venue, False)
        client.stream_confirms = _live_check(confirmations.is_live, venue)
        streams.append(PrivateStream(link, settings.feeds, confirmations.on_events, confirmations.set_live, metrics))
    if not streams:
        return None
    service_streams = PrivateStreams(streams)
    confirmations.on_stalled = service_streams.reconnect
    return service_streams


def _order_sockets(settings: Settings, engine: Engine, clients: dict[str, Any],
                   metrics: Metrics) -> OrderSockets | None:
    """With execution.order_entry "ws": each venue client with an order-entry link is routed through
    its order socket (REST while the socket is down). The engine shares `clients`: the routed client
    replaces the REST one in place, before anything trades."""
    if settings.execution.order_entry != "ws":
        return None
    sockets = []
    for venue, client in list(clients.items()):
        if not isinstance(client, CcxtClient):
            continue
        cfg = venue_credentials(settings, venue)
        instruments = {symbol: inst for (v, symbol), inst in engine.instruments.items() if v == venue}
        try:
            link = order_link(venue, settings, cfg, instruments, client.exchange.markets)  # Hyperliquid: asset ids
        except ValueError as exc:  # a missing credential: that venue's orders go over REST
            log.error("order socket of %s not started: %s", venue, exc)
            continue
        if link is None:
            continue
        socket = OrderSocket(link, settings.feeds, metrics)
        clients[venue] = RoutedClient(client, socket, metrics)
        sockets.append(socket)
    return OrderSockets(sockets) if sockets else None


def _chain_live(first: Any, then: Any) -> Any:
    def on_live(venue: str, live: bool) -> None:
        first(venue, live)
        then(venue, live)
    return on_live


def _live_check(is_live: Any, venue: str) -> Any:
    return lambda: is_live(venue)


def _portfolio(settings: Settings, instruments: Mapping[tuple[str, str], Instrument]) -> Portfolio:
    """The portfolio, summing a USDC venue's amounts (the venues with USDC-settled instruments) in USDT at
    risk.usdc_usdt_rate."""
    usdc = frozenset(inst.venue for inst in instruments.values() if inst.quote == USDC)
    return Portfolio(usdc_usdt=settings.risk.usdc_usdt_rate, usdc_venues=usdc)


def _rate_budget(settings: Settings, clients: dict[str, Any], metrics: Metrics) -> RateBudget | None:
    """One request budget for the venue clients (None when off or in paper mode): each ccxt client charges
    and informs it, the risk gate asks it before every order, /metrics shows it."""
    config = settings.execution.rate_budget
    venue_clients = {venue: c for venue, c in clients.items() if isinstance(c, CcxtClient)}
    if not config.enabled or not venue_clients:
        return None
    limits = venue_limits()
    budget = RateBudget({venue: limits[venue] for venue in venue_clients if venue in limits},
                        read_headroom_percent=config.read_headroom_percent,
                        default_retry_after_s=config.default_retry_after_s)
    for client in venue_clients.values():
        client.rate_budget = budget
        client.max_read_wait_s = config.max_read_wait_s
    metrics.watch_rate_budget(budget.snapshot)
    return budget
