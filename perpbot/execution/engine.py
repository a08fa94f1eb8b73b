"""Execution engine: decisions -> risk gate -> journal first -> both legs at once -> legs policy ->
portfolio, journal and metrics; plus recovery, reconciliation, trading states and operator commands.

Nothing is sent before its intent and order rows are committed. An order whose answer was
lost is resolved by querying the venue for its client id, never re-sent. A leg that filled
alone is hedged or unwound by the pure policy in perpbot.execution.legs; when that fails
within the retry cap, trading HALTS with the exposure logged.

This module is the thin facade: one shared Desk (perpbot.execution.desk) and one part per job.

    states.TradingStates        trading-state machine, risk context, breach HALT
    orders.OrderLifecycle       send / resolve / settle one order, corrective limit price
    trades.TwoLegTrades         decisions -> two-leg trades (approve, both legs, end the intent)
    repair.LegRepair            the legs policy run until the legs match or trading halts
    trade_book.TradeBook        trade shape changes, residues
    reconciler.Reconciler       reconciliation with the venues, funding sync, the periodic pass
    confirmations.Confirmations the private streams' pushes: fills once by trade id, waiters, funding
    recovery.Recovery           start-up (journal, reconcile, repair, trade check, state, funding)
    interrupted.StartupRepair   interrupted intents, open trades against the venues, rebalance
    commands.OperatorCommands   pause, resume, close-all, sync, drain
    perpbot.control.views       the HTTP read views
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Generic, TypeVar, overload

from perpbot.book.store import BookStore
from perpbot.control import views
from perpbot.core.decisions import Decision
from perpbot.core.instruments import Instrument
from perpbot.core.orders import OrderResult
from perpbot.core.ports import ExchangeClient
from perpbot.core.versioned import VersionedDict
from perpbot.execution.attribution import TradeAttributions
from perpbot.execution.commands import OperatorCommands
from perpbot.execution.confirmations import Confirmations
from perpbot.execution.desk import STARTING_REASON, STATES, Desk, Key, Sent, mark, publish
from perpbot.execution.interrupted import StartupRepair
from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.reconciler import FUNDING_SYNC_INTERVAL_S, Reconciler
from perpbot.execution.recovery import Recovery
from perpbot.execution.repair import SIZE_RULES, LegRepair
from perpbot.execution.states import TradingStates
from perpbot.execution.trade_book import TradeBook
from perpbot.execution.trades import TwoLegTrades
from perpbot.journal.redis_state import RedisState
from perpbot.journal.sqlite import Journal
from perpbot.portfolio.book import Portfolio
from perpbot.risk.context import RiskContext
from perpbot.risk.gate import RiskGate
from perpbot.settings import Settings
from perpbot.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

__all__ = ["Engine", "FUNDING_SYNC_INTERVAL_S", "SIZE_RULES", "STARTING_REASON", "STATES", "Sent"]


T = TypeVar("T")


class _Shared(Generic[T]):
    """An engine attribute that is a field of its Desk (read and written through), typed as the field."""

    def __init__(self, field: str) -> None:
        self.field = field

    @overload
    def __get__(self, engine: None, owner: type) -> _Shared[T]: ...

    @overload
    def __get__(self, engine: Engine, owner: type) -> T: ...

    def __get__(self, engine: Engine | None, owner: type) -> T | _Shared[T]:
        if engine is None:
            return self
        value: T = getattr(engine.desk, self.field)
        return value

    def __set__(self, engine: Engine, value: T) -> None:
        setattr(engine.desk, self.field, value)


class Engine:
    # The shared state, as the engine's own attributes (tests, wiring and the reliability suite read them).
    settings = _Shared[Settings]("settings")
    clients = _Shared[dict[str, ExchangeClient]]("clients")
    gate = _Shared[RiskGate]("gate")
    store = _Shared[BookStore]("store")
    instruments = _Shared[dict[Key, Instrument]]("instruments")
    funding_map = _Shared[dict[Any, Any]]("funding_map")
    journal = _Shared[Journal]("journal")
    portfolio = _Shared[Portfolio]("portfolio")
    metrics = _Shared[Metrics]("metrics")
    redis_state = _Shared[RedisState | None]("redis_state")
    state = _Shared[str]("state")
    state_reason = _Shared[str]("state_reason")
    state_since = _Shared[float]("state_since")
    reconciled = _Shared[dict[str, bool]]("reconciled")
    venue_connected = _Shared[dict[str, bool]]("venue_connected")
    recent_order_times = _Shared[deque[float]]("recent_order_times")
    unhedged_usdt_seconds = _Shared[Decimal]("unhedged_usdt_seconds")
    leg_failures = _Shared[int]("leg_failures")
    open_trades = _Shared[VersionedDict[str, dict[str, Any]]]("open_trades")
    in_flight = _Shared[dict[str, dict[str, Any]]]("in_flight")
    venue_open_orders = _Shared[dict[str, list[OrderResult]]]("venue_open_orders")
    _clock = _Shared[Callable[[], float]]("clock")
    _order_fills = _Shared[dict[Key, tuple[Decimal, Decimal, Decimal]]]("order_fills")
    _trade_lock = _Shared[asyncio.Lock]("trade_lock")
    _stopping = _Shared[bool]("stopping")
    _funding_cursor_ms = _Shared[dict[str, int]]("funding_cursor_ms")
    _funding_synced_at = _Shared[float]("funding_synced_at")

    def __init__(
        self, settings: Settings, clients: dict[str, ExchangeClient], gate: RiskGate, store: BookStore,
        instruments: dict[Key, Instrument], funding_map: dict[Any, Any] | None, journal: Journal,
        portfolio: Portfolio, metrics: Metrics, redis_state: RedisState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.desk = desk = Desk(
            settings=settings, clients=clients, gate=gate, store=store, instruments=instruments,
            journal=journal, portfolio=portfolio, metrics=metrics, redis_state=redis_state,
            funding_map=funding_map if funding_map is not None else {}, clock=clock,
        )
        desk.attributions = TradeAttributions(journal, metrics, clients, clock)
        self.states = TradingStates(desk)
        self.orders = OrderLifecycle(desk)
        self.book = TradeBook(desk)
        self.repair = LegRepair(desk, self.orders, self.states, self.book)
        self.trades = TwoLegTrades(desk, self.orders, self.repair, self.book, self.states)
        self.reconciler = Reconciler(desk, self.orders, self.states, self.book, self.positions)
        self.startup_repair = StartupRepair(desk, self.repair, self.book, self.states)
        # Through the engine's own _reconcile, so an observer wrapping it (perpbot.reliability) sees every pass.
        self.recovery = Recovery(desk, self.reconciler, self.startup_repair, self.states, self._reconcile_now)
        self.commands = OperatorCommands(desk, self.orders, self.states, self._reconcile_now)
        if settings.execution.private_streams:
            desk.confirmations = Confirmations(desk, self.orders.settle_pushed)
        self._consumer: asyncio.Task[None] | None = None

    async def _reconcile_now(self, **kwargs: Any) -> dict[str, Any]:
        return await self._reconcile(**kwargs)

    # ------------------------------------------------------------------ trading
    async def on_decisions(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        return await self.trades.on_decisions(decisions)

    def residues(self) -> dict[Key, Decimal]:
        return self.book.residues()

    def residue_usdt(self) -> Decimal:
        return self.book.residue_usdt()

    def _aggressive_price(self, venue: str, symbol: str, side: str, fallback: Decimal, attempt: int = 0) -> Decimal:
        return self.orders.aggressive_price(venue, symbol, side, fallback, attempt)

    def _risk_context(self) -> RiskContext:
        return self.states.risk_context()

    async def _set_state(self, state: str, reason: str, actor: str) -> bool:
        return await self.states.set_state(state, reason, actor)

    # ------------------------------------------------------------------ recovery and reconciliation
    async def start(self) -> dict[str, Any]:
        """Load the journal, reconcile with every venue, and only then trade. The private streams'
        consumer starts first: start-up repairs already learn their fills from the streams."""
        if self.desk.confirmations is not None and self._consumer is None:
            self._consumer = asyncio.get_running_loop().create_task(self.desk.confirmations.run(),
                                                                    name="private-stream-bookings")
        return await self.recovery.start()

    @property
    def startup_funding(self) -> asyncio.Task[None] | None:
        """Start-up's funding-history sync, running beside trading."""
        return self.recovery.startup_funding

    async def _reconcile(self, funding: bool = False, venues_only: Any = None,
                         writes_after: asyncio.Event | None = None) -> dict[str, Any]:
        return await self.reconciler.reconcile(funding=funding, venues_only=venues_only, writes_after=writes_after)

    async def _sync_funding(self, venue: str, client: ExchangeClient,
                            lock: asyncio.Lock | None = None) -> list[dict[str, Any]]:
        return await self.reconciler.sync_funding(venue, client, lock)

    async def periodic(self) -> dict[str, Any]:
        report = await self.reconciler.periodic(self._reconcile_now)
        if self.desk.attributions is not None:  # late funding into recent trades; the 24 h gauges move on
            await self.desk.attributions.refresh()
        return report

    async def run(self) -> None:
        """Periodic reconciliation, breach checks, heartbeat and metrics until stop()."""
        desk = self.desk
        while not desk.stop_event.is_set():
            if await self._wait_next_pass():
                break
            try:
                await self.periodic()
                desk.periodic_failures = 0
            except Exception:  # an unexpected bug in one pass must not take the control API down
                desk.periodic_failures += 1
                log.exception("periodic reconciliation failed (%d in a row)", desk.periodic_failures)
                if desk.periodic_failures >= 3:
                    await self.states.halt("periodic reconciliation failed 3 times in a row", "engine")

    async def _wait_next_pass(self) -> bool:
        """Wait for the next periodic pass; True when the engine is stopping. With every private
        stream live the pass is a backstop and runs every reconcile_backstop_interval_s; a pushed
        liquidation brings it forward."""
        desk = self.desk
        execution = desk.settings.execution
        confirmations = desk.confirmations
        streams_live = confirmations is not None and bool(confirmations.live) and all(confirmations.live.values())
        interval = max(execution.reconcile_interval_s, execution.reconcile_backstop_interval_s) if streams_live \
            else execution.reconcile_interval_s
        waits = [asyncio.ensure_future(desk.stop_event.wait())]
        if confirmations is not None:
            waits.append(asyncio.ensure_future(confirmations.reconcile_soon.wait()))
        try:
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if confirmations is not None:
            confirmations.reconcile_soon.clear()  # this pass answers it
        return desk.stop_event.is_set()

    def stop(self) -> None:
        self.desk.stop_event.set()

    async def close(self) -> None:
        """After the drain: stop booking pushed events (what is queued is booked first)."""
        consumer, self._consumer = self._consumer, None
        confirmations = self.desk.confirmations
        if consumer is None or confirmations is None:
            return
        await confirmations.drained()
        consumer.cancel()
        try:
            await consumer
        except asyncio.CancelledError:
            pass

    async def drain(self, grace_s: float) -> bool:
        return await self.commands.drain(grace_s)

    # ------------------------------------------------------------------ operator commands
    async def pause(self, reason: str) -> dict[str, Any]:
        return await self.commands.pause(reason)

    async def resume(self) -> dict[str, Any]:
        return await self.commands.resume()

    async def close_all(self) -> dict[str, Any]:
        return await self.commands.close_all()

    async def sync_positions(self) -> dict[str, Any]:
        return await self.commands.sync_positions()

    async def sync_preview(self) -> dict[str, Any]:
        """What sync_positions would change, applying nothing (the control API's dry run)."""
        return await self.commands.sync_preview()

    # ------------------------------------------------------------------ reads (perpbot.control.views)
    def trading_state(self) -> dict[str, Any]:
        return views.trading_state(self.desk)

    def positions(self) -> list[dict[str, Any]]:
        return views.positions(self.desk.portfolio, self.book.residues(), self._mark)

    def balances(self) -> list[dict[str, Any]]:
        return views.balances(self.desk.portfolio)

    def active_orders(self) -> list[dict[str, Any]]:
        return views.active_orders(self.desk)

    def pnl_today(self) -> dict[str, Any]:
        return views.pnl_today(self.desk.portfolio)

    async def trades_since(self, since_ts: float) -> list[dict[str, Any]]:
        fills = await views.trades_since(self.desk, since_ts)
        attributions = self.desk.attributions
        return await attributions.annotate(fills) if attributions is not None else fills

    async def trade_attribution(self, trade_id: str) -> dict[str, Any] | None:
        """One trade's attribution per leg (perpbot.portfolio.attribution), None for an unknown trade."""
        attributions = self.desk.attributions
        result = await attributions.of_trade(trade_id) if attributions is not None else None
        return result.as_dict() if result is not None else None

    async def pnl_attribution(self, days: int) -> list[dict[str, Any]]:
        """Per UTC day, strategy and venue: the attribution of the trades closed in the last `days`."""
        attributions = self.desk.attributions
        return [row.as_dict() for row in await attributions.summary(days)] if attributions is not None else []

    def _mark(self, venue: str, symbol: str) -> Decimal | None:
        return mark(self.desk, venue, symbol)

    def _publish(self) -> None:
        publish(self.desk)
