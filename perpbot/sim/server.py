"""The built-in venue simulator: one loopback aiohttp app per venue (public WS + REST), admin API, ticks, scenarios.

`async with Simulator(settings) as sim:` binds every venue on settings.sim.host and
settings.sim.ports (port 0 = ephemeral; the bound ports are then in `sim.ports`), starts a
tick task that advances the market every sim.tick_interval_s and pushes frames to
subscribers, and the admin API on sim.admin_port. Tests may pass `autotick=False` and
drive the market with `await sim.advance(n)` for exactly reproducible streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import yaml
from aiohttp import web

from perpbot.settings import Settings
from perpbot.sim.faults import Fault, FaultBoard
from perpbot.sim.market import DEFAULT_SYMBOLS, Market
from perpbot.sim.ws_binance import BinanceFeed
from perpbot.sim.ws_bybit import BybitFeed
from perpbot.sim.ws_common import SimStats, VenueFeed
from perpbot.sim.ws_hyperliquid import HyperliquidFeed
from perpbot.sim.timings import TimingRecorder
from perpbot.sim.ws_okx import OkxFeed

log = logging.getLogger("perpbot.sim")

FEEDS: dict[str, type[VenueFeed]] = {
    "okx": OkxFeed, "binance": BinanceFeed, "bybit": BybitFeed, "hyperliquid": HyperliquidFeed,
}


def load_scenario(path: str) -> list[tuple[float, Fault]]:
    """Read a YAML list of {at_s, kind, venue, symbol?, count?, duration_s?, params?} -> (at_s, Fault)."""
    with open(path, encoding="utf-8") as handle:
        entries = yaml.safe_load(handle) or []
    if not isinstance(entries, list):
        raise ValueError(f"scenario {path} must be a list of fault entries")
    scheduled = []
    for entry in entries:
        entry = dict(entry)
        at_s = float(entry.pop("at_s", 0.0))
        scheduled.append((at_s, _fault_from(entry)))
    scheduled.sort(key=lambda item: item[0])
    return scheduled


def _fault_from(body: dict[str, Any]) -> Fault:
    allowed = {"kind", "venue", "symbol", "count", "duration_s", "params"}
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    if "kind" not in body or "venue" not in body:
        raise ValueError("a fault needs 'kind' and 'venue'")
    return Fault(
        kind=str(body["kind"]), venue=str(body["venue"]), symbol=body.get("symbol"),
        count=int(body.get("count", 1)),
        duration_s=float(body["duration_s"]) if body.get("duration_s") is not None else None,
        params=dict(body.get("params") or {}),
    )


class Simulator:
    """Loopback venues speaking each venue's public protocol, plus the trading side when present."""

    def __init__(
        self, settings: Settings, clock: Callable[[], float] | None = None, *, autotick: bool = True
    ) -> None:
        self.settings = settings
        self.sim = settings.sim
        self.clock = clock or time.time
        self.autotick = autotick
        symbols = {}
        for venue, cfg in settings.venues.items():
            if venue in self.sim.ports:
                symbols[venue] = list(cfg.symbols) or list(DEFAULT_SYMBOLS[venue])
        self.market = Market(self.sim.seed, symbols, self.sim, clock=self.clock)
        self.faults = FaultBoard()
        self.stats = SimStats()
        self.feeds: dict[str, VenueFeed] = {
            venue: FEEDS[venue](self.market, self.faults, self.clock, self.sim, self.stats) for venue in symbols
        }
        self.ports: dict[str, int] = {}
        self.admin_port: int | None = None
        self.exchanges: dict[str, Any] = {}  # trading side objects per venue, when installed
        self.private: dict[str, Any] = {}  # private-stream objects per venue (perpbot.sim.private)
        self.match_on_tick = False  # POST /admin/private {"match_on_tick": true} turns it on
        # Benchmarks (sim.record_timings): jump frames and order arrivals stamped (perpbot.sim.timings).
        self.timings: TimingRecorder | None = TimingRecorder() if self.sim.record_timings else None
        if self.timings is not None:
            self.stats.frame_hook = self.timings.on_frame
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task] = []
        self._started_at = 0.0

    async def __aenter__(self) -> "Simulator":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        try:
            for venue, feed in self.feeds.items():
                app = web.Application()
                # Trading first: Binance's /ws/<listenKey> must match before the public /ws/{streams}.
                self._install_trading(app, venue, feed)
                feed.routes(app)
                self.ports[venue] = await self._serve(app, self.sim.ports[venue])
            admin = web.Application()
            self._admin_routes(admin)
            self.admin_port = await self._serve(admin, self.sim.admin_port)
        except BaseException:
            await self.stop()
            raise
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        for venue, feed in self.feeds.items():
            self._spawn(feed.watchdog(), f"sim-{venue}-watchdog")
        if self.autotick:
            self._spawn(self._tick_loop(), "sim-ticks")
        if self.sim.scenario:
            self._spawn(self._run_scenario(load_scenario(self.sim.scenario)), "sim-scenario")
        log.info("simulator listening: %s, admin %s", self.ports, self.admin_port)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        for feed in self.feeds.values():
            for session in list(feed.sessions):
                session.close()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    @staticmethod
    def _task_done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task %s failed", task.get_name(), exc_info=task.exception())

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.sim.host, port)
        await site.start()
        server: Any = site._server  # aiohttp exposes the bound sockets only here
        return int(server.sockets[0].getsockname()[1]) if server is not None else port

    def _install_trading(self, app: web.Application, venue: str, feed: VenueFeed) -> None:
        try:
            from perpbot.sim.private import PRIVATE_KEY
            from perpbot.sim.trading import add_trading_routes

            self.exchanges[venue] = add_trading_routes(app, venue, self.market, self.faults, self.clock,
                                                       stats=self.stats, feed=feed)
            if self.timings is not None:
                self.exchanges[venue].arrival_hook = self.timings.on_arrival
            if PRIVATE_KEY in app:
                self.private[venue] = app[PRIVATE_KEY]
        except ImportError as exc:
            log.warning("simulator %s: trading side not available (%s); serving market data only", venue, exc)

    # -- ticks -----------------------------------------------------------------------
    def tick(self) -> None:
        """Advance the market one tick and push every venue's frames."""
        for venue in self.feeds:
            fault = self.faults.take(venue, "price_jump")
            if fault is not None:
                target = None if fault.venue == "*" else venue
                self.market.apply_jump(target, fault.symbol, float(fault.params.get("bps", 50)))
            fault = self.faults.take(venue, "mark_shock")
            if fault is not None:
                self.market.apply_shock(venue, fault.symbol, float(fault.params.get("bps", -500)))
        self.market.step()
        if self.timings is not None:
            self.timings.on_tick()  # a jump asked for before this tick is in the frames it pushes now
        for feed in self.feeds.values():
            feed.on_tick()
        for exchange in self.exchanges.values():
            # Liquidations, ADL and margin calls follow the mark at once, whatever match_on_tick says.
            exchange.check_margin()
        if self.match_on_tick:
            # Opt-in: resting orders fill and funding settles as the market moves, pushed on the private
            # streams at once. Off by default: the engine stays lazy (it matches resting orders and settles
            # funding when a REST query looks), the behaviour the reliability suite is calibrated on.
            for exchange in self.exchanges.values():
                exchange.match_resting()
                exchange.settle_funding()

    async def advance(self, ticks: int = 1) -> None:
        """Manual ticking (autotick=False): n ticks, then let the writers flush."""
        for _ in range(ticks):
            self.tick()
            await asyncio.sleep(0)

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.sim.tick_interval_s
        next_at = loop.time()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.tick()
            if loop.time() - next_at > 10 * interval:
                next_at = loop.time()  # far behind (suspended host): skip, do not burst

    async def _run_scenario(self, scheduled: list) -> None:
        loop = asyncio.get_running_loop()
        for at_s, fault in scheduled:
            await asyncio.sleep(max(0.0, self._started_at + at_s - loop.time()))
            self.faults.add(fault)
            log.info("simulator scenario: %s on %s at %.1fs", fault.kind, fault.venue, at_s)

    # -- admin API -------------------------------------------------------------------
    def _admin_routes(self, app: web.Application) -> None:
        app.router.add_get("/admin/faults", self._get_faults)
        app.router.add_post("/admin/faults", self._post_fault)
        app.router.add_delete("/admin/faults", self._delete_faults)
        app.router.add_get("/admin/stats", self._get_stats)
        app.router.add_post("/admin/jump", self._post_jump)
        app.router.add_get("/admin/timings", self._get_timings)
        app.router.add_get("/admin/accounts", self._get_accounts)
        app.router.add_post("/admin/private", self._post_private)
        app.router.add_post("/admin/funding", self._post_funding)

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"pending": self.faults.pending()})

    async def _post_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            fault = self.faults.add(_fault_from(body))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(
            {"added": {"kind": fault.kind, "venue": fault.venue, "symbol": fault.symbol, "count": fault.count,
                       "duration_s": fault.duration_s, "params": fault.params}},
            status=201,
        )

    async def _delete_faults(self, request: web.Request) -> web.Response:
        cleared = len(self.faults.pending())
        self.faults.clear()
        return web.json_response({"cleared": cleared})

    async def _get_stats(self, request: web.Request) -> web.Response:
        body = self.stats.as_dict(self.faults)
        body["tick"] = self.market.tick
        body["ports"] = self.ports
        body["clients"] = {venue: len(feed.sessions) for venue, feed in self.feeds.items()}
        body["private_clients"] = {venue: len(stream.connected()) for venue, stream in self.private.items()}
        return web.json_response(body)

    async def _post_private(self, request: web.Request) -> web.Response:
        """Private-stream settings: {"venue": "binance", "listen_key_ttl_s": 2.0} shortens listen-key expiry;
        {"match_on_tick": true} makes resting orders fill (and funding settle) on every market tick."""
        try:
            body = await request.json()
            if "match_on_tick" in body:
                self.match_on_tick = bool(body["match_on_tick"])
            if "listen_key_ttl_s" in body:
                stream = self.private[str(body.get("venue", "binance"))]
                ttl = float(body["listen_key_ttl_s"])
                if ttl <= 0 or not hasattr(stream, "listen_key_ttl_s"):
                    raise ValueError("listen_key_ttl_s must be > 0 and applies to binance only")
                stream.listen_key_ttl_s = ttl
                if stream.active is not None:  # the live key expires on the new schedule
                    stream.active.expires_at = min(stream.active.expires_at, stream._now() + ttl)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return web.json_response({"error": f"bad private request: {exc}"}, status=400)
        binance = self.private.get("binance")
        return web.json_response({"match_on_tick": self.match_on_tick,
                                  "listen_key_ttl_s": getattr(binance, "listen_key_ttl_s", None)})

    async def _post_funding(self, request: web.Request) -> web.Response:
        """Set a venue's funding/spot wallet (what an internal transfer moves into the trading wallet):
        {"venue": "okx", "currency": "USDT", "amount": "1234.5"}; currency defaults to the venue's quote."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            venue = str(body.get("venue"))
            exchange = self.exchanges.get(venue)
            if exchange is None:
                raise ValueError(f"no trading venue {venue!r}; served: {', '.join(self.exchanges)}")
            account = exchange.account
            currency = str(body.get("currency") or account.currency)
            amount = Decimal(str(body["amount"]))
            if not amount.is_finite() or amount < 0:
                raise ValueError("amount must be a decimal >= 0")
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
            return web.json_response({"error": f"bad funding request: {exc}"}, status=400)
        account.funding_wallet[currency] = amount
        return web.json_response({"venue": venue, "currency": currency, "funding": format(amount, "f")})

    async def _get_accounts(self, request: web.Request) -> web.Response:
        """Every venue's account as the venue knows it, plus every order ever placed (open or not, the venue's own
        liquidations and ADLs marked by `origin`),
        so an outside checker (the reliability suite) can compare it with the bot's journal."""
        body = {}
        for venue, exchange in self.exchanges.items():
            snapshot = exchange.snapshot()
            snapshot["orders"] = [
                {"order_id": o.order_id, "client_id": o.client_id, "symbol": o.symbol, "side": o.side,
                 "qty": format(o.qty, "f"), "filled": format(o.filled, "f"), "reduce_only": o.reduce_only,
                 "status": o.status, "created_ms": o.created_ms, "updated_ms": o.updated_ms,
                 "origin": o.origin}  # origin: "liquidation" / "adl" for the venue's own closes, else None
                for o in exchange.account.orders.values()
            ]
            body[venue] = snapshot
        return web.json_response(body)

    async def _post_jump(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            bps = float(body["bps"])
            self.market.apply_jump(body.get("venue"), body.get("symbol"), bps)
            if self.timings is not None and body.get("watch", True):  # {"watch": false}: not timed
                self.timings.watch(body.get("venue"))
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": f"bad jump request: {exc}"}, status=400)
        return web.json_response({"jumped": {"venue": body.get("venue"), "symbol": body.get("symbol"), "bps": bps}})


    async def _get_timings(self, request: web.Request) -> web.Response:
        if self.timings is None:
            return web.json_response({"error": "timings are off (sim.record_timings)"}, status=404)
        return web.json_response(self.timings.drain())


async def run_forever(settings: Settings) -> None:
    """`perpbot sim`: serve the simulator until cancelled."""
    async with Simulator(settings) as sim:
        log.info("simulator running with seed %s: venues %s, admin port %s", settings.sim.seed, sim.ports,
                 sim.admin_port)
        await asyncio.Event().wait()
