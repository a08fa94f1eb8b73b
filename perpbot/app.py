"""Composition root: builds the one object graph (metrics, books, feeds, control API, simulator, engine) and runs it.

This is the only module that imports every package. Order of start: logging -> the
in-process simulator (when settings.sim.enabled, BEFORE the feeds so their first connect
succeeds) -> control API -> feed supervisor, health, loop-lag -> the trading side
(perpbot.wiring.build_engine). Everything runs in one asyncio TaskGroup; SIGINT/SIGTERM
set a stop event and everything is shut down in reverse order, returning exit code 0.

Everything it wires is imported here, at the top, in plain sight of the import contracts: a
module that does not import stops start-up (perpbot.cli exits EXIT_IMPORT with one line) instead
of a run without its trading side. A trading side that imports but fails to *build* (a venue
unreachable, a journal unreadable) leaves market data, health and the control API running so
operators can see why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from decimal import Decimal
from typing import Any

from perpbot.book.store import BookStore
from perpbot.control.server import ControlContext, ControlServer
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.feeds.supervisor import FeedSupervisor, FundingStore
from perpbot.journal.instrument_cache import read_cached_instruments
from perpbot.settings import ConfigError, Settings
from perpbot.sim.server import Simulator
from perpbot.telemetry.health import HealthMonitor
from perpbot.telemetry.logging import setup_logging, shutdown_logging
from perpbot.telemetry.looplag import LoopLagMonitor
from perpbot.telemetry.memory import trim_forever
from perpbot.telemetry.metrics import Metrics
from perpbot.venues.registry import feed_adapter
from perpbot.wiring import build_engine

log = logging.getLogger("perpbot.app")

HEALTH_INTERVAL_S = 5.0
PRIVATE_GAUGE_INTERVAL_S = 1.0  # the private streams' gauges, as often as the feed supervisor's
MEMORY_TRIM_INTERVAL_S = 60.0  # malloc's free pages back to the kernel (perpbot.telemetry.memory)
INSTRUMENT_TIMEOUT_S = 8.0
STOP_MARGIN_S = 2.0  # beyond execution.shutdown_grace_s: the periodic pass and client closes


def contract_sizes(adapter: Any, symbols: list[str]) -> dict[str, Decimal]:
    """Book unit -> base-asset size per symbol, when the adapter knows it (OKX contracts)."""
    lookup = getattr(adapter, "contract_size", None)
    if lookup is None:
        return {}
    return {symbol: Decimal(str(lookup(symbol))) for symbol in symbols}


async def venue_contract_sizes(settings: Settings, venue: str, symbols: list[str],
                               cache: dict[tuple[str, str], Any] | None = None) -> dict[str, Decimal]:
    """Contract sizes from the venue's instrument list (ccxt markets), so books hold base units.

    OKX swaps quote book sizes in contracts (BTC-USDT-SWAP: 0.01 BTC); the others in base
    units. When `cache` (the journal's instrument cache, see build_feeds) holds every symbol, its
    contract sizes are used and the venue is not asked: the trading side refreshes the cache in the
    background and leaves a venue out of trading if a contract size changed. On failure the books
    fall back to size 1 with a loud warning.
    """
    if cache and symbols and all((venue, symbol) in cache for symbol in symbols):
        log.info("Contract sizes of %s from the journal's instrument cache", venue)
        return {symbol: cache[(venue, symbol)].contract_size for symbol in symbols}
    client = CcxtClient(venue, getattr(settings.venues, venue), settings.rest_url(venue))
    try:
        instruments = await asyncio.wait_for(client.load_instruments(symbols), INSTRUMENT_TIMEOUT_S)
        return {symbol: inst.contract_size for symbol, inst in instruments.items()}
    except Exception as exc:  # venue down / unknown symbol: keep market data running
        log.warning("Instruments of %s not loaded (%s): book sizes assume contract size 1", venue,
                    f"{exc.__class__.__name__}: {exc}"[:300])
        return {}
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def build_feeds(settings: Settings, store: BookStore, metrics: Metrics, funding: FundingStore) -> FeedSupervisor:
    """Adapters from the venue registry for every enabled venue, wired into one supervisor."""
    supervisor = FeedSupervisor(store, metrics, settings.feeds, funding=funding)
    enabled = settings.venues.enabled()
    try:  # a plain read of the journal file: the books need no venue call when the cache has them
        cache = read_cached_instruments(settings.journal.path)
    except Exception as exc:  # no cache: each venue's list is loaded as before
        log.info("Instrument cache not read (%s)", exc)
        cache = {}
    sizes = await asyncio.gather(*(venue_contract_sizes(settings, v, list(cfg.symbols), cache)
                                   for v, cfg in enabled))
    for (venue, cfg), loaded in zip(enabled, sizes):
        adapter = feed_adapter(venue, settings.feeds)
        supervisor.add_venue(
            adapter, settings.ws_url(venue), settings.rest_url(venue), list(cfg.symbols),
            contract_sizes(adapter, list(cfg.symbols)) or loaded,
        )
        log.info("Feed configured: venue=%s ws=%s rest=%s symbols=%s", venue, settings.ws_url(venue),
                 settings.rest_url(venue), ",".join(cfg.symbols))
    return supervisor


class App:
    """The running service. `run()` returns once a stop was requested and everything closed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store = BookStore(settings.feeds.stale_after_s)
        self.funding = FundingStore()
        self.stop_requested = asyncio.Event()
        self.started = asyncio.Event()
        self.supervisor: FeedSupervisor | None = None
        self.engine: Any = None
        self.control: ControlServer | None = None
        self.simulator: Any = None

    def request_stop(self) -> None:
        self.stop_requested.set()

    async def _run_engine(self, ctx: ControlContext) -> None:
        """Build the trading side (it loads instruments and reconciles over the network) while
        feeds and the control API already run; engine routes answer 503 until it is wired."""
        try:
            self.engine = await build_engine(self.settings, metrics=self.metrics, store=self.store,
                                             funding=self.funding)
        except Exception:
            # Market data, health and the control API stay up so operators can see why.
            log.exception("Trading engine failed to build: running market-data-only")
        if self.engine is None:
            log.info("Running market-data-only: mode=%s, no trading engine", self.settings.mode)
            return
        ctx.engine = self.engine
        ctx.private_streams = getattr(self.engine, "private_streams", None)  # GET /api/websocket/status
        ctx.order_sockets = getattr(self.engine, "order_sockets", None)
        log.info("Trading engine wired: mode=%s", self.settings.mode)
        await self.engine.run()

    async def _private_stream_gauges(self) -> None:
        """Refresh the private streams' gauges (connected, last message age) for Prometheus without
        anyone calling the API: the age is set when a stream's status is read, and `connected` of a
        stream that never came up would otherwise have no series for the alert to see at 0. The
        confirm-timeout counter is created at 0 per venue, so its first increase shows in rate()."""
        metrics = self.metrics
        while True:
            streams = getattr(self.engine, "private_streams", None)
            if streams is not None:
                try:
                    for venue, item in streams.status().items():
                        metrics.private_stream_connected.labels(venue).set(1 if item["live"] else 0)
                        metrics.private_confirm_timeouts_total.labels(venue)
                except Exception:  # a gauge refresh must never take the service down
                    log.exception("Private stream gauges not refreshed")
            await asyncio.sleep(PRIVATE_GAUGE_INTERVAL_S)

    async def run(self) -> int:
        settings = self.settings
        ControlServer.check_bind(settings)  # refuse a public bind without a token before anything starts
        async with contextlib.AsyncExitStack() as stack:
            if settings.sim.enabled:
                self.simulator = await stack.enter_async_context(Simulator(settings))
                log.info("Simulator started in-process on loopback ports %s", settings.sim.ports)
            self.supervisor = await build_feeds(settings, self.store, self.metrics, self.funding)
            loop_lag = LoopLagMonitor(self.metrics)
            health = HealthMonitor(
                self.metrics, supervisor=self.supervisor, store=self.store, loop_lag=loop_lag,
                redis_url=settings.redis.url,
            )
            stack.push_async_callback(health.close)
            ctx = ControlContext(settings=settings, metrics=self.metrics, store=self.store,
                                 supervisor=self.supervisor, engine=self.engine, health=health)
            self.control = ControlServer(ctx)
            await self.control.start()
            stack.push_async_callback(self.control.stop)
            async with asyncio.TaskGroup() as tg:
                feeds = tg.create_task(self.supervisor.run(), name="feeds")
                background = [
                    tg.create_task(loop_lag.run(), name="loop-lag"),
                    tg.create_task(health.run(HEALTH_INTERVAL_S), name="health"),
                    tg.create_task(trim_forever(MEMORY_TRIM_INTERVAL_S), name="memory-trim"),
                    tg.create_task(self._private_stream_gauges(), name="private-gauges"),
                ]
                engine_task = tg.create_task(self._run_engine(ctx), name="engine")
                self.started.set()
                log.info("perpbot running: mode=%s venues=%s control=http://%s:%s", settings.mode,
                         [v for v, _ in settings.venues.enabled()], settings.http.host, self.control.port)
                await self.stop_requested.wait()
                log.info("Shutting down")
                if self.engine is not None:
                    self.engine.stop()  # graceful: the trade in flight finishes (execution.shutdown_grace_s)
                else:
                    engine_task.cancel()  # still building (e.g. venues unreachable): abandon it
                bound = float(settings.execution.shutdown_grace_s) + STOP_MARGIN_S
                done, _ = await asyncio.wait([engine_task], timeout=bound)
                if not done:
                    # Past the grace: stop at the next await. Journal transactions and the two legs'
                    # sends are protected from this cancel (perpbot.core.shielding).
                    log.critical("trading side still running %.1fs after the stop request: cancelling it", bound)
                    engine_task.cancel()
                    await asyncio.wait([engine_task])
                await self.supervisor.stop()
                await feeds
                for task in background:
                    task.cancel()
        log.info("perpbot stopped cleanly")
        return 0


async def run(settings: Settings) -> int:
    """Run perpbot until SIGINT/SIGTERM; returns the process exit code."""
    setup_logging(settings)
    app = App(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.request_stop)
    try:
        return await app.run()
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        shutdown_logging()
